"""The Python API: `train`, `evaluate`, `predict`. The command line is a thin shell over these."""

from __future__ import annotations

import json
import logging
import platform
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertkit.config import RunConfig, flatten
from bertkit.data.cache import cache_root, cached_features, fingerprint
from bertkit.data.feature_store import FeatureStore, FeatureWriter, feature_lengths
from bertkit.data.splits import stratified_split
from bertkit.errors import CheckpointError, ConfigError
from bertkit.evaluation.inference import score
from bertkit.evaluation.predictor import Predictor
from bertkit.evaluation.report import REPORT_FILE, save_dev_outputs, write_report
from bertkit.export.model_card import model_card
from bertkit.models import transfer
from bertkit.models.fast_dropout import use_fast_dropout
from bertkit.models.init_source import InitSource, load_run_model, resolve_init
from bertkit.models.loading import build_model, load_tokenizer, max_positions, quiet_transformers
from bertkit.run_dir import RunDir, atomic_write_text, data_fingerprint, normal_permissions
from bertkit.tasks.base import get_task
from bertkit.training import checkpoint as ckpt
from bertkit.training.distill import DistillationTask, attach_teacher_logits
from bertkit.training.loop import LoopState, plan_epoch, train_loop
from bertkit.training.optim import build_optimizer, build_scheduler, count_steps
from bertkit.training.runtime import Runtime
from bertkit.training.tracking import Trackers
from bertkit.training.tracking import check_available as check_trackers

__all__ = ["TrainResult", "train", "train_events", "evaluate", "predict", "lineage"]

log = logging.getLogger("bertkit")
STREAM_FOLDER = "stream-features"  # streamed features of a run, when the tokenisation cache is off


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict[str, float]  # dev metrics of the selected checkpoint
    best_step: int | None
    steps: int
    train_seconds: float


def train(config: RunConfig, *, progress: bool = True) -> TrainResult:
    """Fine-tune as `config` says and leave a complete run directory behind."""
    result = None
    for event in train_events(config, progress=progress):
        if event["kind"] == "finished":
            result = event["result"]
    assert result is not None
    return result


def _prepare_run(config: RunConfig) -> tuple[RunConfig, RunDir]:
    if not config.out:
        raise ConfigError("no run directory given; pass --out RUN_DIR")
    run = RunDir(config.out)
    if config.resume and not run.exists() and config.data.train:
        # Killed before its config was written (or never started): --resume starts it, so that a retry
        # loop can always run the same command.
        log.info("%s: no earlier progress to resume; starting the run", run.path)
        run.path.mkdir(parents=True, exist_ok=True)
        config.resume = False
        return config, run
    if config.resume:
        if not run.exists():
            raise CheckpointError(f"{run.path}: nothing to resume (no config.yaml); drop --resume to start")
        saved = run.load_config()
        # Values given now that differ from both the saved run and the defaults were set on purpose.
        given, kept, default = (flatten(c.to_dict()) for c in (config, saved, RunConfig()))
        changed = [k for k, v in given.items() if k not in ("out", "resume") and v != kept[k] and v != default[k]]
        if changed:
            log.warning("resuming with the saved config of %s; ignoring the new values of %s", run.path,
                        ", ".join(changed))
        saved.resume = True
        return saved, run
    if run.path.exists() and any(run.path.iterdir()):
        raise ConfigError(f"{run.path}: the run directory exists and is not empty; pass --resume to continue "
                          "it, or choose a new --out")
    if not config.data.train:
        raise ConfigError("no training data given; pass --train FILE")
    run.path.mkdir(parents=True, exist_ok=True)
    return config, run


