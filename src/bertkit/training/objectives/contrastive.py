"""The few-shot recipe's contrastive phase (`bertkit.training.few_shot`) as an objective: pairs of training
examples, each member's mean-pooled state, and the squared error of their cosine similarity to the pair's
target (1: they share a label, 0: they do not), as sentence-transformers' CosineSimilarityLoss, which SetFit
uses. The contrastive loss is a few lines over the loop's batches, so it is written here rather than taken
from sentence-transformers, whose own trainer would be a second training loop beside bertkit's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from bertkit.data.batching import length_chunks, pad_batch
from bertkit.errors import ConfigError
from bertkit.models.pooling import below_mean_pooling
from bertkit.tasks.base import takes_token_types
from bertkit.training.objectives.base import Objective

__all__ = ["Contrastive", "CALL_COST_TOKENS"]

#: What one more call of the model costs in the contrastive phase, in padded tokens: a batch's inputs run in
#: sub-batches by length where that saves more than this per sub-batch (`length_chunks`).
CALL_COST_TOKENS = 64


class Contrastive(Objective):
    """The classification task as the loop sees it in the contrastive phase: a batch of B pairs is one
    padded batch of its distinct inputs (at most 2B; `first` and `second` index each pair's members in it);
    the forward pass returns the pooled state of each (the mean of the token states that the mean-pooling
    layer takes); the loss is the squared error between each pair's cosine similarity and its target.

    An input that several pairs of the batch hold is encoded once, and its gradient gathers what each pair
    gives it. On a tiny training set that is most of the batch: 16 examples fill the 32 places of 16 pairs
    with about 14 distinct inputs. The second member of a pair of an example with itself stays an input of
    its own, so dropout still draws the two apart and the pair still teaches something."""

    def lengths(self, features: Sequence[dict[str, Any]]) -> list[int]:
        return [len(f["input_ids"]) + len(f["pair_input_ids"]) for f in features]

    def collate(self, features: Sequence[dict[str, Any]], pad_id: int, pack_length: int | None = None
                ) -> dict[str, torch.Tensor]:
        if pack_length is not None:
            raise ConfigError("train.packing: the few-shot recipe does not pack its pairs; drop train.packing")
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

    def forward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids")
                if k in batch and (k != "token_type_ids" or takes_token_types(model))]
        lengths = batch["attention_mask"].sum(1).tolist()
        # Random pairs mix short inputs with long ones (most of a padded batch would be padding), so the
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
