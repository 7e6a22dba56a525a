"""The web app's HTML pages, rendered from `templates/` (Jinja2, values escaped): the runs, a new run, a
run, its report, a comparison, and the page's own script and style."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from bertkit.ui.forms import task_forms
from bertkit.ui.runs import SETTINGS, runs_table
from bertkit.ui.state import UI

__all__ = ["router", "render"]

STATIC = Path(__file__).parent / "static"
TEMPLATES = Path(__file__).parent / "templates"
router = APIRouter()
_env = None


def render(template: str, **values: Any) -> str:
    """A page of `templates/`, every value escaped unless the template says otherwise."""
    global _env
    if _env is None:
        import jinja2

        _env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    return _env.get_template(template).render(**values)


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return "just now"


@router.get("/", response_class=HTMLResponse)
def index(ui: UI):
    ui.ws.jobs.ensure_worker()  # a UI started again picks up jobs that wait
    rows = [{"name": r["name"], "status": str(r["status"]), "task": str(r.get("task")),
             "model": Path(str(r.get("model"))).name, "age": _age(r["age"]),
             "value": "" if r.get("value") is None else f"{r['metric']} {r['value']:.4f}"} for r in runs_table(ui.ws)]
    return render("runs.html", title="Runs", workspace=str(ui.ws.root), runs=rows)


@router.get("/new", response_class=HTMLResponse)
def new(ui: UI):
    basic = [f for f in SETTINGS if f in ("epochs", "lr", "batch_size", "max_steps", "max_length")]
    return render("new.html", title="New run", files=ui.ws.data_files(), models=ui.ws.models(), settings=basic,
                  tasks=task_forms(), task_forms=task_forms(), script="bertkitNewRun();")


@router.get("/run/{name}", response_class=HTMLResponse)
def run(name: str, ui: UI):
    import json

    ui.ws.run(name)
    return render("run.html", title=name, name=name, script=f"bertkitRun({json.dumps(name)});")


@router.get("/run/{name}/report")
def report(name: str, ui: UI):
    path = ui.ws.run(name) / "report.html"
    if not path.exists():
        return HTMLResponse("<p>No report yet: it is written when the run completes.</p>", status_code=404)
    return FileResponse(path, media_type="text/html")


@router.get("/compare", response_class=HTMLResponse)
def compare(request: Request, ui: UI):
    from bertkit.evaluation.runs import render_comparison

    names = request.query_params.getlist("run")
    if len(names) < 2:
        return HTMLResponse(render("message.html", title="Compare", message="Select two runs or more on the",
                                   link="/", link_text="Runs page"))
    return HTMLResponse(render_comparison([ui.ws.run(n) for n in names]))


@router.get("/static/{name}")
def static(name: str):
    path = STATIC / name
    if name not in ("ui.js", "ui.css") or not path.exists():
        return Response(status_code=404)
    return FileResponse(path, media_type="text/javascript" if name.endswith(".js") else "text/css")