def _load_data(config: RunConfig, task, tokenizer) -> tuple[list[dict], list[dict], dict[str, Any]]:
    data = config.data
    train_examples = task.read_file(data.train, data, tokenizer)
    fingerprints = {"train": {**data_fingerprint(data.train), "rows": len(train_examples)}}
    if data.dev:
        dev_examples = task.read_file(data.dev, data, tokenizer)
        fingerprints["dev"] = {**data_fingerprint(data.dev), "rows": len(dev_examples)}
        task.fit(train_examples)
    else:
        task.fit(train_examples)  # the problem type decides how to stratify
        keys = [task.stratify_key(ex) for ex in train_examples]
        train_idx, dev_idx = stratified_split(keys, data.dev_fraction, config.train.seed)
        dev_examples = [train_examples[i] for i in dev_idx]
        train_examples = [train_examples[i] for i in train_idx]
        fingerprints["dev"] = {"split_from_train": data.dev_fraction, "seed": config.train.seed,
                               "rows": len(dev_examples)}
        task.fit(train_examples)
    task.check_examples(dev_examples, data.dev or f"{data.train} (dev split)")
    return train_examples, dev_examples, fingerprints


def _tokenizer_fingerprint(tokenizer) -> str:
    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    backend.pop("truncation", None), backend.pop("padding", None)  # call state, set by each tokenizer call
    return fingerprint(type(tokenizer).__name__, backend)


def _features(task, examples: list[dict], tokenizer, config: RunConfig) -> list[dict]:
    """The task's features of `examples`, from the tokenisation cache when the same examples were tokenised
    the same way before (see `bertkit.data.cache`)."""
    key = {"examples": fingerprint(examples), "tokenizer": _tokenizer_fingerprint(tokenizer),
           "task": task.name, "task_config": config.task.__dict__,
           "task_state": task.state(), "data": config.data.__dict__}
    task.use_tokenizer(tokenizer)
    return cached_features(key, lambda: task.preprocess(examples, tokenizer, config.data))


def _fit_max_length(config: RunConfig, task, model_name: str) -> None:
    """Keep inputs within the model's position embeddings: the task's default length is lowered to fit,
    a --max-length beyond them is refused."""
    limit = max_positions(model_name)
    wanted = task.max_length(config.data)
    if limit is None or wanted <= limit:
        return
    if config.data.max_length is not None:
        raise ConfigError(f"--max-length {wanted} is more than the {limit} positions of the model {model_name}; "
                          f"pass --max-length {limit} or less")
    log.info("inputs cut at %d tokens, the model's position limit (the %s default is %d)", limit, task.name, wanted)
    config.data.max_length = limit


def _discard_unstarted(run: RunDir, created: bool) -> None:
    """Remove what a run that failed before it began training left: the folder when this run created it,
    else only the streamed features in it. A run with a saved config (one being resumed) is never touched."""
    if run.exists():
        return
    if created:
        shutil.rmtree(run.path, ignore_errors=True)
    else:
        shutil.rmtree(run.path / STREAM_FOLDER, ignore_errors=True)


