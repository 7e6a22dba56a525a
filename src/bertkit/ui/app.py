"""`bertkit ui`: a local web app over the same Python API and command line, on one workspace folder.

    GET  /                       runs in the workspace (status, task, model, best dev metric, age); compare
    GET  /new                    upload or pick a file, preview it, map its columns, set up and start a run
    GET  /run/NAME               a run: progress, curves, log lines, stop/resume, try it, export, model card
    GET  /run/NAME/report        its HTML report
    GET  /compare?run=A&run=B    the `bertkit runs compare` page

    PUT  /api/upload?name=F      a data file into WORKSPACE/uploads (size-limited)
    GET  /api/preview?file=F     its first rows, columns, and the columns and task suggested for it
    POST /api/runs               start a run: {name, file, dev, task, model, columns..., settings, yaml}
    GET  /api/run/NAME           status, job, metrics and log lines (polled by the run page)
    POST /api/run/NAME/stop | /resume | /predict | /export

Training and export run as `bertkit` commands in the workspace's job queue (`bertkit.ui.jobs`), one at a
time and as processes of their own, so the CLI and the UI make identical run directories and killing the
UI never kills a run. Every path a request names is resolved inside the workspace; nothing is fetched
from the internet (the page's script and style are served from the package).
"""


import html
import io
import json
import logging
import math
import os
import secrets
import time
import zipfile
from pathlib import Path
from typing import Any

from bertkit.errors import BertkitError, ConfigError, DataError
from bertkit.ui.guard import Access, refusal, token_cookie, token_matches, wrong_content_type
from bertkit.ui.workspace import DATA_SUFFIXES, EXPORTS, NAME, Workspace, confine_config

__all__ = ["create_app", "serve_ui", "Workspace"]

log = logging.getLogger("bertkit.ui")
STATIC = Path(__file__).parent / "static"


# --- previewing a data file -------------------------------------------------------------------------------
def _looks_conll(path: Path) -> bool:
    from bertkit.data.readers import text_lines

    lines = []
    for line in text_lines(path, "utf-8"):
        if line.strip():
            lines.append(line.split())
        if len(lines) >= 20:
            break
    return bool(lines) and all(2 <= len(parts) <= 6 for parts in lines) and any(
        parts[-1] == "O" or parts[-1][:2] in ("B-", "I-", "E-", "S-") for parts in lines)


def _is_squad(path: Path) -> bool:
    name = path.name.lower().removesuffix(".gz")
    if not name.endswith(".json"):
        return False
    from bertkit.data.readers import text_lines

    head = "".join(line for _, line in zip(range(5), text_lines(path, "utf-8")))
    return '"data"' in head[:2000] and ('"paragraphs"' in head or '"version"' in head)


