"""Multi-stage transfer: `bertkit pipeline CONFIG` runs `stages:` in order, each starting from the last.

    out: runs/rte-pipeline              # each stage's run directory is OUT/<stage name>
    defaults: {train: {seed: 42}}        # merged into every stage (a stage's own values win)
    stages:
      - {name: dapt, task: {name: mlm}, data: {train: corpus.txt}}
      - {name: mrpc, data: {train: mrpc/train.tsv, ...}}
      - {name: rte, data: {...}}         # init_from: the previous stage unless the stage names another
                                         # stage, a path, or `none` (start from model.name)

A stage whose run completed is skipped, an interrupted one resumed, so rerunning the command after a crash
finishes the pipeline. Each run records its parent in lineage.json (`bertkit lineage RUN`).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bertkit.api import TrainResult, train
from bertkit.config import RunConfig, resolve_relative_paths, safe_yaml, task_configs
from bertkit.errors import ConfigError
from bertkit.run_dir import RunDir

__all__ = ["load_pipeline", "run_pipeline"]

log = logging.getLogger("bertkit")
_STAGE_KEYS = {"name", "init_from", "task", "data", "model", "train"}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _defaults_for(defaults: dict[str, Any], stage: dict[str, Any]) -> dict[str, Any]:
    """The defaults a stage takes: task options in `defaults` reach only the stages of a task that has them
    (a class-weights default says nothing to a pre-training stage)."""
    task = defaults.get("task")
    if not isinstance(task, dict):
        return defaults
    own = stage.get("task") if isinstance(stage.get("task"), dict) else {}
    name = own.get("name", task.get("name", "classification"))
    config = task_configs().get(name)
    if config is None:
        return defaults  # an unknown task is reported with the stage
    keys = {f.name for f in dataclasses.fields(config)}
    return {**defaults, "task": {k: v for k, v in task.items() if k in keys or k == "name"}}


def load_pipeline(path: str | Path, out: str | None = None) -> list[tuple[str, RunConfig]]:
    """(stage name, run config) in order, each config complete with its out and init_from."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read the pipeline ({exc})") from None
    raw = safe_yaml(text, str(p)) or {}
    unknown = sorted(set(raw) - {"out", "defaults", "stages"}) if isinstance(raw, dict) else ["(not a mapping)"]
    if unknown:
        raise ConfigError(f"{p}: unknown key(s) {', '.join(unknown)}; valid: defaults, out, stages")
    stages = raw.get("stages")
    if not isinstance(stages, list) or not stages:
        raise ConfigError(f"{p}: 'stages' must be a non-empty list of stage configs")
    defaults = raw.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ConfigError(f"{p}: 'defaults' must be a mapping of config sections (task, data, model, train)")
    root = Path(out or raw.get("out") or "")
    if not str(root) or str(root) == ".":
        raise ConfigError(f"{p}: no output folder; set 'out:' in the file or pass --out")
    if not root.is_absolute() and out is None:
        root = p.parent / root
    result: list[tuple[str, RunConfig]] = []
    names: dict[str, Path] = {}
    for i, stage in enumerate(stages):
        where = f"{p}: stage {i + 1}"
        if not isinstance(stage, dict) or not isinstance(stage.get("name"), str) or not stage["name"].strip():
            raise ConfigError(f"{where}: each stage is a mapping with a 'name'")
        bad = sorted(set(stage) - _STAGE_KEYS)
        if bad:
            raise ConfigError(f"{where} ({stage['name']}): unknown key(s) {', '.join(bad)}; valid: "
                              f"{', '.join(sorted(_STAGE_KEYS))}")
        name = stage["name"]
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):  # a folder name under out, never a path
            raise ConfigError(f"{where}: stage name {name[:80]!r} must be a plain folder name (letters, digits, "
                              "'.', '_', '-'; not starting with '.'): each stage's run is OUT/<name>")
        if name in names:
            raise ConfigError(f"{where}: stage name '{name}' is used twice")
        own = {k: v for k, v in stage.items() if k not in ("name", "init_from")}
        body = _merge(_defaults_for(defaults, stage), own)
        cfg = resolve_relative_paths(RunConfig.from_dict(body, source=f"{where} ({name})"), p.parent)
        cfg.out = str(root / name)
        parent = stage.get("init_from", "previous" if result else None)
        if parent is not None and not isinstance(parent, str):
            raise ConfigError(f"{where} ({name}): init_from must be a stage name, a path or none, got {parent!r}")
        if parent == "previous" and not result:
            raise ConfigError(f"{where} ({name}): the first stage has no previous stage to start from")
        if parent == "previous":
            cfg.model.init_from = str(names[result[-1][0]])
        elif parent in names:
            cfg.model.init_from = str(names[parent])
        elif parent not in (None, "none"):
            cfg.model.init_from = str(parent if Path(parent).is_absolute() else p.parent / parent)
        names[name] = Path(cfg.out)
        result.append((name, cfg))
    return result


def run_pipeline(path: str | Path, *, out: str | None = None, progress: bool = True,
                 on_stage: Callable[[str, str], None] | None = None) -> list[tuple[str, TrainResult | None]]:
    """Run every stage; completed stages are skipped and interrupted ones resumed. Returns (name, result),
    with None for a stage that had completed before."""
    results: list[tuple[str, TrainResult | None]] = []
    for name, cfg in load_pipeline(path, out):
        run = RunDir(cfg.out)
        status = run.status()["status"] if run.exists() else "new"
        if status == "completed":
            log.info("stage %s: already completed in %s", name, run.path)
            if on_stage:
                on_stage(name, "skipped (completed earlier)")
            results.append((name, None))
            continue
        cfg.resume = status != "new"
        log.info("stage %s: %s %s", name, "resuming" if cfg.resume else "training", run.path)
        result = train(cfg, progress=progress)
        if on_stage:
            metric = ", ".join(f"{k}={v:.4f}" for k, v in result.metrics.items())
            on_stage(name, f"dev {metric}; run directory {result.run_dir}")
        results.append((name, result))
    return results