def _streamed_data(config: RunConfig, task, tokenizer, run: RunDir) -> tuple[FeatureStore, list[dict], dict]:
    """Training features of a file read in chunks (`data.stream`): one pass fits the task (labels), a
    second tokenises each chunk and appends it to a memory-mapped feature file. The file is kept in the
    tokenisation cache under a key of the data file's sha256 and every setting the features depend on,
    with the fitted task state beside it; with the cache off it lives in the run directory until the run
    completes."""
    data = config.data
    if not data.dev:
        raise ConfigError("--stream needs a --dev file (a streamed file is never held whole, so no dev split is "
                          "taken from it); split off a dev file, or drop --stream")
    if config.train.distill_from:
        raise ConfigError("--stream cannot be combined with --distill-from (the teacher labels every example in "
                          "memory); drop one of them")
    dev_examples = task.read_file(data.dev, data, tokenizer)
    source = data_fingerprint(data.train)
    key = fingerprint(source.get("sha256") or source, _tokenizer_fingerprint(tokenizer), task.name,
                      config.task.__dict__, {k: v for k, v in data.__dict__.items() if k not in ("dev", "train")})
    root = cache_root()
    folder = (root / "features") if root is not None else run.path / STREAM_FOLDER
    store_path, meta_path = folder / f"stream-{key}.arrow", folder / f"stream-{key}.json"
    meta = _read_json(meta_path) if store_path.is_file() else None
    if meta is not None:
        task.load_state(meta["task_state"])
        log.info("streamed features from the cache: %s", store_path)
    else:
        chunk = data.stream_chunk_rows
        task.fit_chunks(task.iter_file(data.train, data, tokenizer, chunk))  # pass 1: labels
        task.use_tokenizer(tokenizer)
        examples = 0
        with FeatureWriter(store_path) as writer:  # pass 2: tokenise chunk by chunk
            for examples_chunk in task.iter_file(data.train, data, tokenizer, chunk):
                writer.write(task.preprocess(examples_chunk, tokenizer, data))
                examples += len(examples_chunk)
            writer.close()
        meta = {"task_state": task.state(), "examples": examples}
        atomic_write_text(meta_path, json.dumps(meta))
    task.check_examples(dev_examples, data.dev)
    fingerprints = {"train": {**source, "rows": meta["examples"], "streamed": True},
                    "dev": {**data_fingerprint(data.dev), "rows": len(dev_examples)}}
    return FeatureStore(store_path), dev_examples, fingerprints


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _environment(rt: Runtime, config: RunConfig, fingerprints: dict[str, Any]) -> dict[str, Any]:
    import accelerate
    import tokenizers
    import torch
    import transformers

    from bertkit import __version__

    return {"bertkit": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
            "accelerate": accelerate.__version__, "platform": platform.platform(), **rt.describe(),
            "seed": config.train.seed, "data": fingerprints}


