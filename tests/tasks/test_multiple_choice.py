"""The multiple-choice task: reading, scoring against scikit-learn, and a run end to end on the tiny model
(train -> evaluate -> predict -> HTTP-ready inputs -> ONNX), all through the task's own hooks."""

import json
import random

import numpy as np
import pytest
from sklearn.metrics import accuracy_score

from bertkit.config import DataConfig, task_config
from bertkit.data.task_files import read_examples
from bertkit.errors import DataError
from bertkit.tasks import get_task
from conftest import FILLER, NEGATIVE, POSITIVE, cli_train


def toy_choices(n: int, seed: int, k: int = 3) -> list[dict]:
    """'Which word is kind?' with one positive word among negative ones: the right choice is the kind word."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        choices = [rng.choice(POSITIVE)] + rng.sample(NEGATIVE, k - 1)
        rng.shuffle(choices)
        text = " ".join(rng.sample(FILLER, 3)) + " which word is kind ?"
        answer = next(i for i, c in enumerate(choices) if c in POSITIVE)
        rows.append({"text": text, "choices": choices, "label": answer if rng.random() < 0.5 else choices[answer]})
    return rows


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_reading_lists_and_delimited_choices_labels_by_index_or_text(tmp_path):
    task = get_task(task_config("multiple_choice"))
    csv = tmp_path / "mc.csv"
    csv.write_text("text,choices,label\nwhich is kind?,good|bad,good\nand now?,dull| nice ,1\n", encoding="utf-8")
    examples = read_examples(task, csv, DataConfig(), None)
    assert [(ex["choices"], ex["label"]) for ex in examples] == [(["good", "bad"], 0), (["dull", "nice"], 1)]
    assert examples[1]["where"] == f"{csv}:3"

    bad = tmp_path / "bad.jsonl"
    write_jsonl(bad, [{"text": "x", "choices": ["a", "b"], "label": 2}])
    with pytest.raises(DataError, match=r"bad.jsonl:1: label 2 is neither the index of a choice \(0 to 1\)"):
        read_examples(task, bad, DataConfig(), None)
    write_jsonl(bad, [{"text": "x", "choices": ["a", "b"], "label": True}])
    with pytest.raises(DataError, match=r"bad.jsonl:1: label 'true' is neither the index of a choice"):
        read_examples(task, bad, DataConfig(), None)
    write_jsonl(bad, [{"text": "x", "choices": ["a"], "label": 0}])
    with pytest.raises(DataError, match=r"bad.jsonl:1: the choices must be two or more"):
        read_examples(task, bad, DataConfig(), None)
    write_jsonl(bad, [{"text": "x", "choices": ["a", "b"], "label": 0}, {"text": "y", "choices": ["a", "b", "c"],
                                                                         "label": 0}])
    with pytest.raises(DataError, match=r"rows have \[2, 3\] choices"):
        task.fit(read_examples(task, bad, DataConfig(), None))


def test_accuracy_matches_scikit_learn():
    task = get_task(task_config("multiple_choice"))
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 4))
    refs = rng.integers(0, 4, size=50)
    examples = [{"label": int(r), "choices": list("abcd")} for r in refs]
    assert task.metrics(logits, examples)["accuracy"] == pytest.approx(accuracy_score(refs, logits.argmax(1)))
    assert [p["answer"] for p in task.postprocess(logits, examples)] == ["abcd"[i] for i in logits.argmax(1)]


@pytest.fixture(scope="module")
def mc_run(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("mc")
    train = write_jsonl(tmp / "train.jsonl", toy_choices(240, 1))
    dev = write_jsonl(tmp / "dev.jsonl", toy_choices(60, 2))
    return cli_train("multiple_choice", train, dev, tmp / "run", tiny_model_dir, "--max-steps", "120",
                     "--lr", "5e-3", "--batch-size", "16", "--max-length", "32"), dev


def test_multiple_choice_learns_end_to_end(mc_run, capsys):
    from bertkit.cli import main
    from bertkit.inference.predictor import Predictor

    run, dev = mc_run
    results = json.loads((run / "results.json").read_text())
    assert results["primary_metric"] == "accuracy" and results["dev"]["accuracy"] >= 0.9
    assert json.loads((run / "model" / "config.json").read_text())["architectures"] == ["BertForMultipleChoice"]
    assert main(["evaluate", str(run), "--data", str(dev), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(results["dev"]["accuracy"])
    predictor = Predictor.from_run(run, precision="fp32")
    (out,) = predictor.predict([{"text": "the film which word is kind ?", "choices": ["awful", "superb", "dull"]}])
    assert out["answer"] == "superb" and out["choice"] == 1
    with pytest.raises(DataError, match="input 0: 2 choices; this model was trained with 3"):
        predictor.predict([{"text": "which word is kind ?", "choices": ["awful", "superb"]}])


def test_multiple_choice_exports_to_onnx_with_a_choices_axis(mc_run, tmp_path):
    pytest.importorskip("onnxruntime")
    from bertkit.cli import main
    from bertkit.inference.predictor import Predictor

    run, _ = mc_run
    assert main(["export", str(run), "--out", str(tmp_path / "onnx"), "--format", "onnx"]) == 0
    inputs = [{"text": "which word is kind ?", "choices": ["bad", "lovely", "weak"]},
              {"text": "a much longer text , and which word is kind ?", "choices": ["sad", "ugly", "warm"]}]
    ours = Predictor.from_run(run, precision="fp32").predict(inputs)
    theirs = Predictor.from_path(tmp_path / "onnx").predict(inputs)
    assert [p["choice"] for p in theirs] == [p["choice"] for p in ours]
    assert [p["score"] for p in theirs] == pytest.approx([p["score"] for p in ours], abs=1e-4)
