"""The typed run configuration: one `RunConfig` per run, saved into the run directory.

Precedence: dataclass defaults < YAML config file < command-line flags (dotted keys such as
`train.lr`). Unknown keys and wrong types raise `ConfigError` naming the key and listing the valid ones.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bertkit.errors import ConfigError

__all__ = ["DataConfig", "ModelConfig", "TaskConfig", "TrainConfig", "RunConfig", "load_config",
           "resolve_relative_paths", "option", "register_task_config", "task_config", "task_configs"]

EMBEDDED_MODEL = "embedded"


def option(default: Any, help: str, *, flag: str | None = None, tasks: tuple[str, ...] | None = None) -> Any:
    """A dataclass field with its metadata: the help text, the command-line flag when it is not the field's
    name with dashes, and the tasks it means something to (None: every task). The command line is
    generated from these (`bertkit.cli`), so a setting is declared once."""
    metadata = {"help": help, "flag": flag, "tasks": tasks}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


_f = option


@dataclass
class DataConfig:
    train: str | None = _f(None, "training file (CSV, TSV, JSONL or Parquet; .gz read transparently)")
    dev: str | None = _f(None, "dev file for evaluation and model selection; split off train if absent")
    format: Literal["csv", "tsv", "jsonl", "parquet", "conll"] | None = _f(
        None, "file format; by extension if unset (.conll/.txt/.iob read as CoNLL by the ner task)")
    encoding: str = _f("utf-8", "text encoding of CSV/TSV/JSONL files (a BOM is always accepted)")
    text_column: str = _f("text", "column holding the text")
    text_pair_column: str | None = _f(None, "column holding the second text of a pair (MRPC/RTE style)",
        tasks=("classification",))
    label_column: str = _f("label", "column holding the label (a list or delimited string for multi-label)",
        tasks=("classification",))
    label_delimiter: str | None = _f(None, "split the label column on this string (multi-label)",
        tasks=("classification",))
    tokens_column: str = _f("tokens", "ner, JSONL: field with the list of tokens", tasks=("ner",))
    tags_column: str = _f("tags", "ner, JSONL: field with the list of tags", tasks=("ner",))
    entities_column: str = _f("entities", "ner, JSONL with raw text: field with [{start, end, label}] spans",
        tasks=("ner",))
    token_index: int = _f(0, "ner, CoNLL: column of the token", tasks=("ner",))
    tag_index: int = _f(-1, "ner, CoNLL: column of the tag (-1: the last)", tasks=("ner",))
    dev_fraction: float = _f(0.1, "fraction of train split off as dev when no dev file is given")
    max_length: int | None = _f(None, "maximum tokens per input or window (default: 128, 384 for qa)")
    stream: bool = _f(False, "read the training file in chunks into memory-mapped features on disk, for files "
                      "larger than memory (table files and pre-training text; needs a dev file)")
    stream_chunk_rows: int = _f(10_000, "stream: rows read, checked and tokenised at a time")

    def __post_init__(self) -> None:
        if not 0.0 < self.dev_fraction < 1.0:
            raise ConfigError(f"data.dev_fraction must be in (0, 1), got {self.dev_fraction}")
        if self.stream_chunk_rows < 1:
            raise ConfigError(f"data.stream_chunk_rows must be at least 1, got {self.stream_chunk_rows}")
        if self.max_length is not None and self.max_length < 8:
            raise ConfigError(f"data.max_length must be at least 8, got {self.max_length}")


@dataclass
class ModelConfig:
    name: str = _f(EMBEDDED_MODEL, "local model directory, hub id, or 'embedded' (bundled MiniLM-L6)", flag="--model")
    init: Literal["pretrained", "random"] = _f("pretrained", "start from pretrained weights or random ones",
        flag="--init")
    init_from: str | None = _f(None, "an earlier run directory or model directory to start from: its encoder, "
                               "and its head when task and labels match (re-ordered by name)")
    num_layers: int | None = _f(None, "keep this many encoder layers, evenly spaced (every other one for half): "
                                "a smaller student")
    lora_r: int = _f(0, "LoRA rank; 0 trains every weight (full fine-tuning)")
    lora_alpha: float | None = _f(None, "LoRA scaling alpha (default: 2 x rank)")
    lora_dropout: float = _f(0.1, "dropout on the LoRA branch")
    lora_targets: str = _f("auto", "comma-separated module names LoRA adapts; auto: PEFT's choice for the "
                           "architecture (query and value for BERT)")
    allow_pickle: bool = _f(False, "load weights from pickle files (pytorch_model.bin) when a model has no "
                            "safetensors; unpickling can run code: only for sources you trust")
    extend_vocab: bool = _f(False, "add the characters the tokenizer cannot represent in the training text (seen "
                            "at least extend_vocab_min_count times) as new tokens, their embeddings started from "
                            "what the model knows; pre-train on the text (bertkit pretrain) so they are learned")
    extend_vocab_min_count: int = _f(3, "the fewest times a character must occur to be added by extend_vocab")
    extend_vocab_list: str | None = _f(None, "a UTF-8 file of tokens to add, one per line, instead of those "
                                       "extend_vocab finds")

    def __post_init__(self) -> None:
        if self.lora_r < 0:
            raise ConfigError(f"model.lora_r must be >= 0, got {self.lora_r}")
        if self.num_layers is not None and self.num_layers < 1:
            raise ConfigError(f"model.num_layers must be at least 1 when set, got {self.num_layers}")
        if self.init == "random" and self.init_from:
            raise ConfigError("model.init=random and model.init_from exclude each other; drop one")
        if self.extend_vocab_min_count < 1:
            raise ConfigError(f"model.extend_vocab_min_count must be at least 1, got {self.extend_vocab_min_count}")
        if (self.extend_vocab or self.extend_vocab_list) and self.lora_r:
            raise ConfigError("model.extend_vocab adds embeddings that must train, and LoRA keeps the embeddings "
                              "frozen; extend the vocabulary in a run without LoRA (bertkit pretrain), then start "
                              "the LoRA run from it with model.init_from")


@dataclass
class TaskConfig:
    """The `task` section: the task's name, and the options of that task, which each task declares in a
    subclass next to its code (`NerConfig` in `bertkit.tasks.ner`, as PEFT keeps one config class per
    method) and registers with `register_task_config`. A run's config holds the subclass of its task."""

    name: str = _f("classification", "task plug-in name", flag="--task")


