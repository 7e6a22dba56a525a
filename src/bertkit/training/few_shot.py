"""The few-shot recipe for classification: SetFit's method as one ordinary bertkit run.

1. Contrastive fine-tuning of the encoder on pairs drawn from the labels (`make_pairs`: pairs of examples
   that share a label, target cosine similarity 1, as many of pairs that do not, target 0), on the mean of
   the token states; the loss is the squared error of their cosine similarity (sentence-transformers'
   CosineSimilarityLoss, which SetFit uses).
2. The classification head: a logistic regression (L2 penalty, fitted to convergence with L-BFGS, as
   scikit-learn's default that SetFit uses) on the pooled states of the training examples, written into
   the model's output layer.

Both run inside bertkit's own loop (`ContrastiveTask` is the task the loop sees; the head is fitted before
each dev evaluation, so checkpoints, model selection, resume, bf16 and data parallelism are those of any
run) on a plain sequence classifier whose top layer computes the mean (`bertkit.models.pooling`): the run
directory, calibration, predict, evaluate, export and serve are those of any run.

The contrastive loss is a few lines over the loop's batches, so it is written here rather than taken from
sentence-transformers, whose own trainer would be a second training loop beside bertkit's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bertkit.config import RunConfig, TrainConfig
from bertkit.data.batching import length_chunks, pad_batch
from bertkit.errors import ConfigError
from bertkit.models.pooling import below_mean_pooling, mean_pooling_unsupported
from bertkit.runtime import Runtime
from bertkit.tasks.base import Task, takes_token_types
from bertkit.tasks.classification import output_layer

__all__ = ["ContrastiveTask", "choose_method", "fit_head", "logistic_regression", "make_pairs", "few_shot_defaults",
           "FEW_SHOT_BELOW", "MAX_PAIRS", "PAIRS_PER_EXTRA_CLASS"]

log = logging.getLogger("bertkit")

#: `train.method auto` takes the few-shot recipe below this many training examples per class.
FEW_SHOT_BELOW = 150
#: With no dev file, a few-shot run below this many training examples holds none out (its split would be under
#: 50: nothing to select, too few to calibrate on).
FEW_SHOT_NO_DEV_BELOW = 500
#: The most pairs a run draws, and the most per class past the first: two classes take at most 2,560 pairs,
#: three 5,120, four or more 8,000.
MAX_PAIRS, PAIRS_PER_EXTRA_CLASS = 8000, 2560
#: What one more call of the model costs in the contrastive phase, in padded tokens: a batch's inputs run in
#: sub-batches by length where that saves more than this per sub-batch (`length_chunks`).
CALL_COST_TOKENS = 64


def choose_method(config: RunConfig, task: Task, n_train: int, model_config: Any, *, quiet: bool = False) -> str:
    """Resolve `train.method` ("auto", "standard" or "few-shot") for this run's task, data and model, with one
    log line when auto decides (none when `quiet`); an explicit few-shot the run cannot take is refused,
    naming why."""
    tc, wanted = config.train, config.train.method
    if wanted == "standard":
        return wanted
    reasons = []
    problem = getattr(task, "problem", None)
    if task.name != "classification" or problem not in ("single_label", "multi_label"):
        reasons.append(f"it is for single- and multi-label classification, not {problem or task.name}")
    why_model = mean_pooling_unsupported(model_config)
    if why_model:
        reasons.append(f"the model cannot take it: {why_model}")
    for key, on in (("train.packing", tc.packing), ("train.distill_from", tc.distill_from),
                    ("data.stream", config.data.stream), ("model.lora_r", config.model.lora_r)):
        if on:
            reasons.append(f"{key} is set")
    if wanted == "few-shot":
        if reasons:
            raise ConfigError(f"train.method few-shot: {'; '.join(reasons)}; drop train.method (or set it to standard)")
        return wanted
    labels = max(1, len(getattr(task, "labels", []) or []))
    per_class = n_train / labels
    if per_class >= FEW_SHOT_BELOW:
        return "standard"
    if reasons:
        if not quiet:
            log.info("%d training examples (%.0f per class): the few-shot recipe would suit them, but %s; training the "
                     "standard way", n_train, per_class, reasons[0])
        return "standard"
    if not quiet:
        log.info("%d training examples (%.0f per class, fewer than %d): the few-shot recipe (contrastive pairs, then a "
                 "logistic-regression head); set train.method standard to fine-tune the usual way", n_train,
                 per_class, FEW_SHOT_BELOW)
    return "few-shot"


def few_shot_defaults(tc: TrainConfig, n_train: int) -> None:
    """Fill the few-shot run's unset values: SetFit's batch of 16 pairs, one pass over them, lr 2e-5, and
    batches drawn at random rather than by length: pairs batched by length share a batch with pairs of their
    kind (on TREC-6, 8 questions per class, that cost 1.5 points of accuracy on a dev sample; SetFit's batches
    are random too)."""
    if tc.length_grouping is None:
        tc.length_grouping = False
    if tc.batch_size is None:
        tc.batch_size = 16
    if tc.epochs is None:
        tc.epochs = 1.0
    if tc.lr is None:
        tc.lr = 2e-5


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
        # time, not accuracy (README, "Small training sets": SST-2 dev samples of 16 and 64 examples); two
        # classes need fewer pairs than six (SST-2 at 128 per class: 2,560 pairs as good as 8,000)
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


class ContrastiveTask:
    """The classification task as the loop sees it in the contrastive phase: a batch of B pairs is one
    padded batch of its distinct inputs (at most 2B; `first` and `second` index each pair's members in it);
    the forward pass returns the pooled state of each (the mean of the token states that the mean-pooling
    layer takes); the loss is the squared error between each pair's cosine similarity and its target.
    Everything else is the wrapped task's.

    An input that several pairs of the batch hold is encoded once, and its gradient gathers what each pair
    gives it. On a tiny training set that is most of the batch: 16 examples fill the 32 places of 16 pairs
    with about 14 distinct inputs. The second member of a pair of an example with itself stays an input of
    its own, so dropout still draws the two apart and the pair still teaches something."""

    target_keys = ("targets", "first", "second")

    def __init__(self, task: Task) -> None:
        self.task = task

    def __getattr__(self, name: str) -> Any:
        return getattr(self.task, name)

    def feature_lengths(self, features: Sequence[dict[str, Any]]) -> list[int]:
        return [len(f["input_ids"]) + len(f["pair_input_ids"]) for f in features]

    def collate_train(self, features: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
        types = "token_type_ids" in features[0]
        inputs: list[dict[str, Any]] = []
        seen: dict[tuple, int] = {}  # an input's (ids, token types) -> its row in the batch
        first, second = [], []

        def place(ids: Any, token_types: Any, key: tuple | None) -> int:
            """The row of this input: its earlier one, or a new row (always new when `key` is None)."""
            if key is None or key not in seen:
                inputs.append({"input_ids": ids, **({"token_type_ids": token_types} if types else {})})
                if key is not None:
                    seen[key] = len(inputs) - 1
                return len(inputs) - 1
            return seen[key]

        for f in features:
            a_types, b_types = (f["token_type_ids"], f["pair_token_type_ids"]) if types else (None, None)
            a_key = (tuple(f["input_ids"]), tuple(a_types) if types else ())
            b_key = (tuple(f["pair_input_ids"]), tuple(b_types) if types else ())
            first.append(place(f["input_ids"], a_types, a_key))
            second.append(place(f["pair_input_ids"], b_types, None if b_key == a_key else b_key))
        batch = pad_batch(inputs, pad_id, {"token_type_ids": 0} if types else None)
        batch["first"], batch["second"] = torch.tensor(first), torch.tensor(second)
        batch["targets"] = torch.tensor([f["target"] for f in features], dtype=torch.float)
        return batch

    def collate_packed(self, features: Sequence[dict[str, Any]], pad_id: int, row_length: int) -> dict:
        raise ConfigError("train.packing: the few-shot recipe does not pack its pairs; drop train.packing")

    def forward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids")
                if k in batch and (k != "token_type_ids" or takes_token_types(model))]
        lengths = batch["attention_mask"].sum(1).tolist()
        # Random pairs mix short inputs with long ones (on SST-2 a third of a padded batch is text), so the
        # inputs run in sub-batches of similar length: the same embeddings, a fraction of the padding. A model
        # wrapped for data parallelism is called once, as its gradient synchronisation needs.
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            chunks = [list(range(len(lengths)))]
        else:
            chunks = length_chunks(lengths, CALL_COST_TOKENS)
        parts, touch = [], 0.0
        with below_mean_pooling(model):  # the layer would only average what is averaged here
            for rows in chunks:
                index = torch.tensor(rows, device=batch["input_ids"].device)
                width = max(lengths[i] for i in rows)
                inputs = {k: batch[k].index_select(0, index)[:, :width] for k in keys}  # padding is on the right
                out = model(**inputs, output_hidden_states=True)
                # The mean of the token states below the mean-pooling layer, which standardises it on top: the
                # sentence embedding sentence-transformers trains, and that the cosine is taken of.
                states = out.hidden_states[-2]
                mask = inputs["attention_mask"].unsqueeze(-1).to(states.dtype)
                parts.append((states * mask).sum(1) / mask.sum(1).clamp(min=1))
                touch = touch + out.logits.sum()
        order = torch.tensor([i for rows in chunks for i in rows], device=batch["input_ids"].device)
        pooled = torch.cat(parts).index_select(0, torch.argsort(order))  # (distinct inputs, H), in batch order
        # The head takes no part in this loss; a zero-weighted touch gives it a (zero) gradient, as data
        # parallelism needs of every parameter that trains (the head is fitted on its own before evaluation).
        return pooled + 0.0 * touch

    def loss(self, pooled: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        targets = batch["targets"]
        first, second = pooled[batch["first"]], pooled[batch["second"]]
        return F.mse_loss(F.cosine_similarity(first, second, dim=-1), targets.to(pooled.dtype))


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
