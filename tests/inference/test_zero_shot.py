"""Zero-shot classification from an embedding model: labels described in words, each text given the nearest
description; from a model folder that was never a run and from an embedding run, through predict and
evaluate."""

import json

import numpy as np
import pytest

from bertkit.errors import ConfigError
from bertkit.inference.zero_shot import SCALE, parse_labels
from conftest import toy_sentiment, write_csv


def test_labels_are_parsed_and_refused_in_one_line():
    assert parse_labels(["positive=a kind word", "negative"]) == {"positive": "a kind word", "negative": "negative"}
    with pytest.raises(ConfigError, match="give two labels or more"):
        parse_labels(["positive=good"])
    with pytest.raises(ConfigError, match="label 'a' is given twice"):
        parse_labels(["a=x", "a=y"])
    with pytest.raises(ConfigError, match="expected LABEL=DESCRIPTION"):
        parse_labels(["=x", "b=y"])


def test_each_text_gets_the_label_whose_description_is_nearest(tiny_model_dir):
    from bertkit.api import zero_shot
    from bertkit.inference.embed import embed_texts
    from bertkit.inference.predictor import Predictor

    labels = {"positive": "good great lovely", "negative": "bad awful dull"}
    texts = [text for text, _ in toy_sentiment(12, seed=3)]
    found = zero_shot(tiny_model_dir, texts, labels)  # a model folder that was never a run
    embedder = Predictor.from_encoder(str(tiny_model_dir))
    vectors, anchors = embed_texts(embedder, texts), embed_texts(embedder, list(labels.values()))
    cos = vectors @ anchors.T / np.outer(np.linalg.norm(vectors, axis=1), np.linalg.norm(anchors, axis=1))
    expected = np.exp(SCALE * cos) / np.exp(SCALE * cos).sum(axis=1, keepdims=True)
    for row, probs in zip(found, expected):
        assert row["label"] == list(labels)[int(probs.argmax())]
        assert [row["scores"][n] for n in labels] == pytest.approx(probs, abs=1e-5)
        assert row["score"] == pytest.approx(probs.max(), abs=1e-5)


def test_predict_and_evaluate_take_zero_shot_labels(tiny_model_dir, tmp_path, capsys):
    from bertkit.api import zero_shot
    from bertkit.cli import main

    rows = toy_sentiment(30, seed=4)
    data = write_csv(tmp_path / "d.csv", ["text", "label"], rows)
    flags = ["--zero-shot", "positive=good great lovely", "--zero-shot", "negative=bad awful dull"]
    assert main(["predict", str(tiny_model_dir), "--input", str(data), *flags]) == 0
    predicted = [json.loads(line)["label"] for line in capsys.readouterr().out.splitlines()]
    assert len(predicted) == 30
    assert main(["evaluate", str(tiny_model_dir), "--data", str(data), "--json", *flags]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["accuracy"] == pytest.approx(np.mean([p == label for p, (_, label) in zip(predicted, rows)]))
    assert main(["predict", str(tiny_model_dir), "--text", rows[0][0], *flags]) == 0
    assert json.loads(capsys.readouterr().out)["label"] == predicted[0]
    assert zero_shot(tiny_model_dir, [rows[0][0]], {"positive": "good great lovely", "negative": "bad awful dull"}
                     )[0]["label"] == predicted[0]
    assert main(["evaluate", str(tiny_model_dir), "--data", str(data), flags[0], flags[1], flags[2],
                 "neutral=so so"]) == 2  # 'negative' rows have no description: refused in one line
