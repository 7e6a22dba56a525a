"""One training run, from a config to a finished run directory.

    prepare(config)        run directory, task, tokenizer, data, model, optimiser, schedule -> RunContext
    train_loop(...)        the loop (training/loop.py); each event is recorded by `_record`
    finish(ctx, seconds)   best checkpoint back, decisions tuned on dev, calibration, final model and results

`train_events` strings them together and yields the loop's events, then {"kind": "finished", "result"}.
Every step reads and writes one `RunContext`; nothing is passed around in long argument lists, and
nothing happens as a side effect of scoring: tuning decision parameters and calibrating are steps of
`finish` of their own. The run report and the model card, which read a finished run directory, are
written by the layers above (`bertkit.api`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bertkit.config import DataConfig, RunConfig, flatten
from bertkit.errors import BertkitError, CheckpointError, ConfigError
from bertkit.inference.batched import predict_outputs
from bertkit.io import normal_permissions
from bertkit.models import transfer
from bertkit.models.fast_dropout import use_fast_dropout
from bertkit.models.init_source import InitSource, resolve_init
from bertkit.models.loading import build_model, encoder_config, load_tokenizer, quiet_transformers, write_checksums
from bertkit.models.pooling import append_mean_pooling, freeze_mean_pooling
from bertkit.models.vocab import init_new_embeddings
from bertkit.run_dir import MARKER, RunDir, dev_metrics
from bertkit.runtime import Runtime, unwrap
from bertkit.tasks.base import Task, example_record, get_task
from bertkit.tasks.long_inputs import example_tokens, input_lengths
from bertkit.training import checkpoint as ckpt
from bertkit.training import defaults, few_shot
from bertkit.training.defaults import DataStats, ModelInfo
from bertkit.training.distill import attach_teacher_logits, teacher_logits, teacher_record
from bertkit.training.loop import LoopState, plan_epoch, train_loop
from bertkit.training.objectives import Contrastive, Distillation, GradCache, Objective, TaskLoss
from bertkit.training.optim import build_optimizer, build_scheduler, count_steps
from bertkit.training.run_data import STREAM_FOLDER, RunData, load_run_data
from bertkit.training.tracking import Trackers
from bertkit.training.tracking import check_available as check_trackers

__all__ = ["TrainResult", "RunContext", "open_run", "prepare", "finish", "train_events"]

log = logging.getLogger("bertkit")


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict[str, float]  # dev metrics of the selected checkpoint
    best_step: int | None
    steps: int
    train_seconds: float
    main_process: bool = True  # False in the other processes of a data-parallel launch


@dataclass
class RunContext:
    """Everything one run is made of, built once by `prepare`."""

    config: RunConfig
    run: RunDir
    rt: Runtime
    task: Task  # the fitted task plug-in
    tokenizer: Any
    data: RunData
    model: torch.nn.Module  # prepared for the runtime (wrapped for data parallelism when launched so)
    optimizer: torch.optim.Optimizer
    scheduler: Any
    total_steps: int
    model_report: dict[str, Any]  # what was kept from where, and what trains
    objective: Objective  # what the loop minimises: the task's loss, distillation, the contrastive phase
    before_step: Callable[[int], None] | None = None  # gradual unfreezing
    state: LoopState = field(default_factory=LoopState)
    method: str = "standard"  # "few-shot": contrastive pairs train, then the head is fitted on head_features
    head_features: Any = None  # few-shot: the training examples' own features

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id or 0


def open_run(config: RunConfig) -> tuple[RunConfig, RunDir]:
    """The run directory of `config`: created for a new run, or the saved config of one being resumed."""
    if not config.out:
        raise ConfigError("no run directory given; set out (the run directory)")
    run = RunDir(config.out)
    if run.path.exists() and not run.path.is_dir():
        raise ConfigError(f"{run.path}: a file, not a folder; set out to a new folder for the run")
    foreign = run.path.is_dir() and any(run.path.iterdir()) and not run.is_ours()
    if foreign:  # resuming or starting there could replace the user's files
        raise ConfigError(f"{run.path}: the folder holds files that bertkit did not write and is not a run "
                          "directory; set out to a new or empty folder")
    if config.resume and not run.exists() and config.data.train:
        # Killed before its config was written (or never started): resume starts it, so that a retry
        # loop can always run the same command.
        log.info("%s: no earlier progress to resume; starting the run", run.path)
        run.create()
        return dataclasses.replace(config, resume=False), run
    if config.resume:
        if not run.exists():
            raise CheckpointError(f"{run.path}: nothing to resume (no config.yaml); drop resume to start")
        saved = run.load_config()
        # Values given now that differ from both the saved run and the defaults were set on purpose.
        given, kept, default = (flatten(c.to_dict()) for c in (config, saved, RunConfig()))
        changed = [k for k, v in given.items() if k not in ("out", "resume") and v != kept.get(k)
                   and v != default.get(k)]
        if changed:
            log.warning("resuming with the saved config of %s; ignoring the new values of %s", run.path,
                        ", ".join(changed))
        saved.resume = True
        return saved, run
    started = {p.name for p in run.path.iterdir()} - {MARKER, ".lock"} if run.path.is_dir() else set()
    if started and os.environ.get("RANK", "0") == "0":  # the other processes of a distributed run follow it
        raise ConfigError(f"{run.path}: the run directory exists and is not empty; set resume to continue it, or "
                          "set out to a new folder")
    if not config.data.train:
        raise ConfigError("no training data given; set data.train")
    run.create()
    return config, run


def prepare(config: RunConfig) -> RunContext:
    """Everything up to the first step: a run that fails here leaves no run directory it created. The
    settings the config left open are decided once, by `defaults.resolve`, after the data are read and before
    the model is built; nothing changes the config after that."""
    from transformers import set_seed

    fresh = not Path(config.out or ".").exists()
    config, run = open_run(config)
    set_seed(config.train.seed)
    init = None
    try:
        run.lock()
        task = get_task(config.task)
        check_trackers(config)
        init = resolve_init(config)
        tokenizer = load_tokenizer(init.model)
        _check_extend_vocab(config)
        rt = Runtime(config.train.precision)
        model_info = ModelInfo.of(init.model, encoder_config(init.model), parent=init.parent,
                                  processes=rt.num_processes)
        data = _load_data(config, task, tokenizer, run, model_info)
        config, reasons = defaults.resolve(config, DataStats.of(task, len(data.train_features), data.window),
                                           model_info)
        for reason in reasons:
            log.info("%s", reason)
        head_features = _few_shot_pairs(config, data) if config.train.method == "few-shot" else None
        ctx = _build_training(config, run, rt, task, data.tokenizer, data, init, base_tokenizer=tokenizer)
        if head_features is not None:
            ctx.method, ctx.head_features, ctx.objective = "few-shot", head_features, Contrastive()
    except BaseException:
        run.unlock()
        _discard_unstarted(run, fresh)  # bad data or model: leave no run directory behind
        raise
    finally:
        if init is not None:
            init.cleanup()
    mini_batch = getattr(config.task, "mini_batch", None)
    if mini_batch:  # an in-batch loss over a batch larger than memory takes: embedded in mini-batches
        ctx.objective = GradCache(task, mini_batch, rt.autocast)
    if config.train.distill_from:
        ctx.objective = Distillation(task, alpha=config.train.distill_alpha,
                                     temperature=config.train.distill_temperature)
        logits = teacher_logits(config, task, data.train_examples, data.train_features, ctx.tokenizer, rt)
        data.train_features = attach_teacher_logits(data.train_features, logits)
    _restore(ctx)
    _write_start(ctx, init)
    return ctx


def _load_data(config: RunConfig, task: Task, tokenizer: Any, run: RunDir, model: ModelInfo) -> RunData:
    """The run's data, cut at the input length `defaults.resolve` will record, and held out for dev by its
    rule; a resumed run checks that its files did not change."""
    length, _ = defaults.input_length(config, task.default_max_length, model)
    reading = dataclasses.replace(config, data=dataclasses.replace(config.data, max_length=length))

    def keep_all_below(examples: list[dict[str, Any]]) -> int:
        if config.train.method == "standard" or not task.few_shot_problems:
            return defaults.NO_DEV_BELOW
        probe = get_task(config.task)
        try:
            probe.fit(examples)
        except BertkitError:  # the run's own checks say it when they come to it
            return defaults.NO_DEV_BELOW
        return defaults.holdout_below(config, DataStats.of(probe, len(examples)), model)

    def choose_window(examples: list[dict[str, Any]], tok: Any) -> tuple[int, str] | None:
        if config.data.max_length is not None or not task.reads_long_inputs:
            return None
        return defaults.window_for(input_lengths(examples, tok), task.default_max_length, model)

    data = load_run_data(reading, task, tokenizer, run, keep_all_below, choose_window)
    if config.resume:
        _check_same_data(run, data.fingerprints)
    return data


def _few_shot_pairs(config: RunConfig, data: RunData) -> list[dict[str, Any]]:
    """The few-shot recipe trains on pairs of the training examples (they replace `data.train_features`);
    returns the examples' own features, which its head is fitted on."""
    head_features = data.train_features
    data.train_features = few_shot.make_pairs(head_features, config.train.few_shot_pairs, config.train.seed)
    log.info("%s", few_shot.pairs_note(len(head_features), data.train_features))
    return head_features


