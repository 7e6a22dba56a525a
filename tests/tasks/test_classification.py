import numpy as np
import pytest
from sklearn.utils.class_weight import compute_class_weight

from bertkit.config import DataConfig, TaskConfig, task_config
from bertkit.data.readers import Table
from bertkit.errors import DataError
from bertkit.tasks import get_task


def _table(rows, path="f.csv"):
    columns = list(dict.fromkeys(k for r in rows for k in r))
    return Table(path, columns, rows, list(range(2, len(rows) + 2)))


def _task(**kw):
    return get_task(task_config(**kw))


def test_label_map_sorted_numerically_and_kept_in_state():
    task = _task()
    rows = [{"text": "a", "label": v} for v in ["10", "2", "1", "2"]]
    task.fit(task.read_examples(_table(rows), DataConfig()))
    assert task.labels == ["1", "2", "10"]
    assert task.model_config()["id2label"] == {0: "1", 1: "2", 2: "10"}
    again = get_task(TaskConfig(), task.state())
    assert again.labels == task.labels and again.problem == "single_label"


def test_missing_column_lists_the_columns_found():
    task = _task()
    with pytest.raises(DataError, match=r"no column 'label'; columns found: text, sentiment; set data.label_column"):
        task.read_examples(_table([{"text": "a", "sentiment": "x"}]), DataConfig())


@pytest.mark.parametrize("row,pattern", [({"text": "  ", "label": "x"}, r"f.csv:2: empty text"),
                                         ({"text": "ok", "label": ""}, r"f.csv:2: missing label"),
                                         ({"text": "ok", "label": None}, r"f.csv:2: missing label"),
                                         ({"text": 5, "label": "x"}, r"f.csv:2: column 'text' holds int")])
def test_bad_rows_name_file_and_line(row, pattern):
    with pytest.raises(DataError, match=pattern):
        _task().read_examples(_table([row]), DataConfig())


def test_unseen_dev_labels_are_listed():
    task = _task()
    task.fit(task.read_examples(_table([{"text": "a", "label": "x"}, {"text": "b", "label": "y"}]), DataConfig()))
    dev = task.read_examples(_table([{"text": "a", "label": "z"}, {"text": "a", "label": "w"}], "dev.csv"),
                             DataConfig())
    with pytest.raises(DataError, match=r"labels that training never saw: 'w', 'z' \(first at dev.csv:2\)"):
        task.check_examples(dev, "dev.csv")


def test_problem_detection_multilabel_and_regression():
    cfg = DataConfig(label_delimiter="|")
    task = _task()
    task.fit(task.read_examples(_table([{"text": "a", "label": "x|y"}, {"text": "b", "label": "y"}]), cfg))
    assert task.problem == "multi_label" and task.labels == ["x", "y"]
    task = _task()
    task.fit(task.read_examples(_table([{"text": "a", "label": [1, 3]}, {"text": "b", "label": []}]), DataConfig()))
    assert task.problem == "multi_label" and task.labels == ["1", "3"]
    task = _task()
    task.fit(task.read_examples(_table([{"text": "a", "label": "0.5"}, {"text": "b", "label": "4"}]), DataConfig()))
    assert task.problem == "regression"
    assert task.model_config()["num_labels"] == 1
    bad = _task(problem="regression")
    with pytest.raises(DataError, match="not a finite number"):
        bad.fit(bad.read_examples(_table([{"text": "a", "label": "nan"}]), DataConfig()))


def test_auto_class_weights_match_sklearn_balanced():
    labels = ["a"] * 6 + ["b"] * 3 + ["c"]
    task = _task(class_weights="auto")
    task.fit(task.read_examples(_table([{"text": "t", "label": y} for y in labels]), DataConfig()))
    expected = compute_class_weight("balanced", classes=np.array(["a", "b", "c"]), y=np.array(labels))
    assert task.class_weights == pytest.approx(expected)


def test_postprocess_and_threshold_tuning_for_multilabel():
    task = _task(problem="multi_label")
    ex = task.read_examples(_table([{"text": "a", "label": ["x"]}, {"text": "b", "label": ["y"]},
                                    {"text": "c", "label": ["x", "y"]}]), DataConfig())
    task.fit(ex)
    logits = np.array([[2.0, -2.0], [-2.0, -0.2], [1.0, -0.5]])  # y needs a threshold below 0.5
    assert task.metrics(logits, ex)["f1_micro"] < 1.0
    assert task.tune(logits, ex)["threshold"] < 0.4
    assert task.metrics(logits, ex)["f1_micro"] == 1.0
    out = task.postprocess(logits)
    assert [d["label"] for d in out[2]["labels"]] == ["x", "y"]


