"""Batched inference: a model over task features on the runtime's device, shared by dev evaluation during
training, `bertkit evaluate` and the `Predictor` (which is why it sits below both)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from bertkit.data.batching import eval_batches
from bertkit.runtime import Runtime
from bertkit.tasks.base import Task

__all__ = ["predict_outputs"]


@torch.inference_mode()
def predict_outputs(model: torch.nn.Module, task: Task, features: Sequence[dict[str, Any]], rt: Runtime,
                    pad_id: int, n_examples: int, batch_size: int = 64, max_tokens: int | None = 16384,
                    loss_out: list[float] | None = None) -> Any:
    """The task's per-example outputs (e.g. an (N, L) logits array), in input order.

    Batches are length-sorted, so little is padded; per-token outputs are trimmed to each feature's length
    before the task combines the features of one example. With `loss_out`, the task's loss over the
    features that carry targets (their mean, weighted by batch rows) is appended to it.
    """
    loss_sum, loss_rows = 0.0, 0
    was_training = model.training
    model.eval()
    lengths = [len(f["input_ids"]) for f in features]  # per-token outputs are trimmed to these
    per_feature: list[Any] = [None] * len(features)
    for idx in eval_batches(task.feature_lengths(features), batch_size, max_tokens=max_tokens):
        batch = rt.to_device(task.collate([features[i] for i in idx], pad_id))
        with rt.autocast():
            raw = task.forward(model, batch)
            if loss_out is not None and all(k in batch for k in task.target_keys):
                loss_sum += float(task.loss(raw.float(), batch)) * len(idx)
                loss_rows += len(idx)
            logits = task.batch_outputs(raw, batch).float().cpu().numpy()  # (B, L) or (B, T, L)
        for row, i in enumerate(idx):
            out = logits[row] if logits.ndim == 2 else logits[row, : lengths[i]]
            per_feature[i] = task.reduce_feature(out, features[i])
    model.train(was_training)
    if loss_out is not None and loss_rows:
        loss_out.append(loss_sum / loss_rows)
    return task.combine(per_feature, features, n_examples)

