"""Sequence classification: single-label (binary, multi-class), sentence pairs, multi-label, regression.

One plug-in covers the four variants because they share data, tokenisation and model head; they differ
only in how labels are encoded, the loss, the decision rule and the metrics.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bertkit.config import DataConfig
from bertkit.data.batching import pad_batch
from bertkit.data.packing import pack_batch
from bertkit.data.readers import Table
from bertkit.errors import ConfigError, DataError
from bertkit.tasks import metrics as M
from bertkit.tasks.base import Task, register_task
from bertkit.tasks.calibration import expected_calibration_error, fit_temperature, softmax
from bertkit.tasks.encoder import (
    first_token_logits,
    is_bert_classifier,
    packed_logits_through_forward,
    supports_first_token_path,
)

__all__ = ["ClassificationTask"]

_PROBLEM_TYPES = {
    "single_label": "single_label_classification",
    "multi_label": "multi_label_classification",
    "regression": "regression",
}


def _output_layer(model: torch.nn.Module, n_labels: int) -> torch.nn.Linear | None:
    """The linear layer whose outputs are the logits (the trained copy when LoRA wraps the head), or None
    when there is not exactly one."""
    found = [m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear) and m.out_features == n_labels
             and "classifier" in name and "original_module" not in name and "lora_" not in name]
    return found[0] if len(found) == 1 else None


def _delimiter_hint(columns: list[str]) -> str:
    """A hint when a lone header looks split by a delimiter this format does not use (';', '|')."""
    if len(columns) == 1:
        for sep in (";", "|", "\t"):
            if sep in columns[0]:
                return (f", or fix the delimiter: the header looks separated by {sep!r}; write the file with commas "
                        "(CSV) or tabs (data.format tsv)")
    return ""


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _label_name(value: Any) -> str:
    """Label names are strings; JSON numbers 1 and 1.0 both name the label "1"."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip() if isinstance(value, str) else str(value)


def _sorted_names(names: set[str]) -> list[str]:
    try:
        return sorted(names, key=int)  # "2" before "10" for numeric labels
    except ValueError:
        return sorted(names)


