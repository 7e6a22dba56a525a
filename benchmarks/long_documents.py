"""Long documents: IMDB reviews (median 233 tokens, 15 % past 512) with `bertkit train` and no flags, against
the Hugging Face Trainer at 128 and 512 tokens and TF-IDF + logistic regression, on the same reviews, scored
on held-out reviews overall and by length.

    python benchmarks/long_documents.py [--data ../shared/data] [--train-rows 4000] \
        [--systems bertkit trainer-128 trainer-512 tfidf] [--bertkit-set KEY=VALUE ...] [--label NAME]

Data: `imdb/train.csv.gz` (25,000 shuffled reviews). Its last 2,000 rows are the held-out set, never used
for training or selection; `--train-rows N` draws N/2 reviews per class from the first 23,000 (seed 0).
Each system gets the training file alone and makes its own dev split where it uses one.

- `bertkit`: the whole `bertkit train --train FILE --out RUN` process (no flags: it splits a tenth off as
  dev, chooses its window from the reviews' lengths and reads longer ones in windows), then `bertkit predict`
  on the held-out file. `--bertkit-set task.long_inputs=truncate` (say) tries another setting; `--label`
  names the row.
- `trainer-128`: `run_glue.py`'s defaults (`TrainingArguments` defaults: lr 5e-5, batch 8, 3 epochs, no
  warm-up; inputs padded to 128 tokens), bf16 autocast where the CPU has it, as bertkit.
- `trainer-512`: the same at 512 tokens with dynamic padding and length-grouped batches.
- `tfidf`: word 1-2-grams (sublinear tf, min_df 2) + logistic regression, C chosen on a tenth of the
  training reviews among 0.5, 2 and 8, then refitted on all of them.

Each system runs in a child process of its own, one after the other; one JSON line each: held-out accuracy,
accuracy by length bucket (tokens of the embedded tokenizer, specials included), wall seconds of training
(whole process for bertkit) and of scoring the held-out reviews.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
HELDOUT, POOL = 2000, 23000
BUCKETS = ((0, 128), (129, 256), (257, 512), (513, 1024), (1025, 10**9))
SYSTEMS = ("bertkit", "trainer-128", "trainer-512", "tfidf")


def _rows(data: Path) -> list[dict[str, str]]:
    with gzip.open(data / "imdb" / "train.csv.gz", "rt", encoding="utf-8", newline="") as fh:
        return [{"text": r["text"], "label": r["label"]} for r in csv.DictReader(fh)]


def _split(data: Path, n: int) -> tuple[list[dict], list[dict]]:
    rows = _rows(data)
    heldout, pool = rows[-HELDOUT:], rows[:POOL]
    by_label: dict[str, list[dict]] = {}
    for row in pool:
        by_label.setdefault(row["label"], []).append(row)
    rng = random.Random(0)
    train = [row for label in sorted(by_label)
             for row in rng.sample(by_label[label], min(n // 2, len(by_label[label])))]
    rng.shuffle(train)
    return train, heldout


def _write(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def _scores(predicted: list[str], heldout: list[dict]) -> dict:
    """Accuracy overall and by length bucket."""
    from bertkit.models.loading import embedded_model_dir, load_tokenizer

    tok = load_tokenizer(str(embedded_model_dir()))
    lengths = [len(ids) for ids in tok([r["text"] for r in heldout], verbose=False)["input_ids"]]
    right = [p == r["label"] for p, r in zip(predicted, heldout)]
    out = {"accuracy": sum(right) / len(right)}
    for lo, hi in BUCKETS:
        idx = [i for i, n in enumerate(lengths) if lo <= n <= hi]
        name = f"acc_{lo}-{hi}" if hi < 10**9 else f"acc_over_{lo - 1}"
        out[name] = round(sum(right[i] for i in idx) / len(idx), 4) if idx else None
        out[name.replace("acc_", "n_")] = len(idx)
    return out


def run_bertkit(train_file: Path, heldout_file: Path, heldout: list[dict], args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="long-docs-"))
    bk = str(Path(sys.executable).parent / "bertkit")
    run = tmp / "run"
    start = time.perf_counter()
    subprocess.run([bk, "train", "--train", str(train_file), "--out", str(run), "--quiet",
                    *[f"--set={item}" for item in args.bertkit_set]], check=True)
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    subprocess.run([bk, "predict", str(run), "--input", str(heldout_file), "--output", str(tmp / "p.jsonl")],
                   check=True, stdout=subprocess.DEVNULL)
    score_seconds = time.perf_counter() - start
    predictions = [json.loads(line) for line in (tmp / "p.jsonl").read_text(encoding="utf-8").split("\n") if line]
    config = (run / "config.yaml").read_text(encoding="utf-8")
    env = json.loads((run / "environment.json").read_text(encoding="utf-8"))
    results = json.loads((run / "results.json").read_text(encoding="utf-8")) if (run / "results.json").is_file() else {}
    window = next((line.split(":")[1].strip() for line in config.splitlines() if line.strip().startswith("max_length")),
                  None)
    return {**_scores([p["label"] for p in predictions], heldout), "process_seconds": train_seconds,
            "predict_seconds": score_seconds, "window": window, "lengths": env["data"].get("lengths", {}).get("train"),
            "windows_read": sum(p.get("windows", 1) for p in predictions),
            "dev": results.get("dev")}


_TRAINER = r"""
import json, sys, time
import numpy as np
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                          TrainingArguments)
model_dir, train_file, heldout_file, out, length, bf16 = sys.argv[1:7]
length, bf16 = int(length), bf16 == "1"
import csv
train = list(csv.DictReader(open(train_file, encoding="utf-8", newline="")))
heldout = list(csv.DictReader(open(heldout_file, encoding="utf-8", newline="")))
labels = sorted({r["label"] for r in train})
tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=len(labels))
pad = "max_length" if length == 128 else False  # run_glue pads to max_seq_length; the 512 run pads per batch
def features(rows, with_labels=True):
    enc = tok([r["text"] for r in rows], truncation=True, max_length=length, padding=pad)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    return [{**{k: enc[k][i] for k in keys}, **({"labels": labels.index(r["label"])} if with_labels else {})}
            for i, r in enumerate(rows)]