def _check_extend_vocab(config: RunConfig) -> None:
    """model.extend_vocab adds embeddings that must learn: refused with settings that keep them fixed."""
    if not (config.model.extend_vocab or config.model.extend_vocab_list):
        return
    tc = config.train
    if tc.freeze_embeddings or tc.freeze_layers:
        raise ConfigError("model.extend_vocab adds word embeddings that must train, and train.freeze_embeddings / "
                          "train.freeze_layers keep them fixed; drop those settings for this run")
    if tc.distill_from:
        raise ConfigError("model.extend_vocab changes the tokenizer, and the teacher of train.distill_from reads "
                          "the old one; extend the vocabulary in a run of its own (bertkit pretrain), then "
                          "distil into a run started from it")


def _build_training(config: RunConfig, run: RunDir, rt: Runtime, task: Task, tokenizer: Any, data: RunData,
                    init: InitSource, base_tokenizer: Any = None) -> RunContext:
    """Model (resized for the tokens the run added to `base_tokenizer`; with LoRA and frozen parts as
    configured; the mean-pooling layer for the few-shot recipe), optimiser and schedule, prepared for the
    runtime."""
    from transformers import set_seed

    set_seed(config.train.seed)  # the new head's initialisation depends only on the seed
    mc, tc = config.model, config.train
    model, report = build_model(init.model, task, init=mc.init, parent=init.head_state, num_layers=mc.num_layers,
                                allow_pickle=mc.allow_pickle)
    if data.added_tokens:
        start = init_new_embeddings(model, base_tokenizer or tokenizer, tokenizer, data.added_tokens,
                                    seed=config.train.seed)
        report["vocabulary"] = {**data.fingerprints["vocabulary"], **start, "tokens": data.added_tokens}
        log.info("word embeddings: %d rows added (%d started from the mean of their known pieces, %d drawn with the "
                 "mean and covariance of the known embeddings)", len(data.added_tokens), start["from_pieces"],
                 start["drawn"])
    if config.train.method == "few-shot":
        index = append_mean_pooling(model)
        report["pooling"] = f"mean of the token states, by layer {index + 1} (fixed)"
    freeze_mean_pooling(model)
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
    lengths = task.feature_lengths(data.train_features)
    total_steps = count_steps(tc, len(plan_epoch(lengths, tc, 0, rt.num_processes, rt.process_index)))
    scheduler = build_scheduler(optimizer, tc, total_steps)
    if tc.compile:
        transfer.compile_layers(model)
    model, optimizer = rt.prepare(model, optimizer)
    return RunContext(config=config, run=run, rt=rt, task=task, tokenizer=tokenizer, data=data, model=model,
                      optimizer=optimizer, scheduler=scheduler, total_steps=total_steps, model_report=report,
                      objective=TaskLoss(task), before_step=before_step)