def suggest_columns(columns: list[str], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The text, pair and label columns and the task a file suggests: the label by name or by few distinct
    values, the text as the longest remaining string column, a pair when a second text column is named so."""
    def values(c: str) -> list[Any]:
        return [r.get(c) for r in rows if r.get(c) not in (None, "")]

    def mean_len(c: str) -> float:
        vs = values(c)
        return sum(len(str(v)) for v in vs) / len(vs) if vs else 0.0

    named = {c.lower(): c for c in columns}
    label = next((named[n] for n in ("label", "labels", "sentiment", "class", "category", "target", "y", "tags")
                  if n in named), None)
    if label is None:
        def distinct(c: str) -> int:
            return len({json.dumps(v, sort_keys=True) for v in values(c)})

        few = [c for c in columns if 0 < distinct(c) <= max(2, len(rows) // 3) and mean_len(c) < 20]
        label = few[-1] if few else None
    texts = sorted((c for c in columns if c != label and mean_len(c) > 0), key=mean_len, reverse=True)
    pair_names = ("sentence2", "text_b", "text_pair", "hypothesis", "question2", "#2 string")
    pair = next((c for c in texts if c.lower() in pair_names), None)
    text = next((c for c in texts if c != pair and c.lower() not in ("id", "idx")), None)
    task = "classification"
    if label is not None and rows:
        sample = values(label)
        if sample and all(isinstance(v, list) for v in sample):
            task = "classification"  # multi-label: a list per row
        else:
            numbers = [_number(v) for v in sample]
            if sample and None not in numbers and (any(not n.is_integer() for n in numbers)
                                                   or len(set(numbers)) > max(10, len(sample) // 2)):
                task = "regression"  # scores: fractions (as fitting decides), or many distinct whole numbers
    return {"task": task, "text_column": text, "text_pair_column": pair, "label_column": label}


def _number(value: Any) -> float | None:
    """A label as a finite number (CSV cells are strings), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def preview(path: Path, limit: int = 8) -> dict[str, Any]:
    """The first rows of a data file, its kind, and what to do with it (raises DataError for a bad file)."""
    from bertkit.data.readers import iter_table

    if _is_squad(path):
        return {"kind": "squad", "columns": [], "rows": [], "suggested": {"task": "qa"}}
    if path.name.lower().removesuffix(".gz").endswith((".conll", ".txt")) and _looks_conll(path):
        from bertkit.data.conll import read_conll

        sentences = read_conll(path)
        rows = [{"tokens": " ".join(s.tokens), "tags": " ".join(s.tags)} for s in sentences[:limit]]
        return {"kind": "conll", "columns": ["tokens", "tags"], "rows": rows, "count": len(sentences),
                "suggested": {"task": "ner"}, "defaults": size_defaults_for(len(sentences))}
    chunks = iter_table(path, chunk_rows=2000)
    table = next(chunks)
    count = len(table.rows) + sum(len(t.rows) for t in chunks)
    return {"kind": "table", "columns": table.columns, "rows": table.rows[:limit], "count": count,
            "suggested": suggest_columns(table.columns, table.rows), "defaults": size_defaults_for(count)}


def size_defaults_for(rows: int) -> dict[str, Any]:
    """What a standard run on `rows` training rows and no dev file would choose (the form shows it), from the
    run's own rules (`bertkit.training.defaults`)."""
    from bertkit.config import RunConfig
    from bertkit.training import defaults

    # The learning rate follows the model, chosen further down the form: the rule is shown in words.
    config = RunConfig().with_overrides({"train.method": "standard", "train.lr": 1.0})
    split = rows >= defaults.holdout_below(config, defaults.DataStats(train=rows), defaults.ModelInfo())
    n = rows - round(rows * config.data.dev_fraction) if split else rows
    resolved, _ = defaults.resolve(config, defaults.DataStats(train=n), defaults.ModelInfo())
    return {"examples": n, "dev_split": split, "batch_size": resolved.train.batch_size,
            "epochs": resolved.train.epochs, "lr": defaults.lr_rule()}


# --- starting a run ---------------------------------------------------------------------------------------
SETTINGS = {  # form field -> config key (the basic settings; the YAML panel holds all of them)
    "epochs": "train.epochs", "lr": "train.lr", "batch_size": "train.batch_size", "max_steps": "train.max_steps",
    "max_length": "data.max_length", "eval_every": "train.eval_every", "method": "train.method",
    "precision": "train.precision", "seed": "train.seed",
}


def build_config(ws: Workspace, form: dict[str, Any]):
    """The RunConfig a New-run form describes: the YAML panel (a whole run config) when given, then the
    form's fields over it; paths are checked to lie inside the workspace. Raises BertkitError."""
    from bertkit.config import RunConfig, safe_yaml

    name = str(form.get("name") or "").strip()
    run = ws.run(name)
    if run.exists():
        raise ConfigError(f"a run named {name} exists; choose another name")
    base = RunConfig()
    text = str(form.get("yaml") or "").strip()
    if text:
        raw = safe_yaml(text, "the YAML settings")
        if not isinstance(raw, dict):
            raise ConfigError("the YAML settings: a mapping of sections (task, data, model, train) is expected")
        base = RunConfig.from_dict(raw, source="the YAML settings")
    overrides: dict[str, Any] = {"out": str(run)}
    if form.get("file"):
        overrides["data.train"] = str(ws.inside(form["file"]))
    if form.get("dev"):
        overrides["data.dev"] = str(ws.inside(form["dev"]))
    if form.get("task") == "regression":  # a number to predict: the classification task's regression problem
        overrides.update({"task.name": "classification", "task.problem": "regression"})
    elif form.get("task"):
        overrides["task.name"] = form["task"]
    model = form.get("model") or None
    if model and model != "embedded":
        overrides["model.name"] = str(ws.inside(model))
    for key in ("text_column", "text_pair_column", "label_column"):
        if form.get(key):
            overrides[f"data.{key}"] = form[key]
    for field, key in SETTINGS.items():
        value = form.get(field)
        if value not in (None, ""):
            overrides[key] = value
    # every file or folder the run would read, the YAML panel's included, passes the workspace's rule
    config = confine_config(ws, base.with_overrides(overrides))
    if not config.data.train:
        raise ConfigError("no training file: upload one or pick one from the workspace")
    return config


def check_data(config) -> int:
    """Read the training (and dev) file as the run will, so a bad file is named in the form before anything
    starts. Returns the number of training examples."""
    from bertkit.data.task_files import read_examples
    from bertkit.models.loading import load_tokenizer, quiet_transformers
    from bertkit.tasks.base import get_task

    task = get_task(config.task)
    with quiet_transformers():
        tokenizer = load_tokenizer(config.model.name if not config.model.init_from else config.model.init_from)
    examples = read_examples(task, config.data.train, config.data, tokenizer)
    if config.data.dev:
        read_examples(task, config.data.dev, config.data, tokenizer)
    return len(examples)


# --- reading a run ----------------------------------------------------------------------------------------
def run_state(ws: Workspace, name: str, log_lines: int = 60) -> dict[str, Any]:
    from bertkit.run_dir import RunDir

    path = ws.run(name)
    run = RunDir(path)
    job = ws.jobs.for_run(path)
    state: dict[str, Any] = {"name": name, "exists": run.exists(), "job": job,
                             "log": ws.jobs.log(job["id"], log_lines) if job else []}
    if not run.exists():
        return state
    state["status"] = run.status()
    metrics = []
    if (path / "metrics.jsonl").exists():
        for line in (path / "metrics.jsonl").read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                metrics.append(json.loads(line))
            except ValueError:
                continue  # a line being written
    state["metrics"] = [{k: v for k, v in m.items() if isinstance(v, (int, float, str, bool)) or v is None}
                        for m in metrics]
    state["results"] = run.read_json("results.json", default={}) or None
    state["labels"] = run.read_json("labels.json", default={})
    from bertkit.tasks.base import get_task

    config = run.load_config()
    state["task"] = config.task.name
    task = get_task(config.task)
    try:
        if state["labels"]:
            task.load_state(state["labels"])
        state["primary"] = task.primary_metric
    except (KeyError, BertkitError):  # not fitted yet (labels.json comes with the first step)
        state["primary"] = None
    state["report"] = (path / "report.html").exists()
    card = path / "model" / "README.md"
    state["card"] = card.read_text(encoding="utf-8", errors="replace") if card.exists() else None
    exports = []
    for job_ in ws.jobs.all():
        if job_["kind"] == "export" and job_["run"] == str(path.resolve()):
            exports.append({"format": job_.get("format"), "state": job_["state"], "id": job_["id"],
                            "download": f"/download/{job_['id']}.zip" if job_["state"] == "done" else None})
    state["exports"] = exports
    return state


def runs_table(ws: Workspace) -> list[dict[str, Any]]:
    from bertkit.evaluation.runs import list_runs

    rows = []
    for row in list_runs(ws.root / "runs"):
        path = Path(row["run"])
        status = path / "status.json"
        row["name"] = path.name
        row["age"] = time.time() - (status.stat().st_mtime if status.exists() else path.stat().st_mtime)
        job = ws.jobs.for_run(path)
        if job and job["state"] == "queued":
            row["status"] = "queued"
        rows.append(row)
    known = {r["name"] for r in rows}
    for job in ws.jobs.all():  # queued runs that have no directory yet
        name = Path(job["run"]).name
        if job["kind"] == "train" and job["state"] == "queued" and name not in known:
            rows.append({"name": name, "status": "queued", "task": job.get("task", "-"), "model": "-",
                         "metric": None, "value": None, "age": time.time() - job["created"]})
            known.add(name)
    return sorted(rows, key=lambda r: r["age"])


# --- pages ------------------------------------------------------------------------------------------------
def _page(title: str, body: str, script: str = "") -> str:
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)} · bertkit</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="stylesheet" href="/static/ui.css">
</head><body><nav><a href="/"><b>bertkit</b></a> <a href="/">Runs</a> <a href="/new">New run</a></nav>
<main>{body}</main><script src="/static/ui.js"></script>{f"<script>{script}</script>" if script else ""}
</body></html>"""


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return "just now"


def runs_page(ws: Workspace) -> str:
    rows = []
    for r in runs_table(ws):
        value = "" if r.get("value") is None else f"{r['metric']} {r['value']:.4f}"
        name = html.escape(r["name"])
        rows.append(f"<tr><td><input type=checkbox name=run value=\"{name}\"></td><td><a href=\"/run/{name}\">{name}"
                    f"</a></td><td class=\"status {html.escape(str(r['status']))}\">{html.escape(str(r['status']))}"
                    f"</td><td>{html.escape(str(r.get('task')))}</td><td>{html.escape(Path(str(r.get('model'))).name)}"
                    f"</td><td>{html.escape(value)}</td><td>{_age(r['age'])}</td></tr>")
    table = ("<form action=\"/compare\" method=get><table id=runs><thead><tr><th></th><th>run</th><th>status</th>"
             "<th>task</th><th>model</th><th>best dev</th><th>updated</th></tr></thead><tbody>" + "".join(rows)
             + "</tbody></table><button type=submit>Compare selected</button></form>") if rows else (
             "<p>No runs yet. <a href=\"/new\">Start one</a>.</p>")
    return _page("Runs", f"<h1>Runs</h1><p class=muted>Workspace {html.escape(str(ws.root))}</p>{table}")


def new_page(ws: Workspace) -> str:
    files = "".join(f"<option>{html.escape(f)}</option>" for f in ws.data_files())
    models = "".join(f"<option>{html.escape(m)}</option>" for m in ws.models())
    settings = "".join(f"<label>{html.escape(f.replace('_', ' '))} <input name={f} placeholder=auto></label>"
                       for f in ("epochs", "lr", "batch_size", "max_steps", "max_length"))
    body = f"""<h1>New run</h1>
