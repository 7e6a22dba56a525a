"""The task plug-in interface and registry.

A task turns data rows into model features, names the model head, computes its loss, turns model outputs
into predictions and scores them. Everything here is pure (no I/O): the readers of `bertkit.data` hand
in `Table`s of the kind of file the task names, the training loop hands in tensors. Adding a task is one module with a
`@register_task("name")` class and its import in `bertkit.tasks`.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from bertkit.config import DataConfig, TaskConfig, register_task_config, task_config
from bertkit.data.readers import Table
from bertkit.errors import CheckpointError, ConfigError
from bertkit.runtime import unwrap

__all__ = ["Task", "register_task", "get_task", "TASKS", "takes_token_types", "example_record"]

TASKS: dict[str, type[Task]] = {}


def register_task(name: str):
    """Class decorator: make a task available as `--task name`."""

    def deco(cls: type[Task]) -> type[Task]:
        cls.name = name
        TASKS[name] = cls
        register_task_config(name, cls.config_class)
        return cls

    return deco


def takes_token_types(model: torch.nn.Module) -> bool:
    """Whether a model reads token_type_ids: BERT, ELECTRA, ALBERT do; RoBERTa and XLM-R (one type),
    DistilBERT, MPNet, ModernBERT and DeBERTa-v3 (none) do not. Cached on the model."""
    cached = getattr(model, "_bertkit_token_types", None)
    if cached is None:
        net = unwrap(model, adapters=True)
        if not hasattr(net, "forward"):  # an ONNX model: it takes the inputs its graph names
            return "token_type_ids" in getattr(net, "input_names", ())
        import inspect

        params = inspect.signature(net.forward).parameters
        config = getattr(net, "config", None)
        cached = getattr(config, "type_vocab_size", 2) >= 2 and "token_type_ids" in params
        try:
            model._bertkit_token_types = cached
        except AttributeError:
            pass
    return cached


def example_record(task: Task, example: dict[str, Any]) -> dict[str, Any]:
    """What a run saves of one dev example: its `Task.example_keys`."""
    return {k: example[k] for k in task.example_keys if k in example}


def get_task(cfg: TaskConfig, state: dict[str, Any] | None = None) -> Task:
    """Instantiate the task named in `cfg`, restoring its fitted `state` (labels etc.) when given. A bare
    `TaskConfig` gets the task's option defaults."""
    if cfg.name not in TASKS:
        raise ConfigError(f"unknown task '{cfg.name}'; available: {', '.join(sorted(TASKS))}")
    cls = TASKS[cfg.name]
    if not isinstance(cfg, cls.config_class):
        cfg = task_config(cfg.name, **{k: v for k, v in vars(cfg).items() if k != "name"})
    task = cls(cfg)
    if state is not None:
        try:
            task.load_state(state)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"labels.json: the saved state of the {cfg.name} task is damaged "
                                  f"({type(exc).__name__}: {str(exc)[:80]}); the run directory is damaged") from None
    return task


