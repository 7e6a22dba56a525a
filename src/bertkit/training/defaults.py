"""The settings a run leaves unset, decided from its data and its model in one place.

    resolve(config, data, model) -> (config, reasons)

`config` is the run's config as given (what the user left open is None or "auto"), `data` (`DataStats`) what
its read, fitted and split training data hold, `model` (`ModelInfo`) what its encoder is. The result is a copy
with every open setting filled (the input length, the method, the few-shot recipe's batches, length grouping,
frozen word embeddings, learning rate, batch size and epochs) and the lines that say what was chosen and why.
Pure: no I/O and no logging, and the given config is left as it was. A run calls it once, after reading its
data and before building its model, logs the reasons and writes the result to config.yaml; the web app's
preview and the tests call it the same way. Values given always win.

Two rules are needed before the data are tokenised and are functions of their own, which `resolve` applies
too: `input_length` (the length the features are cut at) and `holdout_below` (the training-set size below
which a run without a dev file holds none out).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bertkit.config import RunConfig, TrainConfig
from bertkit.errors import ConfigError

__all__ = ["DataStats", "ModelInfo", "resolve", "input_length", "holdout_below", "default_lr", "lr_rule",
           "NO_DEV_BELOW", "FEW_SHOT_NO_DEV_BELOW", "FEW_SHOT_BELOW", "BATCH_32_STEPS", "MIN_DEFAULT_STEPS",
           "MAX_DEFAULT_EPOCHS", "LR_BY_WIDTH", "window_for", "WINDOW_STEPS", "WINDOW_COVERS"]

#: With no dev file, a training set smaller than this keeps all its examples (no dev split).
NO_DEV_BELOW = 200
#: With no dev file, a few-shot run below this many training examples holds none out (its split would be under
#: 50: nothing to select, too few to calibrate on).
FEW_SHOT_NO_DEV_BELOW = 500
#: `train.method auto` takes the few-shot recipe below this many training examples per class.
FEW_SHOT_BELOW = 150
#: Default batches: 32 examples where 3 epochs of them give this many optimiser steps (from about 6,400
#: training examples), else 8: a small set needs the steps more than the larger batch, a large one gets enough
#: steps from batches of 32 and their speed (docs/results.md, "Defaults and the few-shot recipe").
BATCH_32_STEPS = 600
#: The fewest optimiser steps the default epochs give a small training set, and the most passes they take.
MIN_DEFAULT_STEPS, MAX_DEFAULT_EPOCHS = 120, 40
#: The learning rate a run gets when none is given, by the encoder's width: (widest hidden size, rate, kind),
#: narrowest first; 2e-5 from 1,024 up follows the large models' published recipes.
LR_BY_WIDTH: tuple[tuple[int | None, float, str], ...] = (
    (512, 1e-4, "small (the embedded MiniLM)"), (1023, 5e-5, "base"), (None, 2e-5, "large"))


@dataclass(frozen=True)
class DataStats:
    """What the defaults read of a run's data and its fitted task."""

    train: int  # training features, after any dev split (before the few-shot recipe pairs them)
    task: str = "classification"
    problem: str | None = None  # the fitted task's variant (classification: single_label, regression...)
    labels: int = 0  # classes of the fitted task (0: a task without classes)
    default_max_length: int = 128  # the task's input length when data.max_length is unset
    few_shot: bool = False  # the task serves the few-shot recipe for this problem (`Task.few_shot_problems`)
    tunes_embeddings: bool = False  # training tunes the word embeddings themselves (`Task.tunes_embeddings`)
    window: int | None = None  # the input length chosen from the training data's lengths (`window_for`)
    window_reason: str | None = None
    task_train: tuple[tuple[str, Any], ...] = ()  # training settings the task wants (`Task.train_defaults`)
    task_train_reason: str = ""

    @classmethod
    def of(cls, task: Any, train: int, window: tuple[int, str] | None = None) -> DataStats:
        """The stats of a fitted task plug-in, its number of training features and the window chosen from the
        training data's lengths, if one was."""
        problem = task.state().get("problem")
        return cls(train=train, task=task.name, problem=problem, labels=len(task.state().get("labels") or []),
                   default_max_length=task.default_max_length, few_shot=problem in task.few_shot_problems,
                   tunes_embeddings=task.tunes_embeddings, window=window[0] if window else None,
                   window_reason=window[1] if window else None,
                   task_train=tuple(task.train_defaults.items()), task_train_reason=task.train_defaults_reason)


