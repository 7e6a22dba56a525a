"""bertkit tune: Optuna trials as run directories, pruning, a resumable SQLite study, a reproducible best."""

import json

import pytest
import yaml

from bertkit.errors import ConfigError
from conftest import write_toy_sentiment

optuna = pytest.importorskip("optuna")


def _config(tmp_path, tiny_model_dir, **search):
    train_file, dev_file = write_toy_sentiment(tmp_path)
    config = {"model": {"name": str(tiny_model_dir)},
              "data": {"train": str(train_file), "dev": str(dev_file), "label_column": "sentiment"},
              "train": {"max_steps": 15, "eval_every": 5, "batch_size": 16, "precision": "fp32", "lr": 1e-4},
              "search": {"params": {"train.lr": {"low": 1e-4, "high": 3e-2, "log": True},
                                    "train.batch_size": {"choices": [8, 16]}}, **search}}
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_search_resumes_prunes_and_writes_a_reproducible_best(tmp_path, tiny_model_dir, capsys):
    from bertkit.api import train
    from bertkit.cli import main
    from bertkit.config import load_config
    from bertkit.tune import STUDY

    path = _config(tmp_path, tiny_model_dir)
    out = tmp_path / "search"
    assert main(["tune", str(path), "--trials", "3", "--out", str(out), "--quiet"]) == 0
    # An interrupted search: a trial left "running" in the study is marked failed, and --trials counts the
    # finished ones, so the next call adds three more rather than starting over.
    storage = f"sqlite:///{out / 'tune.db'}"
    study = optuna.load_study(study_name=STUDY, storage=storage)
    study.ask()  # a trial that never reported back
    assert main(["tune", str(path), "--trials", "6", "--out", str(out), "--baseline", "--quiet"]) == 0
    printed = capsys.readouterr().out
    states = [t.state.name for t in optuna.load_study(study_name=STUDY, storage=storage).trials]
    assert states.count("FAIL") == 1 and states.count("COMPLETE") + states.count("PRUNED") == 6
    trials = json.loads((out / "trials.json").read_text())
    assert all((out / "trials" / f"trial-{t['trial']:04d}").is_dir() for t in trials if t["state"] != "fail")
    pruned = [t for t in trials if t["state"] == "pruned"]
    assert pruned and len({json.dumps(t["params"], sort_keys=True) for t in trials if t["params"]}) == 6
    for t in pruned:  # a pruned trial stopped at an evaluation before the last step
        status = json.loads((out / "trials" / f"trial-{t['trial']:04d}" / "status.json").read_text())
        assert status["status"] == "pruned" and status["step"] < 15

    complete = [t for t in trials if t["state"] == "complete"]
    top = max(complete, key=lambda t: t["value"])
    assert f"best: accuracy {top['value']:.4f}" in printed and "baseline (the config as given)" in printed
    again = train(load_config(out / "best.yaml").with_overrides({"out": str(tmp_path / "again")}), progress=False)
    assert again.metrics["accuracy"] == pytest.approx(top["value"])
    assert json.loads((out / "baseline" / "results.json").read_text())["dev"]["accuracy"] <= top["value"] + 1e-9


def test_tune_config_errors_name_the_problem(tmp_path, tiny_model_dir):
    from bertkit.tune import load_search

    path = _config(tmp_path, tiny_model_dir)
    raw = yaml.safe_load(path.read_text())
    for search, message in [
        ({}, "search.params must map settings"),
        ({"params": {"train.nope": {"low": 1, "high": 2}}}, "unknown key 'train.nope'"),
        ({"params": {"train.lr": {"low": 2, "high": 1}}}, "needs {low, high"),
        ({"params": {"train.lr": {"low": "fast", "high": 1e-4}}}, "needs {low, high"),
        ({"params": {"train.lr": {"low": 1e-5, "high": 1e-4}}, "prune": "x"}, "unknown search keys"),
    ]:
        path.write_text(yaml.safe_dump({**raw, "search": search}))
        with pytest.raises(ConfigError, match=message):
            load_search(path)
    path.write_text(yaml.safe_dump({k: v for k, v in raw.items() if k != "search"}))
    with pytest.raises(ConfigError, match="no 'search' section"):
        load_search(path)


def test_bounds_written_as_text_are_numbers_and_an_unknown_metric_is_named(tmp_path, tiny_model_dir, capfd):
    from bertkit.cli import main
    from bertkit.tune import load_search, tune

    path = _config(tmp_path, tiny_model_dir)
    raw = yaml.safe_load(path.read_text())
    raw["search"]["params"]["train.lr"] = {"low": "1e-4", "high": "3e-2", "log": True}  # YAML reads 1e-4 as text
    path.write_text(yaml.safe_dump(raw))
    assert load_search(path)[1].params["train.lr"] == {"low": 1e-4, "high": 3e-2, "log": True}
    raw["search"]["metric"] = "acc"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="search.metric 'acc' is not a dev metric of this task; choose one of "
                                          "accuracy, f1, mcc, f1_binary"):
        tune(path, tmp_path / "out", trials=1)
    assert main(["tune", str(path), "--trials", "1", "--out", str(tmp_path / "cli"), "--quiet"]) == 2
    err = capfd.readouterr().err
    assert "search.metric 'acc' is not a dev metric" in err and "Traceback" not in err
