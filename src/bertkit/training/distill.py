"""Knowledge distillation: a student trained on a teacher's softened outputs plus the gold labels.

`DistillationTask` wraps the student's task for the training loop only: batches carry the teacher's
logits (computed once, before training) and the loss mixes soft and hard targets. Evaluation, metrics and
the saved task state are the wrapped task's own.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from bertkit.config import RunConfig
from bertkit.errors import ConfigError
from bertkit.models.inference import predict_outputs
from bertkit.models.init_source import load_run_model
from bertkit.models.loading import load_tokenizer
from bertkit.run_dir import RunDir
from bertkit.runtime import Runtime
from bertkit.tasks.base import Task

__all__ = ["DistillationTask", "attach_teacher_logits", "teacher_logits", "teacher_record"]

log = logging.getLogger("bertkit")


def attach_teacher_logits(features: list[dict[str, Any]], logits: np.ndarray) -> list[dict[str, Any]]:
    """Copies of the student's features, each with its example's (L,) teacher logits."""
    if len(features) != len(logits):
        raise ConfigError(f"distillation needs one teacher output per training example, got {len(logits)} for "
                          f"{len(features)} features")
    return [{**f, "teacher_logits": logits[i].astype(np.float32)} for i, f in enumerate(features)]


class DistillationTask:
    """The student's task, with `collate_train` and `loss` extended by the teacher's soft targets:
    loss = alpha * soft + (1 - alpha) * task loss, where the task's `soft_loss` is T^2 * KL(softmax(teacher / T)
    || softmax(student / T)) for single-label, binary cross-entropy against sigmoid(teacher / T) for
    multi-label, and MSE to the teacher for regression."""

    def __init__(self, task: Task, *, alpha: float, temperature: float) -> None:
        if not hasattr(task, "soft_loss"):
            raise ConfigError(f"train.distill_from: distillation supports the classification task, not {task.name}")
        self.task, self.alpha, self.temperature = task, alpha, temperature
        self.target_keys = (*task.target_keys, "teacher_logits")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.task, name)

    def forward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.task.forward(model, {k: v for k, v in batch.items() if k != "teacher_logits"})

    def collate_train(self, features: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
        return self._with_teacher(self.task.collate_train(features, pad_id), features)

    def collate_packed(self, features: Sequence[dict[str, Any]], pad_id: int, row_length: int
                       ) -> dict[str, torch.Tensor]:
        return self._with_teacher(self.task.collate_packed(features, pad_id, row_length), features)

    @staticmethod
    def _with_teacher(batch: dict[str, torch.Tensor], features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch["teacher_logits"] = torch.from_numpy(np.stack([f["teacher_logits"] for f in features]))
        return batch

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hard = self.task.loss(logits, batch)
        soft = self.task.soft_loss(logits, batch["teacher_logits"].to(logits.dtype), self.temperature)
        return self.alpha * soft + (1.0 - self.alpha) * hard


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
