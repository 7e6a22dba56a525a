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

import logging
import math
import os
import platform
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bertkit.config import RunConfig, TrainConfig, flatten
from bertkit.errors import BertkitError, CheckpointError, ConfigError
from bertkit.models import transfer
from bertkit.models.fast_dropout import use_fast_dropout
from bertkit.models.inference import predict_outputs
from bertkit.models.init_source import InitSource, resolve_init
from bertkit.models.loading import build_model, encoder_config, load_tokenizer, quiet_transformers, write_checksums
from bertkit.models.pooling import append_mean_pooling, freeze_mean_pooling
from bertkit.models.vocab import init_new_embeddings
from bertkit.run_dir import MARKER, RunDir, dev_metrics, normal_permissions
from bertkit.runtime import Runtime
from bertkit.tasks.base import Task, get_task
from bertkit.training import checkpoint as ckpt
from bertkit.training import few_shot
from bertkit.training.distill import DistillationTask, attach_teacher_logits, teacher_logits, teacher_record
from bertkit.training.loop import LoopState, plan_epoch, train_loop
from bertkit.training.optim import build_optimizer, build_scheduler, count_steps
from bertkit.training.run_data import NO_DEV_BELOW, STREAM_FOLDER, RunData, fit_max_length, load_run_data
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
    loop_task: Any  # the task as the loop sees it (wrapped for distillation)
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
        config.resume = False
        return config, run
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
    """Everything up to the first step: a run that fails here leaves no run directory it created."""
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
        fit_max_length(config, task, init.model)
        model_config = encoder_config(init.model)
        _check_extend_vocab(config)
        base_tokenizer = tokenizer
        data = load_run_data(config, task, tokenizer, run, _keep_all_below(config, model_config))
        tokenizer = data.tokenizer
        if config.resume:
            _check_same_data(run, data.fingerprints)
        rt = Runtime(config.train.precision)
        method = config.train.method
        if method != "standard":
            method = few_shot.choose_method(config, task, len(data.train_features), model_config)
        head_features = None
        if method == "few-shot":
            few_shot.few_shot_defaults(config.train, len(data.train_features))
            head_features = data.train_features
            data.train_features = few_shot.make_pairs(head_features, config.train.few_shot_pairs, config.train.seed)
            log.info("%s", few_shot.pairs_note(len(head_features), data.train_features))
        config.train.method = method
        if config.train.length_grouping is None:
            config.train.length_grouping = True
        auto_freeze_embeddings(config, parent_extended_vocab=bool((init.parent or {}).get("extended_vocab")))
        size_defaults(config.train, len(data.train_features), rt.num_processes,
                      getattr(model_config, "hidden_size", None))
        ctx = _build_training(config, run, rt, task, tokenizer, data, init, mean_pooling=method == "few-shot",
                              base_tokenizer=base_tokenizer)
        ctx.method, ctx.head_features = method, head_features
        if method == "few-shot":
            ctx.loop_task = few_shot.ContrastiveTask(task)
    except BaseException:
        run.unlock()
        _discard_unstarted(run, fresh)  # bad data or model: leave no run directory behind
        raise
    finally:
        if init is not None:
            init.cleanup()
    if config.train.distill_from:
        ctx.loop_task = DistillationTask(task, alpha=config.train.distill_alpha,
                                         temperature=config.train.distill_temperature)
        logits = teacher_logits(config, task, data.train_examples, data.train_features, tokenizer, rt)
        data.train_features = attach_teacher_logits(data.train_features, logits)
    _restore(ctx)
    _write_start(ctx, init)
    return ctx


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


