"""`bertkit train` with no flags and no dev file on small samples, scored on held-out data; and how much of
Chinese text the embedded model's tokenizer can read. Prints one JSON line per run.

    python benchmarks/small_data.py [--data ../shared/data] [--runs sst2:300 sst2:32pc trec:480 sst2:8pc trec:8pc]

- sst2:N draws N sentences of the SST-2 training file at random (seed --seed); sst2:Kpc draws K per class.
  Held out: the 872 GLUE dev sentences.
- trec:N / trec:Kpc: TREC-6 coarse labels; 999 questions of train_5500 (seeded) are held out and the sample
  is drawn from the rest.
- coverage: the share of [UNK] tokens of the embedded MiniLM on 2,000 zh_sentiment training reviews.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import random
import tempfile
import time
from collections import defaultdict
from pathlib import Path


def _sst2(data: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    names = {"0": "negative", "1": "positive"}

    def rows(lines: list[str]) -> list[tuple[str, str]]:
        return [(s.strip(), names[y.strip()]) for s, y in (line.rstrip("\r\n").split("\t") for line in lines[1:])]

    with gzip.open(data / "sst2" / "train.tsv.gz", "rt", encoding="utf-8") as fh:
        train = rows(fh.readlines())
    return train, rows((data / "sst2" / "dev.tsv").read_text(encoding="utf-8").splitlines(keepends=True))


def _trec(data: Path, seed: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    with open(data / "trec" / "train_5500.label", encoding="latin-1") as fh:
        rows = [(q, label.split(":")[0]) for label, q in (line.rstrip("\n").split(" ", 1) for line in fh)]
    random.Random(seed).shuffle(rows)
    return rows[999:], rows[:999]


def _sample(rows: list[tuple[str, str]], spec: str, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = rows[:]
    rng.shuffle(rows)
    if spec.endswith("pc"):
        per_class, by_label = int(spec[:-2]), defaultdict(list)
        for row in rows:
            if len(by_label[row[1]]) < per_class:
                by_label[row[1]].append(row)
        return [row for group in by_label.values() for row in group]
    return rows[: int(spec)]


def _write(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def run(name: str, spec: str, data: Path, seed: int, tmp: Path) -> dict:
    from bertkit.api import evaluate, train
    from bertkit.config import RunConfig
    from bertkit.run_dir import RunDir

    pool, heldout = _sst2(data) if name == "sst2" else _trec(data, seed)
    sample = _sample(pool, spec, seed)
    train_file = _write(tmp / f"{name}-{spec}-train.csv", sample)
    heldout_file = _write(tmp / f"{name}-heldout.csv", heldout)
    out = tmp / f"{name}-{spec}-run"
    start = time.perf_counter()
    result = train(RunConfig().with_overrides({"out": str(out), "data.train": str(train_file)}), progress=False)
    seconds = time.perf_counter() - start
    scores = evaluate(out, heldout_file)
    used = RunDir(out).load_config().train  # the batch size and epochs the run chose
    return {"data": name, "sample": spec, "train_rows": len(sample), "heldout_rows": len(heldout),
            "heldout_accuracy": round(scores["accuracy"], 4), "dev_accuracy": round(result.metrics["accuracy"], 4),
            "batch_size": used.batch_size, "epochs": used.epochs, "steps": result.steps,
            "train_seconds": round(seconds, 1)}


def coverage(data: Path) -> dict:
    from bertkit.data.coverage import coverage as measure
    from bertkit.models.loading import embedded_model_dir, load_tokenizer

    with gzip.open(data / "zh_sentiment" / "train.csv.gz", "rt", encoding="utf-8") as fh:
        rows = [{"text": r["text"]} for r, _ in zip(csv.DictReader(fh), range(2000))]
    return {"coverage": "zh_sentiment, embedded MiniLM", **measure(rows, load_tokenizer(str(embedded_model_dir())))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--runs", nargs="+", default=["sst2:300", "sst2:32pc", "trec:480", "sst2:8pc", "trec:8pc"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(json.dumps(coverage(args.data), ensure_ascii=False), flush=True)
    with tempfile.TemporaryDirectory(prefix="bertkit-small-data-") as tmp:
        for item in args.runs:
            name, spec = item.split(":")
            print(json.dumps(run(name, spec, args.data, args.seed, Path(tmp))), flush=True)


if __name__ == "__main__":
    main()
