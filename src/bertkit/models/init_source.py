"""Where a run starts: a model name, or an earlier run (its final model, merged if it was LoRA), and the
lineage record that ties the new run to it."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bertkit.config import RunConfig
from bertkit.errors import CheckpointError, ModelLoadError
from bertkit.io import sha256_file
from bertkit.models.loading import (
    build_model,
    is_adapter_dir,
    load_adapter,
    load_tokenizer,
    load_trained_model,
    quiet_transformers,
)
from bertkit.run_dir import RunDir
from bertkit.tasks.base import Task, get_task

__all__ = ["InitSource", "resolve_init", "load_run_model", "write_merged_model", "base_model_of"]


@dataclass
class InitSource:
    """What `build_model` loads (`model`), the head state of the parent run, and the lineage record."""

    model: str
    head_state: dict[str, Any] | None = None
    parent: dict[str, Any] | None = None
    base_model: str = "embedded"
    _tmp: list[Path] = field(default_factory=list)

    def cleanup(self) -> None:
        for path in self._tmp:
            shutil.rmtree(path, ignore_errors=True)


def _config_hash(path: Path) -> str | None:
    return sha256_file(path) if path.is_file() else None


def base_model_of(config: RunConfig, run: RunDir | None = None) -> str:
    """The original pretrained model at the root of a run's lineage."""
    if run is not None:
        lineage = run.read_json("lineage.json", default={})
        if lineage.get("base_model"):
            return lineage["base_model"]
    if config.model.init_from and RunDir(config.model.init_from).exists():
        parent = RunDir(config.model.init_from)
        return base_model_of(parent.load_config(), parent)
    return config.model.init_from or config.model.name


def _extended_vocab(run: RunDir, env: dict[str, Any]) -> bool:
    """Whether `run` or a run of its lineage extended the tokenizer's vocabulary (its own record, else what its
    lineage recorded of the run it started from)."""
    if (env.get("data") or {}).get("vocabulary"):
        return True
    grandparent = run.read_json("lineage.json", default={}).get("parent") or {}
    return bool(grandparent.get("extended_vocab") or (grandparent.get("data") or {}).get("vocabulary"))


def resolve_init(config: RunConfig) -> InitSource:
    """The starting point of a new run from `model.init_from` (a run or model directory) or `model.name`."""
    source = config.model.init_from
    if not source:
        return InitSource(model=config.model.name, base_model=config.model.name)
    run = RunDir(source)
    if not run.exists():
        if not Path(source).is_dir():
            raise ModelLoadError(f"model.init_from {source}: no such run or model directory")
        return InitSource(model=source, base_model=source,
                          parent={"kind": "model", "path": str(Path(source).resolve()),
                                  "config_sha256": _config_hash(Path(source) / "config.json")})
    run.require(model=True)
    parent_config = run.load_config()
    head_state = run.read_state()
    env = run.read_json("environment.json", default={})
    results = run.read_json("results.json", default={})
    parent = {"kind": "run", "path": str(run.path.resolve()), "task": parent_config.task.name,
              "config_sha256": _config_hash(run.path / "config.yaml"), "data": env.get("data", {}),
              "dev": results.get("dev", {}), "lora": bool(parent_config.model.lora_r),
              "extended_vocab": _extended_vocab(run, env)}
    init = InitSource(model=str(run.model_dir), head_state=head_state, parent=parent,
                      base_model=base_model_of(parent_config, run))
    if is_adapter_dir(run.model_dir):  # a LoRA run: merge its adapter into its base, in a temporary folder
        merged = Path(tempfile.mkdtemp(prefix="bertkit-merged-"))
        init._tmp.append(merged)
        write_merged_model(run.path, merged)
        init.model = str(merged)
    return init


def write_merged_model(run_dir: str | Path, dest: Path) -> None:
    """A LoRA run's adapter folded into its base model, saved with the tokenizer to `dest` as a plain model
    directory that transformers loads alone."""
    run = RunDir(run_dir)
    model, _ = load_run_model(run.path)
    with quiet_transformers():
        model.merge_and_unload().save_pretrained(dest)
        load_tokenizer(str(run.model_dir)).save_pretrained(dest)


def load_run_model(run_dir: str | Path, task: Task | None = None) -> tuple[torch.nn.Module, Task]:
    """The final model of a run: a plain model directory, or its LoRA adapter on the run's base model."""
    run = RunDir(run_dir).require(model=True)
    config = run.load_config()
    if task is None:
        task = get_task(config.task, run.read_state())
    if not is_adapter_dir(run.model_dir):
        return load_trained_model(run.model_dir, task), task
    init = resolve_init(config)
    try:
        base, _ = build_model(init.model, task, parent=init.head_state, num_layers=config.model.num_layers,
                              allow_pickle=config.model.allow_pickle)
    except ModelLoadError as exc:
        raise CheckpointError(f"{run.path}: the LoRA adapter needs its base model, which failed to load: {exc}; "
                              "or export the run with `bertkit export RUN --merge`") from None
    finally:
        init.cleanup()
    return load_adapter(base, run.model_dir), task
