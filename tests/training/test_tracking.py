"""TensorBoard and MLflow receive the run's curves; a resumed run continues the same MLflow run."""

import json

import pytest

from bertkit.api import train
from conftest import tiny_config

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")


def test_tensorboard_and_mlflow_get_the_logged_curves(tmp_path, toy_files, tiny_model_dir, monkeypatch):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = tiny_config(tiny_model_dir, *toy_files, tmp_path / "run", **{
        "train.max_steps": 20, "train.eval_every": 10, "train.tensorboard": True, "train.mlflow": True,
        "train.mlflow_experiment": "toy"})
    result = train(cfg, progress=False)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]

    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    losses = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert losses == [(r["step"], pytest.approx(r["loss"], rel=1e-6)) for r in records if r["kind"] == "train"]
    assert [e.step for e in events.Scalars("dev/accuracy")] == [10, 20]

    tracking = json.loads((tmp_path / "run" / "tracking.json").read_text())
    client = MlflowClient(tracking["mlflow_tracking_uri"])
    mlrun = client.get_run(tracking["mlflow_run_id"])
    assert mlrun.info.status == "FINISHED" and mlrun.data.params["train.lr"] == "0.005"
    assert mlrun.data.metrics["final_dev_accuracy"] == pytest.approx(result.metrics["accuracy"])
    history = client.get_metric_history(mlrun.info.run_id, "dev_accuracy")
    assert [m.step for m in history] == [10, 20]
    assert client.get_experiment(mlrun.info.experiment_id).name == "toy"


def test_a_missing_tracker_package_is_named_before_training(tmp_path, toy_files, tiny_model_dir, monkeypatch):
    import importlib.util

    from bertkit.errors import ConfigError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    cfg = tiny_config(tiny_model_dir, *toy_files, tmp_path / "run", **{"train.mlflow": True})
    with pytest.raises(ConfigError, match=r"train.mlflow needs the mlflow package; pip install 'bertkit\[track\]'"):
        train(cfg, progress=False)
    assert not (tmp_path / "run").exists()


def test_a_resumed_run_continues_its_mlflow_run(tmp_path, toy_files, tiny_model_dir, monkeypatch):
    from mlflow.tracking import MlflowClient

    from bertkit.api import train_events

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = tiny_config(tiny_model_dir, *toy_files, tmp_path / "run", **{
        "train.max_steps": 20, "train.eval_every": 10, "train.mlflow": True})
    events = train_events(cfg, progress=False)
    for event in events:
        if event["kind"] == "train" and event["step"] >= 15:
            break
    events.close()  # stopped like a crash, after the step-10 checkpoint
    tracking = json.loads((tmp_path / "run" / "tracking.json").read_text())
    client = MlflowClient(tracking["mlflow_tracking_uri"])
    assert client.get_run(tracking["mlflow_run_id"]).info.status == "KILLED"
    train(cfg.with_overrides({"resume": True}), progress=False)
    assert json.loads((tmp_path / "run" / "tracking.json").read_text()) == tracking
    run = client.get_run(tracking["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "dev_accuracy")] == [10, 20]


def test_a_bad_mlflow_uri_is_one_clear_error(tmp_path, toy_files, tiny_model_dir, monkeypatch):
    from bertkit.errors import ConfigError

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "bogus://nowhere")
    cfg = tiny_config(tiny_model_dir, *toy_files, tmp_path / "run", **{"train.max_steps": 2, "train.mlflow": True})
    with pytest.raises(ConfigError, match="train.mlflow: cannot start an MLflow run .*check MLFLOW_TRACKING_URI"):
        train(cfg, progress=False)
    assert json.loads((tmp_path / "run" / "status.json").read_text())["status"] == "interrupted"
