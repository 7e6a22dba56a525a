"""Batch construction: length-grouped, seeded, resumable and shard-aware.

Short inputs padded to a long one waste compute, so batches are drawn from "mega-batches" of similar
length, as the Hugging Face `group_by_length` sampler does, while the order stays random across batches.
The order is a pure function of (seed, epoch), so a resumed run sees exactly the batches it would have.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

__all__ = ["epoch_batches", "eval_batches", "length_chunks", "pad_batch"]


def epoch_batches(
    lengths: Sequence[int],
    batch_size: int,
    *,
    seed: int,
    epoch: int,
    group_by_length: bool = True,
    mega_factor: int = 50,
    num_shards: int = 1,
    shard: int = 0,
    max_tokens: int | None = None,
    packed: bool = False,
) -> list[list[int]]:
    """The batches (lists of example indices) of one training epoch, for one shard.

    With `max_tokens` (token-budget batching) a batch holds as many examples as fit the budget: padded
    tokens (longest x count), or real tokens when the batch will be `packed`; `batch_size` then only sizes
    the length groups. With several shards (data-parallel ranks), each global batch is cut into equal
    slices so that every rank takes the same number of steps; the short tail batch is dropped only when
    there are several shards.
    """
    rng = random.Random(f"{seed}-{epoch}")
    order = list(range(len(lengths)))
    rng.shuffle(order)
    global_size = batch_size * num_shards
    if group_by_length:
        mega = global_size * mega_factor
        grouped: list[int] = []
        for start in range(0, len(order), mega):
            chunk = order[start : start + mega]
            grouped.extend(sorted(chunk, key=lambda i: -lengths[i]))
        order = grouped
    if max_tokens is None:
        batches = [order[i : i + global_size] for i in range(0, len(order), global_size)]
        if num_shards > 1 and batches and len(batches[-1]) < global_size:
            batches.pop()
    else:
        batches = _token_batches(order, lengths, max_tokens * num_shards, packed, num_shards)
    if group_by_length and len(batches) > 1:
        # Shuffle batch order so that the longest batches do not all come first.
        rng.shuffle(batches)
    if max_tokens is not None:
        return [b[shard * (len(b) // num_shards) : (shard + 1) * (len(b) // num_shards)] for b in batches]
    return [b[shard * batch_size : (shard + 1) * batch_size] for b in batches]


def _token_batches(order: Sequence[int], lengths: Sequence[int], budget: int, packed: bool,
                   num_shards: int) -> list[list[int]]:
    """Cut `order` into batches whose cost (real tokens when packed, else longest x count) stays within
    `budget`; with shards, each batch holds a multiple of `num_shards` examples (the tail is dropped)."""
    batches, current, longest, total = [], [], 0, 0
    for i in order:
        longest_if, total_if = max(longest, lengths[i]), total + lengths[i]
        cost = total_if if packed else longest_if * (len(current) + 1)
        if current and cost > budget and len(current) >= num_shards:
            batches.append(current)
            current, longest_if, total_if = [], lengths[i], lengths[i]
        current.append(i)
        longest, total = longest_if, total_if
    if current:
        batches.append(current)
    if num_shards > 1:
        batches = [b[: len(b) - len(b) % num_shards] for b in batches]
        batches = [b for b in batches if b]
    return batches


def eval_batches(lengths: Sequence[int], batch_size: int, max_tokens: int | None = None) -> list[list[int]]:
    """Batches for inference: sorted by length (least padding), each a list of original indices."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches, current, longest = [], [], 0
    for i in order:
        longest_if_added = max(longest, lengths[i])
        too_many_tokens = max_tokens is not None and longest_if_added * (len(current) + 1) > max_tokens
        if current and (len(current) >= batch_size or too_many_tokens):
            batches.append(current)
            current, longest_if_added = [], lengths[i]
        current.append(i)
        longest = longest_if_added
    if current:
        batches.append(current)
    return batches


def length_chunks(lengths: Sequence[int], call_cost: int) -> list[list[int]]:
    """The rows of one padded batch cut into sub-batches of similar length, for a batch that must keep its
    members (random pairs) but need not run them in one call: the rows sorted by length, then cut where the
    padded tokens (rows x longest, per sub-batch) plus `call_cost` tokens for each further call are fewest
    (exact, by dynamic programming over the cut points). Returns each sub-batch's row indices, shortest
    first; one sub-batch when the lengths are alike."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    best, cut = [0] + [float("inf")] * len(order), [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        longest = lengths[order[end - 1]]
        for start in range(end):
            cost = best[start] + (end - start) * longest + call_cost
            if cost < best[end]:
                best[end], cut[end] = cost, start
    chunks, end = [], len(order)
    while end:
        chunks.append(order[cut[end]:end])
        end = cut[end]
    return chunks[::-1]


def pad_batch(features: Sequence[dict], pad_id: int, extra: dict[str, int] | None = None) -> dict:
    """Pad `input_ids` (with `pad_id`) and the per-token lists named in `extra` (with their pad values) to
    the longest feature; adds the attention mask. Returns (B, T) long tensors."""
    import torch

    longest = max(len(f["input_ids"]) for f in features)
    keys = {"input_ids": pad_id, **(extra or {})}
    batch = {k: torch.full((len(features), longest), v, dtype=torch.long) for k, v in keys.items()}
    batch["attention_mask"] = torch.zeros((len(features), longest), dtype=torch.long)
    for row, f in enumerate(features):
        n = len(f["input_ids"])
        for key in keys:
            batch[key][row, :n] = torch.tensor(f[key])
        batch["attention_mask"][row, :n] = 1
    return batch