def _check_same_data(run: RunDir, fingerprints: dict[str, Any]) -> None:
    """A resumed run trains on the data it started with: a file whose content changed is refused (the
    recorded fingerprint stays as it was)."""
    recorded = run.read_json("environment.json", default={}).get("data") or {}

    def content(record: dict[str, Any]) -> Any:
        files = record.get("files") or [record]
        return [f.get("sha256") for f in files], record.get("rows")

    for name in ("train", "dev"):
        before, now = recorded.get(name), fingerprints.get(name)
        if before and now and ("sha256" in before or "files" in before) and content(before) != content(now):
            where = now.get("path") or "the files"
            raise ConfigError(f"data.{name}: {where} changed since the run started (sha256 or rows differ from "
                              f"{run.path}/environment.json); resume needs the same data: restore it, or start a "
                              "new run with another out")


def _discard_unstarted(run: RunDir, created: bool) -> None:
    """Remove what a run that failed before it began training left: the folder when this run created it,
    else only the streamed features in it. A run with a saved config (one being resumed) is never touched."""
    if run.exists():
        return
    if created:
        shutil.rmtree(run.path, ignore_errors=True)
    else:
        shutil.rmtree(run.path / STREAM_FOLDER, ignore_errors=True)


def _restore(ctx: RunContext) -> None:
    """A resumed run continues from its latest intact checkpoint; records of lost work are written again."""
    if not ctx.config.resume:
        return
    restored = ckpt.restore_latest(ctx.run.checkpoints, ctx.rt.unwrap(ctx.model), ctx.optimizer, ctx.scheduler)
    if restored is not None:
        ctx.state = LoopState.from_dict(restored)
        log.info("resuming %s from step %d", ctx.run.path, ctx.state.step)
    if ctx.rt.is_main:
        ctx.run.truncate_metrics(ctx.state.step)


