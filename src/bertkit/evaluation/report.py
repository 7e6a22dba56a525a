"""The run report: one self-contained HTML file (plots as inline SVG, no script, no network) of what a
training run did and what to do next.

Sections: summary; learning curves (training and dev loss, the primary dev metric, best checkpoint and
early stop marked); a plain-words diagnosis (overfitting, under-training, a stuck loss) with what to try;
learning rate and throughput; and, from the dev outputs the run saved, the task's own view of its dev set
(`bertkit.evaluation.views`: for classification the confusion matrix, per-class scores, calibration and the
highest-loss examples; per-type scores and errors for NER; scores by question type for QA).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from bertkit.config import RunConfig
from bertkit.evaluation.diagnosis import diagnose
from bertkit.evaluation.html import COLOURS, DevData, html_table, new_figure, plot_block, to_svg
from bertkit.evaluation.views import VIEWS, dev_view
from bertkit.io import atomic_write_text, output_target, write_output
from bertkit.run_dir import RunDir, dev_metrics
from bertkit.tasks.base import get_task
from bertkit.tasks.metrics import higher_is_better

__all__ = ["write_report", "render_report", "REPORT_FILE"]

REPORT_FILE = "report.html"
_BEST, _STOP, _TRAIN, _DEV = COLOURS["best"], COLOURS["stop"], COLOURS["train"], COLOURS["dev"]


# --- plots ----------------------------------------------------------------------------------------------
def mark_steps(ax, best_step: int | None, stop_step: int | None) -> None:
    if best_step is not None:
        ax.axvline(best_step, color=_BEST, linestyle="--", linewidth=1, label=f"best checkpoint (step {best_step})")
    if stop_step is not None:
        ax.axvline(stop_step, color=_STOP, linestyle=":", linewidth=1.2, label=f"early stop (step {stop_step})")


def _curves(records, metric: str, best_step, stop_step) -> str:
    trains = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]
    fig, (left, right) = new_figure(9.5, 3.3, 2)
    left.plot([r["step"] for r in trains], [r["loss"] for r in trains], color=_TRAIN, label="training loss")
    dev_loss = [(r["step"], r["dev_loss"]) for r in evals if "dev_loss" in r]
    if dev_loss:
        left.plot(*zip(*dev_loss), color=_DEV, marker="o", markersize=3, label="dev loss")
    left.set_xlabel("step")
    left.set_title("Loss")
    mark_steps(left, best_step, stop_step)
    left.legend(frameon=False)
    values = [(r["step"], r[f"dev_{metric}"]) for r in evals if f"dev_{metric}" in r]
    if values:
        right.plot(*zip(*values), color=_DEV, marker="o", markersize=3, label=f"dev {metric}")
        mark_steps(right, best_step, stop_step)
        right.legend(frameon=False)
    else:
        right.text(0.5, 0.5, "no dev set", ha="center", va="center", transform=right.transAxes)
        right.set_xticks([]), right.set_yticks([])
    right.set_xlabel("step")
    right.set_title(f"Dev {metric}")
    return to_svg(fig, fit=False)


def _schedule(records) -> str:
    trains = [r for r in records if r.get("kind") == "train"]
    fig, (left, right) = new_figure(9.5, 2.6, 2)
    left.plot([r["step"] for r in trains], [r["lr"] for r in trains], color=_TRAIN)
    left.set_title("Learning rate")
    left.set_xlabel("step")
    right.plot([r["step"] for r in trains], [r.get("tokens_per_s", 0) for r in trains], color=_TRAIN)
    right.set_title("Throughput (real tokens/s, all processes)")
    right.set_xlabel("step")
    return to_svg(fig, fit=False)


# --- the page -------------------------------------------------------------------------------------------
PAGE_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI","PingFang SC","Hiragino Sans GB","Microsoft YaHei",
"Noto Sans CJK SC","Source Han Sans SC","WenQuanYi Micro Hei",sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;
margin-top:1.8em}h3{font-size:1em}table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
td,th{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}th{background:#f6f6f6}
figure.plot{margin:.5em 0}figure.plot svg{max-width:100%;height:auto}.finding{border-left:4px solid #e80;
padding:.3em .8em;margin:.6em 0;background:#fffaf2}.finding.healthy{border-color:#2a7;background:#f3fbf6}
.muted{color:#777}
"""


