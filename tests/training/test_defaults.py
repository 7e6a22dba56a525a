"""The defaults a run takes from its data and its model, through the one function that decides them
(`bertkit.training.defaults.resolve`): batch size and epochs by the training set's size, the learning rate
by the encoder's width, frozen word embeddings, the input length, the few-shot recipe and its settings, and
the dev hold-out. The given config is never changed, and values given always win."""

from __future__ import annotations

import copy

import pytest

from bertkit.config import RunConfig
from bertkit.errors import ConfigError
from bertkit.training.defaults import (
    FEW_SHOT_NO_DEV_BELOW,
    NO_DEV_BELOW,
    DataStats,
    ModelInfo,
    holdout_below,
    resolve,
)

BERT = ModelInfo(name="bert", hidden_size=32, max_positions=512)


def _resolve(settings: dict, data: DataStats, model: ModelInfo = BERT) -> tuple[RunConfig, list[str]]:
    config = RunConfig().with_overrides({"train.method": "standard", **settings})
    before = copy.deepcopy(config)
    resolved, reasons = resolve(config, data, model)
    assert config == before  # pure: the given config is left as it was
    return resolved, reasons


@pytest.mark.parametrize("n,given,expected", [
    (48, {}, (8, 20.0)),           # 6 batches an epoch: 20 epochs reach 120 steps
    (16, {}, (8, 40.0)),           # 2 an epoch: capped at 40 epochs
    (300, {}, (8, 4.0)),           # 38 an epoch: 4 epochs
    (2700, {}, (8, 3.0)),          # 3 epochs of 32 would give 255 steps: of 8, 1,014
    (6000, {}, (8, 3.0)),          # 188 batches of 32 an epoch: 564 steps in 3 epochs
    (6400, {}, (32, 3.0)),         # 200: 600 steps
    (60000, {}, (32, 3.0)),        # large: the usual 3 epochs of 32
    (48, {"batch_size": 4, "epochs": 1.0}, (4, 1.0)),  # given values win
    (48, {"max_steps": 10}, (8, 3.0)),  # a step budget leaves the epochs alone
    (12000, {"grad_accum": 2}, (8, 3.0)),  # accumulation counts: 3 epochs of 2 x 32 give 564 steps
])
def test_batch_size_and_epochs_follow_the_training_set_size(n, given, expected):
    resolved, reasons = _resolve({f"train.{k}": v for k, v in given.items()}, DataStats(train=n))
    assert (resolved.train.batch_size, resolved.train.epochs) == expected
    if not given:
        assert f"defaults for {n} training examples" in reasons[-1]


def test_processes_share_the_batches():
    """Two data-parallel processes each take a batch: 6,400 examples give 300 steps of 32 in 3 epochs."""
    alone, _ = _resolve({}, DataStats(train=6400))
    shared, _ = _resolve({}, DataStats(train=6400), ModelInfo(hidden_size=32, processes=2))
    assert (alone.train.batch_size, shared.train.batch_size) == (32, 8)


@pytest.mark.parametrize("hidden,given,expected", [
    (384, None, 1e-4),     # the embedded MiniLM-L6
    (512, None, 1e-4),     # the widest small encoder
    (513, None, 5e-5),
    (768, None, 5e-5),     # BERT-base, RoBERTa-base
    (1023, None, 5e-5),
    (1024, None, 2e-5),    # the large models
    (None, None, 5e-5),    # unknown width: the base-size rate
    (384, 3e-5, 3e-5),     # a given rate wins
])
def test_the_default_learning_rate_follows_the_encoder_width(hidden, given, expected):
    resolved, _ = _resolve({"train.lr": given}, DataStats(train=5000), ModelInfo(hidden_size=hidden))
    assert resolved.train.lr == expected


@pytest.mark.parametrize("settings,expected", [
    ({}, True),                                              # a standard fine-tune
    ({"train.method": "few-shot"}, False),
    ({"model.init": "random"}, False),
    ({"model.extend_vocab": True}, False),                   # new rows must learn
    ({"model.lora_r": 4}, False),                            # LoRA freezes the encoder its own way
    ({"train.unfreeze_every": 10}, False),                   # gradual unfreezing thaws them last
    ({"train.freeze_embeddings": False}, False),             # a given value wins
])
def test_word_embeddings_stay_fixed_by_default_only_where_they_need_not_learn(settings, expected):
    data = DataStats(train=40, problem="single_label", labels=2, few_shot=True)
    resolved, _ = _resolve(settings, data)
    assert resolved.train.freeze_embeddings is expected
    # A run started from one that extended the vocabulary: its new rows had only pre-training.
    started_from_extended, _ = _resolve(settings, data, ModelInfo(hidden_size=32, parent_extended_vocab=True))
    assert started_from_extended.train.freeze_embeddings is (expected and "train.freeze_embeddings" in settings)


