"""The workspace's runs as the web app reads and starts them: the config a New-run form describes (checked
against the workspace's path rule, its data read before anything starts), a run's state for its page, and
the runs table."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from bertkit.errors import BertkitError, ConfigError
from bertkit.io import split_lines
from bertkit.ui.forms import task_keys
from bertkit.ui.workspace import Workspace, confine_config

__all__ = ["SETTINGS", "build_config", "check_data", "run_state", "runs_table"]


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
    if form.get("task"):
        overrides["task.name"] = form["task"]
    model = form.get("model") or None
    if model and model != "embedded":
        overrides["model.name"] = str(ws.inside(model))
    options, columns = task_keys(str(form.get("task") or base.task.name))  # what the task's form offers
    for key, value in form.items():
        if value not in (None, "") and key in options:
            overrides[key] = value  # task.problem, task.tag_scheme...
        elif value not in (None, "") and key in columns:
            overrides[f"data.{key}"] = value  # text_column, tokens_column...
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
        for line in split_lines((path / "metrics.jsonl").read_text(encoding="utf-8", errors="replace")):
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
            state["input_schema"] = task.served_input_schema()  # what "Try it" asks for
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