def train_events(config: RunConfig, *, progress: bool = True) -> Iterator[dict[str, Any]]:
    """`train` as a stream of the loop's events plus a final {"kind": "finished", "result": ...}.

    Stopping the iteration early leaves the run directory exactly as a crash would (resumable).
    """
    from transformers import set_seed

    fresh = not Path(config.out or ".").exists()
    config, run = _prepare_run(config)
    set_seed(config.train.seed)
    task = get_task(config.task)
    try:
        check_trackers(config)
        init = resolve_init(config)
    except BaseException:
        _discard_unstarted(run, fresh)
        raise
    try:
        tokenizer = load_tokenizer(init.model)
        _fit_max_length(config, task, init.model)
        pad_id = tokenizer.pad_token_id or 0
        if config.data.stream:
            train_examples = None
            train_features, dev_examples, fingerprints = _streamed_data(config, task, tokenizer, run)
        else:
            train_examples, dev_examples, fingerprints = _load_data(config, task, tokenizer)
            train_features = _features(task, train_examples, tokenizer, config)
        dev_features = _features(task, dev_examples, tokenizer, config)
        rt = Runtime(config.train.precision)
        model, optimizer, scheduler, total_steps, report, before_step = _build_training(
            config, task, rt, feature_lengths(train_features), init)
    except BaseException:
        _discard_unstarted(run, fresh)  # bad data or model: leave no run directory behind
        raise
    finally:
        init.cleanup()
    loop_task = task
    if config.train.distill_from:
        loop_task = DistillationTask(task, alpha=config.train.distill_alpha,
                                     temperature=config.train.distill_temperature)
        teacher_logits = _teacher_logits(config, task, train_examples, train_features, tokenizer, rt)
        train_features = attach_teacher_logits(train_features, teacher_logits)
    state = LoopState()
    if config.resume:
        restored = ckpt.restore_latest(run.checkpoints, rt.unwrap(model), optimizer, scheduler)
        if restored is not None:
            state = LoopState.from_dict(restored)
            log.info("resuming %s from step %d", run.path, state.step)
        if rt.is_main:
            run.truncate_metrics(state.step)  # records of lost work are written again
    if rt.is_main:
        run.write_config(config)
        run.write_json("environment.json", _environment(rt, config, fingerprints))
        run.write_json("labels.json", task.state())
        run.write_json("lineage.json", {"base_model": init.base_model, "parent": init.parent, "init": report,
                                        "teacher": _teacher_record(config)})
        run.set_status("running", step=state.step, total_steps=total_steps)
    log.info("training %s (%s) on %d examples, dev %d, %d steps, %s on %s; %s", task.name,
             task.state()["problem"], len(train_features), len(dev_features), total_steps, rt.precision, rt.device,
             _describe_trainable(report))

    def evaluate_fn(m):
        losses: list[float] = []
        metrics = score(m, task, dev_features, dev_examples, rt, pad_id, loss_out=losses)[0]
        return {"loss": losses[0], **metrics} if losses else metrics  # a task that scores its own loss keeps it

    bar = _progress_bar(total_steps, state.step, progress and rt.is_main)
    trackers = None
    started = time.perf_counter()
    try:
        if rt.is_main and (config.train.tensorboard or config.train.mlflow):
            trackers = Trackers(config, run, state.step)
        for event in train_loop(model=model, task=loop_task, features=train_features, cfg=config.train, rt=rt,
                                optimizer=optimizer, scheduler=scheduler, evaluate=evaluate_fn,
                                total_steps=total_steps, pad_id=pad_id, state=state, before_step=before_step):
            _handle_event(event, run, rt, model, optimizer, scheduler, state, config, bar)
            if trackers is not None:
                trackers.log(event)
            yield event
        train_seconds = time.perf_counter() - started
        result = _finish(run, rt, model, task, tokenizer, dev_features, dev_examples, pad_id, state, train_seconds)
    except BaseException:
        if rt.is_main:
            run.set_status("interrupted", step=state.step, total_steps=total_steps,
                           hint=f"continue with: bertkit train --out {run.path} --resume")
            if trackers is not None:
                trackers.finish(None, status="KILLED")
        raise
    finally:
        if bar is not None:
            bar.close()
    if trackers is not None:
        trackers.finish(run.read_json("results.json"))
    if rt.is_main and (run.path / STREAM_FOLDER).exists():
        shutil.rmtree(run.path / STREAM_FOLDER)  # the streamed features of a run without the cache
    yield {"kind": "finished", "result": result}


def _build_training(config: RunConfig, task, rt: Runtime, lengths: list[int], init: InitSource):
    """Model (with LoRA and frozen parts as configured), optimiser and schedule, prepared for the runtime.

    Returns them with the total steps, the model report (what was kept, what trains) and the per-step
    hook of gradual unfreezing (None without it)."""
    from transformers import set_seed

    set_seed(config.train.seed)  # the new head's initialisation depends only on the seed
    mc, tc = config.model, config.train
    model, report = build_model(init.model, task, init=mc.init, parent=init.head_state, num_layers=mc.num_layers,
                                allow_pickle=mc.allow_pickle)
    model, depths, n_layers, before_step = transfer.configure_training(model, mc, tc,
                                                                       train_head=task.lora_trains_head)
    optimizer = build_optimizer(model, tc, depths, n_layers)  # every parameter that trains now or later
    if before_step is not None:
        before_step(0)
    report.update(transfer.describe_parameters(model))
    if tc.packing:
        task.check_packing(model)
    if rt.device.type == "cpu":
        use_fast_dropout(model)  # CPU dropout's per-element generator is a tenth of a step on short inputs
    batches_per_epoch = len(plan_epoch(lengths, tc, 0, rt.num_processes, rt.process_index))
    total_steps = count_steps(tc, batches_per_epoch)
    scheduler = build_scheduler(optimizer, tc, total_steps)
    if tc.compile:
        transfer.compile_layers(model)
    model, optimizer = rt.prepare(model, optimizer)
    return model, optimizer, scheduler, total_steps, report, before_step