args = TrainingArguments(output_dir=out, bf16=bf16, use_cpu=True, save_strategy="no", report_to="none",
                         disable_tqdm=True, logging_steps=100, per_device_eval_batch_size=64,
                         **({"train_sampling_strategy": "group_by_length"} if length != 128 else {}))
trainer = Trainer(model=model, args=args, train_dataset=features(train),
                  data_collator=DataCollatorWithPadding(tok))
start = time.perf_counter(); trainer.train(); train_seconds = time.perf_counter() - start
start = time.perf_counter(); out_ = trainer.predict(features(heldout, with_labels=False))
score_seconds = time.perf_counter() - start
print(json.dumps({"predicted": [labels[i] for i in out_.predictions.argmax(-1)], "train_seconds": train_seconds,
                  "predict_seconds": score_seconds, "steps": trainer.state.global_step}))
"""


def run_trainer(length: int, train_file: Path, heldout_file: Path, heldout: list[dict]) -> dict:
    from bertkit.models.loading import embedded_model_dir
    from bertkit.runtime import cpu_has_bf16

    tmp = tempfile.mkdtemp(prefix="long-docs-hf-")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _TRAINER, str(embedded_model_dir()), str(train_file),
                           str(heldout_file), tmp, str(length), "1" if cpu_has_bf16() else "0"],
                          check=True, capture_output=True, text=True)
    process = time.perf_counter() - start
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return {**_scores(out.pop("predicted"), heldout), **out, "process_seconds": process}


def run_tfidf(train: list[dict], heldout: list[dict]) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    start = time.perf_counter()
    texts, labels = [r["text"] for r in train], [r["label"] for r in train]
    cut = len(train) // 10
    best = None
    for c in (0.5, 2.0, 8.0):  # chosen on a tenth of the training reviews
        vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
        model = LogisticRegression(C=c, max_iter=2000).fit(vec.fit_transform(texts[cut:]), labels[cut:])
        dev = (model.predict(vec.transform(texts[:cut])) == labels[:cut]).mean()
        best = max(best or (dev, c), (dev, c))
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    model = LogisticRegression(C=best[1], max_iter=2000).fit(vec.fit_transform(texts), labels)
    seconds = time.perf_counter() - start
    predicted = list(model.predict(vec.transform([r["text"] for r in heldout])))
    return {**_scores(predicted, heldout), "train_seconds": seconds, "C": best[1], "dev_accuracy": float(best[0])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=HERE.parents[1] / "shared" / "data")
    ap.add_argument("--train-rows", type=int, default=4000, help="training reviews, half of each class")
    ap.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    ap.add_argument("--bertkit-set", nargs="*", default=[], metavar="KEY=VALUE")
    ap.add_argument("--label", help="a name for the bertkit row (with --bertkit-set)")
    ap.add_argument("--only", choices=SYSTEMS, help=argparse.SUPPRESS)  # in the child process
    args = ap.parse_args()
    if args.only:
        with tempfile.TemporaryDirectory(prefix="long-docs-") as root:
            tempfile.tempdir = root  # every file and run of this child goes there, and is removed with it
            train, heldout = _split(args.data, args.train_rows)
            train_file = _write(Path(root) / "train.csv", train)
            heldout_file = _write(Path(root) / "heldout.csv", heldout)
            if args.only == "bertkit":
                row = run_bertkit(train_file, heldout_file, heldout, args)
            elif args.only == "tfidf":
                row = run_tfidf(train, heldout)
            else:
                row = run_trainer(int(args.only.split("-")[1]), train_file, heldout_file, heldout)
        name = args.label or (args.only if not args.bertkit_set else "bertkit " + " ".join(args.bertkit_set))
        row = {"system": name, "train_rows": len(train), "heldout": len(heldout), **row}
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
        return 0
    for system in args.systems:
        cmd = [sys.executable, __file__, "--data", str(args.data), "--train-rows", str(args.train_rows),
               "--only", system, *(["--label", args.label] if args.label else [])]
        if args.bertkit_set and system == "bertkit":
            cmd += ["--bertkit-set", *args.bertkit_set]
        subprocess.run(cmd, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