def _write_start(ctx: RunContext, init: InitSource) -> None:
    run, task, config = ctx.run, ctx.task, ctx.config
    if ctx.rt.is_main:
        run.write_config(config)
        run.write_json("environment.json", _environment(ctx.rt, config, ctx.data.fingerprints))
        run.write_json("labels.json", task.state())
        run.write_json("lineage.json", {"base_model": init.base_model, "parent": init.parent,
                                        "init": ctx.model_report, "teacher": teacher_record(config)})
        run.set_status("running", step=ctx.state.step, total_steps=ctx.total_steps)
    report = ctx.model_report
    note = task.model_note(ctx.rt.unwrap(ctx.model))
    if note:
        log.info("%s", note)
    trains_on = (f"{len(ctx.head_features)} examples ({len(ctx.data.train_features)} pairs)" if ctx.method == "few-shot"
                 else f"{len(ctx.data.train_features)} examples")
    log.info("training %s (%s) on %s, dev %d, %d steps, %s on %s; %s of %s parameters train", task.name,
             task.state().get("problem", "-"), trains_on, len(ctx.data.dev_features),
             ctx.total_steps, ctx.rt.precision, ctx.rt.device, f"{report['trainable']:,}", f"{report['parameters']:,}")


def _environment(rt: Runtime, config: RunConfig, fingerprints: dict[str, Any]) -> dict[str, Any]:
    import accelerate
    import tokenizers
    import transformers

    from bertkit import __version__

    return {"bertkit": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
            "accelerate": accelerate.__version__, "platform": platform.platform(), **rt.describe(),
            "seed": config.train.seed, "data": fingerprints}


def dev_outputs(ctx: RunContext, model: torch.nn.Module, loss_out: list[float] | None = None) -> Any:
    """The task's outputs of `model` on the dev examples (the mean dev loss appended to `loss_out`)."""
    d = ctx.data
    return predict_outputs(model, ctx.task, d.dev_features, ctx.rt, ctx.pad_id, len(d.dev_examples),
                           loss_out=loss_out)


def evaluate_dev(ctx: RunContext, model: torch.nn.Module) -> dict[str, float]:
    """Dev loss and metrics at an evaluation of the loop. Decision parameters the run does not fix (a
    multi-label threshold) are tuned on these outputs first, as model selection then compares them."""
    if not ctx.data.dev_examples:  # no dev set: the latest model is the selected one
        return {}
    losses: list[float] = []
    outputs = dev_outputs(ctx, model, losses)
    ctx.task.tune(outputs, ctx.data.dev_examples)
    metrics = ctx.task.metrics(outputs, ctx.data.dev_examples)
    return {"loss": losses[0], **metrics} if losses else metrics  # a task that scores its own loss keeps it


