"""Inference speed: `bertkit` (Predictor: length-sorted batches, bf16 where the CPU has it; PyTorch
dynamic int8; ONNX Runtime exports in fp32 and int8) against `transformers.pipeline("text-classification")`
on the same run, texts and machine, interleaved.

    python benchmarks/inference_speed.py --run RUN_DIR [--data data/sst2/dev.csv --column sentence] [--reps 3]

The ONNX exports are written to a temporary folder first (not timed). Prints one JSON object: sentences/s
per system (best of `--reps` timed passes after a warm-up), the ratios against the pipeline baselines,
the agreement of the predicted labels with the pipeline's, and each system's accuracy when the data file
has a label column.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
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
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--no-export", action="store_true", help="leave out the exported and int8 systems")
    args = parser.parse_args()

    import torch
    from transformers import pipeline

    from bertkit.inference.predictor import Predictor
    from bertkit.models.loading import quiet_transformers

    with open(args.data, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t" if args.data.endswith(".tsv") else ","))
    texts = [row[args.column] for row in rows]
    gold = [row.get(args.label_column) for row in rows]
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
    tmp = tempfile.TemporaryDirectory()
    if not args.no_export:
        from bertkit.export import export_onnx

        quantized = Predictor.from_run(args.run, quantize="int8")
        systems["bertkit predict (torch dynamic int8)"] = lambda t, p=quantized: [r["label"] for r in p.predict(t)]
        for scheme in (None, "int8"):
            folder, _ = export_onnx(args.run, f"{tmp.name}/{scheme or 'fp32'}", quantize=scheme)
            predictor = Predictor.from_path(folder)
            systems[f"bertkit predict (ONNX Runtime {scheme or 'fp32'})"] = \
                lambda t, p=predictor: [r["label"] for r in p.predict(t)]
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
    if all(g is not None for g in gold):
        out["accuracy"] = {name: round(sum(str(a) == str(b) for a, b in zip(lab, gold)) / len(gold), 4)
                           for name, lab in labels.items()}
    tmp.cleanup()
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
