"""Optional experiment tracking: TensorBoard and MLflow receive what `metrics.jsonl` records.

Both are off unless asked for (`--tensorboard`, `--mlflow`) and need the `track` extra
(`pip install 'bertkit[track]'`). TensorBoard writes event files to `RUN/tensorboard` (a resumed run
drops the events after its checkpoint, as the log does). MLflow logs to `$MLFLOW_TRACKING_URI` when set,
else to a local file store in `RUN/mlruns` (no server); a resumed run continues the same MLflow run.
Only the main process tracks.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from bertkit.config import RunConfig, flatten
from bertkit.errors import ConfigError
from bertkit.run_dir import RunDir, dev_metrics

__all__ = ["Trackers", "check_available"]

log = logging.getLogger(__name__)
_EXTRA = "pip install 'bertkit[track]' (or the package alone)"


def check_available(config: RunConfig) -> None:
    """Fail before training when a tracker is asked for and its package is missing."""
    import importlib.util

    wanted = [("tensorboard", config.train.tensorboard), ("mlflow", config.train.mlflow)]
    for package, on in wanted:
        if on and importlib.util.find_spec(package) is None:
            raise ConfigError(f"train.{package} needs the {package} package; {_EXTRA}")


class Trackers:
    """The trackers a run asked for; `log(event)` forwards the loop's train and eval events."""

    def __init__(self, config: RunConfig, run: RunDir, start_step: int) -> None:
        self.tensorboard: Any = None
        self.mlflow: Any = None
        if config.train.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(run.path / "tensorboard"), purge_step=start_step or None)
            self.tensorboard.add_text("config", "```\n" + "\n".join(
                f"{k}: {v}" for k, v in flatten(config.to_dict()).items()) + "\n```", global_step=start_step)
        if config.train.mlflow:
            try:
                self.mlflow = _start_mlflow(config, run)
            except Exception as exc:  # noqa: BLE001 - MLflow raises its own types for bad URIs and stores
                first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
                raise ConfigError(f"train.mlflow: cannot start an MLflow run ({first}); check MLFLOW_TRACKING_URI, or "
                                  "unset it to log to RUN/mlruns") from None

    def log(self, event: dict[str, Any]) -> None:
        step, kind = event.get("step", 0), event["kind"]
        if kind == "train":
            scalars = {f"train/{k}": event[k] for k in ("loss", "lr", "grad_norm", "tokens_per_s") if k in event}
        elif kind == "eval":
            scalars = {f"dev/{k}": v for k, v in dev_metrics(event).items()}
        else:
            return
        if self.tensorboard is not None:
            for name, value in scalars.items():
                self.tensorboard.add_scalar(name, value, step)
        if self.mlflow is not None:
            self.mlflow.log_metrics({k.replace("/", "_"): float(v) for k, v in scalars.items()}, step=step)

    def finish(self, results: dict[str, Any] | None, status: str = "FINISHED") -> None:
        if self.tensorboard is not None:
            self.tensorboard.flush()
            self.tensorboard.close()
        if self.mlflow is not None:
            if results:
                self.mlflow.log_metrics({f"final_dev_{k}": float(v) for k, v in results["dev"].items()})
                if results.get("best_step") is not None:
                    self.mlflow.log_metric("best_step", results["best_step"])
            self.mlflow.end_run(status=status)


def _start_mlflow(config: RunConfig, run: RunDir) -> Any:
    import mlflow

    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        # A plain folder in the run directory; MLflow 3 wants this opt-in for its file store.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        uri = (run.path / "mlruns").resolve().as_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(config.train.mlflow_experiment)
    saved = run.read_json("tracking.json", default={"none": True}).get("mlflow_run_id")
    if saved:
        mlflow.start_run(run_id=saved)
        log.info("MLflow: continuing run %s at %s", saved, uri)
        return mlflow
    active = mlflow.start_run(run_name=run.path.name)
    params = {k: ("" if v is None else str(v))[:500] for k, v in flatten(config.to_dict()).items()}
    mlflow.log_params(params)
    run.write_json("tracking.json", {"mlflow_run_id": active.info.run_id, "mlflow_tracking_uri": uri})
    log.info("MLflow: run %s at %s", active.info.run_id, uri)
    return mlflow
