"""Kill -9 at random moments, resume, and compare with a run that was never interrupted.

Fine-tunes the embedded MiniLM on a slice of the bundled SST-2 data. One reference run goes through
untouched; then each trial starts the same command (`bertkit train ... --resume`, which starts a run or
continues it), kills it with SIGKILL at a random moment up to 1-3 times, and finally lets it finish.
A trial passes when its dev metrics, best step and learning curve (losses, learning rates, dev metrics of
every logged step) equal the reference exactly. Each kill is classed by what the run was doing: loading
(no config yet), training, writing a checkpoint (its temporary folder present) or writing the final model.

    python benchmarks/kill_resume.py --trials 10
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bertkit.run_dir import RunDir

ROOT = Path(__file__).resolve().parent.parent


def _slice(src: Path, dst: Path, rows: int) -> Path:
    opener = gzip.open if src.suffix == ".gz" else open
    with opener(src, "rt", encoding="utf-8", newline="") as fh, open(dst, "w", encoding="utf-8", newline="") as out:
        reader, writer = csv.reader(fh), csv.writer(out)
        for i, row in enumerate(reader):
            if i > rows:
                break
            writer.writerow(row)
    return dst


def _command(train: Path, dev: Path, out: Path, steps: int) -> list[str]:
    return [sys.executable, "-m", "bertkit", "train", "--train", str(train), "--dev", str(dev), "--out", str(out),
            "--text-column", "sentence", "--max-steps", str(steps), "--eval-every", str(steps // 4),
            "--batch-size", "16", "--seed", "3",
            "--resume", "--quiet"]


def _phase(out: Path) -> str:
    ckpts = out / "checkpoints"
    if (out / ".tmp-model").exists():
        return "final model write"
    if ckpts.is_dir() and any(p.name.startswith(".tmp-step") for p in ckpts.iterdir()):
        return "checkpoint write"
    if not (out / "config.yaml").exists():
        return "loading"
    return "training"


def _curve(out: Path) -> list[dict]:
    timings = ("tokens_per_s", "eval_seconds")
    return [{k: v for k, v in json.loads(line).items() if k not in timings}
            for line in (out / "metrics.jsonl").read_text().splitlines()]


def _outcome(out: Path) -> dict:
    results = json.loads((out / "results.json").read_text())
    return {"dev": results["dev"], "best_step": results["best_step"], "curve": _curve(out)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    env = {**os.environ, "BERTKIT_CACHE": "off"}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        train = _slice(ROOT / "data/sst2/train_20k.csv.gz", tmp / "train.csv", 1200)
        dev = _slice(ROOT / "data/sst2/dev.csv", tmp / "dev.csv", 200)
        start = time.perf_counter()
        subprocess.run(_command(train, dev, tmp / "reference", args.steps), env=env, check=True,
                       stdout=subprocess.DEVNULL)
        duration = time.perf_counter() - start
        reference = _outcome(tmp / "reference")
        phases: Counter[str] = Counter()
        passed = 0
        for trial in range(args.trials):
            out = tmp / f"trial-{trial}"
            kills = []
            for _ in range(rng.randint(1, 3)):
                child = subprocess.Popen(_command(train, dev, out, args.steps), env=env,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                delay = rng.uniform(0.5, duration)
                try:
                    child.wait(timeout=delay)
                    kills.append("finished before the kill")
                    break
                except subprocess.TimeoutExpired:
                    phase = _phase(out)
                    os.kill(child.pid, signal.SIGKILL)
                    child.wait()
                    kills.append(f"{phase} at {delay:.1f}s")
                    phases[phase] += 1
            status = RunDir(out).status()["status"]

            subprocess.run(_command(train, dev, out, args.steps), env=env, check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            same = _outcome(out) == reference
            passed += same
            print(json.dumps({"trial": trial, "kills": kills, "status_after_kills": status, "same_as_uninterrupted":
                              same}), flush=True)
        print(json.dumps({"trials": args.trials, "passed": passed, "kills_by_phase": dict(phases),
                          "reference_seconds": round(duration, 1), "reference_dev": reference["dev"]}))


if __name__ == "__main__":
    main()
