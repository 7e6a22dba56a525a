"""Batched inference shared by evaluation during training, `bertkit evaluate` and `Predictor`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from bertkit.data.batching import eval_batches
from bertkit.tasks.base import Task
from bertkit.training.runtime import Runtime

__all__ = ["predict_logits", "score"]


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, task: Task, features: Sequence[dict[str, Any]], rt: Runtime,
                   pad_id: int, batch_size: int = 64, max_tokens: int | None = 16384) -> np.ndarray:
    """Logits for every feature, in input order. Batches are length-sorted, so little is padded."""
    was_training = model.training
    model.eval()
    lengths = [len(f["input_ids"]) for f in features]
    out: np.ndarray | None = None
    for idx in eval_batches(lengths, batch_size, max_tokens=max_tokens):
        batch = task.collate([features[i] for i in idx], pad_id)
        inputs = {k: v for k, v in rt.to_device(batch).items() if k != "labels"}
        with rt.autocast():
            logits = model(**inputs).logits.float().cpu().numpy()  # (B, num_labels)
        if out is None:
            out = np.zeros((len(features), *logits.shape[1:]), dtype=np.float32)
        out[idx] = logits
    model.train(was_training)
    return out if out is not None else np.zeros((0, 1), dtype=np.float32)


def score(model: torch.nn.Module, task: Task, features: Sequence[dict[str, Any]], examples: Sequence[dict[str, Any]],
          rt: Runtime, pad_id: int, *, tune: bool = True) -> tuple[dict[str, float], np.ndarray]:
    """(metrics, logits) on labelled examples; tunes decision parameters (thresholds) first when asked."""
    logits = predict_logits(model, task, features, rt, pad_id)
    if tune:
        task.tune(logits, examples)
    return task.metrics(logits, examples), logits
