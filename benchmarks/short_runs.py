"""Short fine-tunes of the embedded MiniLM on benchmark data from ../shared/data; prints one JSON line each.

    python benchmarks/short_runs.py --data ../shared/data --task mrpc trec sst2 [--out runs/bench]

- mrpc: GLUE MRPC train (3,668 pairs) -> the official dev set (408), read straight from the TSV files.
- trec: TREC-6 coarse labels; dev is a stratified 10 % split of train_5500 (the test set is kept back).
- sst2: the bundled 20,000-sentence subset -> the GLUE dev set (the demo's settings).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

from bertkit.api import train
from bertkit.config import RunConfig, load_config

REPO = Path(__file__).resolve().parents[1]


def _trec_csv(data: Path, tmp: Path) -> Path:
    out = tmp / "trec_train.csv"
    with open(data / "trec" / "train_5500.label", encoding="latin-1") as src, open(out, "w", newline="") as dst:
        writer = csv.writer(dst)
        writer.writerow(["question", "coarse"])
        for line in src:
            label, question = line.rstrip("\n").split(" ", 1)
            writer.writerow([question, label.split(":")[0]])
    return out


def configure(task: str, data: Path, tmp: Path, out: Path) -> RunConfig:
    if task == "sst2":
        return load_config(REPO / "examples" / "sst2_demo.yaml").with_overrides({"out": str(out)})
    if task == "mrpc":
        return RunConfig().with_overrides({
            "out": str(out), "data.train": str(data / "mrpc" / "train.tsv"), "data.dev": str(data / "mrpc" / "dev.tsv"),
            "data.text_column": "#1 String", "data.text_pair_column": "#2 String", "data.label_column": "Quality",
            "data.max_length": 128, "train.epochs": 3, "train.lr": 1e-4, "train.batch_size": 32,
            "train.eval_every": 50, "train.seed": 42})
    if task == "trec":
        return RunConfig().with_overrides({
            "out": str(out), "data.train": str(_trec_csv(data, tmp)), "data.text_column": "question",
            "data.label_column": "coarse", "data.max_length": 64, "train.epochs": 3, "train.lr": 1e-4,
            "train.batch_size": 32, "train.eval_every": 100, "train.seed": 42})
    raise SystemExit(f"unknown task {task}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="the shared data folder")
    parser.add_argument("--task", nargs="+", default=["mrpc", "trec"], choices=["mrpc", "trec", "sst2"])
    parser.add_argument("--out", default=None, help="folder for the run directories (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        root = Path(args.out) if args.out else tmp / "runs"
        for task in args.task:
            cfg = configure(task, Path(args.data), tmp, root / f"{task}-{time.strftime('%Y%m%d-%H%M%S')}")
            start = time.perf_counter()
            result = train(cfg, progress=False)
            print(json.dumps({"task": task, "dev": {k: round(v, 4) for k, v in result.metrics.items()},
                              "best_step": result.best_step, "steps": result.steps,
                              "train_seconds": round(result.train_seconds, 1),
                              "wall_seconds": round(time.perf_counter() - start, 1),
                              "run_dir": str(result.run_dir)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
