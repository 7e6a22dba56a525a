"""Reranking (a cross-encoder): the encoder reads a query and a passage together and gives one relevance score;
slower than comparing two vectors, so it reorders the top few candidates of a first search (BM25 or an
embedding model), where reading both texts at once is worth its cost.

Training data are the embedding task's pairs (`query`/`anchor`, `passage`/`positive`) with negatives: a
`negative` column holding one text or a list (JSONL, Parquet), as `bertkit mine` writes them. Each query forms a
group of `group_size` candidates, its positive and negatives (filled with other rows' positives where it has
too few), and the loss is cross-entropy over the group's scores (listwise, the positive the target). On dev,
each group is ranked: Recall@1 and MRR@10 of the positive among its candidates.

The model is a plain `AutoModelForSequenceClassification` with one output, so sentence-transformers'
`CrossEncoder` loads the run's model folder as it is (its default activation, the sigmoid, gives the same
scores as `predict`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bertkit.config import DataConfig, TaskConfig, option
from bertkit.data.readers import Table
from bertkit.errors import ConfigError, DataError
from bertkit.tasks.base import Task, register_task, takes_token_types
from bertkit.tasks.embedding import ANCHOR_NAMES, NEGATIVE_NAMES, POSITIVE_NAMES, pick_column

__all__ = ["RerankTask", "RerankConfig"]


@dataclass
class RerankConfig(TaskConfig):
    anchor_column: str | None = option(None, "column of the query texts (default: the first of "
                                       + "/".join(ANCHOR_NAMES) + " the file has)")
    positive_column: str | None = option(None, "column of the texts that match the query (default: the first of "
                                         + "/".join(POSITIVE_NAMES) + ")")
    negative_column: str | None = option(None, "column of texts that do not match (one text, or a list in JSONL "
                                         "and Parquet; default: negative or hard_negative when the file has one)")
    group_size: int = option(4, "rerank: candidates scored together per query in training and on dev (its "
                             "positive and group_size - 1 negatives)")

    def __post_init__(self) -> None:
        if self.group_size < 2:
            raise ConfigError(f"task.group_size must be at least 2 (a positive and a negative), got {self.group_size}")


@register_task("rerank")
class RerankTask(Task):
    config_class = RerankConfig
    auto_model_class = "AutoModelForSequenceClassification"
    pipeline_tag = "text-ranking"
    intended_use = "Scores how well a passage answers a query, to reorder the top candidates of a first search."
    example_keys = ("where", "query", "positive", "negatives")
    primary_metric = "mrr@10"
    default_max_length = 256
    input_schema = {"type": "object", "required": ["query", "passage"],
                    "properties": {"query": {"type": "string", "minLength": 1},
                                   "passage": {"type": "string", "minLength": 1}}}
    input_examples = ({"query": "how do I reset my password?", "passage": "Open Settings, then Account."},)
    train_defaults = {"batch_size": 8, "epochs": 1.0}
    train_defaults_reason = "groups of candidates per query: 8 queries a batch, one pass"

    # --- reading --------------------------------------------------------------------------------------
    def read_examples(self, table: Table, data_cfg: DataConfig, with_labels: bool = True, tokenizer: Any = None
                      ) -> list[dict[str, Any]]:
        c = self.cfg
        query = pick_column(table, c.anchor_column, ANCHOR_NAMES, "task.anchor_column")
        positive = pick_column(table, c.positive_column, POSITIVE_NAMES, "task.positive_column")
        negative = pick_column(table, c.negative_column, NEGATIVE_NAMES, "task.negative_column", required=False)
        examples = []
        for i, row in enumerate(table.rows):
            where = table.where(i)
            ex = {"where": where, "query": _text(row.get(query), where, query),
                  "positive": _text(row.get(positive), where, positive), "negatives": []}
            value = row.get(negative) if negative and with_labels else None
            if not with_labels:  # prediction: each row is one (query, passage) pair to score
                ex["single"] = True
            elif isinstance(value, list):
                ex["negatives"] = [_text(v, where, negative) for v in value]
            elif value not in (None, ""):
                ex["negatives"] = [_text(value, where, negative)]
            examples.append(ex)
        return examples

    def make_examples(self, inputs: Sequence[Any], tokenizer: Any) -> list[dict[str, Any]]:
        examples = []
        for i, item in enumerate(inputs):
            if not isinstance(item, dict) or not all(isinstance(item.get(k), str) and item.get(k)
                                                     for k in ("query", "passage")):
                raise DataError(f"input {i}: expected {{'query': text, 'passage': text}}")
            examples.append({"where": f"input {i}", "query": item["query"], "positive": item["passage"],
                             "negatives": [], "single": True})
        return examples

    def fit(self, train: Sequence[dict[str, Any]]) -> None:
        if len({ex["positive"] for ex in train}) < 2:
            raise DataError(f"{train[0]['where'].rsplit(':', 1)[0] if train else 'training data'}: reranking needs "
                            "at least two different passages")

    def check_examples(self, examples: Sequence[dict[str, Any]], source: str) -> None:
        return None

    # --- features -------------------------------------------------------------------------------------
    def groups(self, examples: Sequence[dict[str, Any]]) -> list[list[str]]:
        """Each example's candidates, its positive first: its negatives, then (where it has fewer than
        group_size - 1) positives of other rows, drawn with a seed of the row's place so they never change."""
        if examples and examples[0].get("single"):
            return [[ex["positive"]] for ex in examples]
        pool = sorted({ex["positive"] for ex in examples})
        out = []
        for i, ex in enumerate(examples):
            negatives = [n for n in dict.fromkeys(ex["negatives"]) if n != ex["positive"]][: self.cfg.group_size - 1]
            rng = random.Random(i)
            while len(negatives) < self.cfg.group_size - 1 and len(pool) > len(negatives) + 1:
                drawn = pool[rng.randrange(len(pool))]
                if drawn != ex["positive"] and drawn not in negatives:
                    negatives.append(drawn)
            out.append([ex["positive"], *negatives])
        return out

    def preprocess(self, examples, tokenizer, data_cfg: DataConfig, with_labels: bool = True):
        groups = self.groups(examples)
        firsts = [ex["query"] for ex, group in zip(examples, groups) for _ in group]
        seconds = [p for group in groups for p in group]
        enc = tokenizer(firsts, seconds, truncation="only_second", max_length=self.max_length(data_cfg))
        features, k = [], 0
        for group in groups:
            n = len(group)
            feature = {key: enc[key][k:k + n] for key in ("input_ids", "token_type_ids") if key in enc}
            feature["labels"] = 0  # the positive comes first
            features.append(feature)
            k += n
        if len({len(f["input_ids"]) for f in features}) > 1:
            raise DataError("the training file holds too few different passages to give every query "
                            f"{self.cfg.group_size} candidates; lower task.group_size or add negatives")
        return features

    def feature_lengths(self, features: Sequence[dict[str, Any]]) -> Sequence[int]:
        return [sum(len(ids) for ids in f["input_ids"]) for f in features]

    def collate(self, features: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
        from bertkit.tasks.multiple_choice import MultipleChoiceTask

        return MultipleChoiceTask.collate(self, features, pad_id)  # the same (batch, candidates, tokens) layout

    def export_inputs(self, tokenizer: Any) -> tuple[dict[str, torch.Tensor], dict[int, str]]:
        sample = tokenizer(["a query", "another, longer query"], ["a passage", "and a second passage to pad"],
                           padding=True, return_tensors="pt")
        return {k: sample[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in sample}, \
            {0: "batch", 1: "sequence"}

    # --- model ----------------------------------------------------------------------------------------
    def model_config(self) -> dict[str, Any]:
        return {"num_labels": 1, "id2label": {0: "relevance"}, "label2id": {"relevance": 0}}

    def forward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, candidates) scores; an ONNX export's graph takes one candidate per row."""
        ids = batch["input_ids"]
        if ids.dim() == 2:
            inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
            if not takes_token_types(model):
                inputs.pop("token_type_ids", None)
            return model(**inputs).logits
        b, c, n = ids.shape
        inputs = {k: batch[k].view(b * c, n) for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
        if not takes_token_types(model):
            inputs.pop("token_type_ids", None)
        return model(**inputs).logits.view(b, c)

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(logits, batch["labels"])

    @classmethod
    def head_state_from_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        return {"task": cls.name}

    # --- outputs --------------------------------------------------------------------------------------
    def postprocess(self, outputs: np.ndarray, examples) -> list[dict[str, Any]]:
        return [{"score": float(1 / (1 + np.exp(-row[0]))), "logit": float(row[0])} for row in outputs]

    def metrics(self, outputs: np.ndarray, examples) -> dict[str, float]:
        if not len(outputs):
            return {}
        ranks = (outputs[:, 1:] >= outputs[:, :1]).sum(axis=1) + 1  # ties count against the positive
        return {"recall@1": float((ranks == 1).mean()), "mrr@10": float(np.where(ranks <= 10, 1.0 / ranks, 0.0).mean())}

    # --- persistence ----------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"task": self.name, "problem": "pairs"}

    def load_state(self, state: dict[str, Any]) -> None:
        return None


def _text(value: Any, where: str, column: str | None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: column '{column}' is empty or not a text; fill it in or remove the row")
    return value