def _keep_all_below(config: RunConfig, model_config: Any) -> Callable[[list[dict[str, Any]]], int]:
    """The training-set size below which a run with no dev file holds none out: 200, or 500 when the run will
    take the few-shot recipe (its split would only give a figure under 50 examples: no selection to make,
    too few to calibrate on)."""
    def keep_all_below(examples: list[dict[str, Any]]) -> int:
        if config.train.method == "standard" or config.task.name != "classification":
            return NO_DEV_BELOW
        probe = get_task(config.task)
        try:
            probe.fit(examples)
            method = few_shot.choose_method(config, probe, len(examples), model_config, quiet=True)
        except BertkitError:  # the run's own checks say it when they come to it
            return NO_DEV_BELOW
        return few_shot.FEW_SHOT_NO_DEV_BELOW if method == "few-shot" else NO_DEV_BELOW

    return keep_all_below


def _build_training(config: RunConfig, run: RunDir, rt: Runtime, task: Task, tokenizer: Any, data: RunData,
                    init: InitSource, mean_pooling: bool = False, base_tokenizer: Any = None) -> RunContext:
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
    if mean_pooling:
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
                      loop_task=task, before_step=before_step)


#: Default batches: 32 examples where 3 epochs of them give this many optimiser steps (from about 6,400
#: training examples), else 8. Measured with no dev file: 3,000 CoNLL sentences reached 0.710 entity F1 in
#: 255 steps of 32 (lr 5e-5) and 0.856 in 1,014 steps of 8 (lr 1e-4); batches of 16 at 1e-4 scored below 8
#: there and on 4,000 SST-2 sentences; on 8,000 SST-2 sentences 675 steps of 32 came within half a point of
#: 1,350 of 16 in four fifths of the time.
BATCH_32_STEPS = 600
#: The fewest optimiser steps the default epochs give a small training set, and the most passes they take.
MIN_DEFAULT_STEPS, MAX_DEFAULT_EPOCHS = 120, 40


#: The learning rate a run gets when none is given, by the encoder's width: (widest hidden size, rate, kind),
#: narrowest first; 2e-5 from 1,024 up follows the large models' published recipes.
LR_BY_WIDTH: tuple[tuple[int | None, float, str], ...] = (
    (512, 1e-4, "small (the embedded MiniLM)"), (1023, 5e-5, "base"), (None, 2e-5, "large"))


def default_lr(hidden_size: int | None) -> float:
    """The learning rate of `LR_BY_WIDTH` for an encoder of this hidden size (base-size when unknown)."""
    width = hidden_size or 768
    return next(lr for widest, lr, _ in LR_BY_WIDTH if widest is None or width <= widest)


def lr_rule() -> str:
    """`LR_BY_WIDTH` in words, as the web app's form shows it."""
    return "by model: " + ", ".join(f"{lr:.0e}".replace("e-0", "e-") + f" {kind}" for _, lr, kind in LR_BY_WIDTH)


def size_defaults(tc: TrainConfig, n_train: int, processes: int = 1, hidden_size: int | None = None) -> None:
    """Fill the learning rate, batch size and epochs left unset from the training set's size and the model:
    3 epochs of 32 examples a batch where they give 600 optimiser steps, else of 8 (a few thousand examples
    need the steps more than the larger batch's speed), and more epochs when 3 would give fewer than 120 steps
    (a 48-example set otherwise trains for a handful of steps and barely moves); the learning rate by the
    encoder's width (`default_lr`). The values land in the run's config.yaml, so the run reproduces; values
    given always win."""
    said = []
    if tc.lr is None:
        tc.lr = default_lr(hidden_size)
        said.append(f"lr {tc.lr:g} (hidden size {hidden_size})" if hidden_size else f"lr {tc.lr:g}")

    def steps(batch: int, epochs: float = 3.0) -> float:
        return math.ceil(n_train / (batch * processes)) / tc.grad_accum * epochs

    if tc.batch_size is None:
        tc.batch_size = 32 if steps(32) >= BATCH_32_STEPS else 8
        said.append(f"batch size {tc.batch_size}")
    if tc.epochs is None:
        tc.epochs = 3.0
        if tc.max_steps is None and steps(tc.batch_size) < MIN_DEFAULT_STEPS:
            per_epoch = max(steps(tc.batch_size, 1), 1e-9)
            tc.epochs = float(min(MAX_DEFAULT_EPOCHS, math.ceil(MIN_DEFAULT_STEPS / per_epoch)))
        if tc.max_steps is None:
            said.append(f"{tc.epochs:g} epochs (about {round(steps(tc.batch_size, tc.epochs))} optimiser steps)")
    if said:
        log.info("defaults for %d training examples: %s; batches of 32 where 3 epochs give %d steps, else 8; "
                 "set train.lr, train.batch_size and train.epochs to choose", n_train, ", ".join(said),
                 BATCH_32_STEPS)


