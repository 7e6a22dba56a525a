import json

import pytest

from bertkit.api import train
from bertkit.data.cache import cache_root, cached_features, fingerprint
from conftest import tiny_config, write_toy_sentiment


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BERTKIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "features"


def test_second_call_reads_the_cache_and_a_new_key_computes(cache):
    calls = []

    def compute(value):
        calls.append(value)
        return [{"input_ids": [1, 2, value], "label": 0}]

    first = cached_features({"k": 1}, lambda: compute(3))
    again = cached_features({"k": 1}, lambda: compute(99))
    other = cached_features({"k": 2}, lambda: compute(4))
    assert first == again == [{"input_ids": [1, 2, 3], "label": 0}] and other[0]["input_ids"][-1] == 4
    assert calls == [3, 4] and len(list(cache.glob("*.json"))) == 2


def test_broken_entries_are_recomputed_and_non_json_features_not_stored(cache):
    cached_features({"k": 1}, lambda: [{"a": [1]}])
    entry = next(cache.glob("*.json"))
    entry.write_text("{not json")
    assert cached_features({"k": 1}, lambda: [{"a": [2]}]) == [{"a": [2]}]
    assert json.loads(entry.read_text()) == [{"a": [2]}]
    cached_features({"k": 3}, lambda: [{"offsets": (0, 1)}])  # a tuple would come back as a list
    assert len(list(cache.glob("*.json"))) == 1


def test_cache_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("BERTKIT_CACHE", "off")
    assert cache_root() is None
    assert cached_features({"k": 1}, lambda: [{"a": 1}]) == [{"a": 1}]


def test_fingerprint_sees_every_part():
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2}) != fingerprint({"a": 1}, "x")


def test_training_runs_share_tokenised_features(cache, tmp_path, tiny_model_dir):
    train_file, dev_file = write_toy_sentiment(tmp_path)
    a = train(tiny_config(tiny_model_dir, train_file, dev_file, tmp_path / "a", **{"train.max_steps": 5}),
              progress=False)
    entries = sorted(p.name for p in cache.glob("*.json"))
    assert len(entries) == 2  # train and dev
    b = train(tiny_config(tiny_model_dir, train_file, dev_file, tmp_path / "b", **{"train.max_steps": 5}),
              progress=False)
    assert sorted(p.name for p in cache.glob("*.json")) == entries and a.metrics == b.metrics
    train(tiny_config(tiny_model_dir, train_file, dev_file, tmp_path / "c", **{"train.max_steps": 5,
                                                                               "data.max_length": 9}), progress=False)
    assert len(list(cache.glob("*.json"))) == 4  # another max length: other features
