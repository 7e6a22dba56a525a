"""Few labels: `bertkit train` with no flags against SetFit's defaults and a frozen-embedding baseline, on the
same samples. Prints one JSON line per run, then a table of held-out accuracy (mean ± std over the seeds) and
training seconds.

    python benchmarks/few_shot.py [--data ../shared/data] [--sets sst2 trec] [--per-class 8 32 128]
        [--seeds 0 1 2] [--systems bertkit frozen-lr setfit standard few-shot]
        [--setfit-python /path/to/venv/bin/python] [--selection-dev] [--whole-process] [--bertkit-set KEY=VALUE ...]

- The body of every system is the embedded all-MiniLM-L6-v2. N examples per class are drawn from the shared
  SST-2 training file and from TREC-6 train_5500 (coarse labels) with each seed; the same sample goes to
  every system. Held out: the 872 GLUE dev sentences of SST-2; 999 questions of train_5500 (one fixed split,
  seed 0, kept out of every sample) for TREC-6.
- bertkit: `bertkit train --train FILE` with no other setting (below 150 examples per class that is the
  few-shot recipe), scored with `bertkit evaluate RUN FILE`. standard: the same with `--method standard`.
- `--bertkit-set` passes settings to the bertkit systems (to try them with `--selection-dev`).
- frozen-lr: the frozen model's normalised mean embeddings and scikit-learn's LogisticRegression.
- setfit: SetFit 1.2.0 `Trainer` with default `TrainingArguments` (`num_iterations=5` where the defaults'
  pair count, every unique pair oversampled, passes 10,000: SST-2 at 128 per class, TREC-6 at 32 and 128;
  those take up to hours on a 2-core CPU; `--setfit-defaults` runs the defaults there too), run in the
  virtual environment of --setfit-python (SetFit is never a dependency of bertkit):
  `python -m venv V; V/bin/pip install torch==2.13.0 setfit` (the CPU torch first).
- Times: training seconds after the imports (bertkit's runs share this process, so the first pays its
  first-call set-up); with `--whole-process`, bertkit's `bertkit train` process and SetFit's script, each
  from its start to a saved model.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from small_data import _sample, _sst2, _trec, _write  # noqa: E402

_SETFIT = r"""
import json, sys, time
from datasets import Dataset
from setfit import SetFitModel, Trainer, TrainingArguments
model_dir, train, heldout, iterations = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4]
start = time.perf_counter()
model = SetFitModel.from_pretrained(model_dir)
args = TrainingArguments(output_dir="checkpoints", report_to="none",
                         **({"num_iterations": int(iterations)} if iterations != "default" else {}))