def test_single_label_postprocess_uses_names():
    task = _task()
    task.fit(task.read_examples(_table([{"text": "a", "label": "neg"}, {"text": "b", "label": "pos"}]), DataConfig()))
    out = task.postprocess(np.array([[0.0, 2.0]]))[0]
    assert out["label"] == "pos" and 0.5 < out["score"] < 1 and set(out["probabilities"]) == {"neg", "pos"}


def test_a_list_label_among_single_labels_is_refused_with_its_line():
    rows = [{"text": t, "label": v} for t, v in [("a", "neg"), ("b", "pos"), ("c", [1, 2]), ("d", "pos")]]
    task = _task()
    with pytest.raises(DataError, match=r"f.csv:4: the list label \['1', '2'\] among single labels \(the first: 'neg' "
                                        r"at f.csv:2\)"):
        task.fit(task.read_examples(_table(rows), DataConfig()))


def test_labels_that_look_alike_are_named_in_a_warning(caplog):
    rows = [{"text": t, "label": v} for t, v in [("a", "pos"), ("b", "Pos"), ("c", "neg"), ("d", "01"), ("e", "1")]]
    task = _task()
    task.fit(task.read_examples(_table(rows), DataConfig()))
    assert len(task.labels) == 5  # still separate classes: the data says so
    assert "labels that look alike are separate classes" in caplog.text
    assert "'Pos' / 'pos'" in caplog.text or "'pos' / 'Pos'" in caplog.text
    assert "'01' / '1'" in caplog.text or "'1' / '01'" in caplog.text


def test_a_dev_file_that_is_the_training_file_gets_a_warning(tmp_path, tiny_model_dir, caplog):
    from bertkit.api import train
    from conftest import tiny_config, write_toy_sentiment

    train_file, _ = write_toy_sentiment(tmp_path)
    copy = tmp_path / "copy.csv"
    copy.write_bytes(train_file.read_bytes())
    train(tiny_config(tiny_model_dir, train_file, copy, tmp_path / "run", **{"train.max_steps": 2}), progress=False)
    assert "is the training data (the same content as data.train)" in caplog.text


def test_temperature_is_fitted_only_on_a_dev_set_that_can_carry_it_and_stays_bounded():
    import torch

    task = _task()
    task.fit(task.read_examples(_table([{"text": "a", "label": "neg"}, {"text": "b", "label": "pos"}]), DataConfig()))
    layer = torch.nn.Linear(4, 2)
    few = [{"label": "pos"}] * 5 + [{"label": "neg"}] * 5
    result = task.kind.calibrate(task, layer, np.zeros((10, 2)), few)
    assert "temperature" not in result and "10 examples" in result["skipped"]
    rng = np.random.default_rng(0)
    many = [{"label": "pos" if i % 2 else "neg"} for i in range(60)]
    logits = rng.normal(size=(60, 2)) * 0.01  # almost no signal: an unbounded fit would blow T up
    result = task.kind.calibrate(task, layer, logits, many)
    assert 0.25 <= result["temperature"] <= 4.0


def test_a_run_says_when_its_model_cannot_read_the_text(tmp_path, tiny_model_dir, capsys):
    import json

    from bertkit.cli import main
    from conftest import write_csv

    rows = [("the film was good", "pos"), ("an awful film", "neg")] * 20 + [("これは読めない文字です", "pos")] * 20
    train = write_csv(tmp_path / "train.csv", ["text", "label"], rows)
    argv = ["train", "--train", str(train), "--model", str(tiny_model_dir), "--out", str(tmp_path / "run"),
            "--max-steps", "2", "--precision", "fp32"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "does not know" in err and "of the training tokens (its [UNK]), most often これは" in err
    coverage = json.loads((tmp_path / "run" / "environment.json").read_text())["data"]["coverage"]
    assert 0.1 < coverage["unknown_share"] < 0.9 and "これは" in coverage["top_unknown"]
    assert "unknown tokens" in (tmp_path / "run" / "report.html").read_text()
    assert "tokens the tokenizer does not know" in (tmp_path / "run" / "model" / "README.md").read_text()
