"""Chinese with the embedded (English) MiniLM: unadapted, adapted (vocabulary extended + masked-LM pre-training
on the training text), and a TF-IDF baseline; zh_sentiment dev accuracy and zh_ner dev entity F1 (per type).

    python benchmarks/chinese.py [--data ../shared/data] [--work /tmp/zh-bench] [--stages ...] [--label L]
    python benchmarks/chinese.py --show-errors RUN [--max-chars 30] [--limit 40]

Stages (each one `bertkit` command, timed whole-process; results append to WORK/results.jsonl, and a stage
already there is skipped, so an interrupted benchmark continues):
- tfidf:        character 1-3-gram TF-IDF + logistic regression (scikit-learn), zh_sentiment
- cls-base:     bertkit train on zh_sentiment, the embedded model as it is
- ner-base:     bertkit train --task ner on zh_ner, the embedded model as it is
- adapt:        bertkit pretrain --extend-vocab on the training text of both sets (no dev text)
- cls-adapted:  cls-base started from the adapted run (--init-from)
- ner-adapted:  ner-base started from the adapted run
- adapt-more:   more masked-LM pre-training, started from the adapted run (--init-from; --more-epochs at
                --more-lr)
- cls-more, ner-more: cls-base and ner-base started from adapt-more
- adapt-3:      more masked-LM pre-training again, started from adapt-more (--more-epochs at --more-lr)
- cls-3, ner-3: cls-base and ner-base started from adapt-3
- adapt-wwm:    adapt with whole-word masking of jieba's words (--whole-word-masking --word-segmenter jieba)
- cls-wwm, ner-wwm: cls-base and ner-base started from adapt-wwm
- adapt-tapt:   task-adaptive pre-training: more masked-LM pre-training on the zh_sentiment training reviews
                alone, started from adapt-3 (--more-epochs at --more-lr)
- cls-tapt:     cls-base started from adapt-tapt
- adapt-words:  adapt with Chinese words as tokens too: the characters --extend-vocab adds, plus every word of
                two or more CJK characters that jieba finds at least --word-min-count times in the text, as an
                explicit list (--extend-vocab-list; the words become added tokens, matched before the
                characters); needs jieba (`pip install "bertkit[chinese]"`)
- cls-words, ner-words: cls-base and ner-base started from adapt-words
Every fine-tune uses bertkit's defaults except --epochs (--epochs here); selection and figures on the dev files.
`--label L` runs the stages again with other flags beside the first runs: run folders and result rows are
named STAGE@L, and parents are still the unlabelled runs (e.g. `--stages cls-tapt --lr 5e-5 --label lr5e-5`).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

STAGES = ("tfidf", "cls-base", "ner-base", "adapt", "cls-adapted", "ner-adapted", "adapt-more", "cls-more",
          "ner-more", "adapt-3", "cls-3", "ner-3", "adapt-wwm", "cls-wwm", "ner-wwm", "adapt-tapt", "cls-tapt",
          "adapt-words", "cls-words", "ner-words")


PARENT = {"adapt-more": "adapt", "adapt-3": "adapt-more", "adapt-tapt": "adapt-3"}


def _sentiment(data: Path) -> tuple[Path, Path]:
    return data / "zh_sentiment" / "train.csv.gz", data / "zh_sentiment" / "dev.csv"


def _ner(data: Path) -> tuple[Path, Path]:
    return data / "zh_ner" / "train.txt.gz", data / "zh_ner" / "dev.txt"


def _ner_text(train: Path, out: Path) -> Path:
    """The NER training sentences as plain text, one per line (the characters joined)."""
    if out.exists():
        return out
    lines, chars = [], []
    with gzip.open(train, "rt", encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                if chars:
                    lines.append("".join(chars))
                chars = []
                continue
            chars.append(line.split()[0])
    if chars:
        lines.append("".join(chars))
    tmp = out.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(out)
    return out


def _texts(data: Path, work: Path) -> list[str]:
    """The pre-training text: the zh_sentiment training reviews and the zh_ner training sentences."""
    with gzip.open(_sentiment(data)[0], "rt", encoding="utf-8") as fh:
        reviews = [row["text"] for row in csv.DictReader(io.StringIO(fh.read()))]
    sentences = _ner_text(_ner(data)[0], work / "zh_ner_train.txt").read_text(encoding="utf-8").splitlines()
    return reviews + [s for s in sentences if s]


def _word_list(data: Path, work: Path, min_count: int) -> Path:
    """The characters `--extend-vocab` would add to the embedded tokenizer, then jieba's words of two or more
    CJK characters seen at least `min_count` times (most frequent first), one per line."""
    import re
    from collections import Counter

    try:
        import jieba
    except ImportError:
        raise SystemExit('the adapt-words stage needs jieba: pip install "bertkit[chinese]"') from None

    from bertkit.config import ModelConfig
    from bertkit.models.loading import embedded_model_dir, load_tokenizer
    from bertkit.models.vocab import new_tokens

    out = work / f"zh_words_{min_count}.txt"
    if out.exists():
        return out
    texts = _texts(data, work)
    chars = new_tokens(texts, load_tokenizer(str(embedded_model_dir())), ModelConfig().extend_vocab_min_count)
    jieba.setLogLevel(60)
    cjk = re.compile(r"[\u4e00-\u9fff]{2,}")
    counts = Counter(w for text in texts for w in jieba.lcut(text) if cjk.fullmatch(w))
    words = [w for w, n in counts.most_common() if n >= min_count]
    tmp = out.with_suffix(".tmp")
    tmp.write_text("\n".join(chars + words) + "\n", encoding="utf-8")
    tmp.replace(out)
    print(f"{out}: {len(chars)} characters and {len(words)} words", flush=True)
    return out


def _tfidf(data: Path) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    train, dev = _sentiment(data)

    def rows(path: Path) -> list[dict]:
        opener = gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")
        with opener as fh:
            return list(csv.DictReader(io.StringIO(fh.read())))

    tr, dv = rows(train), rows(dev)
    start = time.perf_counter()
    vec = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True, min_df=2)
    x = vec.fit_transform([r["text"] for r in tr])
    clf = LogisticRegression(max_iter=2000, C=10.0).fit(x, [r["label"] for r in tr])
    acc = (clf.predict(vec.transform([r["text"] for r in dv])) == [r["label"] for r in dv]).mean()
    return {"accuracy": round(float(acc), 4), "seconds": round(time.perf_counter() - start, 1)}


def show_errors(run: Path, dev: Path, max_chars: int, limit: int) -> None:
    """Print a fine-tune's first `limit` wrong dev predictions among reviews of at most `max_chars` characters:
    its `dev_predictions.jsonl` line by line against the dev file (text, label, predicted label, score)."""
    with open(dev, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not (run / "dev_predictions.jsonl").is_file():
        raise SystemExit(f"{run}: no dev_predictions.jsonl; give a zh_sentiment fine-tune run with a dev file")
    with open(run / "dev_predictions.jsonl", encoding="utf-8") as fh:
        predictions = [json.loads(line) for line in fh]
    if len(rows) != len(predictions):
        raise SystemExit(f"{run}/dev_predictions.jsonl has {len(predictions)} lines, {dev} {len(rows)} rows: "
                         "not this run's dev file")
    wrong = [(r["text"], r["label"], p["label"], round(p["score"], 2)) for r, p in zip(rows, predictions)
             if r["label"] != p["label"] and len(r["text"]) <= max_chars]
    print(f"{len(wrong)} wrong among dev reviews of {max_chars} characters or fewer; "
          f"the first {min(limit, len(wrong))}:")
    for row in wrong[:limit]:
        print(json.dumps(row, ensure_ascii=False))


def _bertkit(args: list[str]) -> float:
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "bertkit", *args, "--quiet"]
    print("$ bertkit " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True)
    return time.perf_counter() - start


def _scores(run: Path) -> dict:
    results = json.loads((run / "results.json").read_text(encoding="utf-8"))
    env = json.loads((run / "environment.json").read_text(encoding="utf-8"))
    dev = results.get("dev") or {}
    keep = {k: round(v, 4) for k, v in dev.items() if isinstance(v, (int, float))
            and (k in ("accuracy", "f1", "macro_f1", "precision", "recall", "perplexity") or k.endswith("_f1"))}
    return {**keep, "unknown_share": env["data"]["coverage"]["unknown_share"],
            "train_seconds": round(results.get("train_seconds", 0.0), 1), "best_step": results.get("best_step")}


def stage(name: str, data: Path, work: Path, a: argparse.Namespace) -> dict:
    if name == "tfidf":
        return _tfidf(data)
    cls_train, cls_dev = _sentiment(data)
    ner_train, ner_dev = _ner(data)
    run = work / (f"{name}@{a.label}" if a.label else name)
    if name.startswith("adapt"):
        text = _ner_text(ner_train, work / "zh_ner_train.txt")
        how = (["--init-from", str(work / PARENT[name]), "--epochs", a.more_epochs, "--lr", a.more_lr]
               if name in PARENT else ["--extend-vocab", "--epochs", a.pretrain_epochs, "--lr", a.pretrain_lr])
        if name == "adapt-words":
            how[0:1] = ["--extend-vocab-list", str(_word_list(data, work, a.word_min_count))]
        if name == "adapt-wwm":
            how += ["--whole-word-masking", "--word-segmenter", "jieba"]
        texts = [str(cls_train)] if name == "adapt-tapt" else [str(cls_train), str(text)]
        seconds = _bertkit(["pretrain", "--train", *texts, *how, "--out", str(run)])
        env = json.loads((run / "environment.json").read_text(encoding="utf-8"))
        return {**_scores(run), "wall_seconds": round(seconds, 1), "vocabulary": env["data"].get("vocabulary")}
    parent = {"adapted": "adapt", "more": "adapt-more", "3": "adapt-3", "wwm": "adapt-wwm",
              "tapt": "adapt-tapt", "words": "adapt-words"}.get(name.split("-")[1])
    init = ["--init-from", str(work / parent)] if parent else []
    if name.startswith("cls"):
        args = ["train", "--train", str(cls_train), "--dev", str(cls_dev)]
    else:
        args = ["train", "--task", "ner", "--train", str(ner_train), "--dev", str(ner_dev)]
    extra = [*(["--lr", a.lr] if a.lr else []), *(["--no-freeze-embeddings"] if a.train_embeddings else [])]
    seconds = _bertkit([*args, *init, "--epochs", a.epochs, *extra, "--out", str(run)])
    return {**_scores(run), "wall_seconds": round(seconds, 1), "epochs": float(a.epochs),
            "embeddings": "trained" if a.train_embeddings else "default"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    p.add_argument("--work", default="/tmp/zh-bench", help="run directories and results.jsonl")
    p.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    p.add_argument("--epochs", default="1", help="epochs of each fine-tune")
    p.add_argument("--lr", help="learning rate of each fine-tune (default: bertkit's, by the model's width)")
    p.add_argument("--train-embeddings", action="store_true",
                   help="train the word embeddings in each fine-tune (the default before they were fixed)")
    p.add_argument("--pretrain-epochs", default="1")
    p.add_argument("--pretrain-lr", default="2e-4")
    p.add_argument("--more-epochs", default="2", help="epochs of the adapt-more stage")
    p.add_argument("--more-lr", default="3e-4", help="learning rate of the adapt-more stage")
    p.add_argument("--word-min-count", type=int, default=30, help="adapt-words: the fewest times a word must occur")
    p.add_argument("--label", help="run the stages again beside the first runs, as STAGE@LABEL (other flags)")
    p.add_argument("--show-errors", metavar="RUN", type=Path,
                   help="print RUN's wrong zh_sentiment dev predictions on short reviews, then stop")
    p.add_argument("--max-chars", type=int, default=30, help="with --show-errors: the longest review shown")
    p.add_argument("--limit", type=int, default=40, help="with --show-errors: how many")
    a = p.parse_args()
    data, work = Path(a.data).resolve(), Path(a.work)
    if a.show_errors:
        show_errors(a.show_errors, _sentiment(data)[1], a.max_chars, a.limit)
        return
    work.mkdir(parents=True, exist_ok=True)
    results = work / "results.jsonl"
    done = {json.loads(line)["stage"] for line in results.read_text().splitlines()} if results.exists() else set()
    for name in a.stages:
        key = f"{name}@{a.label}" if a.label else name
        if key in done:
            continue
        row = {"stage": key, **stage(name, data, work, a)}
        print(json.dumps(row, ensure_ascii=False), flush=True)
        with open(results, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
