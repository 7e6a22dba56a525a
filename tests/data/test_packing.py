import random

import pytest
import torch

from bertkit.data.batching import epoch_batches
from bertkit.data.packing import block_diagonal_mask, pack_batch, plan_rows


def _features(lengths):
    return [{"input_ids": [100 + i] * n, "token_type_ids": [0] * n} for i, n in enumerate(lengths)]


def test_rows_hold_every_example_once_within_the_row_length():
    rng = random.Random(0)
    lengths = [rng.randint(3, 40) for _ in range(200)]
    rows = plan_rows(lengths, 64)
    assert sorted(i for row in rows for i in row) == list(range(200))
    assert all(sum(lengths[i] for i in row) <= 64 for row in rows)
    assert len(rows) <= 1.15 * sum(lengths) / 64 + 1  # first fit decreasing packs tightly


def test_an_input_longer_than_a_row_gets_a_row_of_its_own():
    assert plan_rows([100, 10, 10], 64) == [[0], [1, 2]]


def test_packed_batch_layout():
    feats = _features([5, 3, 4])
    batch = pack_batch(feats, 0, 8, {"token_type_ids": 0})
    width = batch["input_ids"].shape[1]
    assert batch["input_ids"].shape[0] == 2 and width == 8  # rows [5, 3] and [4]: longest first, first fit
    for i, f in enumerate(feats):
        start = int(batch["cls_index"][i])
        row, col = divmod(start, width)
        n = len(f["input_ids"])
        assert batch["input_ids"][row, col : col + n].tolist() == f["input_ids"]
        assert batch["position_ids"][row, col : col + n].tolist() == list(range(n))
        assert len(set(batch["segment_ids"][row, col : col + n].tolist())) == 1
    assert int(batch["attention_mask"].sum()) == 12
    assert batch["segment_ids"][1, 4:].tolist() == [0, 0, 0, 0]  # padding


def test_block_diagonal_mask_keeps_examples_apart_and_no_row_empty():
    seg = torch.tensor([[1, 1, 2, 2, 2, 0]])
    mask = block_diagonal_mask(seg)[0, 0]
    assert mask[0].tolist() == [True, True, False, False, False, False]
    assert mask[3].tolist() == [False, False, True, True, True, False]
    assert mask.any(-1).all()


@pytest.mark.parametrize("packed", [False, True])
def test_token_budget_batches_stay_within_budget(packed):
    rng = random.Random(1)
    lengths = [rng.randint(3, 60) for _ in range(500)]
    batches = epoch_batches(lengths, 32, seed=1, epoch=0, max_tokens=600, packed=packed)
    assert sorted(i for b in batches for i in b) == list(range(500))
    for b in batches:
        cost = sum(lengths[i] for i in b) if packed else max(lengths[i] for i in b) * len(b)
        assert cost <= 600 or len(b) == 1
    sizes = {len(b) for b in batches}
    assert len(sizes) > 3  # short inputs make bigger batches


def test_token_budget_shards_take_equal_steps_and_disjoint_examples():
    lengths = [random.Random(2).randint(3, 60) for _ in range(300)]
    shards = [epoch_batches(lengths, 16, seed=3, epoch=0, max_tokens=400, num_shards=2, shard=s) for s in (0, 1)]
    assert len(shards[0]) == len(shards[1])
    for a, b in zip(*shards):
        assert len(a) == len(b) and not set(a) & set(b)
