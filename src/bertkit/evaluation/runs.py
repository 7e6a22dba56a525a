"""Many runs at once: find the run directories under a folder, summarise them, and compare several (the
settings that differ, their dev metrics, and their learning curves overlaid in one HTML page)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from bertkit.config import flatten
from bertkit.errors import BertkitError
from bertkit.evaluation.html import html_table, new_figure, plot_block, to_svg
from bertkit.evaluation.report import PAGE_STYLE
from bertkit.io import output_target, write_output
from bertkit.run_dir import RunDir

__all__ = ["find_runs", "list_runs", "summarise", "compare", "render_comparison", "write_comparison"]

_VOLATILE = {"out", "resume"}  # settings that name the run rather than shape it


def find_runs(root: str | Path, max_depth: int = 4) -> list[Path]:
    """Run directories (holding config.yaml) under `root`, sorted by path; checkpoints are not descended."""
    root = Path(root)
    found: list[Path] = []

    def walk(folder: Path, depth: int) -> None:
        if RunDir(folder).exists():
            found.append(folder)
            return
        if depth >= max_depth:
            return
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            return
        for child in children:
            walk(child, depth + 1)

    walk(root, 0)
    return found


def summarise(path: str | Path) -> dict[str, Any]:
    """One line's worth about a run: task, status, steps, the primary dev metric and where it peaked."""
    run = RunDir(path).require()
    config = run.load_config()
    results = run.read_json("results.json", default={"none": True})
    state = run.read_json("labels.json", default={"none": True})
    metric = results.get("primary_metric")
    dev = results.get("dev") or {}
    return {"run": str(run.path), "task": config.task.name, "problem": state.get("problem", "-"),
            "status": run.status().get("status", "unknown"), "model": config.model.name,
            "steps": results.get("steps"), "best_step": results.get("best_step"), "metric": metric,
            "value": dev.get(metric) if metric else None, "train_seconds": results.get("train_seconds")}


def list_runs(root: str | Path) -> list[dict[str, Any]]:
    """`summarise` of every run under `root`; a damaged run is listed too, as status "damaged" with what is
    wrong, so that one bad folder never hides the others."""
    rows = []
    for path in find_runs(root):
        try:
            rows.append(summarise(path))
        except BertkitError as exc:
            rows.append({"run": str(path), "task": "?", "problem": "?", "status": "damaged", "model": None,
                         "steps": None, "best_step": None, "metric": None, "value": None, "train_seconds": None,
                         "error": str(exc)})
    return rows


def compare(paths: list[str | Path]) -> dict[str, Any]:
    """The settings whose values differ between the runs, and each run's dev metrics."""
    runs = [RunDir(p).require() for p in paths]
    configs = [flatten(r.load_config().to_dict()) for r in runs]
    keys = sorted({k for c in configs for k in c} - _VOLATILE)
    differences = {k: [c.get(k) for c in configs] for k in keys if len({repr(c.get(k)) for c in configs}) > 1}
    metrics = [(r.read_json("results.json", default={"none": True}).get("dev") or {}) for r in runs]
    names = sorted({m for d in metrics for m in d})
    return {"runs": [str(r.path) for r in runs], "differences": differences,
            "metrics": {m: [d.get(m) for d in metrics] for m in names}}


def render_comparison(paths: list[str | Path]) -> str:
    """An HTML page: the differing settings, the dev metrics side by side, and the curves overlaid."""
    table = compare(paths)
    runs = [RunDir(p) for p in table["runs"]]
    names = [_short_name(r.path, runs) for r in runs]
    body = ["<h1>bertkit run comparison</h1>", "<h2>Settings that differ</h2>",
            html_table(["setting", *names], [[k, *v] for k, v in table["differences"].items()]) if table["differences"]
            else "<p>The runs have the same settings.</p>",
            "<h2>Dev metrics of the selected checkpoints</h2>",
            html_table(["metric", *names], [[k, *[_fmt(x) for x in v]] for k, v in table["metrics"].items()])]
    records = [r.read_metrics() for r in runs]
    results = [r.read_json("results.json", default={"none": True}) for r in runs]
    metric = next((res.get("primary_metric") for res in results if res.get("primary_metric")), None)
    fig, (left, right) = new_figure(9.5, 3.4, 2)
    for name, recs, res, colour in zip(names, records, results, _colours(len(runs))):
        trains = [r for r in recs if r.get("kind") == "train"]
        evals = [r for r in recs if r.get("kind") == "eval"]
        left.plot([r["step"] for r in trains], [r["loss"] for r in trains], color=colour, label=f"{name} training")
        dev_loss = [(r["step"], r["dev_loss"]) for r in evals if "dev_loss" in r]
        if dev_loss:
            left.plot(*zip(*dev_loss), color=colour, linestyle="--", marker="o", markersize=3, label=f"{name} dev")
        values = [(r["step"], r[f"dev_{metric}"]) for r in evals if f"dev_{metric}" in r]
        if values:
            right.plot(*zip(*values), color=colour, marker="o", markersize=3, label=name)
        if res.get("best_step") is not None:
            right.axvline(res["best_step"], color=colour, linestyle=":", linewidth=1)
    left.set_title("Loss (solid: training, dashed: dev)")
    left.set_xlabel("step")
    left.legend(frameon=False, fontsize=7)
    right.set_title(f"Dev {metric} (dotted: each run's best checkpoint)")
    right.set_xlabel("step")
    right.legend(frameon=False, fontsize=7)
    body.append("<h2>Learning curves</h2>" + plot_block(to_svg(fig, fit=False)))
    body.append("<p>Runs: " + ", ".join(f"<code>{html.escape(n)}</code> = {html.escape(str(r.path))}"
                                          for n, r in zip(names, runs)) + "</p>")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>bertkit run comparison</title>'
            f"<style>{PAGE_STYLE}</style></head><body>{''.join(body)}</body></html>\n")


def write_comparison(paths: list[str | Path], out: str | Path) -> Path:
    output_target(out)
    return write_output(out, render_comparison(paths))


def _short_name(path: Path, runs: list[RunDir]) -> str:
    """The shortest tail of the path that tells this run from the others."""
    parts = path.parts
    for n in range(1, len(parts) + 1):
        tail = "/".join(parts[-n:])
        if sum("/".join(r.path.parts[-n:]) == tail for r in runs) == 1:
            return tail
    return str(path)


def _colours(n: int) -> list[str]:
    base = ["#36c", "#e80", "#2a7", "#c33", "#85c", "#777", "#0aa", "#a60"]
    return [base[i % len(base)] for i in range(n)]


def _fmt(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else ("-" if value is None else value)
