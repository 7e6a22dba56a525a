"""What a tokenizer can represent: unknown tokens, characters its normaliser removes or replaces, and the
warning when the text given to evaluate/predict is far less known than the training text."""

from __future__ import annotations

import logging

from bertkit.data.coverage import coverage, far_above
from bertkit.inference.predictor import Predictor
from bertkit.models.loading import load_tokenizer
from conftest import write_csv


def test_characters_the_normaliser_strips_are_counted(tiny_model_dir):
    tok = load_tokenizer(str(tiny_model_dir))  # uncased: lower-cases and strips accents
    cov = coverage([{"text": "Café naïve", "where": "1"}, {"text": "GOOD film", "where": "2"}], tok)
    # 17 non-space characters; é and ï lose their accents, the capitals only their case.
    assert cov["normalised_away"] == round(2 / 17, 4)
    assert set(cov["top_normalised"]) == {"é", "ï"}
    assert coverage([{"text": "good film", "where": "1"}], tok)["normalised_away"] == 0.0


def test_far_above_needs_both_the_threshold_and_three_times_training():
    assert far_above(0.30, 0.05) and far_above(0.05, None)
    assert not far_above(0.30, 0.20)  # the model was trained on text it knew as little of
    assert not far_above(0.015, 0.0)  # under the warning threshold


def test_evaluate_and_predict_warn_when_the_input_is_far_less_known(toy_run, tmp_path, caplog):
    run, dev_file = toy_run
    predictor = Predictor.from_path(run)
    assert predictor.training_coverage["unknown_share"] < 0.02
    with caplog.at_level(logging.WARNING, logger="bertkit"):
        predictor.read_file(dev_file, with_labels=True)
    assert "does not know" not in caplog.text
    foreign = write_csv(tmp_path / "ja.csv", ["text", "sentiment"], [("これは読めない文字です", "positive")] * 5)
    with caplog.at_level(logging.WARNING, logger="bertkit"):
        predictor.read_file(foreign, with_labels=True)
    assert f"{foreign}: the tokenizer does not know" in caplog.text and "training's 0.0%" in caplog.text
    assert "most often これは" in caplog.text
