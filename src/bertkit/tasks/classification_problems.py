"""The three variants of sequence classification, one small strategy each.

They share data, tokenisation and the model head (`ClassificationTask`); they differ in how labels become
targets, the loss (and the soft-target loss of distillation), the decision rule, the metrics, what can be
tuned or calibrated on dev, and the report's view of the dev set. `PROBLEMS` maps `task.problem` to them.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from bertkit.errors import DataError
from bertkit.tasks import metrics as M
from bertkit.tasks.calibration import expected_calibration_error, fit_temperature, softmax

__all__ = ["Problem", "SingleLabel", "MultiLabel", "Regression", "PROBLEMS", "LabelStats", "label_name"]


def label_name(value: Any) -> str:
    """Label names are strings; JSON numbers 1 and 1.0 both name the label "1"."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def look_alike(names: list[str]) -> list[list[str]]:
    """Groups of label names that differ only in case, surrounding spaces or how a number is written ("Pos"
    and "pos", "01", "1" and "1.0"): separate classes that are most likely one."""
    def key(name: str) -> str:
        try:
            return label_name(float(name))
        except ValueError:
            return name.strip().casefold()

    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(key(name), []).append(name)
    return [group for group in groups.values() if len(group) > 1]


def sorted_names(names: set[str]) -> list[str]:
    try:
        return sorted(names, key=int)  # "2" before "10" for numeric labels
    except ValueError:
        return sorted(names)