#: Task name -> its config class, filled as the task plug-ins are imported.
TASK_CONFIGS: dict[str, type[TaskConfig]] = {}
#: The package whose import registers the built-in tasks (and the entry-point group of third-party ones).
TASK_PLUGINS = "bertkit.tasks"


def register_task_config(name: str, cls: type[TaskConfig]) -> None:
    TASK_CONFIGS[name] = cls


def task_configs() -> dict[str, type[TaskConfig]]:
    """Every task's config class. The task plug-ins are found by name, as plug-ins are: importing the
    `bertkit.tasks` package registers the built-in tasks, and modules named in the `bertkit.tasks` entry-point
    group add others. The config layer never imports a task module itself."""
    if not TASK_CONFIGS:
        import importlib
        from importlib.metadata import entry_points

        importlib.import_module(TASK_PLUGINS)
        for ep in entry_points(group=TASK_PLUGINS):
            ep.load()
    return TASK_CONFIGS


def task_config(name: str = "classification", **options: Any) -> TaskConfig:
    """The config of task `name` with `options` set, checked as a config file's task section is."""
    return _build_task({"name": name, **options}, prefix="task.", source="task options")


@dataclass
class TrainConfig:
    epochs: float | None = _f(None, "passes over the training data; unset: 3, raised for a small training set "
                              "to reach 120 optimiser steps (at most 40 passes); the run's config.yaml records the "
                              "value used")
    max_steps: int | None = _f(None, "stop after this many optimiser steps (overrides epochs)")
    lr: float | None = _f(None, "peak learning rate of AdamW; unset: by the encoder's width, 1e-4 up to hidden size "
                          "512 (the embedded MiniLM), 5e-5 below 1,024, 2e-5 from 1,024 (2e-5 for the few-shot recipe)")
    batch_size: int | None = _f(None, "examples per optimiser step and device (before accumulation); unset: 32 "
                                "where 3 epochs give 600 optimiser steps (about 6,400 training examples), else 8")
    grad_accum: int = _f(1, "micro-batches accumulated into one optimiser step")
    weight_decay: float = _f(0.01, "AdamW weight decay (never applied to biases and LayerNorm)")
    warmup_ratio: float = _f(0.06, "fraction of the steps spent warming the learning rate up")
    scheduler: Literal["linear", "cosine", "constant"] = _f("linear", "decay after warmup")
    max_grad_norm: float = _f(1.0, "clip gradients to this global norm (0 disables)")
    eval_every: int | None = _f(None, "evaluate every N steps; each epoch when unset")
    save_every: int | None = _f(None, "checkpoint every N steps; at each evaluation when unset")
    early_stopping_patience: int | None = _f(None, "stop after N evaluations without improvement", flag="--patience")
    keep_checkpoints: int = _f(2, "how many recent checkpoints to keep")
    seed: int = _f(42, "seed of data order, splits, initialisation and dropout")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = _f("auto", "auto: bf16 where supported, else fp32")
    length_grouping: bool | None = _f(None, "batch inputs of similar length together (less padding); unset: on, "
                                      "except for the few-shot recipe's pairs, batched at random as SetFit's")
    packing: bool = _f(False, "classification: pack several short inputs into each row (block-diagonal "
                       "attention, per-example positions); same results, less padding and overhead",
                           tasks=("classification",))
    pack_length: int = _f(64, "packing: tokens per packed row (a longer input gets a row of its own)",
        tasks=("classification",))
    batch_tokens: int | None = _f(None, "token-budget batching: cut batches by tokens (padded, or real tokens "
                                  "with packing) instead of batch_size examples")
    compile: bool = _f(False, "run the model through torch.compile (slow first steps; pays off on long runs)")
    freeze_embeddings: bool | None = _f(None, "keep the word embeddings fixed (a fifth less time a step on a CPU, "
                                        "the same dev figures as training them); unset: fixed for the standard "
                                        "method's fine-tunes, trained for masked-LM pre-training, the few-shot "
                                        "recipe, a random initialisation and an extended vocabulary")
    tensorboard: bool = _f(False, "log losses, learning rate, throughput and dev metrics for TensorBoard "
                           "(RUN/tensorboard; needs the track extra)")
    mlflow: bool = _f(False, "log settings and metrics to MLflow: $MLFLOW_TRACKING_URI, else a local file store "
                      "in RUN/mlruns (needs the track extra)")
    mlflow_experiment: str = _f("bertkit", "MLflow experiment name")
    freeze_layers: int = _f(0, "keep all embeddings and the lowest N encoder layers fixed")
    unfreeze_every: int | None = _f(None, "gradual unfreezing: train the head alone first, then unfreeze one "
                                    "more encoder layer, top down, every N steps (embeddings last)")
    layer_lr_decay: float = _f(1.0, "layer-wise learning-rate decay: each layer below the top trains at this "
                               "factor of the one above (1.0: off; 0.8-0.95 is typical)")
    distill_from: str | None = _f(None, "teacher run directory: train on its soft targets plus the labels",
        tasks=("classification",))
    distill_alpha: float = _f(0.5, "distillation: weight of the soft-target loss (1 - alpha: the labels)",
        tasks=("classification",))
    distill_temperature: float = _f(2.0, "distillation: softmax temperature of teacher and student",
        tasks=("classification",))
    log_every: int = _f(10, "log training loss every N steps")
    method: Literal["auto", "standard", "few-shot"] = _f(
        "auto", "few-shot: contrastive pairs drawn from the labels, then a logistic-regression head (SetFit's "
        "recipe); standard: fine-tune with the task's loss; auto: few-shot below 150 training examples per class",
        tasks=("classification",))
    few_shot_pairs: int | None = _f(None, "few-shot: contrastive pairs per training example (half same-label); unset: "
                                    "as many as the label pairs give (SetFit's oversampling), at most 2,560 "
                                    "for two classes, 5,120 for three, 8,000 from four",
                                    tasks=("classification",))

    def __post_init__(self) -> None:
        for key in ("grad_accum", "keep_checkpoints", "log_every"):
            if getattr(self, key) < 1:
                raise ConfigError(f"train.{key} must be at least 1, got {getattr(self, key)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"train.batch_size must be at least 1, got {self.batch_size}")
        if self.epochs is not None and self.epochs <= 0 and self.max_steps is None:
            raise ConfigError(f"train.epochs must be positive, got {self.epochs}")
        if self.lr is not None and self.lr <= 0:
            raise ConfigError(f"train.lr must be positive, got {self.lr}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError(f"train.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.freeze_layers < 0:
            raise ConfigError(f"train.freeze_layers must be >= 0, got {self.freeze_layers}")
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"train.seed must be in [0, 2**32), got {self.seed}")
        if not 0.0 < self.layer_lr_decay <= 1.0:
            raise ConfigError(f"train.layer_lr_decay must be in (0, 1], got {self.layer_lr_decay}")
        if not 0.0 <= self.distill_alpha <= 1.0 or self.distill_temperature <= 0:
            raise ConfigError(f"train.distill_alpha must be in [0, 1] and train.distill_temperature positive, got "
                              f"{self.distill_alpha}, {self.distill_temperature}")
        if self.pack_length < 8:
            raise ConfigError(f"train.pack_length must be at least 8, got {self.pack_length}")
        for key in ("max_steps", "eval_every", "save_every", "early_stopping_patience", "unfreeze_every",
                    "batch_tokens", "few_shot_pairs"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"train.{key} must be at least 1 when set, got {value}")


@dataclass
class RunConfig:
    out: str | None = _f(None, "run directory to create (or resume)")
    resume: bool = _f(False, "continue the run in `out` from its last checkpoint")
    task: TaskConfig = field(default_factory=lambda: task_config())
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], *, source: str = "config") -> RunConfig:
        """Build a config from nested dicts, checking every key and type."""
        return _build(cls, raw, prefix="", source=source)

    def with_overrides(self, overrides: dict[str, Any], *, source: str = "command line") -> RunConfig:
        """A copy with dotted keys (`train.lr`) replaced; None values are ignored."""
        raw = self.to_dict()
        for dotted, value in overrides.items():
            if value is None:
                continue
            node = raw
            *parents, leaf = dotted.split(".")
            for part in parents:
                if not isinstance(node.get(part), dict):
                    raise ConfigError(f"{source}: unknown section '{part}' in '{dotted}'")
                node = node[part]
            known = set(node) | ({f.name for c in task_configs().values() for f in dataclasses.fields(c)}
                                 if parents == ["task"] else set())
            if leaf not in known:
                raise ConfigError(f"{source}: unknown key '{dotted}'; valid: {', '.join(sorted(node))}")
            node[leaf] = value
        return RunConfig.from_dict(raw, source=source)


