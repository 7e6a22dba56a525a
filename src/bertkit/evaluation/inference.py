"""Batched inference shared by evaluation during training, `bertkit evaluate` and `Predictor`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from bertkit.data.batching import eval_batches
from bertkit.tasks.base import Task
from bertkit.training.runtime import Runtime

__all__ = ["predict_outputs", "score"]


@torch.inference_mode()
def predict_outputs(model: torch.nn.Module, task: Task, features: Sequence[dict[str, Any]], rt: Runtime,
                    pad_id: int, n_examples: int, batch_size: int = 64, max_tokens: int | None = 16384) -> Any:
    """The task's per-example outputs (e.g. an (N, L) logits array), in input order.

    Batches are length-sorted, so little is padded; per-token outputs are trimmed to each feature's length
    before the task combines the features of one example.
    """
    was_training = model.training
    model.eval()
    lengths = [len(f["input_ids"]) for f in features]
    per_feature: list[Any] = [None] * len(features)
    for idx in eval_batches(lengths, batch_size, max_tokens=max_tokens):
        batch = rt.to_device(task.collate([features[i] for i in idx], pad_id))
        with rt.autocast():
            logits = task.batch_outputs(task.forward(model, batch), batch).float().cpu().numpy()  # (B, L)/(B, T, L)
        for row, i in enumerate(idx):
            out = logits[row] if logits.ndim == 2 else logits[row, : lengths[i]]
            per_feature[i] = task.reduce_feature(out, features[i])
    model.train(was_training)
    return task.combine(per_feature, features, n_examples)


def score(model: torch.nn.Module, task: Task, features: Sequence[dict[str, Any]], examples: Sequence[dict[str, Any]],
          rt: Runtime, pad_id: int, *, tune: bool = True) -> tuple[dict[str, float], Any]:
    """(metrics, outputs) on labelled examples; tunes decision parameters (thresholds) first when asked."""
    outputs = predict_outputs(model, task, features, rt, pad_id, len(examples))
    if tune:
        task.tune(outputs, examples)
    return task.metrics(outputs, examples), outputs
