"""What a run directory is protected against: writing into a folder bertkit did not make, two processes in
one run, resuming on changed data, a full disk, SIGTERM."""

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bertkit.api import train
from bertkit.cli import main
from bertkit.errors import CheckpointError, ConfigError
from bertkit.run_dir import RunDir
from conftest import tiny_config, write_toy_sentiment


def _user_folder(path):
    files = {"model/other.bin": b"user weights", "checkpoints/step-00000003/notes.txt": b"notes",
             "metrics.jsonl": b'{"mine": 1}\n', "report.html": b"<p>my report</p>"}
    for name, data in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    return files


@pytest.mark.parametrize("resume", [False, True])
def test_a_folder_bertkit_did_not_make_is_never_written_into(resume, tmp_path, toy_files, tiny_model_dir, capsys):
    folder = tmp_path / "mine"
    files = _user_folder(folder)
    with pytest.raises(ConfigError, match="holds files that bertkit did not write"):
        train(tiny_config(tiny_model_dir, *toy_files, folder, **{"train.max_steps": 3}, resume=resume),
              progress=False)
    assert {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()} == set(files)
    assert all((folder / name).read_bytes() == data for name, data in files.items())
    argv = ["train", "--train", str(toy_files[0]), "--label-column", "sentiment", "--out", str(folder)]
    assert main(argv + (["--resume"] if resume else [])) == 2
    err = capsys.readouterr().err
    assert "set --out to a new or empty folder" in err and "resume" not in err


@pytest.fixture
def short_run(tmp_path, toy_files, tiny_model_dir):
    config = tiny_config(tiny_model_dir, *toy_files, tmp_path / "run", **{"train.max_steps": 10, "train.eval_every": 5})
    train(config, progress=False)
    return config


def _make_resumable(run: RunDir):
    import shutil

    shutil.rmtree(run.model_dir)
    (run.path / "results.json").unlink()
    run.set_status("interrupted", step=5)


def test_a_second_process_cannot_train_into_a_run(short_run, tmp_path):
    run = RunDir(short_run.out)
    _make_resumable(run)
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], "
                               "os.O_RDWR | os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); "
                               "time.sleep(60)", str(run.path / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(CheckpointError, match="another bertkit process is training into this run"):
            train(short_run.with_overrides({"resume": True}), progress=False)
    finally:
        holder.kill()
        holder.wait()
    # status.json naming a live process on this host is refused as well (a process without the lock).
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run.write_json("status.json", {"status": "running", "pid": alive.pid, "host": socket.gethostname()})
        with pytest.raises(CheckpointError, match=f"pid {alive.pid} on {socket.gethostname()}"):
            train(short_run.with_overrides({"resume": True}), progress=False)
    finally:
        alive.kill()
        alive.wait()
    result = train(short_run.with_overrides({"resume": True}), progress=False)  # free again: it finishes
    assert result.steps == 10 and run.status()["status"] == "completed"


def test_resume_refuses_changed_training_data_and_keeps_the_record(short_run):
    run = RunDir(short_run.out)
    _make_resumable(run)
    before = run.read_json("environment.json")["data"]
    train_file = short_run.data.train
    original = Path(train_file).read_bytes()
    Path(train_file).write_bytes(original.replace(b"positive", b"@").replace(b"negative", b"positive")
                                 .replace(b"@", b"negative"))
    with pytest.raises(ConfigError, match=r"data.train: .*train.csv changed since the run started"):
        train(short_run.with_overrides({"resume": True}), progress=False)
    assert run.read_json("environment.json")["data"] == before
    Path(train_file).write_bytes(original)
    assert train(short_run.with_overrides({"resume": True}), progress=False).steps == 10


def test_a_full_disk_ends_in_one_line_with_the_run_resumable(tmp_path, toy_files, tiny_model_dir, monkeypatch,
                                                            capsys):
    import torch

    from bertkit.training import checkpoint

    real_save = torch.save

    def full(obj, f, *a, **k):
        if "step-00000010" in str(f):
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(checkpoint.torch, "save", full)
    out = tmp_path / "run"
    argv = ["train", "--train", str(toy_files[0]), "--dev", str(toy_files[1]), "--label-column", "sentiment",
            "--model", str(tiny_model_dir), "--precision", "fp32", "--max-steps", "15", "--eval-every", "5",
            "--lr", "5e-3", "--batch-size", "16", "--out", str(out), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("bertkit train: error: No space left on device while writing the checkpoint of step 10")
    assert "Traceback" not in "\n".join(err)
    assert RunDir(out).status()["status"] == "interrupted"
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".tmp")]
    monkeypatch.setattr(checkpoint.torch, "save", real_save)
    assert main(argv + ["--resume"]) == 0 and RunDir(out).status()["status"] == "completed"


def test_sigterm_is_handled_as_an_interrupt(tmp_path, tiny_model_dir):
    train_file, dev_file = write_toy_sentiment(tmp_path)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "bertkit", "train", "--train", str(train_file), "--dev", str(dev_file),
           "--label-column", "sentiment", "--model", str(tiny_model_dir), "--precision", "fp32", "--max-steps",
           "4000", "--eval-every", "5", "--batch-size", "16", "--out", str(out), "--quiet"]
    child = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not (out / "checkpoints").is_dir() and time.monotonic() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 143
    assert "terminated (SIGTERM)" in err and f"continue with: bertkit train --out {out} --resume" in err
    assert "Traceback" not in err
    status = json.loads((out / "status.json").read_text())
    assert status["status"] == "interrupted"


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch /tmp/bertkit-pickle-ran",))


def test_a_crafted_pickle_with_a_valid_checksum_is_refused_and_the_checkpoint_before_used(short_run, caplog):
    import pickle

    from bertkit.io import sha256_file
    from bertkit.training.checkpoint import list_checkpoints

    run = RunDir(short_run.out)
    _make_resumable(run)
    newest = list_checkpoints(run.checkpoints)[-1]
    (newest / "optimizer.pt").write_bytes(pickle.dumps(_Boom()))
    state = json.loads((newest / "trainer_state.json").read_text())
    state["checksums"]["optimizer.pt"] = sha256_file(newest / "optimizer.pt")  # the checksum says all is well
    (newest / "trainer_state.json").write_text(json.dumps(state))
    Path("/tmp/bertkit-pickle-ran").unlink(missing_ok=True)
    result = train(short_run.with_overrides({"resume": True}), progress=False)
    assert result.steps == 10 and not Path("/tmp/bertkit-pickle-ran").exists()
    assert "cannot restore the checkpoint" in caplog.text and "trying the checkpoint before it" in caplog.text