#: The most values a YAML file may expand to through its aliases (&anchor / *alias): a config has a few
#: hundred, a "billion laughs" file billions.
YAML_MAX_VALUES = 100_000


def safe_yaml(text: str, source: str) -> Any:
    """`yaml.safe_load` that refuses a document whose aliases expand it beyond `YAML_MAX_VALUES` values, or
    that refers to itself, before anything is built from it.

    Raises:
        ConfigError: not valid YAML, too large once expanded, or recursive (naming `source`).
    """
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, {}, set())
        if size > YAML_MAX_VALUES:
            raise ConfigError(f"{source}: its aliases (*name) expand it to {size:,} values; a config holds at most "
                              f"{YAML_MAX_VALUES:,}: write the values out or use fewer aliases")
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {_short(exc, 300)}") from None
    finally:
        loader.dispose()


def _expanded_size(node: Any, memo: dict[int, int], open_nodes: set[int]) -> int:
    key = id(node)
    if key in memo:
        return memo[key]
    if key in open_nodes:
        raise ConfigError("an alias refers to the value that contains it (a recursive YAML structure); remove it")
    open_nodes.add(key)
    if isinstance(node.value, list):
        children = [n for item in node.value for n in (item if isinstance(item, tuple) else (item,))]
        memo[key] = 1 + sum(_expanded_size(child, memo, open_nodes) for child in children)
    else:
        memo[key] = 1
    open_nodes.discard(key)
    return memo[key]


