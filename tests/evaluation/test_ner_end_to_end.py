"""NER through the command line on the tiny model: train -> evaluate -> predict -> plain transformers."""

import json

import pytest

from bertkit.cli import main
from bertkit.inference.predictor import Predictor
from conftest import cli_train, toy_ner, write_conll


@pytest.fixture(scope="module")
def ner_run(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("ner")
    train = write_conll(tmp / "train.conll", toy_ner(300, seed=1))
    dev = write_conll(tmp / "dev.conll", toy_ner(60, seed=2))
    run = cli_train("ner", train, dev, tmp / "run", tiny_model_dir, "--max-steps", "200", "--lr", "5e-3",
                    "--batch-size", "16", "--eval-every", "100", "--max-length", "32")
    return run, dev


def test_ner_learns_and_keeps_label_names(ner_run):
    run, _ = ner_run
    results = json.loads((run / "results.json").read_text())
    assert results["primary_metric"] == "f1" and results["dev"]["f1"] >= 0.85  # 0.89 at seed 42, 0.91-0.95 others
    config = json.loads((run / "model" / "config.json").read_text())
    assert set(config["id2label"].values()) == {"O", "B-LOC", "I-LOC", "B-PER", "I-PER"}


def test_evaluate_and_predict_commands(ner_run, tmp_path, capsys):
    run, dev = ner_run
    assert main(["evaluate", str(run), "--data", str(dev), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert {"f1", "precision", "recall", "PER_f1", "LOC_f1", "token_accuracy"} <= set(metrics)
    assert main(["predict", str(run), "--text", "  john   smith visited paris"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(e["label"], e["text"], e["start"]) for e in out["entities"]] == [("PER", "john   smith", 2),
                                                                             ("LOC", "paris", 23)]
    pred_file = tmp_path / "pred.jsonl"
    assert main(["predict", str(run), "--input", str(dev), "--output", str(pred_file)]) == 0
    preds = [json.loads(line) for line in pred_file.read_text().splitlines()]
    assert len(preds) == 60 and all(len(p["tags"]) == len(p["tokens"]) for p in preds)


def test_long_document_gets_a_prediction_for_every_word(ner_run):
    predictor = Predictor.from_run(ner_run[0])
    sentences = [" ".join(tokens) for tokens, _ in toy_ner(12, seed=5)]
    document = " . ".join(sentences)
    words = document.split()
    assert len(words) > 60  # the model's window is 32 tokens
    tokens_out = predictor.predict([words])[0]
    assert len(tokens_out["tags"]) == len(words)
    entities = predictor.predict([document])[0]["entities"]
    assert entities and max(e["start"] for e in entities) > len(document) * 0.8  # found near the end too
    assert all(document[e["start"]:e["end"]] == e["text"] for e in entities)


def test_plain_transformers_pipeline_groups_entities_with_real_names(ner_run):
    from transformers import pipeline

    nlp = pipeline("token-classification", model=str(ner_run[0] / "model"), aggregation_strategy="simple",
                   device="cpu")
    groups = nlp("john smith visited paris")
    assert [(g["entity_group"], g["word"]) for g in groups] == [("PER", "john smith"), ("LOC", "paris")]


def test_onnx_export_finds_the_same_entities(ner_run, tmp_path):
    pytest.importorskip("onnxruntime")
    from bertkit.cli import main
    from bertkit.inference.predictor import Predictor

    run, dev = ner_run
    assert main(["export", str(run), "--out", str(tmp_path / "onnx"), "--format", "onnx"]) == 0
    text = ["john smith visited paris and met mary"]
    ours = Predictor.from_run(run, precision="fp32").predict(text)[0]["entities"]
    theirs = Predictor.from_path(tmp_path / "onnx").predict(text)[0]["entities"]
    assert [(e["label"], e["start"], e["end"]) for e in theirs] == [(e["label"], e["start"], e["end"]) for e in ours]
    assert [e["score"] for e in theirs] == pytest.approx([e["score"] for e in ours], abs=1e-4)


def test_the_report_has_per_type_scores_errors_and_hardest_sentences(ner_run):
    import re

    from bertkit.evaluation.views.ner import entity_errors

    page = (ner_run[0] / "report.html").read_text()
    results = json.loads((ner_run[0] / "results.json").read_text())
    assert "Per entity type" in page and "Highest-loss dev sentences" in page
    for kind in ("PER", "LOC"):
        cells = re.search(rf"<tr><td>{kind}</td><td>([\d.]+)</td><td>([\d.]+)</td><td>([\d.]+)</td>", page)
        assert float(cells.group(3)) == pytest.approx(results["dev"][f"{kind}_f1"], abs=5e-5)
    errors = entity_errors([["B-PER", "I-PER", "O", "B-LOC", "O", "B-ORG"], ["B-LOC", "O"]],
                           [["B-PER", "O", "O", "B-ORG", "B-MISC", "O"], ["O", "B-PER"]])
    assert errors == {"boundary: PER span cut or stretched": 1, "type: LOC read as ORG": 1, "missed ORG": 1,
                      "spurious MISC": 1, "missed LOC": 1, "spurious PER": 1}


def test_evaluating_raw_text_without_entities_is_refused_not_scored_as_all_o(ner_run, tmp_path, capsys):
    run, _ = ner_run
    data = tmp_path / "raw.jsonl"
    data.write_text('{"text": "john smith visited paris"}\n{"text": "mary left rome"}\n', encoding="utf-8")
    assert main(["evaluate", str(run), "--data", str(data), "--json"]) == 2
    err = capsys.readouterr().err
    assert "raw.jsonl: raw text but no 'entities' field" in err and "[] for a sentence without entities" in err
    data.write_text('{"text": "john smith visited paris", "entities": [{"start": 0, "end": 10, "label": "PER"}, '
                    '{"start": 19, "end": 24, "label": "LOC"}]}\n{"text": "mary left rome", "entities": []}\n',
                    encoding="utf-8")
    assert main(["evaluate", str(run), "--data", str(data), "--json"]) == 0  # labelled: scored
    assert json.loads(capsys.readouterr().out)["f1"] > 0