def render_report(run_dir: str | Path, *, top: int = 10) -> str:
    """The report of a run directory as one HTML string."""
    run = RunDir(run_dir).require()
    config = run.load_config()
    results = run.read_json("results.json", default={})
    state = run.read_state() if (run.path / "labels.json").is_file() else {}  # none before training starts
    records = run.read_metrics()
    status = run.status()
    task = state.get("task", config.task.name)
    metric = results.get("primary_metric") or _guess_metric(records)
    greater = higher_is_better(metric)
    best_step = results.get("best_step")
    stop_step = results.get("steps") if results.get("stopped_early") else None
    dev = results.get("dev") or {}

    summary = [["run", str(run.path)], ["task", f"{task} ({state.get('problem', '-')})"],
               ["model", config.model.name], ["status", status.get("status", "unknown")],
               ["steps", f"{results.get('steps', status.get('step', '?'))} (best {best_step})"],
               ["method", results.get("method") or "standard"],
               ["training time", f"{results.get('train_seconds', '?')} s"],
               ["dev", ", ".join(f"{k} {v:.4f}" for k, v in dev.items()) or "-"]]
    data = run.read_json("environment.json", default={}).get("data") or {}
    if "checks" in data:  # what bertkit data check says of the training and dev data
        summary.append(["data check", "; ".join(f"{c['level']}: {c['message']}" for c in data["checks"])
                        or "no problems found"])
    cov = data.get("coverage")
    if cov:
        summary.append(["unknown tokens", f"{100 * cov['unknown_share']:.1f} % of the training text"
                        + (f" (most often: {' '.join(cov['top_unknown'][:10])})" if cov["top_unknown"] else "")])
        if cov.get("normalised_away"):
            summary.append(["normalised away", f"{100 * cov['normalised_away']:.1f} % of the training characters "
                            f"(most often: {' '.join(cov.get('top_normalised', [])[:10])})"])
    body = [f"<h1>bertkit run report: {html.escape(run.path.name)}</h1>", html_table(None, summary, "summary")]
    if records:
        body.append("<h2>Learning curves</h2>" + plot_block(_curves(records, metric, best_step, stop_step)))
        body.append("<h2>Diagnosis</h2>")
        for f in diagnose(records, metric, greater, best_step, **_sizes(run, results)):
            body.append(f'<div class="finding {f.kind}"><p><b>{html.escape(f.what)}</b></p>'
                        f"<p>What to try: {html.escape(f.advice)}</p></div>")
        body.append("<h2>Learning rate and throughput</h2>" + plot_block(_schedule(records)))
    else:
        body.append('<p class="muted">No training records yet (metrics.jsonl is empty).</p>')
    body.append(_dev_section(run, config, state, results, top))
    title = html.escape(f"bertkit report: {run.path.name}")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{PAGE_STYLE}</style></head><body>{''.join(body)}</body></html>\n")


def _sizes(run: RunDir, results: dict[str, Any]) -> dict[str, Any]:
    """What the diagnosis needs to see small data: dev rows, optimiser steps, the commonest dev class's share."""
    from collections import Counter

    dev = (run.read_json("environment.json", default={}).get("data") or {}).get("dev") or {}
    saved = run.read_dev_outputs()
    labels = [str(ex["label"]) for ex in saved[0] if isinstance(ex.get("label"), (str, int))] if saved else []
    counts = Counter(labels)
    few_shot = results.get("method") == "few-shot"  # a fixed schedule of pair batches, not epochs of examples
    return {"dev_rows": dev.get("rows"), "steps": None if few_shot else results.get("steps"),
            "majority": max(counts.values()) / len(labels) if labels else None}


# --- the dev set in detail, from what the run saved -----------------------------------------------------
def _dev_section(run: RunDir, config: RunConfig, state: dict[str, Any], results: dict[str, Any], top: int) -> str:
    """The task's view of the final model on dev, from the files the run saved."""
    if not state:
        return ""  # the task is not fitted yet: nothing saved of dev either
    task = get_task(config.task, state)
    if task.name not in VIEWS:
        return ""
    data = run.read_json("environment.json", default={}).get("data") or {}
    if (data.get("dev") or {}).get("held_out"):
        return '<p class="muted">This run had no dev set, so there is no view of the model on one.</p>'
    saved = run.read_dev_outputs()
    body = None
    if saved is not None:
        examples, arrays, predictions = saved
        body = dev_view(DevData(task, results, examples, arrays, predictions, top, data.get("lengths")))
    if body is None:
        return ('<p class="muted">This run saved no dev outputs (trained before bertkit wrote them); train it '
                "again for the per-task views of the dev set.</p>")
    return "<h2>Dev set in detail</h2>" + body


def _guess_metric(records: list[dict[str, Any]]) -> str:
    for r in records:
        if r.get("kind") == "eval":
            names = [k for k in dev_metrics(r) if k != "loss"]
            if names:
                return names[0]
    return "loss"


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the report (default `RUN/report.html`) atomically; returns its path."""
    if not out:
        path = Path(run_dir) / REPORT_FILE
        atomic_write_text(path, render_report(run_dir))
        return path
    output_target(out)
    return write_output(out, render_report(run_dir))