@dataclass(frozen=True)
class ModelInfo:
    """What the defaults read of the encoder a run starts from."""

    name: str = ""
    hidden_size: int | None = None  # None: unknown (the base-size rate)
    max_positions: int | None = None  # tokens one input may have; None: no limit known
    pooling_unsupported: str | None = None  # why the few-shot recipe's mean pooling cannot run on it
    parent_extended_vocab: bool = False  # it comes from a run that extended the vocabulary
    processes: int = 1  # data-parallel processes (each takes its own batches)

    @classmethod
    def of(cls, name: str, model_config: Any, *, parent: dict[str, Any] | None = None, processes: int = 1
           ) -> ModelInfo:
        """The info of a model (its name and `transformers` config), the parent run it starts from, if any,
        and the processes of the launch."""
        from bertkit.models.loading import max_positions
        from bertkit.models.pooling import mean_pooling_unsupported

        return cls(name=name, hidden_size=getattr(model_config, "hidden_size", None),
                   max_positions=max_positions(name), pooling_unsupported=mean_pooling_unsupported(model_config),
                   parent_extended_vocab=bool((parent or {}).get("extended_vocab")), processes=processes)


def resolve(config: RunConfig, data: DataStats, model: ModelInfo) -> tuple[RunConfig, list[str]]:
    """`config` with every setting it left open filled from `data` and `model`, and the reasons, one line
    each. Raises ConfigError for a given value the data or model rule out (an input length past the model's
    positions, the few-shot recipe where it cannot run)."""
    out, reasons = copy.deepcopy(config), []
    length, why = input_length(config, data.default_max_length, model)
    if config.data.max_length is None and data.window is not None:
        length, why = data.window, data.window_reason
    out.data.max_length = length
    reasons += [why] if why else []
    tc = out.train
    applied = False
    for key, value in data.task_train:
        if getattr(tc, key) is None:
            setattr(tc, key, value)
            applied = True
    if applied:
        reasons.append(f"{data.task} defaults: {data.task_train_reason}")
    tc.method, why = _method(out, data, model)
    reasons += [why] if why else []
    if tc.method == "few-shot":
        _few_shot_settings(tc)
    if tc.length_grouping is None:
        tc.length_grouping = True
    if tc.freeze_embeddings is None:
        tc.freeze_embeddings = _freeze_embeddings(out, data, model)
    why = _size_settings(tc, data.train, model)
    reasons += [why] if why else []
    return out, reasons


def input_length(config: RunConfig, default: int, model: ModelInfo) -> tuple[int | None, str | None]:
    """`data.max_length` as the run records it, and why when it was changed: inputs stay within the model's
    position embeddings, so the task's default length is lowered to fit and a longer given length is refused."""
    given = config.data.max_length
    wanted = given or default
    if model.max_positions is None or wanted <= model.max_positions:
        return given, None
    if given is not None:
        raise ConfigError(f"data.max_length {wanted} is more than the {model.max_positions} positions of the model "
                          f"{model.name}; set data.max_length to {model.max_positions} or less")
    return model.max_positions, (f"inputs cut at {model.max_positions} tokens, the model's position limit (the "
                                 f"{config.task.name} default is {wanted})")


#: Input lengths a window chosen from the data may take (up to the model's limit), and the share of training
#: inputs it should hold whole: the rest are read in several windows (or cut, as task.long_inputs says).
WINDOW_STEPS, WINDOW_COVERS = (128, 256, 384, 512, 1024, 2048, 4096), 0.9