def auto_freeze_embeddings(config: RunConfig, parent_extended_vocab: bool = False) -> None:
    """train.freeze_embeddings left unset: the word embeddings stay fixed in a standard fine-tune (measured on
    4,000 SST-2 and 3,000 CoNLL rows: a fifth less time, dev figures within half a point of training them),
    and train where they must learn: masked-LM pre-training, a random initialisation, an extended vocabulary
    (in this run, or in the run it starts from: rows that had only its pre-training), LoRA and gradual
    unfreezing (which thaw them as they choose), and the few-shot recipe (its measured figures train them).
    The run's config.yaml records the value."""
    tc, mc = config.train, config.model
    if tc.freeze_embeddings is None:
        tc.freeze_embeddings = not (config.task.name == "mlm" or tc.method == "few-shot" or mc.init == "random"
                                    or mc.extend_vocab or bool(mc.extend_vocab_list) or bool(mc.lora_r)
                                    or bool(tc.unfreeze_every) or parent_extended_vocab)


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
        for event in train_loop(model=ctx.model, task=ctx.loop_task, features=ctx.data.train_features,
                                cfg=ctx.config.train, rt=rt, optimizer=ctx.optimizer, scheduler=ctx.scheduler,
                                evaluate=lambda m: _evaluate(ctx, m), total_steps=ctx.total_steps,
                                pad_id=ctx.pad_id, state=ctx.state, before_step=ctx.before_step):
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
        calibration = {"skipped": "no dev set"} if task.name == "classification" else {}
    if "skipped" in calibration:
        log.info("not calibrated: %s", calibration["skipped"])
    elif calibration:
        log.info("calibrated on dev: temperature %.3f, expected calibration error %.4f -> %.4f",
                 calibration["temperature"], calibration["ece_before"], calibration["ece_after"])
    if rt.is_main:
        run.write_json("labels.json", task.state())
        _save_model(run, model, ctx.tokenizer)
        results = {"dev": metrics, "primary_metric": task.primary_metric, "method": ctx.method,
                   "best_step": state.best_step,
                   "steps": state.step, "stopped_early": state.stopped_early,
                   "train_seconds": round(train_seconds, 2), **({"tuned": decisions} if decisions else {}),
                   **({"calibration": calibration} if calibration else {})}
        if examples:
            predictions = task.postprocess(outputs, examples) if task.has_report_view() else None
            run.write_dev_outputs(outputs, [task.example_record(ex) for ex in examples], predictions)
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


def _save_model(run: RunDir, model: torch.nn.Module, tokenizer: Any) -> None:
    """RUN/model, written under a temporary name and renamed: a LoRA model saves its adapter and head."""
    tmp = run.path / ".tmp-model"
    shutil.rmtree(tmp, ignore_errors=True)
    with quiet_transformers():
        model.save_pretrained(tmp)
        if hasattr(model, "get_base_model"):
            model.get_base_model().config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    write_checksums(tmp)  # loading checks them: a lost tokenizer.json or damaged weights fail loudly
    normal_permissions(tmp)
    shutil.rmtree(run.model_dir, ignore_errors=True)
    tmp.rename(run.model_dir)