<form id=newrun autocomplete=off>
<fieldset><legend>1. Data</legend>
<label>Upload <input type=file id=upload></label> or pick
<select name=file id=file><option value="">(a file in the workspace)</option>{files}</select>
<label>dev file <select name=dev id=dev><option value="">none: split one off</option>{files}</select></label>
<div id=preview></div></fieldset>
<fieldset><legend>2. Task and model</legend>
<label>task <select name=task id=task><option>classification</option><option>regression</option><option>ner</option>
<option>qa</option><option>multiple_choice</option></select></label>
<label>model <select name=model id=model>{models}</select></label>
<div id=columns></div></fieldset>
<fieldset><legend>3. Settings</legend>
<label>run name <input name=name id=name required pattern="[A-Za-z0-9][A-Za-z0-9._-]*"></label>
<p id=defaults></p>
<p class=muted>Left empty, a setting takes bertkit's default for the data's size (batch size, epochs and the
dev split follow the number of examples; classification with fewer than 150 examples per class takes the
few-shot recipe; the run's config.yaml records what was chosen).</p>
{settings}
<details><summary>Advanced: the run config as YAML (its values are overridden by the fields above)</summary>
<textarea name=yaml id=yaml rows=14 cols=80 placeholder="train:&#10;  warmup_ratio: 0.1"></textarea></details>
</fieldset>
<p><button type=submit id=start>Start</button></p><p id=error class=error role=alert></p>
</form>"""
    return _page("New run", body, "bertkitNewRun();")


def run_page(ws: Workspace, name: str) -> str:
    n = html.escape(name)
    body = f"""<h1>{n}</h1>
<p><span id=status class=status></span> <span id=progress></span> <span id=eta class=muted></span></p>
<progress id=bar max=1 value=0></progress>
<p><button id=stop>Stop</button> <button id=resume>Resume</button> <a id=report href="/run/{n}/report">Report</a></p>
<div class=charts><figure><figcaption>training loss</figcaption><svg id=loss viewBox="0 0 420 200"></svg></figure>
<figure><figcaption id=metricname>dev metric</figcaption><svg id=metric viewBox="0 0 420 200"></svg></figure></div>
<h2>Try it</h2><form id=try><div id=tryinputs></div><button type=submit>Predict</button></form>
<div id=answer></div>
<h2>Ship it</h2><p><button data-format=hf class=export>Model folder</button>
<button data-format=onnx class=export>ONNX</button> <button data-format=int8 class=export>ONNX int8</button></p>
<ul id=exports></ul>
<details><summary>Model card</summary><pre id=card></pre></details>
<h2>Log</h2><pre id=log></pre>"""
    return _page(name, body, f"bertkitRun({json.dumps(name)});")


async def _json_object(request) -> dict[str, Any]:
    """The request's JSON object body; anything else is a DataError (a 422 in the form, not a 500)."""
    try:
        body = await request.json()
    except ValueError:
        raise DataError("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise DataError("the request body must be a JSON object")
    return body


class _TooLarge(Exception):
    pass


# --- the app ----------------------------------------------------------------------------------------------
def create_app(workspace: str | Path, *, token: str | None, allowed_hosts: tuple[str, ...] = (),
               allowed_paths: tuple[str, ...] = (), max_upload_mb: float = 200.0):
    """The UI's app over `workspace`. token: the secret every request must carry (None: open, --no-token);
    allowed_hosts: Host names answered besides localhost and IP addresses; allowed_paths: folders outside the
    workspace that its paths (and symlinks) may lead into. See `bertkit.ui.guard` for what is checked."""
    from fastapi import FastAPI, Request
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

    ws = Workspace(workspace, allowed_paths)
    access = Access.of(token, allowed_hosts)
    app = FastAPI(title="bertkit ui", docs_url=None, redoc_url=None, openapi_url=None)
    predictors: dict[str, tuple[float, Any]] = {}
    limit = int(max_upload_mb * 2**20)

    def error(status: int, message: str) -> JSONResponse:
        from bertkit.config_flags import with_flags

        return JSONResponse(status_code=status, content={"error": with_flags(message)})

    @app.middleware("http")
    async def guard(request: Request, call_next):
        headers = {k.lower(): v for k, v in request.headers.items()}
        query = request.query_params.get("token")
        if query is not None and request.method == "GET":
            if not token_matches(query, access) or refusal(access, "GET", request.url.path, request.url.scheme,
                                                           {**headers, "authorization": f"Bearer {query}"}, {}):
                return Response("bertkit ui: wrong token or Host; open the address the command printed\n",
                                status_code=403, media_type="text/plain")
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            from urllib.parse import urlencode

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

    @app.get("/", response_class=HTMLResponse)
    def index():
        ws.jobs.ensure_worker()  # a UI started again picks up jobs that wait
        return runs_page(ws)

    @app.get("/new", response_class=HTMLResponse)
    def new():
        return new_page(ws)

    @app.get("/run/{name}", response_class=HTMLResponse)
    def run(name: str):
        ws.run(name)
        return run_page(ws, name)

    @app.get("/run/{name}/report")
    def report(name: str):
        path = ws.run(name) / "report.html"
        if not path.exists():
            return HTMLResponse("<p>No report yet: it is written when the run completes.</p>", status_code=404)
        return FileResponse(path, media_type="text/html")

    @app.get("/compare", response_class=HTMLResponse)
    def compare(request: Request):
        from bertkit.evaluation.runs import render_comparison

        names = request.query_params.getlist("run")
        if len(names) < 2:
            return HTMLResponse(_page("Compare", "<p>Select two runs or more on the <a href=\"/\">Runs</a> page.</p>"))
        return HTMLResponse(render_comparison([ws.run(n) for n in names]))

    @app.get("/static/{name}")
    def static(name: str):
        path = STATIC / name
        if name not in ("ui.js", "ui.css") or not path.exists():
            return Response(status_code=404)
        return FileResponse(path, media_type="text/javascript" if name.endswith(".js") else "text/css")

    @app.put("/api/upload")
    async def upload(request: Request):
        raw = request.query_params.get("name") or ""
        name = Path(raw.replace("\\", "/")).name
        if not NAME.match(name) or not name.lower().endswith(DATA_SUFFIXES):
            return error(422, f"{raw!r}: upload a data file (.csv, .tsv, .jsonl, .json, .parquet, .conll, .txt, "
                         "optionally .gz) whose name is letters, digits, '.', '_' and '-'")
        length = request.headers.get("content-length", "")
        declared = int(length) if length.isdigit() else 0  # a missing or malformed length: the body counts
        if declared > limit:
            return error(413, f"{name}: {declared / 2**20:.1f} MB is over the upload limit of "
                         f"{max_upload_mb:g} MB (bertkit ui --max-upload-mb)")
        target = ws.root / "uploads" / name
        if target.is_dir():
            return error(409, f"uploads/{name} is a folder; upload under another name")
        tmp, fd = ws.upload_target(name)
        size = 0
        try:
            with os.fdopen(fd, "wb") as fh:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise _TooLarge()
                    fh.write(chunk)
            os.replace(tmp, target)  # a symlink planted at the target is replaced, not written through
        except _TooLarge:
            return error(413, f"{name}: over the upload limit of {max_upload_mb:g} MB")
        finally:
            tmp.unlink(missing_ok=True)
        return {"file": ws.rel(target), "bytes": size}

    @app.get("/api/files")
    def files():
        return {"files": ws.data_files(), "models": ws.models()}

    @app.get("/api/preview")
    def preview_file(file: str):
        return preview(ws.inside(file))

    @app.post("/api/runs")
    async def start(request: Request):
        import yaml

        form = await _json_object(request)
        config = build_config(ws, form)
        n = check_data(config)
        config_file = ws.jobs.folder / f"{Path(config.out).name}-{int(time.time())}.yaml"
        config_file.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True),
                               encoding="utf-8")
        job = ws.jobs.submit(["train", str(config_file)], Path(config.out))
        return {"run": Path(config.out).name, "job": job["id"], "examples": n}

    @app.get("/api/runs")
    def runs():
        return {"runs": runs_table(ws)}

    @app.get("/api/run/{name}")
    def state(name: str):
        return run_state(ws, name)

    @app.post("/api/run/{name}/stop")
    def stop(name: str):
        job = ws.jobs.for_run(ws.run(name))
        if not job or job["state"] not in ("queued", "running"):
            return error(409, f"{name}: no job of this run is queued or running")
        return {"job": ws.jobs.stop(job["id"])}

    @app.post("/api/run/{name}/resume")
    def resume(name: str):
        from bertkit.run_dir import RunDir

        path = ws.run(name)
        job = ws.jobs.for_run(path)
        if job and job["state"] in ("queued", "running"):
            return error(409, f"{name}: a job of this run is {job['state']} already")
        if not RunDir(path).exists():
            return error(409, f"{name}: nothing to resume (no config.yaml)")
        if RunDir(path).status().get("status") == "completed":
            return error(409, f"{name}: the run is complete; start a new one to train more")
        return {"job": ws.jobs.submit(["train", "--out", str(path), "--resume"], path)["id"]}

    @app.post("/api/run/{name}/predict")
    async def predict(name: str, request: Request):
        from bertkit.inference.predictor import Predictor
        from bertkit.run_dir import RunDir

        path = ws.run(name)
        inputs = (await _json_object(request)).get("inputs")
        if not isinstance(inputs, list) or not inputs or len(inputs) > 16:
            return error(422, "send {\"inputs\": [...]}, 1 to 16 inputs")
        status = RunDir(path).status().get("status") if RunDir(path).exists() else None
        if status != "completed":
            return error(409, f"{name}: the run is {status or 'not started'}; try it once it completes")
        stamp = (path / "results.json").stat().st_mtime
        if name not in predictors or predictors[name][0] != stamp:
            if len(predictors) >= 2:
                predictors.pop(next(iter(predictors)))
            predictors[name] = (stamp, Predictor.from_path(path))
        return {"predictions": predictors[name][1].predict(inputs)}

    @app.post("/api/run/{name}/export")
    async def export(name: str, request: Request):
        from bertkit.run_dir import RunDir

        path = ws.run(name)
        fmt = (await _json_object(request)).get("format")
        if fmt not in ("hf", "onnx", "int8"):
            return error(422, "format: hf, onnx or int8")
        if RunDir(path).status().get("status") != "completed":
            return error(409, f"{name}: export a completed run")
        out = ws.root / EXPORTS / f"{name}-{fmt}-{int(time.time())}"
        args = ["export", str(path), "--out", str(out)]
        args += ["--format", "hf"] if fmt == "hf" else ["--format", "onnx"] + (["--quantize", "int8"] if fmt == "int8"
                                                                               else [])
        return {"job": ws.jobs.submit(args, path, kind="export", format=fmt, out=str(out))["id"]}

    @app.get("/download/{job_id}.zip")
    def download(job_id: str):
        try:
            job = ws.jobs.get(job_id)
        except KeyError:
            return Response(status_code=404)
        out = Path(job.get("out") or "")
        if job["kind"] != "export" or job["state"] != "done" or not out.is_dir():
            return Response(status_code=404)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in sorted(out.rglob("*")):
                if f.is_file():
                    zf.write(f, f"{out.name}/{f.relative_to(out).as_posix()}")
        return Response(buffer.getvalue(), media_type="application/zip",
                        headers={"Content-Disposition": f"attachment; filename={out.name}.zip"})

    app.state.workspace = ws
    return app


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
