"""Sequence classification: single-label (binary, multi-class), sentence pairs, multi-label, regression.

One plug-in covers the variants because they share data, tokenisation and model head; what differs (how
labels are encoded, the loss, the decision rule, the metrics, tuning, calibration and the report's view)
is one small strategy per variant in `classification_problems`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from bertkit.config import DataConfig, TaskConfig, option
from bertkit.data.batching import pad_batch
from bertkit.data.packing import pack_batch
from bertkit.data.readers import Table
from bertkit.errors import ConfigError, DataError
from bertkit.tasks import long_inputs
from bertkit.tasks.base import Task, register_task
from bertkit.tasks.classification_problems import PROBLEMS, LabelStats, Problem, label_name, look_alike
from bertkit.tasks.first_token import (
    first_token_logits,
    is_bert_classifier,
    packed_logits_through_forward,
    supports_first_token_path,
)

__all__ = ["ClassificationTask", "ClassificationConfig", "output_layer"]

log = logging.getLogger(__name__)


@dataclass
class ClassificationConfig(TaskConfig):
    problem: Literal["auto", "single_label", "multi_label", "regression"] = option(
        "auto", "classification variant; auto: lists -> multi_label, fractional numbers -> regression")
    class_weights: Literal["none", "auto"] = option("none", "'auto' weights classes by inverse frequency")
    threshold: float | None = option(None, "multi-label decision threshold; tuned on dev when unset")
    long_inputs: Literal["windows", "head-tail", "truncate"] = option(
        "windows", "an input longer than the window: windows reads it all in overlapping windows and averages "
        "their logits; head-tail keeps its first quarter-window and its end; truncate keeps its start")
    window_stride: int | None = option(None, "tokens consecutive windows share; default a quarter of the window")

    def __post_init__(self) -> None:
        if self.window_stride is not None and self.window_stride < 0:
            raise ConfigError(f"task.window_stride must be >= 0, got {self.window_stride}")


def output_layer(model: torch.nn.Module, n_labels: int) -> torch.nn.Linear | None:
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


@register_task("classification")
class ClassificationTask(Task):
    config_class = ClassificationConfig
    auto_model_class = "AutoModelForSequenceClassification"
    pipeline_tag = "text-classification"
    intended_use = "Labels a text (or a pair of texts) with the classes it was trained on."
    example_keys = ("where", "text", "text_pair", "label")
    few_shot_problems = ("single_label", "multi_label")
    calibrates = True
    saves_dev_predictions = True
    reads_long_inputs = True
    input_schema = {"anyOf": [
        {"type": "string", "minLength": 1},
        {"type": "object", "required": ["text"],
         "properties": {"text": {"type": "string"}, "text_pair": {"type": "string"}}},
        {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2,
         "description": "text, text_pair"},
    ]}
    input_examples = ("a gripping, funny film", {"text": "The cat sat on the mat."})  # pairs: add "text_pair"

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.problem: str = cfg.problem
        self.labels: list[str] = []
        self.threshold: float = cfg.threshold if cfg.threshold is not None else 0.5
        self.class_weights: list[float] | None = None
        self.pairs = False  # trained on sentence pairs: every input needs a text_pair
        self._weight_cache: dict[torch.device, torch.Tensor] = {}
        self._index: dict[str, int] | None = None

    @property
    def kind(self) -> Problem:
        """The strategy of this task's variant (known once fitted or loaded)."""
        return PROBLEMS[self.problem]

    @property
    def label_index(self) -> dict[str, int]:
        if self._index is None or len(self._index) != len(self.labels):
            self._index = {name: i for i, name in enumerate(self.labels)}
        return self._index

    # --- data -----------------------------------------------------------------------------------------
    def read_examples(self, table: Table, data_cfg: DataConfig, with_labels: bool = True, tokenizer: Any = None
                      ) -> list[dict[str, Any]]:
        wanted = [data_cfg.text_column, data_cfg.text_pair_column]
        if with_labels:
            wanted.append(data_cfg.label_column)
        for column in filter(None, wanted):
            key = {data_cfg.text_column: "data.text_column", data_cfg.label_column: "data.label_column"}.get(
                column, "data.text_pair_column")
            table.require(column, key, _delimiter_hint(table.columns))
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
            return [label_name(v) for v in value]
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
        stats = LabelStats.of(chunks)
        if stats.n == 0:
            raise DataError("no training examples to fit the labels on")
        self.pairs = stats.pairs
        stats.check_kinds()
        if self.problem == "auto":
            self.problem = stats.problem()
        self.labels, self.class_weights = self.kind.fit(stats, self.cfg.class_weights)
        alike = look_alike(self.labels)
        if alike:
            log.warning("%s: labels that look alike are separate classes: %s; if each group is one class, write "
                        "it one way", stats.file, "; ".join(" / ".join(map(repr, g)) for g in alike[:5]))

    def check_examples(self, examples: Sequence[dict[str, Any]], source: str) -> None:
        known, kind = set(self.labels), self.kind
        unseen: dict[str, str] = {}
        for ex in examples:
            kind.check(ex["label"], ex["where"])
            for name in kind.names(ex["label"]):
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
            problem = LabelStats.of([examples]).problem()
        if not PROBLEMS[problem].stratified:
            return [None] * len(examples)
        return [label_name(ex["label"]) for ex in examples]

    def preprocess(self, examples, tokenizer, data_cfg: DataConfig, with_labels: bool = True):
        """Features of a window of `data.max_length` tokens; a longer input as `task.long_inputs` says (every
        window of it carries its label in training)."""
        features = []
        block = 8192  # the tokenizer's per-text records are large: hold those of one block at a time
        for start in range(0, len(examples), block):
            part = examples[start:start + block]
            texts = [ex["text"] for ex in part]
            pairs = [ex["text_pair"] for ex in part] if "text_pair" in part[0] else None
            for feat in long_inputs.encode(tokenizer, texts, pairs, self.max_length(data_cfg),
                                           self.cfg.long_inputs, self.cfg.window_stride):
                ex = part[feat["example_index"]]
                feat["example_index"] += start
                if with_labels:
                    feat["label"] = self.encode_label(ex["label"])
                features.append(feat)
        return features

    def encode_label(self, label: Any) -> Any:
        """A raw label as the model's target: a class index, a 0/1 vector (multi-label) or a float."""
        return self.kind.encode(label, self.label_index)

    def collate(self, features, pad_id: int) -> dict[str, torch.Tensor]:
        batch = pad_batch(features, pad_id, {"token_type_ids": 0} if "token_type_ids" in features[0] else None)
        return self._with_targets(batch, features)

    def collate_packed(self, features, pad_id: int, row_length: int) -> dict[str, torch.Tensor]:
        batch = pack_batch(features, pad_id, row_length,
                           {"token_type_ids": 0} if "token_type_ids" in features[0] else None)
        return self._with_targets(batch, features)

    def _with_targets(self, batch: dict[str, torch.Tensor], features) -> dict[str, torch.Tensor]:
        if "label" in features[0]:
            batch["labels"] = torch.tensor([f["label"] for f in features], dtype=self.kind.target_dtype)
        return batch

    # --- model ----------------------------------------------------------------------------------------
    def check_packing(self, model: torch.nn.Module) -> None:
        if not is_bert_classifier(model):
            raise ConfigError(f"train.packing: packed rows need a BERT-style classifier (pooler on [CLS], absolute "
                              f"positions from 0); {type(model).__name__} is not; drop train.packing")

    def model_note(self, model: torch.nn.Module) -> str | None:
        if supports_first_token_path(model):
            return None
        return (f"the last layer runs for every token: the [CLS]-only path is exact for BERT classifiers only "
                f"(this is {getattr(getattr(model, 'config', None), 'model_type', type(model).__name__)})")

    def forward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if supports_first_token_path(model):  # skips the last layer's work on tokens nobody reads
            return first_token_logits(model, batch)
        if "cls_index" in batch:
            return packed_logits_through_forward(model, batch)
        return super().forward(model, batch)

    @classmethod
    def head_state_from_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        problems = {p.hf_problem_type: name for name, p in PROBLEMS.items()}
        return {**super().head_state_from_config(config),
                "problem": problems.get(config.get("problem_type") or "", "single_label")}

    def model_config(self) -> dict[str, Any]:
        return {
            "num_labels": len(self.labels),
            "id2label": dict(enumerate(self.labels)),
            "label2id": {name: i for i, name in enumerate(self.labels)},
            "problem_type": self.kind.hf_problem_type,
        }

    def _weights(self, device: torch.device) -> torch.Tensor | None:
        if self.class_weights is None:
            return None
        if device not in self._weight_cache:
            self._weight_cache[device] = torch.tensor(self.class_weights, dtype=torch.float, device=device)
        return self._weight_cache[device]

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.kind.loss(logits, batch["labels"], self._weights(logits.device))

    def logit_kind(self) -> str | None:
        return self.kind.logit_kind

    # --- outputs --------------------------------------------------------------------------------------
    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Class probabilities of (N, L) logits: softmax, or a sigmoid per label for multi-label."""
        return self.kind.probabilities(logits)

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
            for key in ("text", "text_pair"):
                if key in ex and not isinstance(ex[key], str):
                    raise DataError(f"input {i}: {key} must be a string, got {type(ex[key]).__name__}")
                if key in ex and not ex[key].strip():
                    raise DataError(f"input {i}: empty {key}")
            if self.pairs and "text_pair" not in ex:
                raise DataError(f"input {i}: this model classifies sentence pairs; give a text_pair")
            if not self.pairs and "text_pair" in ex:
                raise DataError(f"input {i}: this model classifies single texts, not pairs; drop the text_pair")
            ex["where"] = f"input {i}"
            examples.append(ex)
        return examples

    def served_input_schema(self) -> dict[str, Any]:
        """Exactly what `make_examples` takes once fitted: non-blank texts, and a text_pair if and only if the
        model was trained on pairs."""
        text = {"type": "string", "pattern": r"\S", "description": "not blank"}
        if self.pairs:
            return {"anyOf": [
                {"type": "object", "required": ["text", "text_pair"],
                 "properties": {"text": text, "text_pair": text}},
                {"type": "array", "items": text, "minItems": 2, "maxItems": 2, "description": "text, text_pair"}]}
        return {"anyOf": [text, {"type": "object", "required": ["text"], "properties": {"text": text},
                                 "not": {"required": ["text_pair"]}}]}

    def combine(self, outputs, features, n_examples: int) -> np.ndarray:
        """One row of logits per example: the mean over its windows."""
        return long_inputs.combine_windows(outputs, features, n_examples)

    def input_notes(self, features, n_examples: int) -> list[dict[str, Any]]:
        return long_inputs.notes(features, n_examples)

    def postprocess(self, logits: np.ndarray, examples=None) -> list[dict[str, Any]]:
        return self.kind.postprocess(self, logits)

    def metrics(self, logits: np.ndarray, examples) -> dict[str, float]:
        return self.kind.metrics(self, logits, list(examples))

    def tune(self, logits: np.ndarray, examples) -> dict[str, Any]:
        return self.kind.tune(self, logits, list(examples))

    def calibrate(self, model: torch.nn.Module, logits: np.ndarray, examples) -> dict[str, Any]:
        return self.kind.calibrate(self, output_layer(model, len(self.labels)), logits, list(examples))

    @property
    def primary_metric(self) -> str:
        return self.kind.primary_metric

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