class Task(ABC):
    """One kind of supervised problem. Subclasses keep their fitted state (e.g. labels) in `state()`."""

    name: ClassVar[str]
    #: Its options: a `TaskConfig` subclass declared beside the task (the `task` section of a run config;
    #: each field's metadata makes its command-line flag).
    config_class: ClassVar[type[TaskConfig]] = TaskConfig
    #: The `transformers` auto class whose head this task trains.
    auto_model_class: ClassVar[str]
    #: The Hugging Face pipeline tag of its models (model cards).
    pipeline_tag: ClassVar[str]
    #: One sentence of what its models are for (model cards).
    intended_use: ClassVar[str]
    #: The model outputs inference reads, by attribute name (also the outputs of an ONNX export).
    output_names: ClassVar[tuple[str, ...]] = ("logits",)

    # --- capabilities: what a run may do with this task (the layers above ask these, never the name) ----
    #: The problems (`state()["problem"]`) the few-shot recipe serves: contrastive pairs need classes.
    few_shot_problems: ClassVar[tuple[str, ...]] = ()
    #: Its confidences are calibrated on dev (`calibrate`), so a run without dev says it was skipped.
    calibrates: ClassVar[bool] = False
    #: Training tunes the word embeddings themselves (masked-LM pre-training): they never stay fixed by default.
    tunes_embeddings: ClassVar[bool] = False
    #: Training settings this task wants when the user leaves them open (`TrainConfig` field -> value), applied
    #: by `bertkit.training.defaults.resolve` before its general rules, with `train_defaults_reason` said.
    train_defaults: ClassVar[dict[str, Any]] = {}
    train_defaults_reason: ClassVar[str] = ""
    #: A run saves its predictions on dev beside the dev outputs (for the report's view of the dev set,
    #: `bertkit.evaluation.views`).
    saves_dev_predictions: ClassVar[bool] = False
    #: It reads an input longer than its window whole (`task.long_inputs`), its features carry
    #: `example_index`, `tokens` and `cut` (`bertkit.tasks.long_inputs`), and the window may be chosen from the
    #: training data's lengths.
    reads_long_inputs: ClassVar[bool] = False

    def __init__(self, cfg: TaskConfig) -> None:
        self.cfg = cfg

    # --- reading --------------------------------------------------------------------------------------
    def file_kind(self, path: str, data_cfg: DataConfig) -> str:
        """Which reader of `bertkit.data.task_files` reads a data file of this task: "table" (CSV, TSV, JSONL,
        Parquet; the default), "conll", "squad" or "documents". The task never opens the file itself."""
        return "table"

    def make_examples(self, inputs: Sequence[Any], tokenizer: Any) -> list[dict[str, Any]]:
        """Examples from raw API inputs (strings, pairs...), for prediction; DataError names a bad input."""
        raise NotImplementedError(f"task {self.name} takes no raw inputs")

    #: A JSON Schema of one raw input `make_examples` takes (the HTTP server publishes it at /v1/model).
    input_schema: ClassVar[dict[str, Any]] = {"type": "string", "minLength": 1}
    #: Inputs that fit the schema (documentation, and the contract test feeds them to `make_examples`).
    input_examples: ClassVar[tuple[Any, ...]] = ("a short text",)

    def served_input_schema(self) -> dict[str, Any]:
        """The JSON Schema of one raw input this fitted task takes, as the HTTP server publishes it (at
        /v1/model and in /v1/predict's OpenAPI body): `input_schema` unless the fitted state narrows it."""
        return copy.deepcopy(self.input_schema)

    @abstractmethod
    def read_examples(self, table: Table, data_cfg: DataConfig, with_labels: bool = True, tokenizer: Any = None
                      ) -> list[dict[str, Any]]:
        """Check the rows a reader found and return examples; raise DataError naming file:line on bad rows.

        Each example is a dict with at least `where` (file:line) and, when `with_labels`, its reference. The
        tokenizer is there for tasks whose units are the tokenizer's words (NER on raw text).
        """

    @abstractmethod
    def fit(self, train: Sequence[dict[str, Any]]) -> None:
        """Learn what the task needs from the training examples (label map, class weights...)."""

    def fit_chunks(self, chunks: Iterable[Sequence[dict[str, Any]]]) -> None:
        """`fit` over training examples that arrive in chunks (a streamed file). Tasks whose fitting can
        run one example at a time override it so that the whole file is never held; the default gathers
        the chunks and calls `fit`."""
        self.fit([ex for chunk in chunks for ex in chunk])

    def complete_training(self, examples: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str | None]:
        """The training examples as training takes them, from those read (after `fit`): an embedding task adds a
        hard negative mined for each pair. Returns them and a line for the log, or None. Default: as read."""
        return examples, None

    @abstractmethod
    def check_examples(self, examples: Sequence[dict[str, Any]], source: str) -> None:
        """Reject examples the fitted task cannot score (e.g. labels training never saw)."""

    def stratify_keys(self, examples: Sequence[dict[str, Any]]) -> list[Any]:
        """Keys whose proportions a dev split keeps, one per (unfitted) training example; None: at random."""
        return [None] * len(examples)

    # --- features -------------------------------------------------------------------------------------
    default_max_length: ClassVar[int] = 128

    def feature_lengths(self, features: Sequence[dict[str, Any]]) -> Sequence[int]:
        """The size of each feature in tokens, which batching sorts and budgets by: the length of its
        `input_ids` (a streamed store keeps them in its index). A task whose features hold several
        sequences (one per answer choice, say) counts all of their tokens here."""
        from bertkit.data.feature_store import feature_lengths  # pyarrow: only when features are batched

        return feature_lengths(features)

    def max_length(self, data_cfg: DataConfig) -> int:
        return data_cfg.max_length or self.default_max_length

    def use_tokenizer(self, tokenizer: Any) -> None:
        """Take what the task needs of the tokenizer (MLM: mask id, vocabulary size). Called before features
        are made or taken from the tokenisation cache; `preprocess` calls it too."""
        return None

    @abstractmethod
    def preprocess(self, examples: Sequence[dict[str, Any]], tokenizer: Any, data_cfg: DataConfig,
                   with_labels: bool = True) -> list[dict[str, Any]]:
        """Tokenise examples into features: lists of token ids plus label targets. A task that makes
        several features of one example records `example_index` in each."""

    @abstractmethod
    def collate(self, features: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
        """Pad a batch of features to its longest member."""

    def collate_train(self, features: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
        """A training batch; the same as `collate` unless training draws something afresh (MLM masks)."""
        return self.collate(features, pad_id)

    def collate_packed(self, features: Sequence[dict[str, Any]], pad_id: int, row_length: int
                       ) -> dict[str, torch.Tensor]:
        """A training batch with several examples per row (`train.packing`); tasks that support packing
        implement it with `bertkit.data.packing` and handle the packed layout in `forward`."""
        raise ConfigError(f"train.packing: the {self.name} task does not pack inputs; drop train.packing")

    def check_packing(self, model: torch.nn.Module) -> None:
        """Raise ConfigError when `model` cannot run this task's packed batches."""
        raise ConfigError(f"train.packing: the {self.name} task does not pack inputs; drop train.packing")

    #: Batch entries that are targets of the loss, not inputs of the model.
    target_keys: ClassVar[tuple[str, ...]] = ("labels",)

    # --- model ----------------------------------------------------------------------------------------
    @classmethod
    def model_class(cls) -> Any:
        """The model class this task trains, with `from_pretrained` and `from_config`: the `transformers` auto
        class named by `auto_model_class` by default. A task with a head of its own (a pooling over marked
        entities, say) returns its `PreTrainedModel` subclass here; loading, LoRA and saving take it as is."""
        import transformers

        return getattr(transformers, cls.auto_model_class)

    #: Endings of the `architectures` names in a config.json whose head this task trains (None: its auto
    #: class's, "ForSequenceClassification"; see `bertkit.models.heads`).
    head_architectures: ClassVar[tuple[str, ...] | None] = None
    #: With LoRA, whether the head trains in full beside the adapters (not when it is tied to the frozen
    #: word embeddings, as a masked-LM decoder is).
    lora_trains_head: ClassVar[bool] = True

    def use_model_settings(self, raw: dict[str, Any] | None) -> str | None:
        """Take what the model folder a run starts from says of how its outputs are used, before the model is
        built: a sentence-transformers folder's modules and pooling (`bertkit.models.loading.
        sentence_transformers_config`; None when it has none). Returns a line for the log, or None."""
        return None

    def model_files(self, model_config: Any, data_cfg: DataConfig) -> dict[str, str]:
        """Files written into the run's model folder beside the weights, by relative path (a
        sentence-transformers model's modules, say); `model_config` is the trained model's config. Default:
        none."""
        return {}

    @abstractmethod
    def model_config(self) -> dict[str, Any]:
        """Keyword arguments for the model config (num_labels, id2label, problem_type...)."""

    def model_note(self, model: torch.nn.Module) -> str | None:
        """One line for the start-up log about how this task runs on `model` (a speed path that is off for
        its architecture, say), or None."""
        return None

    def logits(self, model_output: Any) -> torch.Tensor:
        """The tensor the loss and the outputs are computed from: (B, L), or (B, T, L) per token."""
        return model_output.logits

    def forward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The model on a batch, returning what `loss` and `batch_outputs` take (the logits by default). Token
        types go only to a model that has them (more than one type), whatever the tokenizer made."""
        drop = set(self.target_keys) | (set() if takes_token_types(model) else {"token_type_ids"})
        return self.logits(model(**{k: v for k, v in batch.items() if k not in drop}))

    def batch_outputs(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """What inference keeps of a batch, (B, ...) or (B, T, ...): the logits by default; a task with a
        huge output (MLM's vocabulary) reduces it here, on the device, before it is copied off."""
        return logits

    def export_inputs(self, tokenizer: Any) -> tuple[dict[str, torch.Tensor], dict[int, str]]:
        """A sample batch of model inputs for the ONNX exporter and the names of its dynamic axes
        ({0: "batch", 1: "sequence"}); a task whose inputs have another shape says so here."""
        sample = tokenizer(["a short example", "and a second, longer example to pad the first"], padding=True,
                           return_tensors="pt")
        names = ("input_ids", "attention_mask", "token_type_ids")
        return {k: sample[k] for k in names if k in sample}, {0: "batch", 1: "sequence"}

    @abstractmethod
    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Training loss of a batch; `logits` are float32."""

    def logit_kind(self) -> str | None:
        """What the fitted task's logits are, for distillation's soft targets: "softmax" (a distribution over
        classes), "sigmoid" (independent labels) or "value" (scores); None: a teacher cannot be distilled into
        this task's outputs."""
        return None

    @classmethod
    def head_state_from_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """The task state a saved model's config.json implies (task and label names), to decide whether
        its head can be kept. Tasks whose problem type shows in the config add it."""
        id2label = config.get("id2label") or {}
        return {"task": cls.name, "labels": [id2label[k] for k in sorted(id2label, key=int)]}

    # --- outputs --------------------------------------------------------------------------------------
    def reduce_feature(self, output: np.ndarray, feature: dict[str, Any]) -> Any:
        """Shrink one feature's output as soon as it is computed (QA keeps its n-best spans only), so that
        evaluation never holds the raw outputs of a whole dataset. The default keeps the output."""
        return output

    def combine(self, outputs: list[Any], features: Sequence[dict[str, Any]], n_examples: int) -> Any:
        """Per-example outputs from per-feature model outputs (each trimmed to its feature's length).

        The default is one feature per example: outputs stacked into an (N, ...) array. Tasks that cut an
        example into several windows merge them here.
        """
        return np.stack(outputs) if outputs else np.zeros((0, 1), dtype=np.float32)

    def input_notes(self, features: Sequence[dict[str, Any]], n_examples: int) -> list[dict[str, Any]]:
        """What each example's prediction says of how it was read (how many windows, how many tokens cut);
        merged into the predictions. Default: nothing."""
        return [{} for _ in range(n_examples)]

    @abstractmethod
    def postprocess(self, outputs: Any, examples: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Predictions, one JSON-ready dict per example, from the combined outputs."""

    @abstractmethod
    def metrics(self, outputs: Any, examples: Sequence[dict[str, Any]]) -> dict[str, float]:
        """Standard metrics of the combined outputs against the examples' references."""

    def tune(self, outputs: Any, examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Fit decision parameters on dev outputs (e.g. a threshold); returns what changed."""
        return {}

    #: The keys of an example that a run saves of its dev set (`dev_examples.jsonl`, read by the report).
    example_keys: ClassVar[tuple[str, ...]] = ("where",)

    def calibrate(self, model: torch.nn.Module, outputs: Any, examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Make the final model's confidences honest on dev (classification: temperature scaling folded into
        the output layer); returns what was fitted and measured, stored in results.json. Default: nothing."""
        return {}

    @property
    @abstractmethod
    def primary_metric(self) -> str: ...

    @property
    def greater_is_better(self) -> bool:
        return True

    # --- persistence ----------------------------------------------------------------------------------
    @abstractmethod
    def state(self) -> dict[str, Any]:
        """JSON-ready fitted state, saved as `labels.json` in the run directory."""

    @abstractmethod
    def load_state(self, state: dict[str, Any]) -> None: ...