def test_a_task_that_tunes_the_embeddings_trains_them_unless_told():
    """Masked-LM pre-training: the embeddings are what it tunes (`Task.tunes_embeddings`)."""
    mlm = DataStats(train=400, task="mlm", tunes_embeddings=True)
    assert _resolve({"task.name": "mlm"}, mlm)[0].train.freeze_embeddings is False
    assert _resolve({"task.name": "mlm", "train.freeze_embeddings": True}, mlm)[0].train.freeze_embeddings is True


def test_the_stats_of_a_fitted_task_carry_its_capabilities():
    from bertkit.config import TaskConfig, task_config
    from bertkit.tasks import get_task

    single = get_task(TaskConfig())
    single.fit([{"text": "x", "label": y, "where": str(i)} for i, y in enumerate("ab" * 5)])
    regression = get_task(TaskConfig())
    regression.fit([{"text": "x", "label": y, "where": str(i)} for i, y in enumerate(["0.5", "1.25", "2.0"])])
    assert DataStats.of(single, 10) == DataStats(train=10, problem="single_label", labels=2, few_shot=True)
    assert DataStats.of(regression, 3).few_shot is False
    mlm = DataStats.of(get_task(task_config("mlm")), 5)
    assert (mlm.task, mlm.tunes_embeddings, mlm.few_shot, mlm.default_max_length) == ("mlm", True, False, 128)


def test_inputs_are_cut_at_the_models_positions_and_a_longer_given_length_is_refused():
    short = ModelInfo(name="tiny", hidden_size=32, max_positions=64)
    resolved, reasons = _resolve({}, DataStats(train=100, default_max_length=128), short)
    assert resolved.data.max_length == 64 and "inputs cut at 64 tokens" in reasons[0]
    kept, reasons = _resolve({}, DataStats(train=100, default_max_length=128), BERT)
    assert kept.data.max_length is None and not any("inputs cut" in r for r in reasons)
    with pytest.raises(ConfigError, match="data.max_length 100 is more than the 64 positions of the model tiny"):
        _resolve({"data.max_length": 100}, DataStats(train=100), short)


def test_the_method_follows_the_task_the_data_and_the_model():
    single = DataStats(train=40, problem="single_label", labels=2, few_shot=True)
    resolved, reasons = _resolve({"train.method": "auto"}, single)
    assert resolved.train.method == "few-shot"
    assert "few-shot recipe" in reasons[0] and "train.method standard" in reasons[0]
    # 150 per class: enough for the standard way
    enough = DataStats(train=300, problem="single_label", labels=2, few_shot=True)
    assert _resolve({"train.method": "auto"}, enough)[0].train.method == "standard"
    deberta = ModelInfo(hidden_size=32, pooling_unsupported="its architecture (deberta-v2) is not one of bert")
    resolved, reasons = _resolve({"train.method": "auto"}, single, deberta)
    assert resolved.train.method == "standard" and "the model cannot take it" in reasons[0]
    regression = DataStats(train=40, problem="regression")
    assert _resolve({"train.method": "auto"}, regression)[0].train.method == "standard"
    with pytest.raises(ConfigError, match="not regression"):
        _resolve({"train.method": "few-shot"}, regression)
    with pytest.raises(ConfigError, match="train.packing is set"):
        _resolve({"train.method": "few-shot", "train.packing": True}, single)


def test_few_shot_settings_fill_only_what_is_unset():
    single = DataStats(train=40, problem="single_label", labels=2, few_shot=True)
    unset, _ = _resolve({"train.method": "few-shot"}, single)
    tc = unset.train
    assert (tc.batch_size, tc.epochs, tc.lr, tc.length_grouping) == (16, 1.0, 2e-5, False)
    given, _ = _resolve({"train.method": "few-shot", "train.batch_size": 4, "train.epochs": 2.0, "train.lr": 1e-5,
                         "train.length_grouping": True}, single)
    tc = given.train
    assert (tc.batch_size, tc.epochs, tc.lr, tc.length_grouping) == (4, 2.0, 1e-5, True)
    standard, _ = _resolve({}, single)
    assert standard.train.length_grouping is True


def test_a_small_few_shot_run_without_a_dev_file_holds_out_less():
    config = RunConfig().with_overrides({"train.method": "auto"})
    four = DataStats(train=300, problem="single_label", labels=4, few_shot=True)
    assert holdout_below(config, four, BERT) == FEW_SHOT_NO_DEV_BELOW
    assert holdout_below(config, DataStats(train=300, problem="regression"), BERT) == NO_DEV_BELOW
    assert holdout_below(config, DataStats(train=300, task="ner"), BERT) == NO_DEV_BELOW
    standard = RunConfig().with_overrides({"train.method": "standard"})
    assert holdout_below(standard, four, BERT) == NO_DEV_BELOW
