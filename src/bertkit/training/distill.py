"""Knowledge distillation: a student trained on a teacher's softened outputs plus the gold labels.

This module is the teacher's side: its logits on the training examples, computed once before training, in
the student's label order, and what lineage.json records of it. The loss that mixes them with the gold
labels is the objective `objectives.Distillation`. Evaluation, metrics and the saved task state are the
student task's own.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from bertkit.config import RunConfig
from bertkit.errors import ConfigError
from bertkit.inference.batched import predict_outputs
from bertkit.models.init_source import load_run_model
from bertkit.models.loading import load_tokenizer
from bertkit.run_dir import RunDir
from bertkit.runtime import Runtime
from bertkit.tasks.base import Task

__all__ = ["attach_teacher_logits", "teacher_logits", "teacher_record"]

log = logging.getLogger("bertkit")


def attach_teacher_logits(features: list[dict[str, Any]], logits: np.ndarray) -> list[dict[str, Any]]:
    """Copies of the student's features, each with its example's (L,) teacher logits (every window of a long
    input gets its example's: the teacher's answer for the whole text)."""
    index = [f.get("example_index", i) for i, f in enumerate(features)]
    if max(index, default=-1) >= len(logits) or (len(features) != len(logits) and "example_index" not in features[0]):
        raise ConfigError(f"distillation needs one teacher output per training example, got {len(logits)} for "
                          f"{len(features)} features")
    return [{**f, "teacher_logits": logits[i].astype(np.float32)} for i, f in zip(index, features)]


def teacher_logits(config: RunConfig, task: Task, train_examples: list[dict[str, Any]],
                   train_features: list[dict[str, Any]], tokenizer: Any, rt: Runtime) -> np.ndarray:
    """The teacher run's logits on the training examples, columns in the student's label order. The
    student's features are reused when both share a tokenizer (the usual case: a student started from its
    teacher), so the training set is tokenised once."""
    teacher_run = RunDir(config.train.distill_from).require(model=True)
    teacher, teacher_task = load_run_model(teacher_run.path)
    theirs, ours = teacher_task.state().get("labels", []), task.state().get("labels", [])
    if sorted(theirs) != sorted(ours) or teacher_task.name != task.name:
        raise ConfigError(f"train.distill_from {teacher_run.path}: the teacher predicts {theirs} "
                          f"({teacher_task.name}), the student {ours}; they must share the label set")
    teacher_tok = load_tokenizer(str(teacher_run.model_dir))
    if teacher_tok.backend_tokenizer.to_str() == tokenizer.backend_tokenizer.to_str():
        features = train_features  # their labels are targets, never model inputs
    else:
        features = teacher_task.preprocess(train_examples, teacher_tok, config.data, with_labels=False)
    log.info("distillation: teacher %s on %d training examples", teacher_run.path, len(features))
    logits = predict_outputs(teacher.to(rt.device), teacher_task, features, rt, teacher_tok.pad_token_id or 0,
                             len(train_examples))
    return np.asarray(logits)[:, [theirs.index(name) for name in ours]]


def teacher_record(config: RunConfig) -> dict[str, Any] | None:
    """What lineage.json records of the teacher (None without distillation)."""
    if not config.train.distill_from:
        return None
    teacher = RunDir(config.train.distill_from)
    return {"path": str(teacher.path.resolve()), "alpha": config.train.distill_alpha,
            "temperature": config.train.distill_temperature,
            "dev": teacher.read_json("results.json", default={}).get("dev", {})}
