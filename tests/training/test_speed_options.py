"""Packing, token-budget batching and compilation as run options: they train to the same quality, resume,
and refuse what they cannot do with a clear message."""

import json

import pytest

from bertkit.api import train
from bertkit.errors import ConfigError
from bertkit.run_dir import RunDir
from conftest import tiny_config, toy_ner, write_conll


def _tokens_per_step(run):
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r["kind"] == "train"]


@pytest.mark.parametrize("options", [{"train.packing": True, "train.pack_length": 32},
                                     {"train.batch_tokens": 160},
                                     {"train.packing": True, "train.batch_tokens": 160}])
def test_speed_options_train_as_well_as_plain_batches(tmp_path, toy_files, tiny_model_dir, options):
    train_file, dev_file = toy_files
    plain = train(tiny_config(tiny_model_dir, train_file, dev_file, tmp_path / "plain"), progress=False)
    fast = train(tiny_config(tiny_model_dir, train_file, dev_file, tmp_path / "fast", **options), progress=False)
    assert plain.metrics["accuracy"] >= 0.9
    assert fast.metrics["accuracy"] >= plain.metrics["accuracy"] - 0.05
    saved = RunDir(tmp_path / "fast").load_config()
    assert all(getattr(saved.train, key.split(".")[1]) == value for key, value in options.items())


def test_token_budget_sets_the_steps_of_an_epoch(tmp_path, toy_files, tiny_model_dir):
    train_file, dev_file = toy_files
    cfg = tiny_config(tiny_model_dir, train_file, dev_file, tmp_path / "run", **{
        "train.max_steps": None, "train.epochs": 1, "train.batch_tokens": 400, "train.eval_every": None})
    result = train(cfg, progress=False)
    # toy sentences are 5 to 12 tokens: about 40 of them fit 400 padded tokens, so 240 rows take ~6-9 steps
    assert 4 <= result.steps <= 12


def test_packing_is_refused_for_tasks_that_do_not_pack(tmp_path, tiny_model_dir):
    train_file = write_conll(tmp_path / "train.conll", toy_ner(40, seed=1))
    cfg = tiny_config(tiny_model_dir, train_file, None, tmp_path / "run",
                      **{"task.name": "ner", "train.packing": True})
    with pytest.raises(ConfigError, match="does not pack"):
        train(cfg, progress=False)


def test_out_of_memory_names_the_batch_and_the_fix(tmp_path, toy_files, tiny_model_dir, monkeypatch):
    import torch

    from bertkit.errors import TrainingError
    from bertkit.tasks.classification import ClassificationTask

    def exhausted(self, model, batch):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(ClassificationTask, "forward", exhausted)
    train_file, dev_file = toy_files
    with pytest.raises(TrainingError, match=r"out of memory on a batch of 16 x \d+ tokens; lower train.batch_size"):
        train(tiny_config(tiny_model_dir, train_file, dev_file, tmp_path / "run"), progress=False)
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["status"] == "interrupted" and "--resume" in status["hint"]
