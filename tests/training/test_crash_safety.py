"""Crash safety: kill -9 (also during a checkpoint write) then --resume ends as an uninterrupted run;
damaged checkpoints are detected and the one before used; the run directory says how the run stands."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from bertkit.api import train
from bertkit.errors import CheckpointError
from bertkit.run_dir import RunDir
from bertkit.training.checkpoint import list_checkpoints, verify_checkpoint
from conftest import tiny_config, write_toy_sentiment


def _curve(run):
    timings = ("tokens_per_s", "eval_seconds")
    return [{k: v for k, v in json.loads(line).items() if k not in timings}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def _cli(model, train_file, dev_file, out):
    return [sys.executable, "-m", "bertkit", "train", "--train", str(train_file), "--dev", str(dev_file),
            "--label-column", "sentiment", "--model", str(model), "--precision", "fp32", "--max-steps", "40",
            "--eval-every", "5", "--batch-size", "16", "--lr", "5e-3", "--seed", "7", "--out", str(out),
            "--resume", "--quiet"]


def _kill_when(cmd, env, ready, timeout=120.0):
    """Start `cmd` and kill -9 it as soon as `ready()` holds; returns whether the kill found it running."""
    child = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while child.poll() is None and time.monotonic() < deadline:
        if ready():
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
            return True
        time.sleep(0.0005)
    child.wait()
    return False


def test_kill_9_during_training_and_checkpoint_writes_then_resume_ends_as_uninterrupted(tmp_path, tiny_model_dir):
    train_file, dev_file = write_toy_sentiment(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(_cli(tiny_model_dir, train_file, dev_file, tmp_path / "whole"), env=env, check=True)

    out = tmp_path / "killed"
    ckpts = out / "checkpoints"
    # 1. during the write of a checkpoint (its temporary folder exists), 2. at an arbitrary later moment
    # (after step 12), 3. during the write of the final model.
    assert _kill_when(_cli(tiny_model_dir, train_file, dev_file, out), env,
                      lambda: ckpts.is_dir() and any(p.name.startswith(".tmp-step") for p in ckpts.iterdir()))
    assert RunDir(out).status()["status"] == "interrupted"  # status.json says running; its process is gone
    assert _kill_when(_cli(tiny_model_dir, train_file, dev_file, out), env,
                      lambda: any(int(p.name[5:]) > 12 for p in list_checkpoints(ckpts)))
    assert RunDir(out).status()["status"] == "interrupted"  # "running" in status.json, but its process is gone
    _kill_when(_cli(tiny_model_dir, train_file, dev_file, out), env, lambda: (out / ".tmp-model").exists())
    subprocess.run(_cli(tiny_model_dir, train_file, dev_file, out), env=env, check=True)

    whole, killed = (json.loads((tmp_path / r / "results.json").read_text()) for r in ("whole", "killed"))
    assert killed["dev"] == whole["dev"] and killed["best_step"] == whole["best_step"]
    assert _curve(out) == _curve(tmp_path / "whole")
    assert RunDir(out).status()["status"] == "completed"
    assert not any(p.name.startswith(".tmp") for p in [*out.iterdir(), *ckpts.iterdir()])


def test_a_damaged_checkpoint_is_detected_and_the_one_before_used(tmp_path, toy_files, tiny_model_dir, caplog):
    overrides = {"train.max_steps": 20, "train.eval_every": 5}
    whole = train(tiny_config(tiny_model_dir, *toy_files, tmp_path / "whole", **overrides), progress=False)
    train(tiny_config(tiny_model_dir, *toy_files, tmp_path / "run", **overrides), progress=False)
    run = RunDir(tmp_path / "run")
    steps = list_checkpoints(run.checkpoints)
    newest = steps[-1]
    weights = bytearray((newest / "model.safetensors").read_bytes())
    weights[-7] ^= 0xFF  # one flipped bit pattern deep inside a tensor: loads fine, but is wrong
    (newest / "model.safetensors").write_bytes(bytes(weights))
    with pytest.raises(CheckpointError, match="does not match its checksum"):
        verify_checkpoint(newest)

    # Resume from the step before: the lost steps are trained again and end where the whole run ended.
    import shutil

    shutil.rmtree(run.model_dir)
    (run.path / "results.json").unlink()
    resumed = train(tiny_config(tiny_model_dir, *toy_files, run.path, **overrides, resume=True), progress=False)
    assert "does not match its checksum" in caplog.text
    assert resumed.metrics == whole.metrics and resumed.steps == 20


def test_resume_of_a_run_killed_before_its_config_starts_it(tmp_path, toy_files, tiny_model_dir):
    (tmp_path / "run").mkdir()
    result = train(tiny_config(tiny_model_dir, *toy_files, tmp_path / "run", **{"train.max_steps": 5},
                               resume=True), progress=False)
    assert result.steps == 5 and RunDir(tmp_path / "run").status()["status"] == "completed"


def test_status_of_a_running_run_whose_process_is_gone_reads_interrupted(tmp_path):
    run = RunDir(tmp_path)
    run.set_status("running", step=3)
    assert run.status()["status"] == "running" and run.status()["pid"] == os.getpid()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    record = json.loads((tmp_path / "status.json").read_text())
    run.write_json("status.json", {**record, "pid": dead.pid})
    status = run.status()
    assert status["status"] == "interrupted" and "--resume" in status["hint"]