def _short(value: Any, limit: int = 200) -> str:
    """A value as messages echo it: its repr (its text for an exception), cut to `limit` characters."""
    text = str(value) if isinstance(value, BaseException) else repr(value)
    return text if len(text) <= limit else text[: limit - 15] + f"... ({len(text):,} chars)"


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file, or a ConfigError naming the file and what is wrong."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} not found")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read it as UTF-8 text ({_short(exc)})") from None
    raw = safe_yaml(text, str(p)) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of sections, got {type(raw).__name__}")
    return raw


def load_config(path: str | Path) -> RunConfig:
    """Read a YAML run config (nested sections task/data/model/train, or top-level out/resume)."""
    p = Path(path)
    return resolve_relative_paths(RunConfig.from_dict(read_yaml_mapping(p), source=str(p)), p.parent)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config dict as dotted keys: {"train": {"lr": 1e-4}} -> {"train.lr": 1e-4}."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def resolve_relative_paths(cfg: RunConfig, base: Path) -> RunConfig:
    """Paths in a config file are relative to the file, as users expect when they move both together."""
    for section, key in (("data", "train"), ("data", "dev"), ("model", "init_from"), ("model", "name"),
                         ("train", "distill_from")):
        value = getattr(getattr(cfg, section), key)
        if value and not Path(value).is_absolute() and not Path(value).exists():
            candidate = base / value
            if candidate.exists():
                setattr(getattr(cfg, section), key, str(candidate))
    return cfg