def as_float(value: Any, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise DataError(f"{where}: regression target {value!r} is not a finite number; fix or remove the row")
    return number


class LabelStats:
    """What fitting needs of the training labels, gathered one example at a time, so that a streamed
    training file is never held in memory: label counts, the first row of each kind, and whether every
    label reads as a number (regression when some are fractional)."""

    MAX_DISTINCT = 100_000
    #: Class-like labels: at most this many distinct whole numbers (and twice as many whole-number rows),
    #: beside which a few fractions (at most STRAY_SHARE of the rows) look like a typo, not a regression target.
    STRAY_WHOLE_VALUES = 10
    STRAY_SHARE = 0.05

    def __init__(self) -> None:
        self.n = 0
        self.first_where = ""
        self.pairs = False
        self.any_list = False
        self.all_numbers = True
        self.any_fraction = False
        self.fractions = 0  # labels that are fractional numbers
        self.first_fraction: tuple[Any, str] | None = None
        self.whole_values: set[float] = set()  # the distinct whole-number labels (up to STRAY_WHOLE_VALUES + 1)
        self.bad_number: tuple[Any, str] | None = None  # the first label that is not a finite number
        self.first_of_kind: dict[bool, tuple[Any, str]] = {}  # the first list label and the first single one
        self.counts: Counter[tuple[bool, tuple[str, ...], str]] = Counter()
        self.distinct_overflow = False

    def add(self, ex: dict[str, Any]) -> None:
        if self.n == 0:
            self.first_where, self.pairs = ex["where"], "text_pair" in ex
        self.n += 1
        label = ex["label"]
        is_list = isinstance(label, list)
        self.any_list = self.any_list or is_list
        self.first_of_kind.setdefault(is_list, (label, ex["where"]))
        try:
            number = float(label)
        except (TypeError, ValueError):
            number = math.nan
            self.all_numbers = False
        if math.isfinite(number):
            if number.is_integer():
                if len(self.whole_values) <= self.STRAY_WHOLE_VALUES:
                    self.whole_values.add(number)
            else:
                self.any_fraction = True
                self.fractions += 1
                if self.first_fraction is None:
                    self.first_fraction = (label, ex["where"])
        elif self.bad_number is None:
            self.bad_number = (label, ex["where"])
        if self.distinct_overflow:
            return
        key = (is_list, tuple(label_name(v) for v in label) if is_list else (), label_name(label))
        self.counts[key] += 1
        if len(self.counts) > self.MAX_DISTINCT:
            self.distinct_overflow, self.counts = True, Counter()

    @classmethod
    def of(cls, examples: Any) -> LabelStats:
        """The statistics of examples that arrive in chunks (an iterable of sequences)."""
        stats = cls()
        for chunk in examples:
            for ex in chunk:
                stats.add(ex)
        return stats

    @property
    def file(self) -> str:
        return self.first_where.rsplit(":", 1)[0]

    def check_kinds(self) -> None:
        """Refuse list labels mixed with single ones: one stray list would make the whole task multi-label."""
        if len(self.first_of_kind) == 2:
            (listed, at), (single, first) = self.first_of_kind[True], self.first_of_kind[False]
            raise DataError(f"{at}: the list label {listed!r:.60} among single labels (the first: {single!r:.40} at "
                            f"{first}); a multi-label file gives every row a list of labels, a single-label file one "
                            "label per row")

    def problem(self) -> str:
        """The problem the labels imply (`task.problem` auto)."""
        if self.any_list:
            return "multi_label"
        if not (self.all_numbers and self.any_fraction):
            return "single_label"
        whole = sorted(self.whole_values)
        if (len(whole) <= self.STRAY_WHOLE_VALUES and self.fractions <= self.STRAY_SHARE * self.n
                and self.n - self.fractions >= 2 * self.STRAY_WHOLE_VALUES):
            label, where = self.first_fraction
            names = ", ".join(f"{v:g}" for v in whole)
            raise DataError(
                f"{where}: the label {label!r} is a fraction ({self.fractions} of {self.n} labels are; the rest are "
                f"the whole numbers {names}, which look like classes), and a fraction would make the whole task "
                "regression: fix the row, or set task.problem to regression if the labels are scores, or to "
                "single_label to keep each value a class")
        return "regression"


class Problem:
    """One classification variant. `task` arguments are the fitted `ClassificationTask` (labels, threshold)."""

    name: ClassVar[str]
    hf_problem_type: ClassVar[str]  # the model config's problem_type
    primary_metric: ClassVar[str]
    logit_kind: ClassVar[str]  # what its logits are, for distillation's soft targets (`Task.logit_kind`)
    target_dtype: ClassVar[torch.dtype] = torch.float
    stratified: ClassVar[bool] = False  # whether a dev split keeps the label proportions

    def fit(self, stats: LabelStats, class_weights: str) -> tuple[list[str], list[float] | None]:
        """(label names, class weights or None) from the training labels."""
        if stats.distinct_overflow:
            raise DataError(f"{stats.file}: more than {LabelStats.MAX_DISTINCT:,} different labels; if the label "
                            "is a number to predict, set task.problem to regression")
        names: Counter[str] = Counter()
        for (is_list, members, single), count in stats.counts.items():
            for name in self._fit_names(is_list, members, single):
                names[name] += count
        labels = sorted_names(set(names))
        weights = self._class_weights(stats.n, [names[c] for c in labels]) if class_weights == "auto" else None
        return labels, weights

    def _fit_names(self, is_list: bool, members: tuple[str, ...], single: str) -> tuple[str, ...]:
        return (single,)

    def _class_weights(self, n: int, counts: list[int]) -> list[float]:
        raise NotImplementedError

    def names(self, label: Any) -> list[str]:
        """The label names a raw label holds."""
        return [label_name(label)]

    def check(self, label: Any, where: str) -> None:
        """Raise DataError when a raw label cannot be a target of this problem."""

    def encode(self, label: Any, index: dict[str, int]) -> Any:
        """A raw label as the model's target; `index` maps label names to output positions."""
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        return softmax(logits)

    def postprocess(self, task: Any, logits: np.ndarray) -> list[dict[str, Any]]:
        raise NotImplementedError

    def metrics(self, task: Any, logits: np.ndarray, examples: list[dict[str, Any]]) -> dict[str, float]:
        raise NotImplementedError

    def tune(self, task: Any, logits: np.ndarray, examples: list[dict[str, Any]]) -> dict[str, Any]:
        """Decision parameters fitted on dev (none by default)."""
        return {}

    def calibrate(self, task: Any, layer: torch.nn.Linear | None, logits: np.ndarray,
                  examples: list[dict[str, Any]]) -> dict[str, Any]:
        """Confidence calibration folded into the output layer (none by default)."""
        return {}


#: The fewest dev examples temperature scaling is fitted on (below, a handful of examples fit T = 0.01).
MIN_CALIBRATION_EXAMPLES = 50  # as the diagnosis's "dev set too small to trust"


class SingleLabel(Problem):
    """One class per text (binary or multi-class): softmax, cross-entropy, argmax."""

    name, hf_problem_type, primary_metric = "single_label", "single_label_classification", "accuracy"
    logit_kind = "softmax"
    target_dtype = torch.long
    stratified = True

    def fit(self, stats: LabelStats, class_weights: str) -> tuple[list[str], list[float] | None]:
        labels, weights = super().fit(stats, class_weights)
        if len(labels) < 2:
            raise DataError(f"{stats.file}: training data has only the label {labels[0]!r}; a classifier needs at "
                            "least two")
        return labels, weights

    def _class_weights(self, n: int, counts: list[int]) -> list[float]:
        return [n / (len(counts) * c) for c in counts]  # inverse frequency, mean 1 (scikit-learn's "balanced")

    def encode(self, label: Any, index: dict[str, int]) -> int:
        return index[label_name(label)]

    def loss(self, logits, targets, weights):
        return F.cross_entropy(logits, targets, weight=weights)

    def postprocess(self, task, logits):
        out = []
        for row in self.probabilities(logits):
            best = int(row.argmax())
            out.append({"label": task.labels[best], "score": float(row[best]),
                        "probabilities": {n: round(float(p), 6) for n, p in zip(task.labels, row)}})
        return out

    def metrics(self, task, logits, examples):
        refs = np.array([self.encode(ex["label"], task.label_index) for ex in examples])
        preds = logits.argmax(-1)
        scores = {"accuracy": M.accuracy(refs, preds), "f1": M.f1_macro(refs, preds), "mcc": M.mcc(refs, preds)}
        if len(task.labels) == 2:  # GLUE's F1 for MRPC/QQP: of the second label ("1", "positive"...)
            scores["f1_binary"] = M.f1_binary(refs, preds, positive=1)
        return scores

    @torch.no_grad()
    def calibrate(self, task, layer, logits, examples):
        """Temperature scaling: T fitted on the dev logits (NLL), then folded into the output layer (weight and
        bias divided by T), so that the saved model, bertkit and plain transformers all give the calibrated
        probabilities; the predicted class never changes."""
        if layer is None or not examples:
            return {}
        if len(examples) < MIN_CALIBRATION_EXAMPLES:
            return {"skipped": f"the dev set has {len(examples)} examples; fitting a temperature takes at least "
                               f"{MIN_CALIBRATION_EXAMPLES} to be trusted, so the probabilities are left as trained"}
        refs = np.array([self.encode(ex["label"], task.label_index) for ex in examples])
        temperature = min(max(fit_temperature(logits, refs), 0.25), 4.0)  # bounded: a fit, not a switch
        layer.weight.div_(temperature)
        if layer.bias is not None:
            layer.bias.div_(temperature)
        return {"temperature": temperature, "ece_before": expected_calibration_error(softmax(logits), refs),
                "ece_after": expected_calibration_error(softmax(logits, temperature), refs), "bins": 15}

class MultiLabel(Problem):
    """Any number of labels per text: a sigmoid per label, binary cross-entropy, a threshold tuned on dev."""

    name, hf_problem_type, primary_metric = "multi_label", "multi_label_classification", "f1_micro"
    logit_kind = "sigmoid"

    def _fit_names(self, is_list, members, single):
        return members if is_list else (single,)

    def _class_weights(self, n: int, counts: list[int]) -> list[float]:
        return [(n - c) / max(c, 1) for c in counts]  # BCE pos_weight: negatives per positive of each label

    def names(self, label: Any) -> list[str]:
        return list(label) if isinstance(label, list) else [label_name(label)]

    def encode(self, label: Any, index: dict[str, int]) -> list[float]:
        hot = [0.0] * len(index)
        for name in self.names(label):
            hot[index[name]] = 1.0
        return hot

    def loss(self, logits, targets, weights):
        return F.binary_cross_entropy_with_logits(logits, targets, pos_weight=weights)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))

    def postprocess(self, task, logits):
        out = []
        for row in self.probabilities(logits):
            table = {name: round(float(p), 6) for name, p in zip(task.labels, row)}
            chosen = [{"label": n, "score": table[n]} for n, p in zip(task.labels, row) if p >= task.threshold]
            out.append({"labels": chosen, "probabilities": table})
        return out

    def gold(self, task, examples) -> np.ndarray:
        """(N, L) booleans: each example's gold labels."""
        return np.array([self.encode(ex["label"], task.label_index) for ex in examples]) > 0.5

    def metrics(self, task, logits, examples):
        refs, preds = self.gold(task, examples), self.probabilities(logits) >= task.threshold
        return {**M.multilabel_f1(refs, preds), "subset_accuracy": float((refs == preds).all(1).mean())}

    def tune(self, task, logits, examples):
        if task.cfg.threshold is not None:
            return {}
        refs, probs = self.gold(task, examples), self.probabilities(logits)
        grid = np.round(np.arange(0.05, 0.951, 0.05), 2)
        scores = [M.multilabel_f1(refs, probs >= t)["f1_micro"] for t in grid]
        task.threshold = float(grid[int(np.argmax(scores))])
        return {"threshold": task.threshold}

class Regression(Problem):
    """A number per text: one output, mean squared error."""

    name, hf_problem_type, primary_metric = "regression", "regression", "pearson"
    logit_kind = "value"

    def fit(self, stats: LabelStats, class_weights: str) -> tuple[list[str], list[float] | None]:
        if stats.bad_number is not None:
            as_float(*stats.bad_number)  # raises, naming the row
        return ["value"], None

    def check(self, label: Any, where: str) -> None:
        as_float(label, where)

    def names(self, label: Any) -> list[str]:
        return []  # a number, not a member of a label set

    def encode(self, label: Any, index: dict[str, int]) -> float:
        return float(label)

    def loss(self, logits, targets, weights):
        return F.mse_loss(logits.squeeze(-1), targets)

    def postprocess(self, task, logits):
        return [{"value": float(v)} for v in logits[:, 0]]

    def metrics(self, task, logits, examples):
        refs = np.array([float(ex["label"]) for ex in examples])
        preds = logits[:, 0].astype(np.float64)
        return {"pearson": M.pearson(refs, preds), "spearman": M.spearman(refs, preds), "mse": M.mse(refs, preds)}

PROBLEMS: dict[str, Problem] = {p.name: p for p in (SingleLabel(), MultiLabel(), Regression())}