def window_for(lengths: Sequence[int], default: int, model: ModelInfo) -> tuple[int, str]:
    """The window of a task that reads long inputs whole, from the tokenised lengths of (a sample of) its
    training inputs: the shortest of `WINDOW_STEPS`, from the task's default up, that holds 90 % of them
    whole, within the model's positions; and the defaults line that says so."""
    ordered = sorted(lengths)
    covers = ordered[min(len(ordered) - 1, int(WINDOW_COVERS * len(ordered)))] if ordered else 0
    limit = model.max_positions or max(WINDOW_STEPS)
    window = next((w for w in WINDOW_STEPS if w >= max(covers, default) and w <= limit), None)
    over = sum(1 for n in ordered if n > (window or limit))
    share = f"{100 * over / len(ordered):.0f}% of {len(ordered):,} training inputs measured" if ordered else "none"
    median = ordered[len(ordered) // 2] if ordered else 0
    if window is None:
        return limit, (f"inputs read in windows of {limit} tokens, the model's limit: 90% of the training inputs "
                       f"need {covers} (median {median}); longer than the window: {share}")
    return window, (f"inputs read in windows of {window} tokens: 90% of the training inputs fit in {covers} "
                    f"(median {median}); longer than the window: {share}")


def holdout_below(config: RunConfig, data: DataStats, model: ModelInfo) -> int:
    """The training-set size below which a run with no dev file holds none out: `NO_DEV_BELOW`, or
    `FEW_SHOT_NO_DEV_BELOW` when the run will take the few-shot recipe (its split would only give a figure
    under 50 examples: no selection to make, too few to calibrate on). `data` describes the whole training
    file, before any split."""
    if config.train.method == "standard" or not data.few_shot:
        return NO_DEV_BELOW
    try:
        method, _ = _method(config, data, model)
    except ConfigError:  # the run's own checks say it when they come to it
        return NO_DEV_BELOW
    return FEW_SHOT_NO_DEV_BELOW if method == "few-shot" else NO_DEV_BELOW


def default_lr(hidden_size: int | None) -> float:
    """The learning rate of `LR_BY_WIDTH` for an encoder of this hidden size (base-size when unknown)."""
    width = hidden_size or 768
    return next(lr for widest, lr, _ in LR_BY_WIDTH if widest is None or width <= widest)


def lr_rule() -> str:
    """`LR_BY_WIDTH` in words, as the web app's form shows it."""
    return "by model: " + ", ".join(f"{lr:.0e}".replace("e-0", "e-") + f" {kind}" for _, lr, kind in LR_BY_WIDTH)


def _method(config: RunConfig, data: DataStats, model: ModelInfo) -> tuple[str, str | None]:
    """`train.method` ("auto", "standard" or "few-shot") for this task, data and model, with a line when auto
    decides; an explicit few-shot the run cannot take is refused, naming why."""
    tc, wanted = config.train, config.train.method
    if wanted == "standard":
        return wanted, None
    reasons = []
    if not data.few_shot:
        reasons.append(f"it is for single- and multi-label classification, not {data.problem or data.task}")
    if model.pooling_unsupported:
        reasons.append(f"the model cannot take it: {model.pooling_unsupported}")
    for key, on in (("train.packing", tc.packing), ("train.distill_from", tc.distill_from),
                    ("data.stream", config.data.stream), ("model.lora_r", config.model.lora_r)):
        if on:
            reasons.append(f"{key} is set")
    if wanted == "few-shot":
        if reasons:
            raise ConfigError(f"train.method few-shot: {'; '.join(reasons)}; drop train.method (or set it to standard)")
        return wanted, None
    per_class = data.train / max(1, data.labels)
    if per_class >= FEW_SHOT_BELOW:
        return "standard", None
    if reasons:
        return "standard", (f"{data.train} training examples ({per_class:.0f} per class): the few-shot recipe would "
                            f"suit them, but {reasons[0]}; training the standard way")
    return "few-shot", (f"{data.train} training examples ({per_class:.0f} per class, fewer than {FEW_SHOT_BELOW}): "
                        "the few-shot recipe (contrastive pairs, then a logistic-regression head); set train.method "
                        "standard to fine-tune the usual way")


def _few_shot_settings(tc: TrainConfig) -> None:
    """The few-shot run's open values: SetFit's batch of 16 pairs, one pass over them, lr 2e-5, and batches
    drawn at random rather than by length: pairs batched by length share a batch with pairs of their kind, and
    the contrastive loss then sees too few of the others (SetFit's batches are random too; docs/results.md)."""
    if tc.length_grouping is None:
        tc.length_grouping = False
    if tc.batch_size is None:
        tc.batch_size = 16
    if tc.epochs is None:
        tc.epochs = 1.0
    if tc.lr is None:
        tc.lr = 2e-5


def _freeze_embeddings(config: RunConfig, data: DataStats, model: ModelInfo) -> bool:
    """The word embeddings stay fixed in a standard fine-tune (half of a small model's weights that cost
    gradients and optimiser state for little gain: docs/results.md, "What makes training fast"), and train
    where they must learn:
    masked-LM pre-training, a random initialisation, an extended vocabulary (in this run, or in the run it
    starts from: rows that had only its pre-training), LoRA and gradual unfreezing (which thaw them as they
    choose), and the few-shot recipe (its contrastive phase moves the whole encoder)."""
    tc, mc = config.train, config.model
    return not (data.tunes_embeddings or tc.method == "few-shot" or mc.init == "random" or mc.extend_vocab
                or bool(mc.extend_vocab_list) or bool(mc.lora_r) or bool(tc.unfreeze_every)
                or model.parent_extended_vocab)


def _size_settings(tc: TrainConfig, n_train: int, model: ModelInfo) -> str | None:
    """The learning rate, batch size and epochs left open, from the training set's size and the model: 3 epochs
    of 32 examples a batch where they give 600 optimiser steps, else of 8 (a few thousand examples need the
    steps more than the larger batch's speed), and more epochs when 3 would give fewer than 120 steps (a
    48-example set otherwise trains for a handful of steps and barely moves); the learning rate by the
    encoder's width (`default_lr`). Returns the line that says what was filled, or None."""
    said = []
    hidden = model.hidden_size
    if tc.lr is None:
        tc.lr = default_lr(hidden)
        said.append(f"lr {tc.lr:g} (hidden size {hidden})" if hidden else f"lr {tc.lr:g}")

    def steps(batch: int, epochs: float = 3.0) -> float:
        return math.ceil(n_train / (batch * model.processes)) / tc.grad_accum * epochs

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
    if not said:
        return None
    return (f"defaults for {n_train} training examples: {', '.join(said)}; batches of 32 where 3 epochs give "
            f"{BATCH_32_STEPS} steps, else 8; set train.lr, train.batch_size and train.epochs to choose")
