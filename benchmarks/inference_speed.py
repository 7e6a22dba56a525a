"""Inference speed: `bertkit` (Predictor: length-sorted batches, bf16 where the CPU has it) against
`transformers.pipeline("text-classification")` on the same run, texts and machine, interleaved.

    python benchmarks/inference_speed.py --run RUN_DIR [--data data/sst2/dev.csv --column sentence] [--reps 3]

Prints one JSON object: sentences/s per system (best of `--reps` timed passes after a warm-up), the
ratios against the pipeline baselines, and the agreement of the predicted labels with the pipeline's.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _timed(fn, texts, reps: int) -> tuple[float, list[str]]:
    fn(texts[:32])  # warm-up: first-call allocations and thread start
    best, labels = float("inf"), []
    for _ in range(reps):
        start = time.perf_counter()
        labels = fn(texts)
        best = min(best, time.perf_counter() - start)
    return len(texts) / best, labels


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a classification run directory")
    parser.add_argument("--data", default=str(REPO / "data" / "sst2" / "dev.csv"))
    parser.add_argument("--column", default="sentence")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()

    import torch
    from transformers import pipeline

    from bertkit.evaluation.predictor import Predictor
    from bertkit.models.loading import quiet_transformers

    with open(args.data, encoding="utf-8") as fh:
        texts = [row[args.column] for row in csv.DictReader(fh)]
    with quiet_transformers():
        pipe = pipeline("text-classification", model=str(Path(args.run) / "model"), device=-1)
    systems = {
        "pipeline (default batching, fp32)": lambda t: [p["label"] for p in pipe(t)],
        "pipeline (batch_size=32, fp32)": lambda t: [p["label"] for p in pipe(t, batch_size=32)],
    }
    for precision in ("fp32", "auto"):
        predictor = Predictor.from_run(args.run, precision=precision)
        name = f"bertkit predict ({predictor.rt.precision})"
        systems[name] = lambda t, p=predictor: [r["label"] for r in p.predict(t)]
    rates: dict[str, list[float]] = {name: [] for name in systems}
    labels: dict[str, list[str]] = {}
    for _ in range(2):  # two interleaved rounds, so machine load hits every system alike
        for name, fn in systems.items():
            rate, labels[name] = _timed(fn, texts, args.reps)
            rates[name].append(rate)
    reference = labels["pipeline (default batching, fp32)"]
    best = {name: max(r) for name, r in rates.items()}
    out = {
        "texts": len(texts), "threads": torch.get_num_threads(), "run": str(args.run),
        "sentences_per_s": {name: round(v, 1) for name, v in best.items()},
        "agreement_with_pipeline": {name: round(sum(a == b for a, b in zip(lab, reference)) / len(texts), 4)
                                    for name, lab in labels.items()},
        "speedup": {name: {"vs_pipeline_default": round(v / best["pipeline (default batching, fp32)"], 2),
                           "vs_pipeline_batch32": round(v / best["pipeline (batch_size=32, fp32)"], 2)}
                    for name, v in best.items() if name.startswith("bertkit")},
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
