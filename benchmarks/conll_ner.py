"""CoNLL-2003 NER: bertkit against the Hugging Face token-classification recipe, side by side.

    python benchmarks/conll_ner.py --data ../shared/data/conll2003 [--epochs 2] [--only bertkit|hf]

Both train the embedded MiniLM-L6 on train.txt.gz with the same hyperparameters (lr, batch, epochs, warmup,
weight decay, max length 128, bf16 where the CPU has it, length-grouped batches) and are scored on
valid.txt with seqeval (default mode). Each runs in its own child process, one after the other, and one
JSON line per system is printed. The Hugging Face side follows `run_ner.py`: first-subword labels and
truncation at 128 tokens (words past the limit get no prediction and are left out of its score, as
run_ner.py does; `words_predicted` says how many); bertkit covers every word with sliding windows.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _common(args) -> dict:
    return {"lr": 1e-4, "batch_size": 32, "epochs": args.epochs, "warmup_ratio": 0.06, "weight_decay": 0.01,
            "max_length": 128, "seed": 42}


def run_bertkit(args) -> dict:
    from bertkit_timing import timed_train

    h = _common(args)
    run = timed_train({
        "task.name": "ner", "data.train": f"{args.data}/train.txt.gz", "data.dev": f"{args.data}/valid.txt",
        "data.max_length": h["max_length"], "train.lr": h["lr"], "train.batch_size": h["batch_size"],
        "train.epochs": h["epochs"], "train.warmup_ratio": h["warmup_ratio"], "train.weight_decay": h["weight_decay"],
        "train.seed": h["seed"], "train.log_every": 50}, keep=args.keep)
    m = run.pop("metrics")
    return {"system": "bertkit", "f1": m["f1"], "precision": m["precision"], "recall": m["recall"],
            **{k: v for k, v in m.items() if k.endswith("_f1") and k != "f1"}, **run}


def _hf_features(sentences, tokenizer, label2id, max_length):
    enc = tokenizer([s.tokens for s in sentences], is_split_into_words=True, truncation=True, max_length=max_length)
    features = []
    for i, s in enumerate(sentences):
        previous, labels = None, []
        for w in enc.word_ids(i):
            labels.append(-100 if w is None or w == previous else label2id[s.tags[w]])
            previous = w
        features.append({"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
                         "token_type_ids": enc["token_type_ids"][i], "labels": labels})
    return features


def run_hf(args) -> dict:
    import numpy as np
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
    from transformers import (
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        Trainer,
        TrainingArguments,
    )

    from bertkit.data.conll import read_conll
    from bertkit.models.loading import embedded_model_dir
    from bertkit.runtime import cpu_has_bf16

    h = _common(args)
    train = read_conll(f"{args.data}/train.txt.gz")
    dev = read_conll(f"{args.data}/valid.txt")
    labels = sorted({t for s in train for t in s.tags})
    label2id = {name: i for i, name in enumerate(labels)}
    model_dir = str(embedded_model_dir())
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForTokenClassification.from_pretrained(
        model_dir, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id)
    with tempfile.TemporaryDirectory() as tmp:
        targs = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=h["batch_size"], per_device_eval_batch_size=64,
            learning_rate=h["lr"], num_train_epochs=h["epochs"], warmup_steps=h["warmup_ratio"],
            weight_decay=h["weight_decay"], lr_scheduler_type="linear", bf16=cpu_has_bf16(), use_cpu=True,
            train_sampling_strategy="group_by_length", eval_strategy="no", save_strategy="no", logging_steps=50,
            report_to="none", seed=h["seed"], disable_tqdm=True)
        trainer = Trainer(model=model, args=targs, train_dataset=_hf_features(train, tokenizer, label2id, 128),
                          data_collator=DataCollatorForTokenClassification(tokenizer))
        start = time.perf_counter()
        trainer.train()
        train_s = time.perf_counter() - start
        start = time.perf_counter()
        out = trainer.predict(_hf_features(dev, tokenizer, label2id, 128))
        eval_s = time.perf_counter() - start
    # Pair predictions with the label_ids returned alongside (their order is the batches' order).
    refs, preds = [], []
    for p_row, l_row in zip(np.argmax(out.predictions, -1), out.label_ids):
        keep = l_row != -100
        refs.append([labels[k] for k in l_row[keep]])
        preds.append([labels[k] for k in p_row[keep]])
    words_seen = sum(len(r) for r in refs)
    words_all = sum(len(s.tokens) for s in dev)
    report = classification_report(refs, preds, output_dict=True)
    return {"system": "hf-trainer", "f1": f1_score(refs, preds), "precision": precision_score(refs, preds),
            "recall": recall_score(refs, preds),
            **{f"{k}_f1": report[k]["f1-score"] for k in ("LOC", "MISC", "ORG", "PER")},
            "train_seconds": round(train_s, 1), "eval_seconds": round(eval_s, 1),
            "words_predicted": words_seen, "words_in_dev": words_all}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "conll2003"))
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--only", choices=["bertkit", "hf"], help="run one system in this process")
    parser.add_argument("--keep", help="keep bertkit's run directory here (it must not exist yet)")
    args = parser.parse_args()
    if args.only:
        result = (run_bertkit if args.only == "bertkit" else run_hf)(args)
        result["epochs"] = args.epochs
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}), flush=True)
        return 0
    for system in ("bertkit", "hf"):
        cmd = [sys.executable, __file__, "--data", args.data, "--epochs", str(args.epochs), "--only", system]
        if args.keep:
            cmd += ["--keep", args.keep]
        subprocess.run(cmd, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