def _build(cls: type, raw: Any, *, prefix: str, source: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: section '{prefix.rstrip('.') or 'top'}' must be a mapping")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        where = prefix.rstrip(".") or "top level"
        raise ConfigError(
            f"{source}: unknown key(s) {_short(', '.join(prefix + str(k) for k in unknown))[1:-1]} in {where}; "
            f"valid: {', '.join(sorted(names))}"
        )
    kwargs = {}
    for name, value in raw.items():
        hint = hints[name]
        if hint is TaskConfig:
            kwargs[name] = _build_task(value, prefix=f"{prefix}{name}.", source=source)
        elif dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, prefix=f"{prefix}{name}.", source=source)
        else:
            kwargs[name] = _coerce(value, hint, key=prefix + name, source=source)
    return cls(**kwargs)


def _build_task(raw: Any, *, prefix: str, source: str) -> TaskConfig:
    """The task section as its task's config class. A key of another task's options is dropped when it holds
    that option's default (a config written for every task, or by an earlier version, which saved them all)
    and refused otherwise: a setting that would be ignored is a mistake worth saying."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: section '{prefix.rstrip('.')}' must be a mapping")
    name = _coerce(raw.get("name", "classification"), str, key=f"{prefix}name", source=source)
    configs = task_configs()
    if name not in configs:
        raise ConfigError(f"{source}: unknown task '{name}' ({prefix}name); available: {', '.join(sorted(configs))}")
    cls = configs[name]
    own = {f.name for f in dataclasses.fields(cls)}
    kept = {}
    for key, value in raw.items():
        owners = [(task, f) for task, other in configs.items() for f in dataclasses.fields(other)
                  if f.name == key and key not in own]
        if key in own or not owners:
            kept[key] = value  # an unknown key is reported by _build, with the valid ones
        elif any(not _is_default(value, f) for _, f in owners):
            tasks = " and ".join(sorted({task for task, _ in owners}))
            raise ConfigError(f"{source}: {prefix}{key} is a setting of the {tasks} task, not of {name}; "
                              f"drop it or set {prefix}name")
    return _build(cls, {**kept, "name": name}, prefix=prefix, source=source)


def _is_default(value: Any, f: dataclasses.Field) -> bool:
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    return value == default or (value is None and default is None)


def _coerce(value: Any, hint: Any, *, key: str, source: str) -> Any:
    """Check `value` against a simple type hint, converting strings from the command line."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null") and type(None) in args):
            if type(None) in args:
                return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key=key, source=source)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[-1] if errors else f"{source}: {key} may not be empty")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{source}: {key} {_short(value)} is not valid; choose one of "
                              f"{', '.join(map(str, args))}")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif hint is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None:
            if not math.isfinite(number):
                raise ConfigError(f"{source}: {key} must be a finite number, got {_short(value)}")
            return number
    elif hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    raise ConfigError(f"{source}: {key} must be {getattr(hint, '__name__', hint)}, got {_short(value)}")
