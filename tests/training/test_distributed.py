"""Data parallelism through torchrun (2 CPU processes, gloo) against one process with the same global batch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FILLER, NEGATIVE, POSITIVE, build_tiny_bert, write_toy_sentiment


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    model = build_tiny_bert(tmp_path / "m", words=POSITIVE + NEGATIVE + FILLER)
    config = json.loads((model / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # no per-rank random streams
    (model / "config.json").write_text(json.dumps(config))
    train_file, dev_file = write_toy_sentiment(tmp_path)
    common = ["train", "--method", "standard", "--train", str(train_file), "--dev", str(dev_file),
              "--label-column", "sentiment",
              "--model", str(model), "--precision", "fp32", "--max-steps", "30", "--eval-every", "10",
              "--lr", "5e-3", "--set", "train.log_every=5", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    two_run = subprocess.run([*torchrun, "-m", "bertkit", *common, "--batch-size", "8", "--out", str(tmp_path / "two")],
                             check=True, env=env, capture_output=True, text=True)
    subprocess.run([sys.executable, "-m", "bertkit", *common, "--batch-size", "16", "--out", str(tmp_path / "one")],
                   check=True, env=env, capture_output=True)
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                  "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]  # gloo on CPU
    subprocess.run([*accelerate, "-m", "bertkit", *common, "--batch-size", "8", "--out", str(tmp_path / "acc")],
                   check=True, env=env, capture_output=True)
    assert two_run.stdout.count("run directory:") == 1  # one summary, from rank 0
    one, two = _records(tmp_path / "one"), _records(tmp_path / "two")
    assert [r["kind"] for r in one] == [r["kind"] for r in two]  # rank 0 alone wrote: no duplicated records
    for a, b in zip(one, two):
        if a["kind"] == "train":
            assert b["loss"] == pytest.approx(a["loss"], abs=1e-4)
        else:
            assert b["dev_accuracy"] == a["dev_accuracy"]
    acc = _records(tmp_path / "acc")  # accelerate launch forms the same process group as torchrun
    assert [{k: v for k, v in r.items() if k not in ("tokens_per_s", "eval_seconds")} for r in acc] == \
        [{k: v for k, v in r.items() if k not in ("tokens_per_s", "eval_seconds")} for r in two]
    results = [json.loads((tmp_path / r / "results.json").read_text()) for r in ("one", "two")]
    assert results[0]["dev"] == pytest.approx(results[1]["dev"], abs=1e-6)
    env_two = json.loads((tmp_path / "two" / "environment.json").read_text())
    assert env_two["num_processes"] == 2
    assert json.loads((tmp_path / "two" / "status.json").read_text())["status"] == "completed"
