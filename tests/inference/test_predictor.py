"""A trained run through every way of using it: Predictor, plain transformers, variants and languages."""

import json

import numpy as np
import pytest

from bertkit.api import evaluate, train
from bertkit.errors import DataError
from bertkit.inference.predictor import Predictor
from conftest import POSITIVE, tiny_config, toy_sentiment, write_csv, write_jsonl


@pytest.fixture(scope="module")
def run(toy_run):
    return toy_run


def test_plain_transformers_pipeline_agrees_with_bertkit(run):
    from transformers import pipeline

    texts = [" ".join(t.split()) for t, _ in toy_sentiment(20, seed=9)]
    ours = Predictor.from_run(run[0], precision="fp32").predict(texts)
    theirs = pipeline("text-classification", model=str(run[0] / "model"), device="cpu")(texts)
    assert [o["label"] for o in ours] == [t["label"] for t in theirs]
    assert np.allclose([o["score"] for o in ours], [t["score"] for t in theirs], atol=1e-4)
    assert {t["label"] for t in theirs} <= {"negative", "positive"}


def test_evaluate_api_uses_training_columns(run):
    metrics = evaluate(run[0], run[1])
    assert metrics["accuracy"] >= 0.9 and set(metrics) == {"accuracy", "f1", "mcc", "f1_binary"}


def test_chinese_sentences_end_to_end(tmp_path, tiny_model_dir):
    rng = np.random.default_rng(0)
    pos, neg = ["很好看", "非常精彩", "我喜欢"], ["很糟糕", "无聊", "太难看"]
    rows = [("这部电影" + (rng.choice(pos) if i % 2 else rng.choice(neg)), "正面" if i % 2 else "负面")
            for i in range(200)]
    train_file = write_csv(tmp_path / "zh.csv", ["text", "sentiment"], rows)
    result = train(tiny_config(tiny_model_dir, train_file, None, tmp_path / "run",
                               **{"train.max_steps": 60}), progress=False)
    assert result.metrics["accuracy"] >= 0.9
    pred = Predictor.from_run(tmp_path / "run")
    assert pred.predict(["这部电影非常精彩"])[0]["label"] == "正面"
    labels = json.loads((tmp_path / "run" / "model" / "config.json").read_text())["id2label"]
    assert set(labels.values()) == {"正面", "负面"}


def test_sentence_pairs(tmp_path, tiny_model_dir):
    rng = np.random.default_rng(1)
    rows = []
    for _ in range(240):  # "same": both halves carry the same sentiment word
        a, b = rng.choice(POSITIVE), rng.choice(POSITIVE)
        same = rng.random() < 0.5
        rows.append((f"the film was {a}", f"it is {b if same else 'bad'}", "same" if same else "different"))
    f = write_csv(tmp_path / "pairs.csv", ["s1", "s2", "sentiment"], rows)
    result = train(tiny_config(tiny_model_dir, f, None, tmp_path / "run", **{
        "data.text_column": "s1", "data.text_pair_column": "s2", "train.max_steps": 80}), progress=False)
    assert result.metrics["accuracy"] >= 0.9
    pred = Predictor.from_run(tmp_path / "run")
    assert pred.predict([("the film was good", "it is bad")])[0]["label"] == "different"
    with pytest.raises(DataError, match="sentence pairs"):
        pred.predict(["the film was good"])


def test_multilabel_jsonl(tmp_path, tiny_model_dir):
    rng = np.random.default_rng(2)
    rows = []
    for _ in range(600):
        labels = [name for name, word in (("pos", "good"), ("neg", "bad"), ("film", "film")) if rng.random() < 0.5]
        words = [w for n, w in (("pos", "good"), ("neg", "bad"), ("film", "film")) if n in labels] + ["the", "it"]
        rows.append({"text": " ".join(rng.permutation(words)), "sentiment": labels})
    f = write_jsonl(tmp_path / "ml.jsonl", rows)
    result = train(tiny_config(tiny_model_dir, f, None, tmp_path / "run", **{"train.max_steps": 300,
                                                                                    "train.lr": 3e-3}),
                   progress=False)
    # predicting every label for every row scores about 0.7 here
    assert set(result.metrics) >= {"f1_micro", "f1_macro"} and result.metrics["f1_micro"] >= 0.8
    state = json.loads((tmp_path / "run" / "labels.json").read_text())
    assert state["problem"] == "multi_label" and 0 < state["threshold"] < 1
    out = Predictor.from_run(tmp_path / "run").predict(["good film"])[0]
    assert {d["label"] for d in out["labels"]} >= {"pos", "film"} and set(out["probabilities"]) == {
        "pos", "neg", "film"}


def test_regression(tmp_path, tiny_model_dir):
    rng = np.random.default_rng(3)
    rows = []
    for _ in range(300):
        n_good = int(rng.integers(0, 4))
        rows.append({"text": " ".join(["good"] * n_good + ["the", "film"]), "sentiment": n_good + 0.5})
    f = write_jsonl(tmp_path / "reg.jsonl", rows)
    result = train(tiny_config(tiny_model_dir, f, None, tmp_path / "run", **{"train.max_steps": 120}),
                   progress=False)
    assert set(result.metrics) == {"pearson", "spearman", "mse"} and result.metrics["pearson"] > 0.9
    assert "value" in Predictor.from_run(tmp_path / "run").predict(["good good film"])[0]


def test_class_weights_auto_recorded(tmp_path, tiny_model_dir):
    rng = np.random.default_rng(5)
    rows = [r for r in toy_sentiment(400, seed=4) if r[1] == "positive" or rng.random() < 0.2]
    f = write_csv(tmp_path / "imb.csv", ["text", "sentiment"], rows)
    train(tiny_config(tiny_model_dir, f, None, tmp_path / "run", **{"task.class_weights": "auto"}), progress=False)
    weights = json.loads((tmp_path / "run" / "labels.json").read_text())["class_weights"]
    assert weights[0] > 1 > weights[1]  # the rare negative class weighs more
