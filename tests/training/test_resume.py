"""Interrupting a run and resuming it gives the same result as never interrupting it."""

import json

import pytest
from safetensors.torch import load_file

from bertkit.api import train, train_events
from bertkit.training.checkpoint import latest_checkpoint, list_checkpoints, save_checkpoint
from conftest import tiny_config


def _interrupt_after(cfg, step):
    """Run training and stop it abruptly once `step` optimiser steps are done (like a kill)."""
    events = train_events(cfg, progress=False)
    for event in events:
        if event.get("step", 0) >= step and event["kind"] == "train":
            break
    events.close()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_resume_matches_uninterrupted_run(precision, tmp_path, toy_files, tiny_model_dir):
    train_file, dev_file = toy_files
    overrides = {"train.precision": precision, "train.max_steps": 24, "train.eval_every": 8,
                 "train.batch_size": 12}  # 240 rows / 12 = 20 batches: the run crosses an epoch boundary
    whole = train(tiny_config(tiny_model_dir, train_file, dev_file, tmp_path / "whole", **overrides),
                  progress=False)

    cut = tiny_config(tiny_model_dir, train_file, dev_file, tmp_path / "cut", **overrides)
    _interrupt_after(cut, 13)  # the last checkpoint is at step 8; steps 9-13 are lost
    status = json.loads((tmp_path / "cut" / "status.json").read_text())
    assert status["status"] == "interrupted" and not (tmp_path / "cut" / "model").exists()
    assert latest_checkpoint(tmp_path / "cut" / "checkpoints").name == "step-00000008"

    resumed = train(cut.with_overrides({"resume": True}), progress=False)
    assert resumed.metrics == whole.metrics
    assert resumed.best_step == whole.best_step and resumed.steps == 24
    a = load_file(str(tmp_path / "whole" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "model" / "model.safetensors"))
    assert all((a[k] == b[k]).all() for k in a)
    records = [json.loads(line) for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    keys = [(r["kind"], r["step"]) for r in records]
    assert len(keys) == len(set(keys))  # the lost steps 9-13 were logged once, not twice


def test_checkpoints_are_pruned_but_best_is_kept(tmp_path, toy_files, tiny_model_dir):
    cfg = tiny_config(tiny_model_dir, *toy_files, tmp_path / "run", **{"train.max_steps": 30,
                      "train.eval_every": 5, "train.keep_checkpoints": 1})
    result = train(cfg, progress=False)
    kept = [int(p.name.split("-")[1]) for p in list_checkpoints(tmp_path / "run" / "checkpoints")]
    assert 30 in kept and result.best_step in kept and len(kept) <= 2


def test_half_written_checkpoint_is_ignored(tmp_path, tiny_model_dir):
    import torch

    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    root = tmp_path / "checkpoints"
    save_checkpoint(root, 5, model, opt, sched, {"step": 5})
    (root / ".tmp-step-00000010").mkdir()  # a crash during the write of step 10
    (root / ".tmp-step-00000010" / "model.safetensors").write_bytes(b"partial")
    assert latest_checkpoint(root).name == "step-00000005"


def test_early_stopping_stops_and_keeps_the_best(tmp_path, toy_files, tiny_model_dir):
    # lr 0 after warmup: the dev metric never improves after the first evaluation
    cfg = tiny_config(tiny_model_dir, *toy_files, tmp_path / "run", **{
        "train.max_steps": 100, "train.eval_every": 2, "train.early_stopping_patience": 2,
        "train.scheduler": "constant", "train.lr": 1e-12})
    result = train(cfg, progress=False)
    assert result.steps == 6 and result.best_step == 2
    assert json.loads((tmp_path / "run" / "results.json").read_text())["stopped_early"] is True


def test_gradient_accumulation_counts_optimiser_steps(tmp_path, toy_files, tiny_model_dir):
    # 240 rows, batch 16 -> 15 micro-batches per epoch; accumulating 3 gives 5 optimiser steps per epoch
    cfg = tiny_config(tiny_model_dir, *toy_files, tmp_path / "run", **{
        "train.max_steps": None, "train.epochs": 2, "train.grad_accum": 3, "train.eval_every": None,
        "train.log_every": 1})
    result = train(cfg, progress=False)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert result.steps == 10
    assert [r["step"] for r in records if r["kind"] == "eval"] == [5, 10]  # once per epoch


def _assert_resume_matches(tmp_path, tiny_model_dir, train_file, dev_file, overrides, cut_at=9):
    whole = train(tiny_config(tiny_model_dir, train_file, dev_file, tmp_path / "whole", **overrides), progress=False)
    cut = tiny_config(tiny_model_dir, train_file, dev_file, tmp_path / "cut", **overrides)
    _interrupt_after(cut, cut_at)
    resumed = train(cut.with_overrides({"resume": True}), progress=False)
    assert resumed.metrics == whole.metrics and resumed.best_step == whole.best_step


def test_ner_resume_matches_uninterrupted_run(tmp_path, tiny_model_dir):
    from conftest import toy_ner, write_conll

    train_file = write_conll(tmp_path / "train.conll", toy_ner(120, seed=1))
    dev_file = write_conll(tmp_path / "dev.conll", toy_ner(30, seed=2))
    _assert_resume_matches(tmp_path, tiny_model_dir, train_file, dev_file, {
        "task.name": "ner", "train.max_steps": 16, "train.eval_every": 6, "data.max_length": 16, "task.stride": 4,
        "train.precision": "bf16"})


def test_mlm_resume_matches_uninterrupted_run(tmp_path, tiny_model_dir):
    """Dynamic masks come from the RNG saved in each checkpoint, so a resumed run masks as the whole one."""
    from conftest import toy_sentiment

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(t + "\n" for t, _ in toy_sentiment(200, seed=5)), encoding="utf-8")
    _assert_resume_matches(tmp_path, tiny_model_dir, corpus, None, {
        "task.name": "mlm", "task.whole_word_masking": True, "train.max_steps": 16, "train.eval_every": 6})


def test_a_default_run_keeps_the_word_embeddings_and_records_it(tmp_path, toy_files, tiny_model_dir):
    from safetensors.torch import load_file as load

    from bertkit.run_dir import RunDir

    train_file, dev_file = toy_files
    out = tmp_path / "run"
    config = tiny_config(tiny_model_dir, train_file, dev_file, out, **{"train.max_steps": 10})
    config.train.freeze_embeddings = None  # as a run with no setting
    train(config, progress=False)
    saved = RunDir(out).load_config().train
    assert saved.freeze_embeddings is True and saved.length_grouping is True  # the standard method groups by length

    def words(folder):
        return next(v for k, v in load(str(folder / "model.safetensors")).items()
                    if k.endswith("embeddings.word_embeddings.weight"))

    assert (words(out / "model") == words(tiny_model_dir)).all()
