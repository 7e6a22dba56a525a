"""The few-shot recipe for classification: SetFit's method as one ordinary bertkit run.

1. Contrastive fine-tuning of the encoder on pairs drawn from the labels (`make_pairs`: pairs of examples
   that share a label, target cosine similarity 1, as many of pairs that do not, target 0), on the mean of
   the token states; the loss is the squared error of their cosine similarity (sentence-transformers'
   CosineSimilarityLoss, which SetFit uses).
2. The classification head: a logistic regression (L2 penalty, fitted to convergence with L-BFGS, as
   scikit-learn's default that SetFit uses) on the pooled states of the training examples, written into
   the model's output layer.

Both run inside bertkit's own loop (the objective `objectives.Contrastive` trains; the head is fitted before
each dev evaluation, so checkpoints, model selection, resume, bf16 and data parallelism are those of any
run) on a plain sequence classifier whose top layer computes the mean (`bertkit.models.pooling`): the run
directory, calibration, predict, evaluate, export and serve are those of any run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bertkit.errors import ConfigError
from bertkit.runtime import Runtime
from bertkit.tasks.base import Task
from bertkit.tasks.classification import output_layer

__all__ = ["fit_head", "logistic_regression", "make_pairs", "MAX_PAIRS", "PAIRS_PER_EXTRA_CLASS"]

log = logging.getLogger("bertkit")

#: The most pairs a run draws, and the most per class past the first: two classes take at most 2,560 pairs,
#: three 5,120, four or more 8,000.
MAX_PAIRS, PAIRS_PER_EXTRA_CLASS = 8000, 2560


def _label_sets(features: Sequence[dict[str, Any]]) -> list[frozenset[int]]:
    sets = []
    for f in features:
        label = f["label"]
        if isinstance(label, (list, tuple, np.ndarray)):  # multi-label: a 0/1 vector
            sets.append(frozenset(i for i, v in enumerate(label) if v >= 0.5))
        else:
            sets.append(frozenset((int(label),)))
    return sets


def make_pairs(features: Sequence[dict[str, Any]], per_example: int | None, seed: int) -> list[dict[str, Any]]:
    """Pair features for the contrastive phase, as SetFit draws them: every unordered pair of training examples
    (an example with itself included) in a seeded order, split into positives (sharing a label; multi-label
    examples whose label sets meet) and negatives; then as many of each as the run takes, cycling through
    each list. The run takes `per_example` / 2 of each per example when set; else as many as the larger
    list holds (SetFit's oversampling), at most `MAX_PAIRS` / 2 and `PAIRS_PER_EXTRA_CLASS` / 2 per class past
    the first. Above a
    million unordered pairs a seeded million of them is drawn instead of all. Deterministic for a seed, so
    a resumed run draws the same pairs."""
    n = len(features)
    rng = np.random.default_rng(seed)
    sets = _label_sets(features)
    labels = np.zeros((n, 1 + max((max(s) for s in sets if s), default=0)), dtype=bool)
    for i, label_set in enumerate(sets):
        labels[i, list(label_set)] = True
    if n * (n + 1) // 2 <= 1_000_000:
        first, second = np.triu_indices(n)
        order = rng.permutation(len(first))
        first, second = first[order], second[order]
    else:
        first, second = rng.integers(0, n, 1_000_000), rng.integers(0, n, 1_000_000)
    positive = np.zeros(len(first), dtype=bool)
    for start in range(0, len(first), 100_000):  # label sets meet (one label each: the same label)
        part = slice(start, start + 100_000)
        positive[part] = (labels[first[part]] & labels[second[part]]).any(axis=1)
    pos, neg = np.flatnonzero(positive), np.flatnonzero(~positive)
    if per_example is not None:
        per_side = max(1, per_example // 2) * n
    else:
        # SetFit's count: the larger list, the other oversampled to it. Cycling a small set's pairs further adds
        # time, not accuracy, and two classes need fewer pairs than six (docs/results.md, "Defaults and the
        # few-shot recipe")
        cap = min(MAX_PAIRS, PAIRS_PER_EXTRA_CLASS * max(1, labels.shape[1] - 1))
        per_side = min(cap // 2, max(len(pos), len(neg)))
    pairs = []
    for side, target in ((pos, 1.0), (neg, 0.0)):
        if len(side):
            for k in np.resize(side, per_side):
                pairs.append(_pair(features[first[k]], features[second[k]], target))
    order = rng.permutation(len(pairs))
    return [pairs[i] for i in order]


def _pair(a: dict[str, Any], b: dict[str, Any], target: float) -> dict[str, Any]:
    pair = {"input_ids": a["input_ids"], "pair_input_ids": b["input_ids"], "target": target}
    if "token_type_ids" in a:
        pair["token_type_ids"], pair["pair_token_type_ids"] = a["token_type_ids"], b["token_type_ids"]
    return pair


def _head_layer(model: torch.nn.Module, task: Task) -> torch.nn.Linear:
    layer = output_layer(model, len(task.labels))  # the one calibration folds its temperature into
    if layer is None:
        raise ConfigError("train.method few-shot: the model has no single classifier output layer to fit; set "
                          "train.method standard")
    return layer


def head_inputs(model: torch.nn.Module, task: Task, features: Sequence[dict[str, Any]], rt: Runtime, pad_id: int,
                batch_size: int = 64) -> np.ndarray:
    """(N, H) inputs of the output layer for `features`, in their order (the model in eval mode)."""
    net = rt.unwrap(model)
    layer = _head_layer(net, task)
    seen: list[torch.Tensor] = []
    hook = layer.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().float().cpu()))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(features), batch_size):
                batch = rt.to_device(task.collate(features[start:start + batch_size], pad_id))
                with rt.autocast():
                    task.forward(model, batch)
    finally:
        hook.remove()
        model.train(was_training)
    return torch.cat(seen).double().numpy()


def logistic_regression(z: np.ndarray, y: np.ndarray, *, multi_label: bool, n_labels: int,
                        class_weights: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(weight (L, H), bias (L,)) minimising the summed log-loss plus 0.5 * |weight|^2 (scikit-learn's
    LogisticRegression with C=1): softmax over the classes, or a sigmoid per label for multi-label (`y` then
    (N, L) of 0/1); fitted to convergence with L-BFGS in float64. `class_weights` weigh each class's examples
    (multi-label: each label's positives)."""
    features = torch.from_numpy(np.asarray(z, dtype=np.float64))
    target = torch.from_numpy(np.asarray(y, dtype=np.float64 if multi_label else np.int64))
    weight = torch.zeros(n_labels, features.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(n_labels, dtype=torch.float64, requires_grad=True)
    scale = torch.tensor(class_weights, dtype=torch.float64) if class_weights else None
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=1000, tolerance_grad=1e-9,
                                  tolerance_change=1e-14, history_size=20, line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        logits = features @ weight.T + bias
        if multi_label:
            data = F.binary_cross_entropy_with_logits(logits, target, reduction="sum", pos_weight=scale)
        else:
            data = F.cross_entropy(logits, target, weight=scale, reduction="sum")
        loss = data + 0.5 * (weight * weight).sum()
        loss.backward()
        return loss

    optimizer.step(objective)
    return weight.detach().numpy(), bias.detach().numpy()


def fit_head(model: torch.nn.Module, task: Task, features: Sequence[dict[str, Any]], rt: Runtime, pad_id: int
             ) -> None:
    """Fit the output layer as a logistic regression (`logistic_regression`) on the training examples' inputs
    to it, with the run's class weights, and write it into the model."""
    z = head_inputs(model, task, features, rt, pad_id)
    multi = task.problem == "multi_label"
    y = np.asarray([f["label"] for f in features])
    weight, bias = logistic_regression(z, y, multi_label=multi, n_labels=len(task.labels),
                                       class_weights=task.class_weights)
    layer = _head_layer(rt.unwrap(model), task)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(weight).to(layer.weight.dtype))
        layer.bias.copy_(torch.from_numpy(bias).to(layer.bias.dtype))


def pairs_note(n_examples: int, pairs: Sequence[dict[str, Any]]) -> str:
    same = sum(p["target"] == 1.0 for p in pairs)
    return (f"few-shot: {len(pairs)} contrastive pairs from {n_examples} training examples ({same} of examples "
            f"sharing a label, {len(pairs) - same} of examples that do not)")
