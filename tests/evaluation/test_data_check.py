"""`bertkit data check`: the findings on crafted data (each kind of problem found, counted and located),
the command's exit status and JSON, and label errors found by out-of-fold scoring with cleanlab."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bertkit.cli import main
from bertkit.data.checks import check_examples, near_key
from conftest import toy_sentiment, write_csv


def _rows(pairs, start=2, file="t.csv"):
    return [{"text": t, "label": y, "where": f"{file}:{i}"} for i, (t, y) in enumerate(pairs, start=start)]


def _codes(report):
    return {f.code: f for f in report.findings}


def test_duplicates_near_duplicates_and_conflicting_labels_are_counted_and_located():
    train = _rows([("a good film", "pos"), ("a good film", "pos"), ("A good film!", "pos"), ("a bad film", "neg"),
                   ("a  BAD film.", "pos"), ("dull", "neg"), ("fine", "pos")])
    found = _codes(check_examples(train, None, train_source="t.csv"))
    assert found["duplicates"].count == 1 and found["duplicates"].where == ["t.csv:3"]
    assert found["near_duplicates"].count == 2  # "A good film!" and "a  BAD film." differ only in case/punctuation
    assert found["conflicting_labels"].count == 1 and found["conflicting_labels"].where == ["t.csv:5 / t.csv:6"]
    assert all(f.level == "warning" for f in found.values())


def test_dev_rows_in_train_are_leakage_and_a_dev_set_that_is_the_training_set_is_an_error():
    train = _rows([(f"text {i}", "pos" if i % 2 else "neg") for i in range(20)])
    some = check_examples(train, _rows([("TEXT 3", "pos"), ("new one", "neg"), ("other", "pos")], file="d.csv"),
                          train_source="t.csv", dev_source="d.csv")
    assert _codes(some)["leakage"].level == "warning" and _codes(some)["leakage"].where == ["d.csv:2"]
    same = check_examples(train, train, train_source="t.csv", dev_source="t.csv")
    assert _codes(same)["leakage"].level == "error" and same.errors


def test_what_makes_training_wrong_is_an_error_and_imbalance_a_warning():
    one = check_examples(_rows([("a", "pos"), ("b", "pos")]), None, train_source="t.csv", problem="single_label")
    assert [f.code for f in one.errors] == ["one_class"]
    skewed = check_examples(_rows([(f"t{i}", "pos") for i in range(30)] + [("x", "neg"), ("y", "neg")]), None,
                            train_source="t.csv")
    assert _codes(skewed)["imbalance"].level == "warning" and not skewed.errors
    unseen = check_examples(_rows([("a", "pos"), ("b", "neg")]), _rows([("c", "meh")], file="d.csv"),
                            train_source="t.csv", dev_source="d.csv")
    assert [f.code for f in unseen.errors] == ["unseen_labels"]
    clean = check_examples(_rows([("a good film", "pos"), ("a bad film", "neg")]), None, train_source="t.csv")
    assert clean.findings == [] and clean.lines()[-1] == "no problems found"


def test_near_key_ignores_case_accents_spacing_and_punctuation_only():
    assert near_key("Café,  au LAIT!") == near_key("cafe au lait") != near_key("cafe au lait noir")


def test_the_command_reports_in_text_or_json_and_exits_one_on_an_error(tmp_path, tiny_model_dir, capsys):
    rows = toy_sentiment(80, seed=3)
    train = write_csv(tmp_path / "train.csv", ["text", "sentiment"], rows + rows[:5])
    dev = write_csv(tmp_path / "dev.csv", ["text", "sentiment"], toy_sentiment(20, seed=4))
    flags = ["--label-column", "sentiment", "--model", str(tiny_model_dir)]
    assert main(["data", "check", str(train), "--dev", str(dev), *flags, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["train"]["rows"] == 85 and report["errors"] == 0
    codes = {f["code"]: f for f in report["findings"]}
    assert codes["duplicates"]["count"] >= 5 and report["lengths"]["window"] == 64
    assert main(["data", "check", str(train), "--dev", str(train), *flags]) == 1
    out = capsys.readouterr().out
    assert "error: 100% of the dev rows are also training texts" in out and out.startswith("train: ")
    assert main(["data", "check", str(tmp_path / "missing.csv"), *flags]) == 2


def test_flipped_labels_are_found_by_out_of_fold_scoring():
    """Separable clusters with a known tenth of their labels flipped: confident learning must name most
    of the flipped rows and few others."""
    pytest.importorskip("cleanlab")
    from cleanlab.filter import find_label_issues

    from bertkit.evaluation.label_errors import out_of_fold_probabilities

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 100)
    vectors = rng.normal(size=(300, 8)) * 0.6 + np.eye(8)[labels] * 3
    flipped = rng.choice(300, 30, replace=False)
    given = labels.copy()
    given[flipped] = (given[flipped] + 1) % 3
    probs = out_of_fold_probabilities(vectors, given)
    found = set(find_label_issues(labels=given, pred_probs=probs, return_indices_ranked_by="self_confidence"))
    recall, precision = len(found & set(flipped)) / 30, len(found & set(flipped)) / max(1, len(found))
    assert recall >= 0.8 and precision >= 0.8, (recall, precision)


def test_label_errors_on_data_of_one_class_are_refused_in_one_line(tmp_path, tiny_model_dir, capsys):
    pytest.importorskip("cleanlab")
    one = write_csv(tmp_path / "one.csv", ["text", "label"], [(t, "pos") for t, _ in toy_sentiment(8, seed=1)])
    assert main(["data", "check", str(one), "--model", str(tiny_model_dir), "--find-label-errors"]) == 2
    assert "needs at least two labels" in capsys.readouterr().err


def test_sentence_vectors_are_those_of_sentence_transformers():
    """The label-error model's vectors are the embedded MiniLM's mean-pooled, normalised sentence vectors, as
    sentence-transformers computes them from the same folder."""
    st = pytest.importorskip("sentence_transformers")
    from bertkit.evaluation.label_errors import sentence_vectors
    from bertkit.models.loading import embedded_model_dir

    texts = ["a gorgeous, witty, seductive movie.", "the worst film of the year", "ok"]
    ours = sentence_vectors(texts, "embedded", max_length=256)
    theirs = st.SentenceTransformer(str(embedded_model_dir()), device="cpu").encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_every_run_logs_the_checks_records_them_and_shows_them_in_its_report(tmp_path, tiny_model_dir, capsys):
    from conftest import cli_train

    rows = toy_sentiment(80, seed=3)
    train = write_csv(tmp_path / "train.csv", ["text", "sentiment"], rows + rows[:6])  # six exact repeats
    dev = write_csv(tmp_path / "dev.csv", ["text", "sentiment"], rows[:3] + toy_sentiment(20, seed=4))
    run = cli_train("classification", train, dev, tmp_path / "run", tiny_model_dir, "--label-column",
                    "sentiment", "--max-steps", "4")
    said = [line for line in capsys.readouterr().err.split("\n") if line.startswith("bertkit: data check: ")]
    assert any("training rows repeat an earlier row exactly" in m for m in said)
    assert any("dev rows" in m and "are also training texts" in m for m in said)
    checks = {c["code"]: c for c in json.loads((run / "environment.json").read_text())["data"]["checks"]}
    assert checks["duplicates"]["count"] >= 6 and checks["leakage"]["count"] >= 3
    page = (run / "report.html").read_text(encoding="utf-8")
    assert "<td>data check</td>" in page and "repeat an earlier row exactly" in page