def _describe_trainable(report: dict[str, Any]) -> str:
    return f"{report['trainable']:,} of {report['parameters']:,} parameters train"


def _teacher_logits(config: RunConfig, task, train_examples: list[dict], train_features: list[dict], tokenizer,
                    rt: Runtime):
    """The teacher run's logits on the training examples, columns in the student's label order. The
    student's features are reused when both share a tokenizer (the usual case: a student started from its
    teacher), so the training set is tokenised once."""
    import numpy as np

    from bertkit.evaluation.inference import predict_outputs

    teacher_run = RunDir(config.train.distill_from).require(model=True)
    teacher, teacher_task = load_run_model(teacher_run.path)
    theirs, ours = teacher_task.state().get("labels", []), task.state().get("labels", [])
    if sorted(theirs) != sorted(ours) or teacher_task.name != task.name:
        raise ConfigError(f"train.distill_from {teacher_run.path}: the teacher predicts {theirs} "
                          f"({teacher_task.name}), the student {ours}; they must share the label set")
    teacher_tok = load_tokenizer(str(teacher_run.model_dir))
    if teacher_tok.backend_tokenizer.to_str() == tokenizer.backend_tokenizer.to_str():
        features = train_features  # their labels are targets, never model inputs
    else:
        features = teacher_task.preprocess(train_examples, teacher_tok, config.data, with_labels=False)
    log.info("distillation: teacher %s on %d training examples", teacher_run.path, len(features))
    logits = predict_outputs(teacher.to(rt.device), teacher_task, features, rt, teacher_tok.pad_token_id or 0,
                             len(train_examples))
    return np.asarray(logits)[:, [theirs.index(name) for name in ours]]


def _teacher_record(config: RunConfig) -> dict[str, Any] | None:
    if not config.train.distill_from:
        return None
    teacher = RunDir(config.train.distill_from)
    return {"path": str(teacher.path.resolve()), "alpha": config.train.distill_alpha,
            "temperature": config.train.distill_temperature,
            "dev": teacher.read_json("results.json", default={}).get("dev", {})}


def _progress_bar(total: int, initial: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True, disable=None)


def _handle_event(event, run: RunDir, rt: Runtime, model, optimizer, scheduler, state: LoopState,
                  config: RunConfig, bar) -> None:
    kind = event["kind"]
    if kind == "train":
        if bar is not None:
            bar.update(event["step"] - bar.n)
            bar.set_postfix(loss=f"{event['loss']:.4f}", tok_s=f"{event['tokens_per_s']:.0f}")
        if rt.is_main:
            run.append_metrics({k: v for k, v in event.items()})
    elif kind == "eval":
        metrics = {k: round(v, 6) for k, v in event["metrics"].items()}
        log.info("step %d dev %s%s", event["step"], metrics, " (best)" if event["is_best"] else "")
        if rt.is_main:
            run.append_metrics({"kind": "eval", "step": event["step"], "epoch": event["epoch"],
                                **{f"dev_{k}": v for k, v in metrics.items()}, "is_best": event["is_best"],
                                "eval_seconds": round(event["eval_seconds"], 2)})
    elif kind == "save":
        if rt.is_main:
            ckpt.save_checkpoint(run.checkpoints, event["step"], rt.unwrap(model), optimizer, scheduler,
                                 state.to_dict())
            protect = {state.best_step} if state.best_step is not None else set()
            ckpt.prune_checkpoints(run.checkpoints, config.train.keep_checkpoints, protect)
            run.set_status("running", step=state.step)
        rt.wait()
    elif kind == "early_stop":
        log.info("early stopping at step %d; best was step %d", event["step"], event["best_step"])


