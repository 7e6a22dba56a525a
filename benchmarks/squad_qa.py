"""SQuAD v1.1 (dev articles 0-37): bertkit against the Hugging Face question-answering recipe, side by side.

    python benchmarks/squad_qa.py --data ../shared/data/squad_v1.1/dev-v1.1-articles-00-37.json.gz \
        [--train-articles 15] [--heldout-from 30] [--epochs 1] [--only bertkit|hf|memory] [--keep RUN]

The official train set is not available here: articles 0..N-1 train and the rest are held out (say
"SQuAD v1.1 dev articles 0-37, split by article" with every figure). Both systems train the embedded
MiniLM-L6 with the same hyperparameters (max length 384, doc stride 128, lr, batch, epochs, warmup, bf16
where the CPU has it) and are scored with the official EM/F1. The Hugging Face side follows run_qa.py
(Trainer, windows with offset mapping, n-best 20, max answer length 30). `--only memory` evaluates a
kept bertkit run on all 38 articles and prints the peak resident memory of that process.
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
H = {"lr": 1e-4, "batch_size": 32, "warmup_ratio": 0.06, "weight_decay": 0.01, "max_length": 384, "stride": 128,
     "seed": 42}


def split_articles(data: str, n_train: int, heldout_from: int, tmp: Path) -> tuple[Path, Path]:
    squad = json.loads(gzip.open(data, "rt", encoding="utf-8").read())
    out = []
    for name, articles in (("train", squad["data"][:n_train]), ("heldout", squad["data"][heldout_from:])):
        path = tmp / f"{name}.json"
        path.write_text(json.dumps({"version": squad.get("version", "1.1"), "data": articles}), encoding="utf-8")
        out.append(path)
    return out[0], out[1]


def run_bertkit(args, train: Path, heldout: Path) -> dict:
    from bertkit_timing import timed_train

    run = timed_train({
        "task.name": "qa", "data.train": str(train), "data.dev": str(heldout), "data.max_length": H["max_length"],
        "task.doc_stride": H["stride"], "train.lr": H["lr"], "train.batch_size": H["batch_size"],
        "train.epochs": args.epochs, "train.warmup_ratio": H["warmup_ratio"], "train.weight_decay": H["weight_decay"],
        "train.seed": H["seed"], "train.log_every": 20}, keep=args.keep)
    return {"system": "bertkit", **run.pop("metrics"), **run}


def _hf_train_features(records, tokenizer):
    enc = tokenizer([r["question"] for r in records], [r["context"] for r in records], truncation="only_second",
                    max_length=H["max_length"], stride=H["stride"], return_overflowing_tokens=True,
                    return_offsets_mapping=True, padding="max_length")
    feats = []
    for j, offsets in enumerate(enc["offset_mapping"]):
        r = records[enc["overflow_to_sample_mapping"][j]]
        seq = enc.sequence_ids(j)
        a = r["answers"][0]
        s_char, e_char = a["start"], a["start"] + len(a["text"])
        ts = seq.index(1)
        te = len(seq) - 1 - seq[::-1].index(1)
        if not (offsets[ts][0] <= s_char and offsets[te][1] >= e_char):
            start = end = 0
        else:
            while ts < len(offsets) and offsets[ts][0] <= s_char:
                ts += 1
            while offsets[te][1] >= e_char:
                te -= 1
            start, end = ts - 1, te + 1
        feats.append({"input_ids": enc["input_ids"][j], "attention_mask": enc["attention_mask"][j],
                      "token_type_ids": enc["token_type_ids"][j], "start_positions": start, "end_positions": end})
    return feats


def _hf_eval_features(records, tokenizer):
    enc = tokenizer([r["question"] for r in records], [r["context"] for r in records], truncation="only_second",
                    max_length=H["max_length"], stride=H["stride"], return_overflowing_tokens=True,
                    return_offsets_mapping=True, padding="max_length")
    feats, meta = [], []
    for j, offsets in enumerate(enc["offset_mapping"]):
        seq = enc.sequence_ids(j)
        feats.append({"input_ids": enc["input_ids"][j], "attention_mask": enc["attention_mask"][j],
                      "token_type_ids": enc["token_type_ids"][j]})
        meta.append((enc["overflow_to_sample_mapping"][j], [o if seq[k] == 1 else None for k, o in enumerate(offsets)]))
    return feats, meta


def _hf_postprocess(records, meta, start_logits, end_logits, n_best=20, max_answer_length=30):
    """utils_qa.postprocess_qa_predictions for SQuAD v1.1: best n-best span over all windows of a question."""
    import numpy as np

    best: dict[int, tuple[float, str]] = {}
    for (i, offsets), s, e in zip(meta, start_logits, end_logits):
        context = records[i]["context"]
        for a in np.argsort(s)[-1 : -n_best - 1 : -1]:
            for b in np.argsort(e)[-1 : -n_best - 1 : -1]:
                if a >= len(offsets) or b >= len(offsets) or offsets[a] is None or offsets[b] is None:
                    continue
                if b < a or b - a + 1 > max_answer_length:
                    continue
                score = float(s[a] + e[b])
                if i not in best or score > best[i][0]:
                    best[i] = (score, context[offsets[a][0] : offsets[b][1]])
    return [best.get(i, (0.0, ""))[1] for i in range(len(records))]


def run_hf(args, train: Path, heldout: Path) -> dict:
    from transformers import (
        AutoModelForQuestionAnswering,
        AutoTokenizer,
        Trainer,
        TrainingArguments,
        default_data_collator,
    )

    from bertkit.config import DataConfig, TaskConfig
    from bertkit.data.task_files import read_examples
    from bertkit.models.loading import embedded_model_dir
    from bertkit.runtime import cpu_has_bf16
    from bertkit.tasks import get_task
    from bertkit.tasks.squad_metrics import squad_scores

    task = get_task(TaskConfig(name="qa"))  # only its reader: the same records for both systems
    train_records = read_examples(task, train, DataConfig(), None)
    eval_records = read_examples(task, heldout, DataConfig(), None)
    model_dir = str(embedded_model_dir())
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForQuestionAnswering.from_pretrained(model_dir)
    with tempfile.TemporaryDirectory() as tmp:
        targs = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=H["batch_size"], per_device_eval_batch_size=64,
            learning_rate=H["lr"], num_train_epochs=args.epochs, warmup_steps=H["warmup_ratio"],
            weight_decay=H["weight_decay"], lr_scheduler_type="linear", bf16=cpu_has_bf16(), use_cpu=True,
            eval_strategy="no", save_strategy="no", logging_steps=20, report_to="none", seed=H["seed"],
            disable_tqdm=True)
        trainer = Trainer(model=model, args=targs, train_dataset=_hf_train_features(train_records, tokenizer),
                          data_collator=default_data_collator)
        start = time.perf_counter()
        trainer.train()
        train_s = time.perf_counter() - start
        start = time.perf_counter()
        feats, meta = _hf_eval_features(eval_records, tokenizer)
        out = trainer.predict(feats)  # sequential sampler: predictions stay in feature order
        answers = _hf_postprocess(eval_records, meta, out.predictions[0], out.predictions[1])
        eval_s = time.perf_counter() - start
    scores = squad_scores(answers, [[a["text"] for a in r["answers"]] for r in eval_records])
    return {"system": "hf-trainer (run_qa recipe, padding to 384)", **scores, "train_seconds": round(train_s, 1),
            "eval_seconds": round(eval_s, 1)}


def run_memory(args) -> dict:
    from bertkit.api import evaluate

    start = time.perf_counter()
    metrics = evaluate(args.keep, args.data)
    return {"system": "bertkit evaluate, all 38 articles (8,582 questions)", **metrics,
            "seconds": round(time.perf_counter() - start, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "squad_v1.1" /
                                              "dev-v1.1-articles-00-37.json.gz"))
    parser.add_argument("--train-articles", type=int, default=30)
    parser.add_argument("--heldout-from", type=int, default=None, help="first held-out article (default: next)")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--only", choices=["bertkit", "hf", "memory"])
    parser.add_argument("--keep", help="bertkit's run directory (kept; needed by --only memory)")
    args = parser.parse_args()
    if args.only == "memory":
        print(json.dumps(run_memory(args)), flush=True)
        return 0
    if args.only:
        with tempfile.TemporaryDirectory() as tmp:
            heldout_from = args.heldout_from if args.heldout_from is not None else args.train_articles
            train, heldout = split_articles(args.data, args.train_articles, heldout_from, Path(tmp))
            result = (run_bertkit if args.only == "bertkit" else run_hf)(args, train, heldout)
        result.update(epochs=args.epochs, split=f"SQuAD v1.1 dev articles 0-{args.train_articles - 1} train, "
                      f"{heldout_from}-37 held out")
        print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()}), flush=True)
        return 0
    for system in ("bertkit", "hf"):
        cmd = [sys.executable, __file__, "--data", args.data, "--train-articles", str(args.train_articles),
               "--epochs", str(args.epochs), "--only", system]
        if args.heldout_from is not None:
            cmd += ["--heldout-from", str(args.heldout_from)]
        if args.keep and system == "bertkit":
            cmd += ["--keep", args.keep]
        subprocess.run(cmd, check=True)
    if args.keep:
        subprocess.run([sys.executable, __file__, "--data", args.data, "--only", "memory", "--keep", args.keep],
                       check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
