import itertools
import random

import pytest

from bertkit.data.batching import epoch_batches, eval_batches, length_chunks
from bertkit.data.splits import stratified_split


def _lengths(n=1000, seed=0):
    rng = random.Random(seed)
    return [rng.randint(3, 60) for _ in range(n)]


def test_epoch_batches_cover_every_example_once_and_are_reproducible():
    lengths = _lengths()
    a = epoch_batches(lengths, 32, seed=1, epoch=0)
    assert sorted(i for b in a for i in b) == list(range(len(lengths)))
    assert a == epoch_batches(lengths, 32, seed=1, epoch=0)
    assert a != epoch_batches(lengths, 32, seed=1, epoch=1)


def test_length_grouping_cuts_padding():
    lengths = _lengths()

    def padded(batches):
        return sum(max(lengths[i] for i in b) * len(b) for b in batches)

    grouped = padded(epoch_batches(lengths, 32, seed=1, epoch=0, group_by_length=True))
    plain = padded(epoch_batches(lengths, 32, seed=1, epoch=0, group_by_length=False))
    assert grouped < 0.8 * plain


def test_shards_are_disjoint_and_equal_in_steps():
    lengths = _lengths(1001)
    shards = [epoch_batches(lengths, 8, seed=3, epoch=0, num_shards=3, shard=s) for s in range(3)]
    assert len({len(s) for s in shards}) == 1
    seen = [i for s in shards for b in s for i in b]
    assert len(seen) == len(set(seen))


def test_eval_batches_keep_all_indices_within_token_budget():
    lengths = _lengths(500)
    batches = eval_batches(lengths, 64, max_tokens=1000)
    assert sorted(i for b in batches for i in b) == list(range(500))
    assert all(max(lengths[i] for i in b) * len(b) <= 1000 or len(b) == 1 for b in batches)


def test_stratified_split_keeps_proportions_and_is_seeded():
    keys = ["a"] * 900 + ["b"] * 100 + ["c"] * 2
    train, dev = stratified_split(keys, 0.1, seed=5)
    assert sorted(train + dev) == list(range(len(keys)))
    dev_keys = [keys[i] for i in dev]
    assert dev_keys.count("a") == 90 and dev_keys.count("b") == 10 and dev_keys.count("c") == 1
    assert (train, dev) == stratified_split(keys, 0.1, seed=5)
    assert dev != stratified_split(keys, 0.1, seed=6)[1]


def _chunks_cost(lengths, chunks, call_cost):
    return sum(len(c) * max(lengths[i] for i in c) + call_cost for c in chunks)


@pytest.mark.parametrize("call_cost", [0, 16, 64, 1000])
def test_length_chunks_are_the_cheapest_cut_of_the_sorted_rows(call_cost):
    """Against every way of cutting the length-sorted rows into consecutive sub-batches (brute force)."""
    rng = random.Random(call_cost)
    for _ in range(30):
        lengths = [rng.choice([3, 5, 8, 12, 30, 61]) for _ in range(rng.randint(1, 10))]
        chunks = length_chunks(lengths, call_cost)
        assert sorted(i for c in chunks for i in c) == list(range(len(lengths)))  # every row once
        assert all(max(lengths[i] for i in a) <= min(lengths[i] for i in b) for a, b in zip(chunks, chunks[1:]))
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        best = min(_chunks_cost(lengths, [order[a:b] for a, b in zip((0, *cuts), (*cuts, len(order)))], call_cost)
                   for k in range(len(order)) for cuts in itertools.combinations(range(1, len(order)), k))
        assert _chunks_cost(lengths, chunks, call_cost) == best


def test_length_chunks_keep_alike_rows_together_and_split_mixed_ones():
    assert length_chunks([20] * 32, 64) == [list(range(32))]
    chunks = length_chunks([4] * 16 + [60] * 16, 64)  # one call: 32 x 60 = 1,920; two: 16 x 4 + 16 x 60 + 64
    assert [sorted(c) for c in chunks] == [list(range(16)), list(range(16, 32))]
