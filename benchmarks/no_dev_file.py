"""A few thousand rows and no dev file: `bertkit train` with no flags against the Hugging Face Trainer's
defaults on the same rows, scored on held-out data; and the whole-process wall time of `bertkit train` with
no flags against the tuned Trainer on 8,000 SST-2 sentences.

    python benchmarks/no_dev_file.py [--data ../shared/data] [--runs sst2 conll squad speed] [--seed 0]
        [--bertkit-set KEY=VALUE ...]

Runs (each system in a child process of its own, one after the other; one JSON line each):
- `sst2`: 4,000 sentences drawn from the SST-2 training file; held out: the 872 GLUE dev sentences.
- `conll`: 3,000 sentences drawn from CoNLL-2003 train.txt; held out: valid.txt, seqeval entity F1.
- `zh`: 3,000 reviews drawn from `zh_sentiment` (Chinese; the embedded model reads 39 % of its tokens);
  held out: its 1,793 dev reviews.
- `squad`: 1,000 questions drawn from SQuAD v1.1 dev articles 0-29 (the official train set is not
  available here); held out: the questions of articles 30-37, official EM/F1.
- `speed`: 8,000 SST-2 sentences; whole process (start-up, reading, training, whatever the system does
  after it, the saved model) of `bertkit train --train FILE --out RUN` against a script that trains the
  tuned Trainer (dynamic padding, length-grouped batches, bf16, batch 32, 3 epochs, as benchmarks/
  train_speed.py's `trainer-tuned`) and saves the model; both then scored on the GLUE dev sentences.

bertkit: the training file and nothing else (`--task ner` / `--task qa` where needed), so a tenth (or none,
below 200 rows) is split off as its dev set. Trainer: `TrainingArguments` defaults (lr 5e-5, batch 8,
3 epochs, no warm-up, no weight decay, linear decay, no evaluation, the last model), following
run_glue.py / run_ner.py / run_qa.py for the features (max length 128; QA 384 with doc stride 128, n-best
20, answers up to 30 tokens); one difference from its defaults: bf16 autocast where the CPU has it, as
bertkit (fp32 would only double its time here). `--bertkit-set` passes settings to bertkit (to try
candidate defaults; the figures above are with none).
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from small_data import _sst2, _write  # noqa: E402

SIZES = {"sst2": 4000, "conll": 3000, "squad": 1000, "speed": 8000, "zh": 3000}
_TUNED = r"""
import csv, sys
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                          TrainingArguments)
model_dir, train_file, out, bf16 = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
rows = list(csv.DictReader(open(train_file, encoding="utf-8")))
labels = sorted({r["label"] for r in rows})
tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForSequenceClassification.from_pretrained(
    model_dir, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})