def _evaluate(ctx: RunContext, model: torch.nn.Module) -> dict[str, float]:
    """An evaluation of the loop; the few-shot recipe fits its head on the training examples first (so the
    checkpoint saved with it holds the head that was scored)."""
    if ctx.method == "few-shot":
        few_shot.fit_head(model, ctx.task, ctx.head_features, ctx.rt, ctx.pad_id)
    return evaluate_dev(ctx, model)


def train_events(config: RunConfig, *, progress: bool = True,
                 before_complete: Callable[[Path], None] | None = None) -> Iterator[dict[str, Any]]:
    """A run as a stream of the loop's events plus a final {"kind": "finished", "result": TrainResult}.

    Stopping the iteration early leaves the run directory exactly as a crash would (resumable)."""
    ctx = prepare(config)
    rt, run = ctx.rt, ctx.run
    bar = _progress_bar(ctx.total_steps, ctx.state.step, progress and rt.is_main)
    trackers = None
    started = time.perf_counter()
    try:
        if rt.is_main and (config.train.tensorboard or config.train.mlflow):
            trackers = Trackers(ctx.config, run, ctx.state.step)
        for event in train_loop(model=ctx.model, objective=ctx.objective, features=ctx.data.train_features,
                                cfg=ctx.config.train, rt=rt, optimizer=ctx.optimizer, scheduler=ctx.scheduler,
                                evaluate=lambda m: _evaluate(ctx, m), total_steps=ctx.total_steps,
                                pad_id=ctx.pad_id, state=ctx.state, metric=ctx.task.primary_metric,
                                greater_is_better=ctx.task.greater_is_better, before_step=ctx.before_step):
            _record(ctx, event, bar)
            if trackers is not None:
                trackers.log(event)
            yield event
        result = finish(ctx, time.perf_counter() - started, before_complete)
    except BaseException:
        if rt.is_main:
            hint = f"continue with: bertkit train --out {run.path} --resume"
            try:  # best effort: on a full or read-only disk this write fails too, and status() still tells
                run.set_status("interrupted", step=ctx.state.step, total_steps=ctx.total_steps, hint=hint)
            except OSError as exc:
                log.warning("could not record the interruption in %s/status.json: %s", run.path, exc)
            log.warning("interrupted at step %d; %s", ctx.state.step, hint)
            if trackers is not None:
                trackers.finish(None, status="KILLED")
        raise
    finally:
        if bar is not None:
            bar.close()
        run.unlock()
    if trackers is not None:
        trackers.finish(run.read_json("results.json"))
    if rt.is_main and (run.path / STREAM_FOLDER).exists():
        shutil.rmtree(run.path / STREAM_FOLDER)  # the streamed features of a run without the cache
    yield {"kind": "finished", "result": result}


def _progress_bar(total: int, initial: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True, disable=None)


def _record(ctx: RunContext, event: dict[str, Any], bar) -> None:
    """Log, record and checkpoint what the loop reports (files on the main process only)."""
    kind, rt, run = event["kind"], ctx.rt, ctx.run
    if kind == "train":
        if bar is not None:
            bar.update(event["step"] - bar.n)
            bar.set_postfix(loss=f"{event['loss']:.4f}", tok_s=f"{event['tokens_per_s']:.0f}")
        if rt.is_main:
            run.append_metrics(event)
    elif kind == "eval":
        metrics = dev_metrics(event)
        if metrics:
            log.info("step %d dev %s%s", event["step"], metrics, " (best)" if event["is_best"] else "")
        if rt.is_main:
            run.append_metrics(event)
    elif kind == "save":
        if rt.is_main:
            state = ctx.state
            ckpt.save_checkpoint(run.checkpoints, event["step"], rt.unwrap(ctx.model), ctx.optimizer, ctx.scheduler,
                                 state.to_dict())
            protect = {state.best_step} if state.best_step is not None else set()
            ckpt.prune_checkpoints(run.checkpoints, ctx.config.train.keep_checkpoints, protect)
            run.set_status("running", step=state.step, total_steps=ctx.total_steps)
        rt.wait()
    elif kind == "early_stop":
        log.info("early stopping at step %d; best was step %d", event["step"], event["best_step"])


