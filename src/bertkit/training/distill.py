"""Knowledge distillation: a student trained on a teacher's softened outputs plus the gold labels.

`DistillationTask` wraps the student's task for the training loop only: batches carry the teacher's
logits (computed once, before training) and the loss mixes soft and hard targets. Evaluation, metrics and
the saved task state are the wrapped task's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bertkit.errors import ConfigError
from bertkit.tasks.base import Task

__all__ = ["DistillationTask", "attach_teacher_logits"]


def attach_teacher_logits(features: list[dict[str, Any]], logits: np.ndarray) -> list[dict[str, Any]]:
    """Copies of the student's features, each with its example's (L,) teacher logits."""
    if len(features) != len(logits):
        raise ConfigError(f"distillation needs one teacher output per training example, got {len(logits)} for "
                          f"{len(features)} features")
    return [{**f, "teacher_logits": logits[i].astype(np.float32)} for i, f in enumerate(features)]


class DistillationTask:
    """The student's task, with `collate_train` and `loss` extended by the teacher's soft targets:
    loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * task loss
    (for multi-label, binary cross-entropy against sigmoid(teacher / T); for regression, MSE to the teacher)."""

    def __init__(self, task: Task, *, alpha: float, temperature: float) -> None:
        if task.name != "classification":
            raise ConfigError(f"train.distill_from: distillation supports the classification task, not {task.name}")
        self.task, self.alpha, self.temperature = task, alpha, temperature
        self.problem = task.state()["problem"]
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
        teacher, t = batch["teacher_logits"].to(logits.dtype), self.temperature
        if self.problem == "regression":
            soft = F.mse_loss(logits, teacher)
        elif self.problem == "multi_label":
            soft = F.binary_cross_entropy_with_logits(logits / t, torch.sigmoid(teacher / t)) * t * t
        else:  # (B, L): KL between the softened distributions, scaled so gradients match the hard loss
            soft = F.kl_div(F.log_softmax(logits / t, -1), F.log_softmax(teacher / t, -1), log_target=True,
                            reduction="batchmean") * t * t
        return self.alpha * soft + (1.0 - self.alpha) * hard