enc = tok([r["text"] for r in rows], truncation=True, max_length=128)
data = [{"input_ids": i, "attention_mask": m, "token_type_ids": t, "labels": labels.index(r["label"])}
        for i, m, t, r in zip(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"], rows)]
args = TrainingArguments(output_dir=out + "/checkpoints", per_device_train_batch_size=32, learning_rate=5e-5,
                         warmup_steps=0.06, weight_decay=0.01, bf16=bf16, use_cpu=True,
                         train_sampling_strategy="group_by_length", save_strategy="no", report_to="none",
                         disable_tqdm=True, logging_steps=50, seed=42)
Trainer(model=model, args=args, train_dataset=data, data_collator=DataCollatorWithPadding(tok)).train()
model.save_pretrained(out + "/model")
tok.save_pretrained(out + "/model")
"""


def _draw(rows: list, n: int, seed: int) -> list:
    rows = rows[:]
    random.Random(seed).shuffle(rows)
    return rows[:n]


def _defaults(tmp: str, **extra) -> object:
    from transformers import TrainingArguments

    from bertkit.runtime import cpu_has_bf16

    return TrainingArguments(output_dir=tmp, bf16=cpu_has_bf16(), use_cpu=True, save_strategy="no",
                             report_to="none", disable_tqdm=True, logging_steps=50, **extra)


def _bertkit(overrides: dict, extra: list[str]) -> tuple[Path, float, dict]:
    from bertkit.api import train
    from bertkit.config import RunConfig

    out = Path(tempfile.mkdtemp(prefix="bertkit-no-dev-")) / "run"
    config = RunConfig().with_overrides({"out": str(out), **overrides})
    config = config.with_overrides(dict(item.split("=", 1) for item in extra)) if extra else config
    start = time.perf_counter()
    result = train(config, progress=False)
    seconds = time.perf_counter() - start
    from bertkit.run_dir import RunDir

    used = RunDir(out).load_config().train
    return out, seconds, {"steps": result.steps, "batch_size": used.batch_size, "epochs": used.epochs,
                          "lr": used.lr, "method": used.method, "dev_metrics": result.metrics}


def _zh(data: Path) -> tuple[list, list]:
    import csv

    def rows(handle) -> list[tuple[str, str]]:
        return [(r["text"], r["label"]) for r in csv.DictReader(handle)]

    with gzip.open(data / "zh_sentiment" / "train.csv.gz", "rt", encoding="utf-8") as fh:
        train = rows(fh)
    with open(data / "zh_sentiment" / "dev.csv", encoding="utf-8") as fh:
        return train, rows(fh)


def run_sst2(system: str, args) -> dict:
    import numpy as np

    pool, heldout = _zh(args.data) if args.run == "zh" else _sst2(args.data)
    rows = _draw(pool, args.rows or SIZES[args.run], args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="bertkit-no-dev-"))
    train_file, heldout_file = _write(tmp / "train.csv", rows), _write(tmp / "heldout.csv", heldout)
    if system == "bertkit":
        from bertkit.api import evaluate

        out, seconds, used = _bertkit({"data.train": str(train_file)}, args.bertkit_set)
        return {"accuracy": evaluate(out, heldout_file)["accuracy"], "train_seconds": seconds, **used}
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer

    from bertkit.models.loading import embedded_model_dir

    labels = sorted({y for _, y in rows})
    tok = AutoTokenizer.from_pretrained(str(embedded_model_dir()))
    model = AutoModelForSequenceClassification.from_pretrained(str(embedded_model_dir()), num_labels=len(labels))

    def features(part: list) -> list[dict]:
        enc = tok([t for t, _ in part], truncation=True, max_length=128)
        return [{"input_ids": i, "attention_mask": m, "token_type_ids": t, "labels": labels.index(y)}
                for i, m, t, (_, y) in zip(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"], part)]

    trainer = Trainer(model=model, args=_defaults(str(tmp / "hf")), train_dataset=features(rows),
                      data_collator=DataCollatorWithPadding(tok))
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    out = trainer.predict(features(heldout))
    return {"accuracy": float(np.mean(out.predictions.argmax(-1) == out.label_ids)), "train_seconds": seconds,
            "steps": trainer.state.global_step}


def run_conll(system: str, args) -> dict:
    from bertkit.data.conll import read_conll

    folder = args.data / "conll2003"
    tmp = Path(tempfile.mkdtemp(prefix="bertkit-no-dev-"))
    with gzip.open(folder / "train.txt.gz", "rt", encoding="utf-8") as fh:
        documents = fh.read().split("\n\n")  # sentences (and -DOCSTART- blocks) are blank-line separated
    sentences = [d for d in documents if d.strip() and not d.lstrip().startswith("-DOCSTART-")]
    train_file = tmp / "train.txt"
    train_file.write_text("\n\n".join(_draw(sentences, args.rows or SIZES["conll"], args.seed)) + "\n",
                          encoding="utf-8")
    if system == "bertkit":
        from bertkit.api import evaluate

        out, seconds, used = _bertkit({"task.name": "ner", "data.train": str(train_file)}, args.bertkit_set)
        m = evaluate(out, folder / "valid.txt")
        return {"f1": m["f1"], **{k: v for k, v in m.items() if k.endswith("_f1")}, "train_seconds": seconds, **used}
    from conll_ner import _hf_features
    from seqeval.metrics import f1_score
    from transformers import AutoModelForTokenClassification, AutoTokenizer, DataCollatorForTokenClassification, Trainer

    from bertkit.models.loading import embedded_model_dir

    train, dev = read_conll(train_file), read_conll(folder / "valid.txt")
    labels = sorted({t for s in train for t in s.tags} | {t for s in dev for t in s.tags})
    label2id = {name: i for i, name in enumerate(labels)}
    tok = AutoTokenizer.from_pretrained(str(embedded_model_dir()))
    model = AutoModelForTokenClassification.from_pretrained(str(embedded_model_dir()), num_labels=len(labels))
    trainer = Trainer(model=model, args=_defaults(str(tmp / "hf")),
                      train_dataset=_hf_features(train, tok, label2id, 128),
                      data_collator=DataCollatorForTokenClassification(tok))
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    out = trainer.predict(_hf_features(dev, tok, label2id, 128))
    refs, preds = [], []
    for p_row, l_row in zip(out.predictions.argmax(-1), out.label_ids):
        keep = l_row != -100
        refs.append([labels[k] for k in l_row[keep]])
        preds.append([labels[k] for k in p_row[keep]])
    return {"f1": f1_score(refs, preds), "train_seconds": seconds, "steps": trainer.state.global_step,
            "note": "run_ner.py truncation at 128 tokens: words past it are left out of the score"}


def run_squad(system: str, args) -> dict:
    squad = json.loads(gzip.open(args.data / "squad_v1.1" / "dev-v1.1-articles-00-37.json.gz", "rt",
                                 encoding="utf-8").read())
    questions = [(a, p, q) for a, art in enumerate(squad["data"][:30]) for p, par in enumerate(art["paragraphs"])
                 for q in range(len(par["qas"]))]
    keep = set(_draw(questions, args.rows or SIZES["squad"], args.seed))
    articles = []
    for a, art in enumerate(squad["data"][:30]):
        paragraphs = [{"context": par["context"], "qas": [qa for q, qa in enumerate(par["qas"]) if (a, p, q) in keep]}
                      for p, par in enumerate(art["paragraphs"])]
        articles.append({"title": art["title"], "paragraphs": [p for p in paragraphs if p["qas"]]})
    tmp = Path(tempfile.mkdtemp(prefix="bertkit-no-dev-"))
    train_file, heldout_file = tmp / "train.json", tmp / "heldout.json"
    train_file.write_text(json.dumps({"version": "1.1", "data": articles}), encoding="utf-8")
    heldout_file.write_text(json.dumps({"version": "1.1", "data": squad["data"][30:]}), encoding="utf-8")
    if system == "bertkit":
        from bertkit.api import evaluate

        out, seconds, used = _bertkit({"task.name": "qa", "data.train": str(train_file)}, args.bertkit_set)
        m = evaluate(out, heldout_file)
        return {"exact_match": m["exact_match"], "f1": m["f1"], "train_seconds": seconds, **used}
    from squad_qa import _hf_eval_features, _hf_postprocess, _hf_train_features
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, Trainer, default_data_collator

    from bertkit.config import DataConfig, TaskConfig
    from bertkit.data.task_files import read_examples
    from bertkit.models.loading import embedded_model_dir
    from bertkit.tasks import get_task
    from bertkit.tasks.squad_metrics import squad_scores

    task = get_task(TaskConfig(name="qa"))
    train_records = read_examples(task, train_file, DataConfig(), None)
    eval_records = read_examples(task, heldout_file, DataConfig(), None)
    tok = AutoTokenizer.from_pretrained(str(embedded_model_dir()))
    model = AutoModelForQuestionAnswering.from_pretrained(str(embedded_model_dir()))
    trainer = Trainer(model=model, args=_defaults(str(tmp / "hf"), per_device_eval_batch_size=64),
                      train_dataset=_hf_train_features(train_records, tok), data_collator=default_data_collator)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    feats, meta = _hf_eval_features(eval_records, tok)
    out = trainer.predict(feats)
    answers = _hf_postprocess(eval_records, meta, out.predictions[0], out.predictions[1])
    return {**squad_scores(answers, [[a["text"] for a in r["answers"]] for r in eval_records]),
            "train_seconds": seconds, "steps": trainer.state.global_step}


def run_speed(system: str, args) -> dict:
    from bertkit.api import evaluate
    from bertkit.models.loading import embedded_model_dir
    from bertkit.runtime import cpu_has_bf16

    pool, heldout = _sst2(args.data)
    tmp = Path(tempfile.mkdtemp(prefix="bertkit-no-dev-"))
    train_file = _write(tmp / "train.csv", _draw(pool, args.rows or SIZES["speed"], args.seed))
    heldout_file = _write(tmp / "heldout.csv", heldout)
    out = tmp / "run"
    if system == "bertkit":
        cmd = [str(Path(sys.executable).parent / "bertkit"), "train", "--train", str(train_file), "--out", str(out),
               "--quiet", *[f"--set={item}" for item in args.bertkit_set]]
    else:
        cmd = [sys.executable, "-c", _TUNED, str(embedded_model_dir()), str(train_file), str(out),
               "1" if cpu_has_bf16() else "0"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    if system == "bertkit":
        accuracy = evaluate(out, heldout_file)["accuracy"]
    else:
        accuracy = _score_saved(out / "model", heldout)
    return {"accuracy": accuracy, "process_seconds": seconds}


def _score_saved(model_dir: Path, heldout: list) -> float:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).eval()
    right = 0
    with torch.no_grad():
        for i in range(0, len(heldout), 64):
            part = heldout[i:i + 64]
            logits = model(**tok([t for t, _ in part], padding=True, truncation=True, max_length=128,
                                 return_tensors="pt")).logits
            right += sum(model.config.id2label[int(k)] == y for k, (_, y) in zip(logits.argmax(-1), part))
    return right / len(heldout)


RUNS = {"sst2": run_sst2, "conll": run_conll, "squad": run_squad, "speed": run_speed, "zh": run_sst2}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=HERE.parents[1] / "shared" / "data")
    ap.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    ap.add_argument("--systems", nargs="+", default=["bertkit", "trainer"], choices=["bertkit", "trainer"])
    ap.add_argument("--seed", type=int, default=0, help="which rows are drawn")
    ap.add_argument("--rows", type=int, help="draw this many rows (questions for squad) instead of the run's size")
    ap.add_argument("--bertkit-set", nargs="*", default=[], metavar="KEY=VALUE")
    ap.add_argument("--only", help=argparse.SUPPRESS)  # RUN:SYSTEM, in the child process
    args = ap.parse_args()
    if args.only:
        name, system = args.only.split(":")
        args.run = name
        with tempfile.TemporaryDirectory(prefix="bertkit-no-dev-") as root:
            tempfile.tempdir = root  # every file and run of this child goes there, and is removed with it
            row = {"run": name, "system": system, "rows": args.rows or SIZES[name], "seed": args.seed,
                   **RUNS[name](system, args)}
        print(json.dumps({k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in row.items()}), flush=True)
        return 0
    for name in args.runs:
        for system in args.systems:
            cmd = [sys.executable, __file__, "--data", str(args.data), "--seed", str(args.seed),
                   "--only", f"{name}:{system}", *(["--rows", str(args.rows)] if args.rows else [])]
            if args.bertkit_set:
                cmd += ["--bertkit-set", *args.bertkit_set]
            subprocess.run(cmd, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
