"""What every request to `bertkit ui` must show before a route runs: a Host of this machine, the launch's
token, and, for a request that changes something, a same-origin browser context and a JSON (or, for an
upload, octet-stream) body.

- **Host.** A page on a domain that re-points to 127.0.0.1 (DNS rebinding) sends its own name as Host. Only
  `localhost`, `*.localhost`, an IP address (which no rebinding can produce) and names given with
  `--allowed-host` are answered.
- **Token.** A fresh secret per launch (or `--token`), printed in the address the command shows, as Jupyter
  does. Opening `/?token=...` sets it as an HttpOnly, SameSite=Strict cookie (named after the token, so two
  UIs on two ports keep their own) and redirects to the same page without it; scripts send
  `Authorization: Bearer TOKEN`. `--no-token` turns it off, explicitly.
- **Cross-site requests.** A web page can make the browser send a POST with a form or `fetch(..., {mode:
  "no-cors"})`, but only as text/plain, a form encoding or multipart, and always with its own Origin and
  `Sec-Fetch-Site: cross-site`. State-changing requests need an Origin (when sent) equal to this server's,
  a `Sec-Fetch-Site` (when sent) of same-origin, and the content type the route reads; requests without
  either header are not from a browser.

Every refusal is a 403 whose text says what to do.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["Access", "refusal", "host_name", "token_cookie"]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
UPLOAD_PATH = "/api/upload"


@dataclass(frozen=True)
class Access:
    """Who the UI answers. token: the launch's secret, None with --no-token; allowed_hosts: extra Host names
    (lower case, no port; "*" for any, behind a proxy that checks it)."""

    token: str | None
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(cls, token: str | None, allowed_hosts: Iterable[str] = ()) -> Access:
        return cls(token, frozenset(h.strip().lower().rstrip(".") for h in allowed_hosts if h.strip()))


def token_cookie(token: str) -> str:
    """The cookie's name for `token` (cookies are shared across ports; each UI keeps its own)."""
    return "bertkit_ui_" + hashlib.sha256(token.encode()).hexdigest()[:12]


def host_name(header: str) -> str:
    """The host part of a Host header, lower case: "[::1]:8080" -> "::1", "LocalHost.:80" -> "localhost"."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    name = header.rsplit(":", 1)[0] if header.count(":") == 1 else header
    return name.rstrip(".")


def _host_allowed(name: str, access: Access) -> bool:
    if "*" in access.allowed_hosts or name in access.allowed_hosts:
        return True
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def given_token(headers: Mapping[str, str], cookies: Mapping[str, str], access: Access) -> str:
    """The token a request carries: its cookie, `Authorization: Bearer|token T` (any case) or X-Bertkit-Token."""
    scheme, _, value = headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() in ("bearer", "token") and value.strip():
        return value.strip()
    return headers.get("x-bertkit-token") or cookies.get(token_cookie(access.token or "")) or ""


def token_matches(given: str, access: Access) -> bool:
    return access.token is None or hmac.compare_digest(given.encode(), access.token.encode())


def refusal(access: Access, method: str, path: str, scheme: str, headers: Mapping[str, str],
            cookies: Mapping[str, str]) -> str | None:
    """Why the request is refused (403), or None when it may go on. `headers`: lower-case names."""
    host = headers.get("host", "")
    if not _host_allowed(host_name(host), access):
        return (f"bertkit ui: the Host {host!r} is not this machine's name; open the address the command printed "
                f"(http://127.0.0.1:PORT/), or start bertkit ui with --allowed-host {host_name(host) or 'NAME'}")
    if not token_matches(given_token(headers, cookies, access), access):
        return ("bertkit ui: no valid token; open the address `bertkit ui` printed (it ends in ?token=...), "
                "or send 'Authorization: Bearer TOKEN'")
    if method in SAFE_METHODS:
        return None
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return f"bertkit ui: a {site} request may not change anything here (Sec-Fetch-Site: {site})"
    origin = headers.get("origin")
    if origin is not None and origin.rstrip("/") != f"{scheme}://{host}":
        return f"bertkit ui: a request from {origin} may not change anything here (Origin is not {scheme}://{host})"
    return None


def wrong_content_type(method: str, path: str, headers: Mapping[str, str]) -> str | None:
    """Why a state-changing request's content type is refused (415), or None."""
    if method in SAFE_METHODS:
        return None
    given = headers.get("content-type", "").split(";")[0].strip().lower()
    want = "application/octet-stream" if path == UPLOAD_PATH else "application/json"
    if given == want:
        return None
    return (f"bertkit ui: {method} {path} takes Content-Type: {want}, not {given or 'none'} (the types a web "
            "page's form can send are refused)")
