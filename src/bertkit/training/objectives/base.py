"""The objective interface the training loop takes, and the plain one: the task's own loss."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import torch

from bertkit.tasks.base import Task

__all__ = ["Objective", "TaskLoss"]


class Objective(ABC):
    """What the loop trains on: the size of each training feature (which batching sorts and budgets by), a
    batch of features, the model's outputs on it (under autocast) and their loss (in float32)."""

    @abstractmethod
    def lengths(self, features: Sequence[dict[str, Any]]) -> Sequence[int]: ...

    @abstractmethod
    def collate(self, features: Sequence[dict[str, Any]], pad_id: int, pack_length: int | None = None
                ) -> dict[str, torch.Tensor]:
        """A training batch; with `pack_length`, several examples per row of that many tokens."""

    @abstractmethod
    def forward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor: ...

    @abstractmethod
    def loss(self, outputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor: ...


class TaskLoss(Objective):
    """The task's own loss on its own batches (cross-entropy, BCE, MSE, the span or token losses...)."""

    def __init__(self, task: Task) -> None:
        self.task = task

    def lengths(self, features: Sequence[dict[str, Any]]) -> Sequence[int]:
        return self.task.feature_lengths(features)

    def collate(self, features: Sequence[dict[str, Any]], pad_id: int, pack_length: int | None = None
                ) -> dict[str, torch.Tensor]:
        if pack_length is not None:
            return self.task.collate_packed(features, pad_id, pack_length)
        return self.task.collate_train(features, pad_id)

    def forward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.task.forward(model, batch)  # (B, L) or (B, T, L)

    def loss(self, outputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.task.loss(outputs, batch)
