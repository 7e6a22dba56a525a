"""Distillation: the student's task loss mixed with a teacher's softened outputs.

loss = alpha * soft + (1 - alpha) * task loss. The soft loss follows what the logits mean
(`Task.logit_kind`): T^2 * KL(softmax(teacher / T) || softmax(student / T)) for a softmax over classes,
binary cross-entropy against sigmoid(teacher / T) (times T^2) for independent sigmoids, and the squared error
to the teacher for values. The teacher's logits are computed once, before training
(`bertkit.training.distill`), and travel in each feature as `teacher_logits`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bertkit.errors import ConfigError
from bertkit.tasks.base import Task
from bertkit.training.objectives.base import Objective, TaskLoss

__all__ = ["Distillation", "SOFT_LOSSES"]


def _softmax(student: torch.Tensor, teacher: torch.Tensor, t: float) -> torch.Tensor:
    # KL of the softened distributions, scaled as the hard loss
    return F.kl_div(F.log_softmax(student / t, -1), F.log_softmax(teacher / t, -1), log_target=True,
                    reduction="batchmean") * t * t


def _sigmoid(student: torch.Tensor, teacher: torch.Tensor, t: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(student / t, torch.sigmoid(teacher / t)) * t * t


def _value(student: torch.Tensor, teacher: torch.Tensor, t: float) -> torch.Tensor:
    return F.mse_loss(student, teacher)


#: The soft loss for each kind of logits (`Task.logit_kind`).
SOFT_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]] = {
    "softmax": _softmax, "sigmoid": _sigmoid, "value": _value}


class Distillation(Objective):
    """The task's batches with the teacher's logits beside them, and the mixed loss."""

    def __init__(self, task: Task, *, alpha: float, temperature: float) -> None:
        kind = task.logit_kind()
        if kind not in SOFT_LOSSES:
            raise ConfigError(f"train.distill_from: distillation supports the classification task, not {task.name}")
        self.hard, self.soft = TaskLoss(task), SOFT_LOSSES[kind]
        self.alpha, self.temperature = alpha, temperature

    def lengths(self, features: Sequence[dict[str, Any]]) -> Sequence[int]:
        return self.hard.lengths(features)

    def collate(self, features: Sequence[dict[str, Any]], pad_id: int, pack_length: int | None = None
                ) -> dict[str, torch.Tensor]:
        batch = self.hard.collate(features, pad_id, pack_length)
        batch["teacher_logits"] = torch.from_numpy(np.stack([f["teacher_logits"] for f in features]))
        return batch

    def forward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.hard.forward(model, {k: v for k, v in batch.items() if k != "teacher_logits"})

    def loss(self, outputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hard = self.hard.loss(outputs, batch)
        soft = self.soft(outputs, batch["teacher_logits"].to(outputs.dtype), self.temperature)
        return self.alpha * soft + (1.0 - self.alpha) * hard
