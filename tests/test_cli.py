"""The command line end to end on the tiny model: train -> evaluate -> predict, and bad input."""

import json
import subprocess
import sys

import pytest

from bertkit.cli import main
from conftest import REPO, toy_sentiment, write_csv, write_toy_sentiment


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("cli")
    train, dev = write_toy_sentiment(tmp)
    run = tmp / "run"
    code = main(["train", "--task", "classification", "--train", str(train), "--dev", str(dev),
                 "--text-column", "text", "--label-column", "sentiment", "--out", str(run),
                 "--model", str(tiny_model_dir), "--max-steps", "60", "--lr", "5e-3", "--batch-size", "16",
                 "--seed", "3", "--precision", "fp32", "--eval-every", "20", "--quiet"])
    assert code == 0
    return run, train, dev


def test_train_leaves_a_complete_run_directory(trained_run):
    run, _, _ = trained_run
    for name in ("config.yaml", "environment.json", "labels.json", "metrics.jsonl", "results.json", "status.json"):
        assert (run / name).is_file(), name
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    assert json.loads((run / "labels.json").read_text())["labels"] == ["negative", "positive"]
    env = json.loads((run / "environment.json").read_text())
    assert env["seed"] == 3 and len(env["data"]["train"]["sha256"]) == 64 and env["precision"] == "fp32"
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    assert (run / "model" / "model.safetensors").is_file() and (run / "model" / "tokenizer.json").is_file()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [20, 40, 60] and all("dev_accuracy" in r for r in evals)
    assert any(r["kind"] == "train" and r["tokens_per_s"] > 0 for r in records)


def test_the_tiny_model_learns_the_toy_task(trained_run):
    results = json.loads((trained_run[0] / "results.json").read_text())
    assert results["dev"]["accuracy"] >= 0.9