data = Dataset.from_dict({"text": [t for t, _ in train], "label": [y for _, y in train]})
Trainer(model=model, args=args, train_dataset=data).train()
seconds = time.perf_counter() - start
model.save_pretrained("model")
print("TRAINED", flush=True)
predicted = model.predict([t for t, _ in heldout])
accuracy = sum(str(p) == y for p, (_, y) in zip(predicted, heldout)) / len(heldout)
print(json.dumps({"accuracy": accuracy, "train_seconds": seconds}))
"""


def _data(name: str, data: Path) -> tuple[list, list]:
    return _sst2(data) if name == "sst2" else _trec(data, 0)


def run_bertkit(train_rows: list, heldout_file: Path, tmp: Path, extra: dict) -> dict:
    import bertkit.training.session  # noqa: F401  (torch and transformers: SetFit's clock starts after its imports)
    from bertkit.api import evaluate, train
    from bertkit.config import RunConfig
    from bertkit.run_dir import RunDir

    train_file = _write(tmp / "train.csv", train_rows)
    out = tmp / f"run-{len(list(tmp.glob('run-*')))}"
    start = time.perf_counter()
    result = train(RunConfig().with_overrides({"out": str(out), "data.train": str(train_file), **extra}),
                   progress=False)
    seconds = time.perf_counter() - start
    used = RunDir(out).load_config().train
    return {"accuracy": evaluate(out, heldout_file)["accuracy"], "train_seconds": seconds, "method": used.method,
            "steps": result.steps, "dev_accuracy": result.metrics.get("accuracy")}


def run_bertkit_process(train_rows: list, heldout_file: Path, tmp: Path, extra: dict) -> dict:
    """`bertkit train --train FILE --out RUN` as a process of its own, timed from its start to its exit (the
    imports, model loading, training, the run directory and its report), then scored in this process."""
    from bertkit.api import evaluate

    train_file = _write(tmp / "train.csv", train_rows)
    out = tmp / "run"
    settings = [arg for key, value in extra.items() for arg in ("--set", f"{key}={value}")]
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bertkit", "train", "--train", str(train_file), "--out", str(out),
                           "--quiet", *settings], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"bertkit train failed (exit status {done.returncode}): {done.stderr.strip()[-2000:]}")
    return {"accuracy": evaluate(out, heldout_file)["accuracy"], "process_seconds": seconds}


def run_frozen_lr(train_rows: list, heldout: list) -> dict:
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoModel, AutoTokenizer

    from bertkit.models.loading import embedded_model_dir

    start = time.perf_counter()
    folder = str(embedded_model_dir())
    tok, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()

    def embed(texts: list[str]) -> np.ndarray:
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), 64):
                batch = tok(texts[i:i + 64], padding=True, truncation=True, max_length=128, return_tensors="pt")
                hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).float()
                mean = (hidden * mask).sum(1) / mask.sum(1)
                out.append(torch.nn.functional.normalize(mean, dim=-1).numpy())
        return np.concatenate(out)

    clf = LogisticRegression(max_iter=1000).fit(embed([t for t, _ in train_rows]), [y for _, y in train_rows])
    seconds = time.perf_counter() - start
    predicted = clf.predict(embed([t for t, _ in heldout]))
    return {"accuracy": float(np.mean(predicted == np.array([y for _, y in heldout]))), "train_seconds": seconds}


def run_setfit(python: str, train_rows: list, heldout: list, per_class: int, tmp: Path, full: bool = False) -> dict:
    from bertkit.models.loading import embedded_model_dir

    labels = [y for _, y in train_rows]
    n = len(labels)
    positive = sum(labels.count(y) * (labels.count(y) + 1) // 2 for y in set(labels))
    default_pairs = 2 * max(positive, n * (n + 1) // 2 - positive)  # SetFit's oversampling
    iterations = "5" if default_pairs > 10_000 and not full else "default"
    start = time.perf_counter()
    proc = subprocess.Popen([python, "-c", _SETFIT, str(embedded_model_dir()), json.dumps(train_rows),
                             json.dumps(heldout), iterations], stdout=subprocess.PIPE,
                            stderr=open(tmp / "setfit.log", "w"), text=True, cwd=tmp)  # its files go to tmp
    process_seconds, last = None, ""
    for line in proc.stdout:
        if line.strip() == "TRAINED":  # from its start: imports, loading, training, saving the model
            process_seconds = time.perf_counter() - start
        last = line
    if proc.wait() != 0 or process_seconds is None:
        log = (tmp / "setfit.log").read_text(errors="replace").strip()[-2000:]
        raise RuntimeError(f"the SetFit run failed (exit status {proc.returncode}): {log}")
    return {**json.loads(last), "num_iterations": iterations, "process_seconds": process_seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--sets", nargs="+", default=["sst2", "trec"])
    ap.add_argument("--per-class", nargs="+", type=int, default=[8, 32, 128])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--systems", nargs="+", default=["bertkit", "frozen-lr", "setfit"])
    ap.add_argument("--setfit-python", help="python of a virtual environment with setfit installed")
    ap.add_argument("--selection-dev", action="store_true",
                    help="score on 1,000 examples drawn from the training pool (never sampled) instead of the "
                    "held-out set: for choosing settings, such as the size below which auto takes few-shot")
    ap.add_argument("--setfit-defaults", action="store_true",
                    help="run SetFit with its defaults at every size (every unique pair, oversampled; slow past "
                         "10,000 pairs), not num_iterations=5 there")
    ap.add_argument("--whole-process", action="store_true",
                    help="time bertkit and SetFit as whole processes, from start to a saved model (imports and "
                         "loading included), as a user running one command sees them; the table's seconds are those")
    ap.add_argument("--bertkit-set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="settings for the bertkit systems, as `bertkit train --set` takes them")
    args = ap.parse_args()
    settings = dict(item.split("=", 1) for item in args.bertkit_set)
    if "setfit" in args.systems and not args.setfit_python:
        ap.error("--setfit-python is needed for the setfit system (or leave setfit out of --systems)")
    table: dict[tuple, list[dict]] = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="bertkit-few-shot-") as tmp_root:
        for name in args.sets:
            pool, heldout = _data(name, args.data)
            if args.selection_dev:
                pool = pool[:]
                random.Random(1234).shuffle(pool)
                pool, heldout = pool[1000:], pool[:1000]
            heldout_file = _write(Path(tmp_root) / f"{name}-heldout.csv", heldout)
            for per_class in args.per_class:
                for seed in args.seeds:
                    sample = _sample(pool, f"{per_class}pc", seed)
                    for system in args.systems:
                        tmp = Path(tempfile.mkdtemp(dir=tmp_root))
                        if system == "bertkit" and args.whole_process:
                            row = run_bertkit_process(sample, heldout_file, tmp, settings)
                        elif system == "bertkit":
                            row = run_bertkit(sample, heldout_file, tmp, settings)
                        elif system in ("standard", "few-shot"):
                            row = run_bertkit(sample, heldout_file, tmp, {**settings, "train.method": system})
                        elif system == "frozen-lr":
                            row = run_frozen_lr(sample, heldout)
                        else:
                            row = run_setfit(args.setfit_python, sample, heldout, per_class, tmp, args.setfit_defaults)
                        row = {"data": name, "per_class": per_class, "seed": seed, "system": system,
                               "train_rows": len(sample), **row}
                        print(json.dumps(row), flush=True)
                        table[(name, per_class, system)].append(row)
    print()
    print("| data | N/class | " + " | ".join(args.systems) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in args.systems) + " |")
    for name in args.sets:
        for per_class in args.per_class:
            cells = []
            for system in args.systems:
                rows = table[(name, per_class, system)]
                accs = [r["accuracy"] for r in rows]
                spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
                clock = "process_seconds" if args.whole_process and system in ("bertkit", "setfit") else "train_seconds"
                secs = statistics.mean(r[clock] for r in rows)
                cells.append(f"{statistics.mean(accs):.3f} ± {spread:.3f} ({secs:.0f} s)")
            print(f"| {name} | {per_class} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
