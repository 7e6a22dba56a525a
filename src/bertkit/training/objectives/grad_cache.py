"""Gradient caching (Gao et al. 2021, "GradCache"; sentence-transformers' Cached losses) for a loss that compares
every row of a batch with every other (in-batch negatives): a batch far larger than memory allows, at the cost
of a second forward pass.

1. `forward` embeds the batch in mini-batches without keeping activations and returns the vectors as a leaf
   that requires grad;
2. `loss` computes the task's loss over the whole batch on those vectors, takes its gradient with respect to
   them (cheap: no encoder in that graph) and returns the loss as a new leaf with a hook;
3. when the loop calls backward, the hook runs each mini-batch through the encoder again, with the random state
   (dropout) its first pass had, and back-propagates the cached gradient of its vectors into the weights.

The weights' gradients are those of the whole-batch loss; only one mini-batch's activations are held at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from functools import partial
from typing import Any

import torch

from bertkit.tasks.base import Task
from bertkit.training.objectives.base import Objective

__all__ = ["GradCache"]


def _rows(batch: dict[str, torch.Tensor], start: int, stop: int) -> dict[str, torch.Tensor]:
    return {k: v[start:stop] for k, v in batch.items()}


def _random_state(device: torch.device) -> tuple[Any, Any]:
    return torch.get_rng_state(), (torch.cuda.get_rng_state(device) if device.type == "cuda" else None)


def _set_random_state(state: tuple[Any, Any], device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


class GradCache(Objective):
    """The task's own batches and loss, its forward pass run in mini-batches of `mini_batch` rows with cached
    gradients. `autocast` is the runtime's (the replay in backward runs outside the loop's autocast block)."""

    def __init__(self, task: Task, mini_batch: int, autocast: Callable[[], AbstractContextManager]) -> None:
        self.task, self.mini_batch, self.autocast = task, mini_batch, autocast
        self._pending: tuple[torch.nn.Module, dict[str, torch.Tensor], list, torch.Tensor] | None = None

    def lengths(self, features: Sequence[dict[str, Any]]) -> Sequence[int]:
        return self.task.feature_lengths(features)

    def collate(self, features: Sequence[dict[str, Any]], pad_id: int, pack_length: int | None = None
                ) -> dict[str, torch.Tensor]:
        return self.task.collate_train(features, pad_id)

    def forward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        rows, device = batch["input_ids"].shape[0], batch["input_ids"].device
        states, parts = [], []
        with torch.no_grad():
            for start in range(0, rows, self.mini_batch):
                states.append(_random_state(device))
                parts.append(self.task.forward(model, _rows(batch, start, start + self.mini_batch)))
        vectors = torch.cat(parts).detach().requires_grad_()
        self._pending = (model, batch, states, vectors)
        return vectors

    def loss(self, outputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        model, _, states, vectors = self._pending
        loss = self.task.loss(outputs, batch)
        (grad,) = torch.autograd.grad(loss, vectors)
        out = loss.detach().requires_grad_()
        out.register_hook(partial(self._replay, model, batch, states, grad))
        self._pending = None
        return out

    def _replay(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], states: list, grad: torch.Tensor,
                grad_output: torch.Tensor) -> None:
        device = batch["input_ids"].device
        after = _random_state(device)
        with torch.enable_grad():
            for i, start in enumerate(range(0, batch["input_ids"].shape[0], self.mini_batch)):
                _set_random_state(states[i], device)
                with self.autocast():
                    part = self.task.forward(model, _rows(batch, start, start + self.mini_batch))
                (part.float() * grad[start:start + self.mini_batch] * grad_output).sum().backward()
        _set_random_state(after, device)