def _as_float(value: Any, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise DataError(f"{where}: regression target {value!r} is not a finite number; fix or remove the row")
    return number


class _LabelStats:
    """What fitting needs of the training labels, gathered one example at a time, so that a streamed
    training file is never held in memory: label counts, the first row of each kind, and whether every
    label reads as a number (regression when some are fractional)."""

    MAX_DISTINCT = 100_000

    def __init__(self) -> None:
        self.n = 0
        self.first_where = ""
        self.pairs = False
        self.any_list = False
        self.all_numbers = True
        self.any_fraction = False
        self.bad_number: tuple[Any, str] | None = None  # the first label that is not a finite number
        self.counts: Counter[tuple[bool, tuple[str, ...], str]] = Counter()
        self.distinct_overflow = False

    def add(self, ex: dict[str, Any]) -> None:
        if self.n == 0:
            self.first_where, self.pairs = ex["where"], "text_pair" in ex
        self.n += 1
        label = ex["label"]
        is_list = isinstance(label, list)
        self.any_list = self.any_list or is_list
        try:
            number = float(label)
        except (TypeError, ValueError):
            number = math.nan
            self.all_numbers = False
        if math.isfinite(number):
            self.any_fraction = self.any_fraction or not number.is_integer()
        elif self.bad_number is None:
            self.bad_number = (label, ex["where"])
        if self.distinct_overflow:
            return
        key = (is_list, tuple(_label_name(v) for v in label) if is_list else (), _label_name(label))
        self.counts[key] += 1
        if len(self.counts) > self.MAX_DISTINCT:
            self.distinct_overflow, self.counts = True, Counter()

    def problem(self) -> str:
        """The problem the labels imply (`--problem auto`)."""
        if self.any_list:
            return "multi_label"
        return "regression" if self.all_numbers and self.any_fraction else "single_label"


@register_task("classification")
class ClassificationTask(Task):
    auto_model_class = "AutoModelForSequenceClassification"
    pipeline_tag = "text-classification"
    intended_use = "Labels a text (or a pair of texts) with the classes it was trained on."
    example_keys = ("where", "text", "text_pair", "label")

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.problem: str = cfg.problem
        self.labels: list[str] = []
        self.threshold: float = cfg.threshold if cfg.threshold is not None else 0.5
        self.class_weights: list[float] | None = None
        self.pairs = False  # trained on sentence pairs: every input needs a text_pair
        self._weight_cache: dict[torch.device, torch.Tensor] = {}

    # --- data -----------------------------------------------------------------------------------------
    def read_examples(self, table: Table, data_cfg: DataConfig, with_labels: bool = True) -> list[dict[str, Any]]:
        wanted = [data_cfg.text_column, data_cfg.text_pair_column]
        if with_labels:
            wanted.append(data_cfg.label_column)
        for column in filter(None, wanted):
            if column not in table.columns:
                key = {data_cfg.text_column: "data.text_column", data_cfg.label_column: "data.label_column"}.get(
                    column, "data.text_pair_column")
                raise DataError(
                    f"{table.path}: no column '{column}'; columns found: {', '.join(table.columns)}; "
                    f"set {key} to one of them{_delimiter_hint(table.columns)}"
                )
        examples = []
        for i, row in enumerate(table.rows):
            where = table.where(i)
            ex: dict[str, Any] = {"where": where, "text": self._text(row, data_cfg.text_column, where)}
            if data_cfg.text_pair_column:
                ex["text_pair"] = self._text(row, data_cfg.text_pair_column, where)
            if with_labels:
                ex["label"] = self._raw_label(row.get(data_cfg.label_column), data_cfg, where)
            examples.append(ex)
        return examples

    @staticmethod
    def _text(row: dict[str, Any], column: str, where: str) -> str:
        value = row.get(column)
        if _is_missing(value):
            raise DataError(f"{where}: empty text in column '{column}'; fill it in or remove the row")
        if not isinstance(value, str):
            raise DataError(f"{where}: column '{column}' holds {type(value).__name__} {value!r}, not text")
        return value

    @staticmethod
    def _raw_label(value: Any, data_cfg: DataConfig, where: str) -> Any:
        if isinstance(value, dict) or (isinstance(value, (list, tuple)) and
                                       any(isinstance(v, (dict, list, tuple)) for v in value)):
            raise DataError(f"{where}: the label {value!r:.60} is a JSON object or nested list; a label "
                            "is a string or number, or a list of them for multi-label")
        if isinstance(value, (list, tuple)):
            return [_label_name(v) for v in value]
        if _is_missing(value):
            raise DataError(
                f"{where}: missing label in column '{data_cfg.label_column}'; label the row or remove it"
            )
        if data_cfg.label_delimiter is not None:
            return [p.strip() for p in str(value).split(data_cfg.label_delimiter) if p.strip()]
        return value

    def fit(self, train: Sequence[dict[str, Any]]) -> None:
        self.fit_chunks([train])

    def fit_chunks(self, chunks: Iterable[Sequence[dict[str, Any]]]) -> None:
        stats = _LabelStats()
        for chunk in chunks:
            for ex in chunk:
                stats.add(ex)
        if stats.n == 0:
            raise DataError("no training examples to fit the labels on")
        self.pairs = stats.pairs
        if self.problem == "auto":
            self.problem = stats.problem()
        if self.problem == "regression":
            self.labels = ["value"]
            if stats.bad_number is not None:
                _as_float(*stats.bad_number)  # raises, naming the row
            return
        if stats.distinct_overflow:
            raise DataError(
                f"{stats.first_where.rsplit(':', 1)[0]}: more than {_LabelStats.MAX_DISTINCT:,} different labels; "
                "if the label is a number to predict, set task.problem to regression"
            )
        names: Counter[str] = Counter()
        for key, count in stats.counts.items():
            for name in (key[1] if key[0] and self.problem == "multi_label" else (key[2],)):
                names[name] += count
        self.labels = _sorted_names(set(names))
        if self.problem == "single_label" and len(self.labels) < 2:
            raise DataError(
                f"{stats.first_where.rsplit(':', 1)[0]}: training data has only the label "
                f"{self.labels[0]!r}; a classifier needs at least two"
            )
        if self.cfg.class_weights == "auto":
            n, k = stats.n, len(self.labels)
            if self.problem == "single_label":  # inverse frequency, mean weight 1 (sklearn's "balanced")
                self.class_weights = [n / (k * names[c]) for c in self.labels]
            else:  # BCE pos_weight: negatives per positive of each label
                self.class_weights = [(n - names[c]) / max(names[c], 1) for c in self.labels]

    def _names(self, label: Any) -> list[str]:
        if self.problem == "multi_label":
            return list(label) if isinstance(label, list) else [_label_name(label)]
        return [_label_name(label)]

    def check_examples(self, examples: Sequence[dict[str, Any]], source: str) -> None:
        if self.problem == "regression":
            for ex in examples:
                _as_float(ex["label"], ex["where"])
            return
        known = set(self.labels)
        unseen: dict[str, str] = {}
        for ex in examples:
            for name in self._names(ex["label"]):
                if name not in known:
                    unseen.setdefault(name, ex["where"])
        if unseen:
            first = next(iter(unseen.values()))
            raise DataError(
                f"{source}: labels that training never saw: {', '.join(map(repr, sorted(unseen)))} "
                f"(first at {first}); known labels: {', '.join(self.labels)}; "
                "fix the labels or add examples of them to the training data"
            )

    def stratify_keys(self, examples: Sequence[dict[str, Any]]) -> list[Any]:
        problem = self.problem
        if problem == "auto":  # what fitting would decide, without fitting
            stats = _LabelStats()
            for ex in examples:
                stats.add(ex)
            problem = stats.problem()
        if problem != "single_label":
            return [None] * len(examples)
        return [_label_name(ex["label"]) for ex in examples]

    def preprocess(self, examples, tokenizer, data_cfg: DataConfig, with_labels: bool = True):
        features = []
        block = 8192  # the tokenizer's per-text records are large: hold those of one block at a time
        for start in range(0, len(examples), block):
            part = examples[start:start + block]
            texts = [ex["text"] for ex in part]
            pairs = [ex["text_pair"] for ex in part] if "text_pair" in part[0] else None
            enc = tokenizer(texts, pairs, truncation=True, max_length=self.max_length(data_cfg),
                            return_attention_mask=False)
            for i, ex in enumerate(part):
                feat = {"input_ids": enc["input_ids"][i]}
                if "token_type_ids" in enc:
                    feat["token_type_ids"] = enc["token_type_ids"][i]
                if with_labels:
                    feat["label"] = self.encode_label(ex["label"])
                features.append(feat)
        return features

    def encode_label(self, label: Any) -> Any:
        """A raw label as the model's target: a class index, a 0/1 vector (multi-label) or a float."""
        if self.problem == "regression":
            return float(label)
        index = {name: i for i, name in enumerate(self.labels)}
        if self.problem == "multi_label":
            hot = [0.0] * len(self.labels)
            for name in self._names(label):
                hot[index[name]] = 1.0
            return hot
        return index[_label_name(label)]

    def collate(self, features, pad_id: int) -> dict[str, torch.Tensor]:
        batch = pad_batch(features, pad_id, {"token_type_ids": 0} if "token_type_ids" in features[0] else None)
        if "label" in features[0]:
            dtype = torch.long if self.problem == "single_label" else torch.float
            batch["labels"] = torch.tensor([f["label"] for f in features], dtype=dtype)
        return batch

    def collate_packed(self, features, pad_id: int, row_length: int) -> dict[str, torch.Tensor]:
        batch = pack_batch(features, pad_id, row_length,
                           {"token_type_ids": 0} if "token_type_ids" in features[0] else None)
        if "label" in features[0]:
            dtype = torch.long if self.problem == "single_label" else torch.float
            batch["labels"] = torch.tensor([f["label"] for f in features], dtype=dtype)
        return batch

    # --- model ----------------------------------------------------------------------------------------
    def check_packing(self, model: torch.nn.Module) -> None:
        if not is_bert_classifier(model):
            raise ConfigError(f"train.packing: packed rows need a BERT-style classifier (pooler on [CLS], absolute "
                              f"positions from 0); {type(model).__name__} is not; drop train.packing")

    def forward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if supports_first_token_path(model):  # skips the last layer's work on tokens nobody reads
            return first_token_logits(model, batch)
        if "cls_index" in batch:
            return packed_logits_through_forward(model, batch)
        return super().forward(model, batch)

    @classmethod
    def head_state_from_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        problems = {hf: ours for ours, hf in _PROBLEM_TYPES.items()}
        return {**super().head_state_from_config(config),
                "problem": problems.get(config.get("problem_type") or "", "single_label")}

    def model_config(self) -> dict[str, Any]:
        return {
            "num_labels": len(self.labels),
            "id2label": dict(enumerate(self.labels)),
            "label2id": {name: i for i, name in enumerate(self.labels)},
            "problem_type": _PROBLEM_TYPES[self.problem],
        }

    def _weights(self, device: torch.device) -> torch.Tensor | None:
        if self.class_weights is None:
            return None
        if device not in self._weight_cache:
            self._weight_cache[device] = torch.tensor(self.class_weights, dtype=torch.float, device=device)
        return self._weight_cache[device]

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        labels = batch["labels"]
        if self.problem == "regression":
            return F.mse_loss(logits.squeeze(-1), labels)
        if self.problem == "multi_label":
            return F.binary_cross_entropy_with_logits(logits, labels, pos_weight=self._weights(logits.device))
        return F.cross_entropy(logits, labels, weight=self._weights(logits.device))

    # --- outputs --------------------------------------------------------------------------------------
    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Class probabilities of (N, L) logits: softmax, or a sigmoid per label for multi-label."""
        logits = logits.astype(np.float64)
        if self.problem == "multi_label":
            return 1.0 / (1.0 + np.exp(-logits))
        z = np.exp(logits - logits.max(-1, keepdims=True))
        return z / z.sum(-1, keepdims=True)

    def make_examples(self, inputs, tokenizer) -> list[dict[str, Any]]:
        examples = []
        for i, item in enumerate(inputs):
            if isinstance(item, str):
                ex = {"text": item}
            elif isinstance(item, (tuple, list)) and len(item) == 2:
                ex = {"text": item[0], "text_pair": item[1]}
            elif isinstance(item, dict) and "text" in item:
                ex = {"text": item["text"], **({"text_pair": item["text_pair"]} if "text_pair" in item else {})}
            else:
                raise DataError(f"input {i}: expected a string, a (text, text_pair) pair or a dict with 'text'")
            if not isinstance(ex["text"], str) or not ex["text"].strip():
                raise DataError(f"input {i}: empty text")
            if self.pairs and "text_pair" not in ex:
                raise DataError(f"input {i}: this model classifies sentence pairs; give a text_pair")
            ex["where"] = f"input {i}"
            examples.append(ex)
        return examples

    def postprocess(self, logits: np.ndarray, examples=None) -> list[dict[str, Any]]:
        if self.problem == "regression":
            return [{"value": float(v)} for v in logits[:, 0]]
        probs = self.probabilities(logits)
        out = []
        for row in probs:
            table = {name: round(float(p), 6) for name, p in zip(self.labels, row)}
            if self.problem == "multi_label":
                chosen = [{"label": n, "score": table[n]} for n, p in zip(self.labels, row) if p >= self.threshold]
                out.append({"labels": chosen, "probabilities": table})
            else:
                best = int(row.argmax())
                out.append({"label": self.labels[best], "score": float(row[best]), "probabilities": table})
        return out

    def metrics(self, logits: np.ndarray, examples) -> dict[str, float]:
        if self.problem == "regression":
            refs = np.array([float(ex["label"]) for ex in examples])
            preds = logits[:, 0].astype(np.float64)
            return {"pearson": M.pearson(refs, preds), "spearman": M.spearman(refs, preds), "mse": M.mse(refs, preds)}
        if self.problem == "multi_label":
            refs = np.array([self.encode_label(ex["label"]) for ex in examples]) > 0.5
            preds = self.probabilities(logits) >= self.threshold
            scores = M.multilabel_f1(refs, preds)
            scores["subset_accuracy"] = float((refs == preds).all(1).mean())
            return scores
        refs = np.array([self.encode_label(ex["label"]) for ex in examples])
        preds = logits.argmax(-1)
        scores = {"accuracy": M.accuracy(refs, preds), "f1": M.f1_macro(refs, preds), "mcc": M.mcc(refs, preds)}
        if len(self.labels) == 2:  # GLUE's F1 for MRPC/QQP: of the second label ("1", "positive"...)
            scores["f1_binary"] = M.f1_binary(refs, preds, positive=1)
        return scores

    def tune(self, logits: np.ndarray, examples) -> dict[str, Any]:
        if self.problem != "multi_label" or self.cfg.threshold is not None:
            return {}
        refs = np.array([self.encode_label(ex["label"]) for ex in examples]) > 0.5
        probs = self.probabilities(logits)
        grid = np.round(np.arange(0.05, 0.951, 0.05), 2)
        scores = [M.multilabel_f1(refs, probs >= t)["f1_micro"] for t in grid]
        self.threshold = float(grid[int(np.argmax(scores))])
        return {"threshold": self.threshold}

    @torch.no_grad()
    def calibrate(self, model: torch.nn.Module, logits: np.ndarray, examples) -> dict[str, Any]:
        """Temperature scaling for single-label classifiers: T fitted on the dev logits (NLL), then folded into
        the output layer (weight and bias divided by T), so that the saved model, bertkit and plain
        transformers all give the calibrated probabilities; the predicted class never changes."""
        if self.problem != "single_label" or not examples:
            return {}
        layer = _output_layer(model, len(self.labels))
        if layer is None:
            return {}
        refs = np.array([self.encode_label(ex["label"]) for ex in examples])
        temperature = fit_temperature(logits, refs)
        layer.weight.div_(temperature)
        if layer.bias is not None:
            layer.bias.div_(temperature)
        return {"temperature": temperature, "ece_before": expected_calibration_error(softmax(logits), refs),
                "ece_after": expected_calibration_error(softmax(logits, temperature), refs), "bins": 15}

    @property
    def primary_metric(self) -> str:
        return {"single_label": "accuracy", "multi_label": "f1_micro", "regression": "pearson"}[self.problem]

    # --- persistence ----------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"task": self.name, "problem": self.problem, "labels": self.labels, "pairs": self.pairs,
                "threshold": self.threshold, "class_weights": self.class_weights}

    def load_state(self, state: dict[str, Any]) -> None:
        self.problem = state["problem"]
        self.labels = list(state["labels"])
        self.threshold = float(state.get("threshold", 0.5))
        self.class_weights = state.get("class_weights")
        self.pairs = bool(state.get("pairs", False))
