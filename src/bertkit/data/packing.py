"""Sequence packing: several short inputs share one row, each still seeing only itself.

SST-2 sentences average about 13 tokens; a batch of them padded to its longest member, or worse to 128,
spends much of its compute on padding and on many tiny attention matrices. Packing places the examples of
a batch side by side in rows of `row_length` tokens (first fit, longest first). Every token carries the
number of its example within the row (`segment_ids`, 0 for padding), the model attends only within a
segment (a block-diagonal mask), position ids restart at 0 for each example, and each example's
first token ([CLS]) is where its classification is read (`cls_index`, a flat index into the rows).
The result means the same as unpacked training: the same examples, the same per-example computation, the
same loss; only the layout differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["plan_rows", "pack_batch", "block_diagonal_mask"]


def plan_rows(lengths: Sequence[int], row_length: int) -> list[list[int]]:
    """Group example indices into rows of at most `row_length` tokens (first-fit decreasing); an example
    longer than `row_length` gets a row of its own. Rows keep examples in placement order."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda k: -lengths[k]):
        n = lengths[i]
        for r, free in enumerate(room):
            if n <= free:
                rows[r].append(i)
                room[r] -= n
                break
        else:
            rows.append([i])
            room.append(max(row_length - n, 0))
    return rows


def pack_batch(features: Sequence[dict[str, Any]], pad_id: int, row_length: int,
               extra: dict[str, int] | None = None) -> dict[str, Any]:
    """A packed batch of (R, T) long tensors: `input_ids`, `attention_mask` (1 for real tokens),
    `position_ids`, `segment_ids` and the per-token lists named in `extra`, plus `cls_index` (B,): the flat
    position (row * T + column) of each example's first token, in the order of `features`."""
    import torch

    lengths = [len(f["input_ids"]) for f in features]
    rows = plan_rows(lengths, row_length)
    width = max(sum(lengths[i] for i in row) for row in rows)
    shape = (len(rows), width)
    keys = {"input_ids": pad_id, **(extra or {})}
    batch = {k: torch.full(shape, v, dtype=torch.long) for k, v in keys.items()}
    for k in ("attention_mask", "position_ids", "segment_ids"):
        batch[k] = torch.zeros(shape, dtype=torch.long)
    cls_index = [0] * len(features)
    for r, row in enumerate(rows):
        col = 0
        for seg, i in enumerate(row, start=1):
            n = lengths[i]
            for key in keys:
                batch[key][r, col : col + n] = torch.tensor(features[i][key])
            batch["attention_mask"][r, col : col + n] = 1
            batch["position_ids"][r, col : col + n] = torch.arange(n)
            batch["segment_ids"][r, col : col + n] = seg
            cls_index[i] = r * width + col
            col += n
    batch["cls_index"] = torch.tensor(cls_index, dtype=torch.long)
    return batch


def block_diagonal_mask(segment_ids: Any) -> Any:
    """(R, 1, T, T) boolean attention mask: a token attends to the tokens of its own segment. Padding
    (segment 0) attends to padding only, so no row of the mask is empty (an empty row makes attention NaN)."""
    return (segment_ids[:, None, :, None] == segment_ids[:, None, None, :])