def finish(ctx: RunContext, train_seconds: float, before_complete: Callable[[Path], None] | None = None
           ) -> TrainResult:
    """The selected model, final: best checkpoint reloaded, decision parameters tuned on dev, dev metrics,
    calibration, then the model directory, results and dev outputs written and the run marked completed."""
    rt, run, task, state, examples = ctx.rt, ctx.run, ctx.task, ctx.state, ctx.data.dev_examples
    model = rt.unwrap(ctx.model)
    if state.best_step is not None:
        best = run.checkpoints / f"step-{state.best_step:08d}"
        if best.is_dir():
            ckpt.load_weights(model, best)
    if examples:
        outputs = dev_outputs(ctx, ctx.model)
        decisions = task.tune(outputs, examples)  # step 1: thresholds the run does not fix
        metrics = task.metrics(outputs, examples)
        calibration = task.calibrate(model, outputs, examples)  # step 2, every process: their models stay equal
    else:
        outputs, decisions, metrics = None, {}, {}
        calibration = {"skipped": "no dev set"} if task.calibrates else {}
    if "skipped" in calibration:
        log.info("not calibrated: %s", calibration["skipped"])
    elif calibration:
        log.info("calibrated on dev: temperature %.3f, expected calibration error %.4f -> %.4f",
                 calibration["temperature"], calibration["ece_before"], calibration["ece_after"])
    if rt.is_main:
        run.write_json("labels.json", task.state())
        _save_model(run, model, ctx.tokenizer, task, ctx.config.data)
        results = {"dev": metrics, "primary_metric": task.primary_metric, "method": ctx.method,
                   "best_step": state.best_step,
                   "steps": state.step, "stopped_early": state.stopped_early,
                   "train_seconds": round(train_seconds, 2), **({"tuned": decisions} if decisions else {}),
                   **({"calibration": calibration} if calibration else {})}
        if examples:
            predictions = task.postprocess(outputs, examples) if task.saves_dev_predictions else None
            records = [example_record(task, ex) for ex in examples]
            if task.reads_long_inputs:  # the report's accuracy by length
                for record, n in zip(records, example_tokens(ctx.data.dev_features, len(examples))):
                    record["tokens"] = n
            run.write_dev_outputs(outputs, records, predictions)
        run.write_json("results.json", results)
        if before_complete is not None:  # what belongs to a complete run (the model card): a failure here
            before_complete(run.path)    # leaves the run interrupted, to be finished with resume
        run.set_status("completed", step=state.step)
    rt.wait()
    if metrics:
        log.info("finished: dev %s (best step %s); model in %s", {k: round(v, 4) for k, v in metrics.items()},
                 state.best_step, run.model_dir)
    else:
        log.info("finished: no dev set, the model of step %d kept; model in %s", state.step, run.model_dir)
    return TrainResult(run.path, metrics, state.best_step, state.step, train_seconds, main_process=rt.is_main)


def _save_model(run: RunDir, model: torch.nn.Module, tokenizer: Any, task: Task, data_cfg: DataConfig) -> None:
    """RUN/model, written under a temporary name and renamed: a LoRA model saves its adapter and head."""
    tmp = run.path / ".tmp-model"
    shutil.rmtree(tmp, ignore_errors=True)
    with quiet_transformers():
        model.save_pretrained(tmp)
        if hasattr(model, "get_base_model"):  # LoRA: the adapter's folder also gets its base model's config
            unwrap(model, adapters=True).config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    for name, text in task.model_files(unwrap(model, adapters=True).config, data_cfg).items():
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_text(text, encoding="utf-8")
    write_checksums(tmp)  # loading checks them: a lost tokenizer.json or damaged weights fail loudly
    normal_permissions(tmp)
    shutil.rmtree(run.model_dir, ignore_errors=True)
    tmp.rename(run.model_dir)