def _finish(run: RunDir, rt: Runtime, model, task, tokenizer, dev_features, dev_examples, pad_id,
            state: LoopState, train_seconds: float) -> TrainResult:
    """Reload the best checkpoint, score it on dev, and write the final model and results."""
    unwrapped = rt.unwrap(model)
    if state.best_step is not None:
        best = run.checkpoints / f"step-{state.best_step:08d}"
        if best.is_dir():
            ckpt.load_weights(unwrapped, best)
    metrics, outputs = score(model, task, dev_features, dev_examples, rt, pad_id)  # also fixes thresholds
    calibration = task.calibrate(unwrapped, outputs, dev_examples)  # every process: their models stay equal
    if calibration:
        log.info("calibrated on dev: temperature %.3f, expected calibration error %.4f -> %.4f",
                 calibration["temperature"], calibration["ece_before"], calibration["ece_after"])
    if rt.is_main:
        run.write_json("labels.json", task.state())
        tmp = run.path / ".tmp-model"
        shutil.rmtree(tmp, ignore_errors=True)
        with quiet_transformers():
            unwrapped.save_pretrained(tmp)  # a LoRA model saves its adapter and head only
            if hasattr(unwrapped, "get_base_model"):
                unwrapped.get_base_model().config.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        normal_permissions(tmp)
        shutil.rmtree(run.model_dir, ignore_errors=True)
        tmp.rename(run.model_dir)
        results = {"dev": metrics, "primary_metric": task.primary_metric, "best_step": state.best_step,
                   "steps": state.step, "stopped_early": state.stopped_early,
                   "train_seconds": round(train_seconds, 2)}
        if calibration:
            results["calibration"] = calibration
        save_dev_outputs(run, task, outputs, dev_examples)
        run.write_json("results.json", results)
        atomic_write_text(run.model_dir / "README.md", model_card(run.path))
        run.set_status("completed", step=state.step)
        try:
            write_report(run.path)
        except Exception as exc:  # noqa: BLE001 - the run is complete; a report can be made again later
            log.warning("could not write %s (%s); make it with: bertkit report %s", REPORT_FILE, exc, run.path)
    rt.wait()
    log.info("finished: dev %s (best step %s); model in %s", {k: round(v, 4) for k, v in metrics.items()},
             state.best_step, run.model_dir)
    return TrainResult(run.path, metrics, state.best_step, state.step, train_seconds)


def evaluate(run_dir: str | Path, data: str | Path, *, fmt: str | None = None, quantize: str | None = None,
             **columns: str | None) -> dict[str, float]:
    """Metrics of a run's final model (or of an ONNX export) on a labelled file (columns default to those
    used in training); `quantize="int8"` scores the run's model with PyTorch dynamic int8."""
    predictor = Predictor.from_path(run_dir, quantize=quantize)
    examples, data_cfg = predictor.read_file(data, with_labels=True, fmt=fmt, **columns)
    return predictor.evaluate_examples(examples, data_cfg)


def predict(run_dir: str | Path, inputs: list[Any], *, quantize: str | None = None) -> list[dict[str, Any]]:
    """Predictions of a run's final model (or of an ONNX export) for raw inputs (see `Predictor.predict`)."""
    return Predictor.from_path(run_dir, quantize=quantize).predict(inputs)


def lineage(run_dir: str | Path) -> list[dict[str, Any]]:
    """The chain from a run back to its original base model, newest first: one record per run (task,
    training data fingerprint, dev metrics, what it kept from its parent), then the base model.
    A parent run that has moved, or whose config changed since, is reported as such."""
    import hashlib

    chain: list[dict[str, Any]] = []
    path, expected_sha = Path(run_dir), None
    while True:
        run = RunDir(path).require()
        config = run.load_config()
        record_sha = hashlib.sha256((run.path / "config.yaml").read_bytes()).hexdigest()
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
        if not RunDir(parent["path"]).exists() or any(c.get("run") == parent["path"] for c in chain):
            chain.append({"missing_run": parent["path"], "task": parent.get("task"), "data": parent.get("data"),
                          "base_model": info.get("base_model")})
            return chain
        path, expected_sha = Path(parent["path"]), parent.get("config_sha256")
