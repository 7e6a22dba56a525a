"""Seeded train/dev splits."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Hashable, Sequence

__all__ = ["stratified_split"]


def stratified_split(
    keys: Sequence[Hashable | None], fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Split indices into (train, dev), keeping each key's share the same in both parts.

    A key of None means "no stratum" (regression, multi-label): those rows are split at random.
    Every stratum with at least two rows gives at least one row to each side. Deterministic for a seed.
    """
    rng = random.Random(seed)
    groups: dict[Hashable, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        groups[key].append(i)
    train, dev = [], []
    for key in sorted(groups, key=repr):
        idx = groups[key]
        rng.shuffle(idx)
        n_dev = round(len(idx) * fraction)
        if len(idx) >= 2:
            n_dev = min(max(n_dev, 1), len(idx) - 1)
        dev.extend(idx[:n_dev])
        train.extend(idx[n_dev:])
    return sorted(train), sorted(dev)
