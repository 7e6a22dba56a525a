"""Multiple choice (SWAG, ARC, CommonsenseQA style): a text and N candidate endings or answers; the model
scores each (text, choice) pair and the highest score wins.

A feature holds one token sequence per choice, so a batch is (batch, choices, tokens): the task says so in
its own hooks (its feature length counts every choice's tokens, its export sample has a choices axis, its
HTTP input is a text with its choices). Every example of a run has the same number of choices, which
training fixes. Labels are the index of the right choice (0-based) or its text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bertkit.config import DataConfig, TaskConfig, option
from bertkit.data.readers import Table
from bertkit.errors import ConfigError, DataError
from bertkit.tasks.base import Task, register_task

__all__ = ["MultipleChoiceTask", "MultipleChoiceConfig"]


@dataclass
class MultipleChoiceConfig(TaskConfig):
    choices_column: str = option("choices", "column holding the choices: a list (JSONL, Parquet) or a string split "
                                 "on choice_delimiter (CSV, TSV)")
    choice_delimiter: str = option("|", "splits a choices string into its choices")

    def __post_init__(self) -> None:
        if not self.choice_delimiter:
            raise ConfigError("task.choice_delimiter may not be empty")


@register_task("multiple_choice")
class MultipleChoiceTask(Task):
    config_class = MultipleChoiceConfig
    auto_model_class = "AutoModelForMultipleChoice"
    pipeline_tag = "multiple-choice"
    intended_use = "Picks the right one of a fixed number of candidate answers or endings to a text."
    example_keys = ("where", "text", "choices", "label")
    primary_metric = "accuracy"
    input_schema = {"type": "object", "required": ["text", "choices"],
                    "properties": {"text": {"type": "string"},
                                   "choices": {"type": "array", "items": {"type": "string"}, "minItems": 2}}}
    input_examples = ({"text": "Which of these is an animal?", "choices": ["a dog", "a chair"]},)

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.n_choices = 0

    # --- reading --------------------------------------------------------------------------------------
    def read_examples(self, table: Table, data_cfg: DataConfig, with_labels: bool = True, tokenizer: Any = None
                      ) -> list[dict[str, Any]]:
        table.require(data_cfg.text_column, "data.text_column")
        table.require(self.cfg.choices_column, "task.choices_column")
        if with_labels:
            table.require(data_cfg.label_column, "data.label_column")
        examples = []
        for i, row in enumerate(table.rows):
            where = table.where(i)
            ex = self._example(row.get(data_cfg.text_column), row.get(self.cfg.choices_column), where)
            if with_labels:
                ex["label"] = self._label(row.get(data_cfg.label_column), ex["choices"], where)
            examples.append(ex)
        return examples

    def _example(self, text: Any, choices: Any, where: str) -> dict[str, Any]:
        if isinstance(choices, str):
            choices = [c.strip() for c in choices.split(self.cfg.choice_delimiter)]
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: empty text; fill it in or remove the row")
        if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c for c in choices):
            raise DataError(f"{where}: the choices must be two or more non-empty texts, got {choices!r:.80}")
        return {"where": where, "text": text, "choices": choices}

    @staticmethod
    def _label(value: Any, choices: list[str], where: str) -> int:
        if isinstance(value, str) and value in choices:
            return choices.index(value)
        if isinstance(value, bool):  # JSON true is no index
            value = repr(value).lower()
        try:
            index = int(value)
        except (TypeError, ValueError):
            index = -1
        if not 0 <= index < len(choices) or (isinstance(value, float) and value != index):
            raise DataError(f"{where}: label {value!r} is neither the index of a choice (0 to {len(choices) - 1}) "
                            "nor the text of one")
        return index

    def make_examples(self, inputs, tokenizer) -> list[dict[str, Any]]:
        examples = []
        for i, item in enumerate(inputs):
            if not isinstance(item, dict):
                raise DataError(f"input {i}: expected {{'text': ..., 'choices': [...]}}")
            examples.append(self._example(item.get("text"), item.get("choices"), f"input {i}"))
        self.check_examples(examples, "inputs")
        return examples

    def fit(self, train: Sequence[dict[str, Any]]) -> None:
        counts = {len(ex["choices"]) for ex in train}
        if len(counts) != 1:
            raise DataError(f"{train[0]['where'].rsplit(':', 1)[0]}: rows have {sorted(counts)} choices; every "
                            "example of a run needs the same number")
        self.n_choices = counts.pop()

    def check_examples(self, examples: Sequence[dict[str, Any]], source: str) -> None:
        for ex in examples:
            if len(ex["choices"]) != self.n_choices:
                raise DataError(f"{ex['where']}: {len(ex['choices'])} choices; this model was trained with "
                                f"{self.n_choices}")

    def stratify_keys(self, examples: Sequence[dict[str, Any]]) -> list[Any]:
        return [ex["label"] for ex in examples]

    # --- features -------------------------------------------------------------------------------------
    def preprocess(self, examples, tokenizer, data_cfg: DataConfig, with_labels: bool = True):
        firsts = [ex["text"] for ex in examples for _ in ex["choices"]]
        seconds = [c for ex in examples for c in ex["choices"]]
        enc = tokenizer(firsts, seconds, truncation="longest_first", max_length=self.max_length(data_cfg))
        features, k = [], 0
        for ex in examples:
            n = len(ex["choices"])
            feature = {key: enc[key][k:k + n] for key in ("input_ids", "token_type_ids") if key in enc}
            if with_labels and "label" in ex:
                feature["labels"] = ex["label"]
            features.append(feature)
            k += n
        return features

    def feature_lengths(self, features: Sequence[dict[str, Any]]) -> Sequence[int]:
        return [sum(len(ids) for ids in f["input_ids"]) for f in features]  # every choice is run

    def collate(self, features: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
        b, c = len(features), len(features[0]["input_ids"])
        longest = max(len(ids) for f in features for ids in f["input_ids"])
        batch = {"input_ids": torch.full((b, c, longest), pad_id, dtype=torch.long),
                 "attention_mask": torch.zeros((b, c, longest), dtype=torch.long)}
        if "token_type_ids" in features[0]:
            batch["token_type_ids"] = torch.zeros((b, c, longest), dtype=torch.long)
        for i, f in enumerate(features):
            for j, ids in enumerate(f["input_ids"]):
                batch["input_ids"][i, j, : len(ids)] = torch.tensor(ids)
                batch["attention_mask"][i, j, : len(ids)] = 1
                if "token_type_ids" in batch:
                    batch["token_type_ids"][i, j, : len(ids)] = torch.tensor(f["token_type_ids"][j])
        if "labels" in features[0]:
            batch["labels"] = torch.tensor([f["labels"] for f in features], dtype=torch.long)
        return batch

    def export_inputs(self, tokenizer: Any) -> tuple[dict[str, torch.Tensor], dict[int, str]]:
        batch = self.collate(self.preprocess([{"text": "a short text", "choices": ["one", "another, longer one"]}] * 2,
                                             tokenizer, DataConfig(), with_labels=False), tokenizer.pad_token_id)
        return batch, {0: "batch", 1: "choices", 2: "sequence"}

    # --- model ----------------------------------------------------------------------------------------
    def model_config(self) -> dict[str, Any]:
        return {}

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(logits, batch["labels"])

    # --- outputs --------------------------------------------------------------------------------------
    def postprocess(self, outputs: np.ndarray, examples) -> list[dict[str, Any]]:
        shifted = np.exp(outputs - outputs.max(axis=1, keepdims=True))
        probs = shifted / shifted.sum(axis=1, keepdims=True)
        return [{"choice": int(p.argmax()), "answer": ex["choices"][int(p.argmax())], "score": float(p.max())}
                for p, ex in zip(probs, examples)]

    def metrics(self, outputs: np.ndarray, examples) -> dict[str, float]:
        refs = np.array([ex["label"] for ex in examples])
        return {"accuracy": float((outputs.argmax(axis=1) == refs).mean()) if len(refs) else 0.0}

    # --- persistence ----------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"task": self.name, "n_choices": self.n_choices}

    def load_state(self, state: dict[str, Any]) -> None:
        self.n_choices = int(state["n_choices"])
