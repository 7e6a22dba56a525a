"""Label errors found: flip a known share of training labels, ask `bertkit data check --find-label-errors`
for the suspects, and report how many of the flipped rows it names (recall), how many of the named rows
were flipped (precision), and what dropping the named rows does to held-out accuracy.

    python benchmarks/label_errors.py [--data ../shared/data] [--set sst2|imdb] [--rows 4000]
        [--flip 0.1 0.2] [--seed 0] [--no-train]

sst2: rows drawn from SST-2's training file, held out: the 872 GLUE dev sentences. imdb: rows drawn from the
first 23,000 IMDB training reviews, held out: the last 2,000 (as benchmarks/long_documents.py). For each flip
rate: `bertkit train` with no flags on the noisy rows, and on the noisy rows less the named ones, each scored
on the held-out set (skipped with --no-train). One JSON line per flip rate.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from long_documents import HELDOUT, POOL, _rows, _write  # noqa: E402  (the same held-out IMDB reviews)


def _sst2(data: Path, n: int, seed: int) -> tuple[list[dict], list[dict]]:
    def read(handle) -> list[dict]:
        rows = [line.rstrip("\r\n").split("\t") for line in handle][1:]
        return [{"text": s.strip(), "label": {"0": "negative", "1": "positive"}[y.strip()]} for s, y in rows]

    with gzip.open(data / "sst2" / "train.tsv.gz", "rt", encoding="utf-8") as fh:
        pool = read(fh)
    with open(data / "sst2" / "dev.tsv", encoding="utf-8") as fh:
        heldout = read(fh)
    return random.Random(seed).sample(pool, n), heldout


def _imdb(data: Path, n: int, seed: int) -> tuple[list[dict], list[dict]]:
    rows = _rows(data)
    return random.Random(seed).sample(rows[:POOL], n), rows[-HELDOUT:]


def _train_and_score(train_file: Path, heldout_file: Path, out: Path) -> tuple[float, float]:
    from bertkit.api import evaluate, train
    from bertkit.config import RunConfig

    start = time.perf_counter()
    train(RunConfig().with_overrides({"out": str(out), "data.train": str(train_file)}), progress=False)
    return evaluate(out, heldout_file)["accuracy"], time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=HERE.parents[1] / "shared" / "data")
    ap.add_argument("--set", choices=["sst2", "imdb"], default="sst2")
    ap.add_argument("--rows", type=int, default=4000)
    ap.add_argument("--flip", type=float, nargs="+", default=[0.1])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-train", action="store_true", help="only recall and precision, no training runs")
    args = ap.parse_args()
    from bertkit.api import check_data

    rows, heldout = (_sst2 if args.set == "sst2" else _imdb)(args.data, args.rows, args.seed)
    labels = sorted({r["label"] for r in rows})
    tmp = Path(tempfile.mkdtemp(prefix="label-errors-"))
    heldout_file = _write(tmp / "heldout.csv", heldout)
    for rate in args.flip:
        rng = random.Random(args.seed + 1)
        flipped = set(rng.sample(range(len(rows)), round(rate * len(rows))))
        noisy = [dict(r, label=next(y for y in labels if y != r["label"])) if i in flipped else r
                 for i, r in enumerate(rows)]
        train_file = _write(tmp / f"noisy-{rate}.csv", noisy)
        start = time.perf_counter()
        report = check_data(train_file, find_label_errors=True)
        check_seconds = time.perf_counter() - start
        rows_of: dict[str, list[int]] = {}
        for i, r in enumerate(noisy):
            rows_of.setdefault(r["text"], []).append(i)
        named = {rows_of[e["text"]].pop(0) for e in report.label_errors if rows_of.get(e["text"])}
        hits = len(named & flipped)
        row = {"set": args.set, "rows": len(rows), "flip_rate": rate, "flipped": len(flipped), "named": len(named),
               "recall": hits / max(1, len(flipped)), "precision": hits / max(1, len(named)),
               "check_seconds": check_seconds}
        if not args.no_train:
            kept = [r for i, r in enumerate(noisy) if i not in named]
            row["accuracy_noisy"], row["train_seconds_noisy"] = _train_and_score(train_file, heldout_file,
                                                                                 tmp / f"run-noisy-{rate}")
            row["accuracy_cleaned"], row["train_seconds_cleaned"] = _train_and_score(
                _write(tmp / f"cleaned-{rate}.csv", kept), heldout_file, tmp / f"run-cleaned-{rate}")
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
