"""The model card: `README.md` beside the weights, in the Hugging Face style (YAML front matter, then prose).

Written into `RUN/model/` at the end of training and into every export, from what the run directory
records: task and labels, base model and lineage, training data fingerprint and size, hyperparameters, dev
metrics, and the intended use and limits of such a model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from bertkit.io import atomic_write_text
from bertkit.run_dir import RunDir
from bertkit.tasks import TASKS

__all__ = ["model_card", "write_model_card"]


_HYPERPARAMETERS = ("method", "epochs", "max_steps", "lr", "batch_size", "grad_accum", "weight_decay",
                    "warmup_ratio", "scheduler", "seed", "precision", "freeze_embeddings", "packing", "few_shot_pairs")
_LIMITS = ("Its quality holds only for text like its training data (language, domain, length); the dev metrics "
           "above were measured on the dev set named here and will be lower on text unlike it. It inherits the "
           "biases of its base model and training data. It gives no calibrated certainty: scores are softmax or "
           "sigmoid outputs. Check it on your own labelled sample before relying on it.")


def model_card(run_dir: str | Path, *, extra: dict[str, Any] | None = None) -> str:
    """The card of a run as Markdown; `extra` adds export facts (format, quantisation, parity)."""
    run = RunDir(run_dir)
    cfg = run.load_config()
    state, lineage, results, env = (run.read_json(name, default={}) for name in
                                    ("labels.json", "lineage.json", "results.json", "environment.json"))
    task = cfg.task.name
    tag = TASKS[task].pipeline_tag if task in TASKS else task
    base = lineage.get("base_model") or cfg.model.name
    dev = results.get("dev") or {}
    front = {"library_name": "bertkit", "pipeline_tag": tag, "base_model": str(base),
             "tags": ["bertkit", task] + (["lora"] if cfg.model.lora_r else []),
             "model-index": [{"name": run.path.name, "results": [{
                 "task": {"type": tag},
                 "metrics": [{"type": k, "value": round(float(v), 4)} for k, v in dev.items()]}]}]}
    hyper = {k: getattr(cfg.train, k) for k in _HYPERPARAMETERS}
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "", f"# {run.path.name}", "",
             f"A `{task}` model fine-tuned with bertkit from `{base}`.", "",
             *_task_lines(task, state), "", "## Lineage", "", f"- base model: `{base}`", *_lineage_lines(lineage),
             "", "## Training data", "", *_data_lines(env.get("data") or {}, getattr(cfg.task, "long_inputs", None)),
             "", "## Hyperparameters", "", "| key | value |", "| --- | --- |",
             *[f"| {k} | {v} |" for k, v in hyper.items() if v is not None], "", "## Dev metrics", ""]
    if dev:
        lines += ["| metric | value |", "| --- | --- |"] + [f"| {k} | {float(v):.4f} |" for k, v in dev.items()]
        lines.append(f"\nSelected checkpoint: step {results.get('best_step')} of {results.get('steps')}.")
    elif (env.get("data") or {}).get("dev", {}).get("held_out"):
        lines.append("None: the run had no dev set (too few training examples to hold some out); every example "
                     f"trained and the model of the last step (step {results.get('steps')}) is this one.")
    else:
        lines.append("Not recorded.")
    if extra:
        lines += ["", "## This export", ""] + [f"- {k}: {v}" for k, v in extra.items() if v is not None]
    lines += ["", "## Intended use and limits", "", getattr(TASKS.get(task), "intended_use", ""), _LIMITS,
              "", f"Trained with bertkit {env.get('bertkit', '')} (torch {env.get('torch', '?')}, transformers "
              f"{env.get('transformers', '?')}) on {env.get('device_name', '?')}.", ""]
    return "\n".join(lines)


def _task_lines(task: str, state: dict[str, Any]) -> list[str]:
    lines = ["## Task and labels", "", f"- task: {task}" + (f" ({state['problem']})" if state.get("problem") else "")]
    labels = state.get("labels") or []
    if labels:
        lines.append(f"- labels ({len(labels)}): " + ", ".join(f"`{x}`" for x in labels))
    if state.get("threshold") is not None and state.get("problem") == "multi_label":
        lines.append(f"- decision threshold: {state['threshold']}")
    return lines


def _lineage_lines(lineage: dict[str, Any]) -> list[str]:
    lines = []
    parent = lineage.get("parent")
    if parent:
        lines.append(f"- started from: `{parent.get('path')}` ({parent.get('kind')}, task {parent.get('task')})")
    init = lineage.get("init") or {}
    if init:
        lines.append(f"- head: {init.get('head')}; trained parameters: {init.get('trainable')} of "
                     f"{init.get('parameters')}")
    if (lineage.get("teacher") or {}).get("path"):
        lines.append(f"- distilled from: `{lineage['teacher']['path']}`")
    return lines


def _data_lines(data: dict[str, Any], long_inputs: str | None = None) -> list[str]:
    lines = []
    for name in ("train", "dev"):
        item = data.get(name) or {}
        if item.get("held_out"):
            lines.append(f"- {name}: {item['held_out']}")
        elif item:
            where = item.get("path") or (f"split from train ({item.get('split_from_train')})"
                                         if "split_from_train" in item else "several files")
            sha = f", sha256 `{item['sha256'][:16]}…`" if item.get("sha256") else ""
            lines.append(f"- {name}: `{where}`, {item.get('rows', '?')} rows{sha}")
    cov = data.get("coverage")
    if cov:
        lines.append(f"- tokens the tokenizer does not know ({cov.get('tokens', '?')} counted): "
                     f"{100 * cov['unknown_share']:.1f} %")
        if cov.get("normalised_away"):
            lines.append("- characters the tokenizer's normaliser removes or replaces: "
                         f"{100 * cov['normalised_away']:.1f} %")
    return lines + _length_lines((data.get("lengths") or {}).get("train"), long_inputs)


def _length_lines(lengths: dict[str, Any] | None, long_inputs: str | None) -> list[str]:
    """How long the training inputs were against the window, and what the model does with a longer one."""
    if not lengths:
        return []
    window, share = lengths["window"], 100 * lengths.get("over_window_share", 0.0)
    lines = [f"- input length (tokens): median {lengths['median']}, 90th percentile {lengths['p90']}, longest "
             f"{lengths['longest']}; {share:.1f} % of the training inputs are longer than the window of {window}"]
    how = {"windows": f"read whole in overlapping windows of {window} tokens, the prediction the mean of theirs "
                      "(it says how many windows it read)",
           "head-tail": f"cut to its first {(window - 2) // 4} tokens and its end (the prediction says how many "
                        "tokens were not read)",
           "truncate": f"cut at {window} tokens (the prediction says how many tokens were not read)"}
    if long_inputs in how:
        lines.append(f"- an input longer than the window is {how[long_inputs]}")
    return lines


def write_model_card(run_dir: str | Path) -> Path:
    """Write the card of a finished run into its model directory (`RUN/model/README.md`); returns its path."""
    path = RunDir(run_dir).model_dir / "README.md"
    atomic_write_text(path, model_card(run_dir))
    return path
