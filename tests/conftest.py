"""Shared fixtures: a tiny random BERT with a WordPiece vocabulary, built offline once per session."""

from __future__ import annotations

import csv
import json
import os
import random
import tempfile
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a test must never reach the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
_TEST_CACHE = None
if "BERTKIT_CACHE" not in os.environ:  # never the user's cache; removed when the session ends
    _TEST_CACHE = os.environ["BERTKIT_CACHE"] = tempfile.mkdtemp(prefix="bertkit-test-cache-")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

POSITIVE = ["good", "great", "fine", "lovely", "superb", "nice", "warm", "fun"]
NEGATIVE = ["bad", "awful", "poor", "dull", "boring", "ugly", "weak", "sad"]
FILLER = ["the", "a", "movie", "film", "plot", "was", "is", "very", "quite", "and", "acting", "story", "it"]
CHINESE = list("这部电影很好看非常精彩糟糕无聊难剧情演员我喜欢不太北京上海张三李四去了在见")
NAMES = ["john", "mary", "smith", "anna", "peter", "jones"]
CITIES = ["paris", "london", "berlin", "rome", "madrid", "café"]
VERBS = ["visited", "met", "left", "saw", "called"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def pytest_sessionfinish(session, exitstatus):
    if _TEST_CACHE is not None:
        import shutil

        shutil.rmtree(_TEST_CACHE, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    has_gpu = torch.cuda.is_available()
    n_gpu = torch.cuda.device_count()
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))
        if "multi_gpu" in item.keywords and n_gpu < 2:
            item.add_marker(pytest.mark.skip(reason="needs two CUDA devices"))


def build_tiny_bert(path: Path, *, words: list[str], seed: int = 0) -> Path:
    """A 2-layer, hidden-32 BERT with a WordPiece tokenizer over `words` (plus letters), saved to `path`."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,!?'-")
    vocab = list(dict.fromkeys(SPECIAL + letters + [f"##{c}" for c in letters] + words))
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True,
                                  tokenize_chinese_chars=True, model_max_length=64)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, type_vocab_size=2)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    words = POSITIVE + NEGATIVE + FILLER + CHINESE + NAMES + CITIES + VERBS
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), words=words)


def toy_sentiment(n: int, seed: int) -> list[tuple[str, str]]:
    """Sentences whose label is given by one sentiment word: learnable by a tiny model in a few steps."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(["positive", "negative"])
        word = rng.choice(POSITIVE if label == "positive" else NEGATIVE)
        words = rng.sample(FILLER, rng.randint(2, 7)) + [word]
        rng.shuffle(words)
        rows.append((" ".join(words), label))
    return rows


def toy_ner(n: int, seed: int) -> list[tuple[list[str], list[str]]]:
    """Sentences of people (PER, one or two words) and cities (LOC) around a few verbs and fillers."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        tokens, tags = [], []
        for _ in range(rng.randint(1, 3)):
            if rng.random() < 0.5:
                name = rng.sample(NAMES, rng.randint(1, 2))
                tokens += name
                tags += ["B-PER"] + ["I-PER"] * (len(name) - 1)
            else:
                tokens.append(rng.choice(CITIES[:-1]))
                tags.append("B-LOC")
            filler = [rng.choice(VERBS)] + rng.sample(FILLER, rng.randint(0, 2))
            tokens += filler
            tags += ["O"] * len(filler)
        out.append((tokens, tags))
    return out


def write_conll(path: Path, sentences: list[tuple[list[str], list[str]]]) -> Path:
    lines = ["-DOCSTART- -X- -X- O", ""]
    for tokens, tags in sentences:
        lines += [f"{t} NN O {g}" for t, g in zip(tokens, tags)] + [""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def write_csv(path: Path, header: list[str], rows: list[tuple]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_toy_sentiment(folder: Path) -> tuple[Path, Path]:
    """train.csv (240 rows) and dev.csv (60 rows) of `toy_sentiment` in `folder`, labels in 'sentiment'."""
    train = write_csv(folder / "train.csv", ["text", "sentiment"], toy_sentiment(240, seed=1))
    dev = write_csv(folder / "dev.csv", ["text", "sentiment"], toy_sentiment(60, seed=2))
    return train, dev


@pytest.fixture
def toy_files(tmp_path) -> tuple[Path, Path]:
    return write_toy_sentiment(tmp_path)


@pytest.fixture(scope="session")
def toy_run(tmp_path_factory, tiny_model_dir) -> tuple[Path, Path]:
    """(run directory, dev file) of one quick sentiment run on the tiny model, shared read-only by the tests
    that use a trained run (predictor, export, serving)."""
    from bertkit.api import train

    tmp = tmp_path_factory.mktemp("toy-run")
    train_file, dev_file = write_toy_sentiment(tmp)
    train(tiny_config(tiny_model_dir, train_file, dev_file, tmp / "run"), progress=False)
    return tmp / "run", dev_file


def cli_train(task: str, train: Path, dev: Path, out: Path, model_dir: Path, *flags: str) -> Path:
    """`bertkit train` through the command line on the tiny model, in fp32, with its random word embeddings
    trained (see tiny_config); returns the run directory."""
    from bertkit.cli import main

    method = ["--method", "standard"] if task == "classification" and "--method" not in flags else []
    if not any(flag.endswith("freeze-embeddings") for flag in flags):
        method.append("--no-freeze-embeddings")
    argv = ["train", "--task", task, "--train", str(train), "--dev", str(dev), "--out", str(out),
            "--model", str(model_dir), "--precision", "fp32", "--quiet", *method, *flags]
    assert main(argv) == 0
    return out


def tiny_config(tiny_model_dir: Path, train: Path, dev: Path | None, out: Path, **overrides):
    """A RunConfig for quick runs on the tiny model (dotted overrides allowed), trained the standard way (the toy
    sets are small enough for auto to take the few-shot recipe, which tests/training/test_few_shot.py covers),
    with the word embeddings trained: the tiny model's are random, so the toy task is learnable in 60 steps
    only when they learn too (the default, fixed, is tested on its own in tests/training/test_resume.py)."""
    from bertkit.config import RunConfig

    base = {"out": str(out), "model.name": str(tiny_model_dir), "data.train": str(train),
            "data.dev": str(dev) if dev else None, "data.label_column": "sentiment", "train.lr": 5e-3,
            "train.batch_size": 16, "train.max_steps": 60, "train.eval_every": 20, "train.log_every": 5,
            "train.warmup_ratio": 0.1, "train.precision": "fp32", "train.seed": 7,
            "train.method": "standard", "train.freeze_embeddings": False}
    base.update(overrides)
    return RunConfig().with_overrides(base)


@pytest.fixture
def workspace(tmp_path, tiny_model_dir) -> Path:
    """A `bertkit ui` workspace holding the tiny model under models/tiny."""
    import shutil

    ws = tmp_path / "ws"
    (ws / "models").mkdir(parents=True)
    shutil.copytree(tiny_model_dir, ws / "models" / "tiny")
    return ws
