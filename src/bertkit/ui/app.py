"""`bertkit ui`: a local web app over the same Python API and command line, on one workspace folder.

    GET  /                       runs in the workspace (status, task, model, best dev metric, age); compare
    GET  /new                    upload or pick a file, preview it, map its columns, set up and start a run
    GET  /run/NAME               a run: progress, curves, log lines, stop/resume, try it, export, model card
    GET  /run/NAME/report        its HTML report
    GET  /compare?run=A&run=B    the `bertkit runs compare` page

    PUT  /api/upload?name=F      a data file into WORKSPACE/uploads (size-limited)
    GET  /api/preview?file=F     its first rows, columns, and the columns and task suggested for it
    POST /api/runs               start a run: {name, file, dev, task, task.OPTION..., model, COLUMN...,
                                 settings, yaml} (the task's options and columns: `bertkit.ui.forms`)
    GET  /api/run/NAME           status, job, metrics and log lines (polled by the run page)
    POST /api/run/NAME/stop | /resume | /predict | /export

Training and export run as `bertkit` commands in the workspace's job queue (`bertkit.ui.jobs`), one at a
time and as processes of their own, so the CLI and the UI make identical run directories and killing the
UI never kills a run. Every path a request names is resolved inside the workspace; nothing is fetched
from the internet (the page's script and style are served from the package).

The pages are `pages.py` (Jinja2 templates in `templates/`), the JSON routes `api.py`; this module puts them
together behind the guard (`guard.py`: token, Host, Origin, content type).
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Any

from bertkit.errors import BertkitError
from bertkit.ui.guard import Access, refusal, token_cookie, token_matches, wrong_content_type
from bertkit.ui.workspace import Workspace

__all__ = ["create_app", "serve_ui", "Workspace"]

log = logging.getLogger("bertkit.ui")


def create_app(workspace: str | Path, *, token: str | None, allowed_hosts: tuple[str, ...] = (),
               allowed_paths: tuple[str, ...] = (), max_upload_mb: float = 200.0):
    """The UI's app over `workspace`. token: the secret every request must carry (None: open, --no-token);
    allowed_hosts: Host names answered besides localhost and IP addresses; allowed_paths: folders outside the
    workspace that its paths (and symlinks) may lead into. See `bertkit.ui.guard` for what is checked."""
    from fastapi import FastAPI

    from bertkit.ui import api, pages
    from bertkit.ui.state import UiState

    app = FastAPI(title="bertkit ui", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.ui = UiState(Workspace(workspace, allowed_paths), max_upload_mb)
    app.state.workspace = app.state.ui.ws
    app.middleware("http")(_guard(Access.of(token, allowed_hosts), token))
    app.include_router(pages.router)
    app.include_router(api.router)
    return app


def _guard(access: Access, token: str | None):
    """The middleware every request passes first: the printed address's `?token=` becomes a cookie (a 303 to
    the same page without it); a request without the token, from another site or to another Host name is
    403; a state change in a type a web page's form can send is 415; a BertkitError is a 422."""
    from fastapi.responses import RedirectResponse, Response

    from bertkit.ui.state import error

    async def guard(request: Any, call_next):
        headers = {k.lower(): v for k, v in request.headers.items()}
        query = request.query_params.get("token")
        if query is not None and request.method == "GET":
            if not token_matches(query, access) or refusal(access, "GET", request.url.path, request.url.scheme,
                                                           {**headers, "authorization": f"Bearer {query}"}, {}):
                return Response("bertkit ui: wrong token or Host; open the address the command printed\n",
                                status_code=403, media_type="text/plain")
            from urllib.parse import urlencode

            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            response = RedirectResponse(request.url.path + (f"?{urlencode(rest)}" if rest else ""), status_code=303)
            if token:
                response.set_cookie(token_cookie(token), token, httponly=True, samesite="strict")
            return response
        refused = refusal(access, request.method, request.url.path, request.url.scheme, headers, request.cookies)
        if refused:
            log.warning("refused %s %s: %s", request.method, request.url.path, refused)
            return error(403, refused) if request.url.path.startswith("/api/") else Response(
                refused + "\n", status_code=403, media_type="text/plain")
        wrong = wrong_content_type(request.method, request.url.path, headers)
        if wrong:
            return error(415, wrong)
        try:
            return await call_next(request)
        except BertkitError as exc:
            return error(422, str(exc))

    return guard


def serve_ui(workspace: str | Path, *, host: str = "127.0.0.1", port: int = 8080, token: str | None = None,
             no_token: bool = False, allowed_hosts: tuple[str, ...] = (), allowed_paths: tuple[str, ...] = (),
             max_upload_mb: float = 200.0, header_timeout: float = 10.0) -> None:
    """Serve the UI until interrupted. Without `token` a fresh one is made for this launch; `no_token` (the
    command's --no-token) serves without one. The address to open, token included, is logged."""
    import uvicorn

    from bertkit.serve.protocol import uvicorn_settings

    if no_token:
        token = None
        log.warning("bertkit ui runs without a token (--no-token): any program or user on this machine that "
                    "can reach port %d can read the workspace and start jobs", port)
    elif not token:
        token = secrets.token_urlsafe(32)
    if host not in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "::"):
        allowed_hosts = (*allowed_hosts, host)  # the name it was started on
    app = create_app(workspace, token=token, allowed_hosts=allowed_hosts, allowed_paths=allowed_paths,
                     max_upload_mb=max_upload_mb)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else f"[{host}]" if ":" in host else host
    log.info("bertkit ui: http://%s:%d/%s (workspace %s)", shown, port, f"?token={token}" if token else "",
             Path(workspace).resolve())
    uvicorn.run(app, host=host, port=port, log_level="warning", **uvicorn_settings(header_timeout))