def test_evaluate_json_matches_results(trained_run, capsys):
    run, _, dev = trained_run
    assert main(["evaluate", str(run), "--data", str(dev), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics) >= {"accuracy", "f1", "mcc"}
    results = json.loads((run / "results.json").read_text())["dev"]
    assert metrics["accuracy"] == pytest.approx(results["accuracy"])


def test_predict_file_keeps_order_and_names(trained_run, tmp_path, capsys):
    run, _, dev = trained_run
    out = tmp_path / "pred.jsonl"
    assert main(["predict", str(run), "--input", str(dev), "--output", str(out)]) == 0
    preds = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(preds) == 60
    assert all(p["label"] in ("negative", "positive") and 0 <= p["score"] <= 1 for p in preds)
    assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-4 for p in preds)
    gold = [row.split(",")[-1] for row in dev.read_text().splitlines()[1:]]
    agree = sum(p["label"] == g for p, g in zip(preds, gold)) / len(gold)
    assert agree >= 0.9  # input order kept: predictions line up with the gold labels
    assert main(["predict", str(run), "--text", "the film was superb"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert one["label"] == "positive"


def _error(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize("case", ["missing_file", "missing_column", "empty_text", "missing_label",
                                  "unseen_label", "undecodable", "empty_file"])
def test_bad_input_exits_2_with_one_clear_line(case, tmp_path, tiny_model_dir, capsys):
    train = write_csv(tmp_path / "train.csv", ["text", "sentiment"], toy_sentiment(40, seed=1))
    dev = tmp_path / "dev.csv"
    expect = {"missing_file": "file not found", "missing_column": "columns found: text, sentiment",
              "empty_text": "dev.csv:3: empty text", "missing_label": "dev.csv:2: missing label",
              "unseen_label": "'neutral'", "undecodable": "dev.csv:2: bytes that are not valid utf-8",
              "empty_file": "the file is empty"}[case]
    label_column = "sentiment"
    if case == "missing_file":
        dev = tmp_path / "nope.csv"
    elif case == "missing_column":
        write_csv(dev, ["text", "sentiment"], [("a", "positive")])
        label_column = "label"
        train = dev
    elif case == "empty_text":
        write_csv(dev, ["text", "sentiment"], [("good", "positive"), ("", "negative")])
    elif case == "missing_label":
        write_csv(dev, ["text", "sentiment"], [("good", "")])
    elif case == "unseen_label":
        write_csv(dev, ["text", "sentiment"], [("good", "positive"), ("meh", "neutral")])
    elif case == "undecodable":
        dev.write_bytes(b"text,sentiment\nbad\xff,negative\n")
    elif case == "empty_file":
        dev.write_bytes(b"")
    out = tmp_path / "run"
    code, err = _error(capsys, ["train", "--train", str(train), "--dev", str(dev), "--label-column", label_column,
                                "--out", str(out), "--model", str(tiny_model_dir), "--max-steps", "2", "--quiet"])
    assert code == 2
    assert expect in err and str(dev.name if case != "missing_column" else train.name) in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (out / "model").exists()


def test_existing_run_directory_is_never_overwritten(trained_run, toy_files, tiny_model_dir, capsys):
    run = trained_run[0]
    before = (run / "results.json").read_text()
    code, err = _error(capsys, ["train", "--train", str(toy_files[0]), "--label-column", "sentiment",
                                "--out", str(run), "--model", str(tiny_model_dir), "--quiet"])
    assert code == 2 and "--resume" in err
    assert (run / "results.json").read_text() == before


def test_console_script_runs_as_a_real_process(trained_run):
    run, _, _ = trained_run
    proc = subprocess.run([sys.executable, "-m", "bertkit", "predict", str(run), "--text", "awful and boring"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["label"] == "negative"
    proc = subprocess.run([sys.executable, "-m", "bertkit", "evaluate", str(run / "nope"), "--data", "x.csv"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "no such run directory" in proc.stderr


def test_damaged_run_config_is_one_line_not_a_traceback(trained_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(trained_run[0] / "model", run / "model")
    (run / "config.yaml").write_text("train: [unclosed\n", encoding="utf-8")
    code, err = _error(capsys, ["evaluate", str(run), "--data", str(trained_run[2]), "--json"])
    assert code == 2 and "config.yaml: cannot read the run's config" in err and "Traceback" not in err


def test_outputs_write_through_links_and_never_over_their_input(toy_run, tmp_path, capsys):
    import os

    run, dev = toy_run
    inputs = tmp_path / "in.csv"
    inputs.write_text("text\nthe film was great\nawful plot\n", encoding="utf-8")
    before = inputs.read_bytes()
    assert main(["predict", str(run), "--input", str(inputs), "--output", str(inputs)]) == 2
    assert "is the input file" in capsys.readouterr().err and inputs.read_bytes() == before
    link = tmp_path / "link.jsonl"
    os.symlink(inputs, link)  # the input behind a link is still the input
    assert main(["predict", str(run), "--input", str(inputs), "--output", str(link)]) == 2
    assert inputs.read_bytes() == before

    target = tmp_path / "real.jsonl"
    target.write_text("old\n", encoding="utf-8")
    os.unlink(link)
    os.symlink(target, link)
    assert main(["predict", str(run), "--input", str(inputs), "--output", str(link)]) == 0
    assert link.is_symlink() and len(target.read_text().splitlines()) == 2  # written through the link
    assert main(["report", str(run), "--out", str(link)]) == 0
    assert link.is_symlink() and target.read_text().startswith("<!DOCTYPE html>")

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    import threading

    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, encoding="utf-8").read()))
    reader.start()
    assert main(["predict", str(run), "--input", str(inputs), "--output", str(fifo)]) == 0
    reader.join(30)
    assert fifo.exists() and not fifo.is_file() and len(got[0].splitlines()) == 2  # still a FIFO
    assert main(["predict", str(run), "--input", str(inputs), "--output", str(tmp_path)]) == 2
    assert "is a folder; name a file" in capsys.readouterr().err



def test_an_unwritable_output_is_refused_before_any_prediction(toy_run, tmp_path, capsys, monkeypatch):
    import bertkit.inference.predictor as predictor

    run, _ = toy_run
    inputs = tmp_path / "in.csv"
    inputs.write_text("text\nthe film was great\n", encoding="utf-8")
    monkeypatch.setattr(predictor.Predictor, "from_path", lambda *a, **k: pytest.fail("the model was loaded"))
    for place in ("/proc/preds.jsonl", "/sys/kernel/preds.jsonl"):  # read-only even for root
        assert main(["predict", str(run), "--input", str(inputs), "--output", place]) == 2
        err = capsys.readouterr().err
        assert f"{place}: cannot write in " in err and "choose a file in a writable folder" in err, err
        assert "--resume" not in err


@pytest.mark.parametrize("flags,message", [
    (["--lr", "nan"], "--lr (train.lr) must be a finite number"),
    (["--epochs", "inf"], "--epochs (train.epochs) must be a finite number"),
    (["--epochs", "nan"], "must be a finite number"),
    (["--seed", "-1"], "--seed (train.seed) must be in [0, 2**32)"),
    (["--seed", str(2**32)], "must be in [0, 2**32)"),
    (["--freeze-layers", "99"], "--freeze-layers (train.freeze_layers) is 99, but the model has 2 encoder layers"),
])
def test_bad_numbers_end_in_one_line_and_leave_no_run(flags, message, toy_files, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--train", str(toy_files[0]), "--label-column", "sentiment", "--model", str(tiny_model_dir),
            "--out", str(out), "--max-steps", "1", "--method", "standard", *flags]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not out.exists()


def test_out_that_is_a_file_or_under_one(toy_files, tmp_path, capsys):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x", encoding="utf-8")
    for out, message in ((a_file, "file.txt: a file, not a folder; set --out to a new folder"),
                         (a_file / "run", "file.txt/run: cannot create the run directory (Not a directory)")):
        assert main(["train", "--train", str(toy_files[0]), "--label-column", "sentiment", "--out", str(out)]) == 2
        assert message in capsys.readouterr().err


def test_a_full_stdout_is_one_line(toy_run):
    for command in (["lineage", str(toy_run[0])], ["predict", str(toy_run[0]), "--text", "a fine film"]):
        with open("/dev/full", "w") as full:
            proc = subprocess.run([sys.executable, "-m", "bertkit", *command], stdout=full, stderr=subprocess.PIPE,
                                  text=True)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().splitlines()[-1].endswith("(a training run: with --resume)")
        assert "No space left on device (standard output)" in proc.stderr and "Exception ignored" not in proc.stderr


def test_labels_that_do_not_fit_the_model_are_a_damaged_run(toy_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(toy_run[0], run)
    (run / "labels.json").write_text('{"task": "classification", "problem": "single_label", "labels": ["a", "b", '
                                     '"c"]}', encoding="utf-8")
    for command in (["predict", str(run), "--text", "a fine film"], ["report", str(run)], ["serve", str(run)]):
        assert main(command) == 2
        assert "do not match the model's ['negative', 'positive']" in capsys.readouterr().err
    (run / "labels.json").write_text('{"task": "classification"}', encoding="utf-8")
    assert main(["predict", str(run), "--text", "a fine film"]) == 2
    assert "the saved state of the classification task is damaged" in capsys.readouterr().err


def test_the_program_exits_with_the_status_of_main_and_leaves_the_last_collection_out(monkeypatch):
    import gc

    import bertkit.cli as cli

    monkeypatch.setattr(cli, "main", lambda: 3)
    try:
        with pytest.raises(SystemExit) as exit_:
            cli.entry()
        assert exit_.value.code == 3
        assert gc.get_freeze_count() > 0  # the exit does not walk what torch and transformers made
    finally:
        gc.unfreeze()
