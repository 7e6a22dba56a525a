"""The run directory: the unit of reproducibility that evaluate, predict, export, serve and resume take.

Layout:
    config.yaml       the resolved RunConfig (re-runnable with `bertkit train RUN/config.yaml`)
    environment.json  versions, device, precision, seed, data fingerprints
    labels.json       the fitted task state (label names in id order, threshold, class weights)
    metrics.jsonl     one JSON object per logged step and evaluation
    checkpoints/      step-NNNNNNNN/ folders written atomically (model, optimiser, RNG, loop state)
    model/            the final model: a standard Hugging Face directory (safetensors, tokenizer, config,
                      README.md model card)
    results.json      final dev metrics of the selected (best) checkpoint, decisions tuned on dev, calibration
    dev_outputs.npz, dev_examples.jsonl, dev_predictions.jsonl   the final model on dev (for the report)
    lineage.json      where the run started: base model, parent run (path, config hash, data), what was kept
    status.json       running | completed | failed, with the step reached
    .bertkit-run      written first: bertkit made this folder (only such a folder is resumed or written into)
    .lock             held (flock) by the process training into the run, so that a second one is refused
Every file is written to a temporary name and renamed (`bertkit.io`), so a crash never leaves a half-written
file.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import yaml

from bertkit.config import RunConfig, safe_yaml
from bertkit.errors import CheckpointError, ConfigError
from bertkit.io import atomic_write_text, process_alive, sha256_file, split_lines

MARKER = ".bertkit-run"

__all__ = ["RunDir", "lineage", "eval_record", "dev_metrics"]


def eval_record(step: int, epoch: int, metrics: dict[str, float], *, is_best: bool, seconds: float
                ) -> dict[str, Any]:
    """The one schema of an evaluation, live (the loop's "eval" event) and on disk (a line of metrics.jsonl):
    {"kind": "eval", "step", "epoch", "dev_<metric>": value..., "is_best", "eval_seconds"}."""
    scores = {f"dev_{k}": round(float(v), 6) for k, v in metrics.items()}
    return {"kind": "eval", "step": step, "epoch": epoch, **scores, "is_best": is_best,
            "eval_seconds": round(seconds, 2)}


def dev_metrics(record: dict[str, Any]) -> dict[str, float]:
    """The dev metrics of an evaluation record, by metric name (loss included when it was measured)."""
    return {k[4:]: v for k, v in record.items() if k.startswith("dev_")}


DEV_OUTPUTS, DEV_EXAMPLES, DEV_PREDICTIONS = "dev_outputs.npz", "dev_examples.jsonl", "dev_predictions.jsonl"


def _jsonl_text(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, default=float) + "\n" for r in records)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in split_lines(path.read_text(encoding="utf-8")) if line]
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable ({exc}); the run directory is damaged") from None


class RunDir:
    """Typed access to the files of one run directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    checkpoints = property(lambda self: self.path / "checkpoints")
    model_dir = property(lambda self: self.path / "model")
    metrics_file = property(lambda self: self.path / "metrics.jsonl")

    def exists(self) -> bool:
        return (self.path / "config.yaml").is_file()

    def is_ours(self) -> bool:
        """Whether bertkit made this folder (a run, or one being started), so that it may write into it."""
        return self.exists() or any((self.path / name).is_file() for name in (MARKER, "status.json"))

    def create(self) -> None:
        """Make the folder of a new run and mark it as bertkit's before anything else is written."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            (self.path / MARKER).touch()
        except OSError as exc:  # under a file, read-only, no permission
            raise ConfigError(f"{self.path}: cannot create the run directory ({exc.strerror}); set out to a "
                              "folder you can write") from None

    def lock(self) -> None:
        """Hold the run's lock until `unlock` or the end of the process: a second process training into the
        same run is refused (a lock on this host, and status.json's live process as far as it can tell).
        Only the main process of a distributed run takes it."""
        if os.environ.get("RANK", "0") != "0":
            return
        record = self.status() if (self.path / "status.json").is_file() else {}
        # status() reads a dead process on this host as interrupted; one on another host cannot be checked
        # from here, and the file lock (which network filesystems with locking share) speaks for it.
        busy = record.get("status") == "running" and record.get("host") == socket.gethostname() \
            and record.get("pid") != os.getpid()
        try:
            import fcntl
        except ImportError:  # no flock (Windows): status.json alone tells
            fcntl = None
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            busy = True
        if busy:
            os.close(fd)
            who = f" (pid {record['pid']} on {record.get('host')})" if record.get("pid") else ""
            raise CheckpointError(f"{self.path}: another bertkit process is training into this run{who}; wait "
                                  "for it to end or stop it, then resume")
        self._lock_fd = fd

    def unlock(self) -> None:
        fd = getattr(self, "_lock_fd", None)
        if fd is not None:
            os.close(fd)  # closing the file releases the flock
            self._lock_fd = None

    def require(self, *, model: bool = False) -> RunDir:
        """Check this is a run directory (with a final model when `model`), or explain what is wrong."""
        if not self.path.is_dir():
            raise CheckpointError(f"{self.path}: no such run directory; pass the run directory (the out folder of a "
                                  "training run)")
        if not self.exists():
            raise CheckpointError(f"{self.path}: not a bertkit run directory (no config.yaml)")
        if model and not (self.model_dir / "config.json").is_file():
            status = self.status()["status"]
            raise CheckpointError(f"{self.path}: the run has no final model yet (status: {status}); "
                                  "finish it with `bertkit train --out RUN --resume`")
        return self

    # --- JSON and YAML ---------------------------------------------------------------------------------
    def write_json(self, name: str, obj: Any) -> None:
        atomic_write_text(self.path / name, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")

    def read_json(self, name: str, default: Any = None) -> Any:
        p = self.path / name
        if not p.is_file():
            if default is not None:
                return default
            raise CheckpointError(f"{p}: missing; the run directory is incomplete")
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{p}: damaged JSON ({exc})") from None

    def read_state(self) -> dict[str, Any]:
        """labels.json, the fitted task state, checked against the saved model's label names (config.json's
        id2label) when both have them: a state that does not fit the model would mislabel every prediction."""
        state = self.read_json("labels.json")
        if not isinstance(state, dict) or "task" not in state:
            raise CheckpointError(f"{self.path / 'labels.json'}: not a task state; the run directory is damaged")
        model_config = self.model_dir / "config.json"
        if state.get("labels") is not None and model_config.is_file():
            try:
                id2label = json.loads(model_config.read_text(encoding="utf-8")).get("id2label") or {}
            except (OSError, ValueError):
                id2label = {}
            names = [id2label[k] for k in sorted(id2label, key=int)] if id2label else None
            if names is not None and state.get("problem") != "regression" and names != list(state["labels"]):
                raise CheckpointError(f"{self.path / 'labels.json'}: its labels {state['labels'][:6]} do not match the "
                                      f"model's {names[:6]} (model/config.json); the run directory is damaged")
        return state

    def write_config(self, cfg: RunConfig) -> None:
        atomic_write_text(self.path / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True))

    def load_config(self) -> RunConfig:
        path = self.path / "config.yaml"
        try:
            raw = safe_yaml(path.read_text(encoding="utf-8"), str(path))
        except (OSError, UnicodeDecodeError, ConfigError) as exc:
            raise CheckpointError(f"{path}: cannot read the run's config ({exc}); the run directory is "
                                  "damaged") from None
        if not isinstance(raw, dict) or not raw:
            raise CheckpointError(f"{path}: empty or not a mapping; the run directory is damaged (a run's "
                                  "config.yaml is written whole)")
        return RunConfig.from_dict(raw, source=str(path))

    def set_status(self, status: str, **extra: Any) -> None:
        """Record how the run stands: running (with the process that runs it), interrupted, completed."""
        if status == "running":
            extra = {**extra, "pid": os.getpid(), "host": socket.gethostname()}
        self.write_json("status.json", {"status": status, **extra})

    def status(self) -> dict[str, Any]:
        """status.json, where a "running" run whose process is gone on this host (killed, or the machine
        lost power) reads as "interrupted"."""
        record = self.read_json("status.json", default={"status": "unknown"})
        if record.get("status") == "running" and record.get("host") == socket.gethostname() \
                and not process_alive(record.get("pid")):
            record = {**record, "status": "interrupted", "hint": f"continue with: bertkit train --out {self.path} "
                      "--resume", "note": "the training process ended without finishing (killed or crashed)"}
        return record

    # --- the final model's dev outputs (what the report reads) -----------------------------------------
    def write_dev_outputs(self, outputs: Any, examples: list[dict[str, Any]],
                          predictions: list[dict[str, Any]] | None) -> None:
        """The final model on dev: raw outputs (`dev_outputs.npz`, no pickles: one array, or per-example
        arrays concatenated with their lengths; before calibration), the examples as the task records them
        (`dev_examples.jsonl`) and, for tasks with a view of them, the predictions (`dev_predictions.jsonl`).
        Each file is written atomically."""
        import numpy as np

        arrays: dict[str, Any] = {}
        if isinstance(outputs, np.ndarray):
            arrays["outputs"] = outputs
        elif outputs and all(isinstance(o, np.ndarray) for o in outputs):
            arrays["outputs_flat"] = np.concatenate(outputs)
            arrays["lengths"] = np.array([len(o) for o in outputs])
        if arrays:
            tmp = self.path / f".tmp-{DEV_OUTPUTS}"
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)
            os.replace(tmp, self.path / DEV_OUTPUTS)
        atomic_write_text(self.path / DEV_EXAMPLES, _jsonl_text(examples))
        if predictions is not None:
            atomic_write_text(self.path / DEV_PREDICTIONS, _jsonl_text(predictions))

    def read_dev_outputs(self) -> tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, Any]] | None] | None:
        """(examples, arrays, predictions) as `write_dev_outputs` left them, or None when the run saved none."""
        import zipfile

        import numpy as np

        if not (self.path / DEV_EXAMPLES).is_file():
            return None
        arrays: dict[str, Any] = {}
        outputs_file, predictions_file = self.path / DEV_OUTPUTS, self.path / DEV_PREDICTIONS
        if outputs_file.is_file():
            try:
                with np.load(outputs_file, allow_pickle=False) as data:
                    arrays = {k: data[k] for k in data.files}
            except (OSError, ValueError, zipfile.BadZipFile) as exc:
                raise CheckpointError(f"{outputs_file}: unreadable ({exc}); delete it and the report is made "
                                      "without the per-task views, or train the run again") from None
        predictions = _read_jsonl(predictions_file) if predictions_file.is_file() else None
        return _read_jsonl(self.path / DEV_EXAMPLES), arrays, predictions

    # --- metrics log ------------------------------------------------------------------------------------
    def append_metrics(self, record: dict[str, Any]) -> None:
        with open(self.metrics_file, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            fh.flush()

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_file.is_file():
            return []
        records = []
        for line in split_lines(self.metrics_file.read_text(encoding="utf-8")):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a crash mid-write
        return records

    def truncate_metrics(self, last_step: int) -> None:
        """Drop records after `last_step` (work lost by a crash and redone on resume)."""
        keep = [r for r in self.read_metrics() if r.get("step", 0) <= last_step]
        atomic_write_text(self.metrics_file, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in keep))


def lineage(run_dir: str | Path) -> list[dict[str, Any]]:
    """The chain from a run back to its original base model, newest first: one record per run (task,
    training data fingerprint, dev metrics, what it kept from its parent), then the base model.
    A parent run that has moved, or whose config changed since, is reported as such."""
    chain: list[dict[str, Any]] = []
    path, expected_sha = Path(run_dir), None
    while True:
        run = RunDir(path).require()
        config = run.load_config()
        record_sha = sha256_file(run.path / "config.yaml")
        info = run.read_json("lineage.json", default={})
        env, results = run.read_json("environment.json", default={}), run.read_json("results.json", default={})
        chain.append({
            "run": str(run.path.resolve()), "task": config.task.name,
            "problem": run.read_json("labels.json", default={}).get("problem"),
            "status": run.status().get("status"),
            "train_data": env.get("data", {}).get("train"), "dev": results.get("dev"),
            "primary_metric": results.get("primary_metric"), "init": info.get("init"),
            "teacher": (info.get("teacher") or {}).get("path"), "lora": bool(config.model.lora_r),
            "config_changed": expected_sha is not None and expected_sha != record_sha})
        parent = info.get("parent")
        if not parent or parent.get("kind") != "run":
            base = parent["path"] if parent else (info.get("base_model") or config.model.name)
            chain.append({"base_model": base})
            return chain
        if any(c.get("run") == str(Path(parent["path"]).resolve()) for c in chain):
            chain.append({"cycle_to": parent["path"], "base_model": info.get("base_model")})
            return chain  # a parent that is also a descendant: a run directory was replaced by one of its children
        if not RunDir(parent["path"]).exists():
            chain.append({"missing_run": parent["path"], "task": parent.get("task"), "data": parent.get("data"),
                          "base_model": info.get("base_model")})
            return chain
        path, expected_sha = Path(parent["path"]), parent.get("config_sha256")
