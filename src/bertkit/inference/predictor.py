"""`Predictor`: a trained model, its tokenizer and task, ready to label new text.

The same object backs `bertkit predict`, `bertkit evaluate` and (later) the HTTP service.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bertkit.config import DataConfig, RunConfig
from bertkit.data.coverage import coverage, far_above
from bertkit.data.readers import check_inputs_text
from bertkit.data.task_files import read_examples
from bertkit.errors import ConfigError, ModelLoadError
from bertkit.inference.batched import predict_outputs
from bertkit.inference.onnx_model import EXPORT_MANIFEST, OnnxModel, read_manifest
from bertkit.inference.quantize import quantize_dynamic_int8
from bertkit.models.init_source import load_run_model
from bertkit.models.loading import load_tokenizer
from bertkit.run_dir import RunDir
from bertkit.runtime import Runtime
from bertkit.tasks import long_inputs
from bertkit.tasks.base import Task, get_task

__all__ = ["Predictor"]

log = logging.getLogger("bertkit")


class Predictor:
    def __init__(self, model: Any, tokenizer: Any, task: Task, config: RunConfig, rt: Runtime) -> None:
        self.model, self.tokenizer, self.task, self.config, self.rt = model, tokenizer, task, config, rt
        self.training_coverage: dict[str, Any] | None = None  # the run's, from its environment.json
        self.model.eval()

    @classmethod
    def from_path(cls, path: str | Path, *, precision: str = "auto", quantize: str | None = None) -> Predictor:
        """A run directory, or a folder written by `bertkit export --format onnx`."""
        if read_manifest(path) is not None:
            if quantize:
                raise ConfigError(f"{path}: an ONNX export is quantised when exported (--quantize int8 there)")
            return cls.from_export(path)
        return cls.from_run(path, precision=precision, quantize=quantize)

    @classmethod
    def from_run(cls, run_dir: str | Path, *, precision: str = "auto", quantize: str | None = None) -> Predictor:
        """Load the final model of a run directory; `quantize="int8"` applies PyTorch dynamic int8
        quantisation to its linear layers (CPU, fp32 activations)."""
        run = RunDir(run_dir).require(model=True)
        config = run.load_config()
        task = get_task(config.task, run.read_state())
        model = load_run_model(run.path, task)[0]
        if quantize is not None:
            model, precision = quantize_dynamic_int8(model, quantize), "fp32"
        rt = Runtime(precision, cpu=True if quantize else None)
        tokenizer = load_tokenizer(str(run.model_dir))
        predictor = cls(model.to(rt.device), tokenizer, task, config, rt)
        predictor.training_coverage = (run.read_json("environment.json", default={}).get("data") or {}).get("coverage")
        return predictor

    @classmethod
    def from_encoder(cls, name: str, *, precision: str = "auto") -> Predictor:
        """A model that was never a run (the embedded MiniLM, a model folder, a hub id) as an embedding model,
        pooled as its sentence-transformers files say (mean, unit length, when it has none)."""
        from bertkit.config import task_config
        from bertkit.models.loading import load_encoder, resolve_model_name, sentence_transformers_config

        source, local = resolve_model_name(name)
        task = get_task(task_config("embedding"))
        task.use_model_settings(sentence_transformers_config(source) if local else None)
        config = RunConfig().with_overrides({"task.name": "embedding", "model.name": name})
        rt = Runtime(precision)
        return cls(load_encoder(name).to(rt.device), load_tokenizer(name), task, config, rt)

    @classmethod
    def from_export(cls, folder: str | Path) -> Predictor:
        """Load an ONNX export: the graph runs in ONNX Runtime; tokenizer, task state and data settings
        come from the folder."""
        folder = Path(folder)
        manifest = read_manifest(folder)
        if manifest is None:
            raise ConfigError(f"{folder}: not an export folder (no {EXPORT_MANIFEST})")
        missing = {"config", "task_state", "model_file"} - set(manifest)
        if missing:
            raise ModelLoadError(f"{folder / EXPORT_MANIFEST}: lacks {', '.join(sorted(missing))}; "
                                 "export the run again")
        config = RunConfig.from_dict(manifest["config"], source=str(folder / EXPORT_MANIFEST))
        task = get_task(config.task, manifest["task_state"])
        return cls(OnnxModel(folder / manifest["model_file"]), load_tokenizer(str(folder)), task, config,
                   Runtime("fp32", cpu=True))

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id or 0

    def data_config(self, **columns: str | None) -> DataConfig:
        """The run's data settings with column names replaced where given."""
        values = {**self.config.data.__dict__, **{k: v for k, v in columns.items() if v is not None}}
        return DataConfig(**values)

    def read_file(self, path: str | Path, *, with_labels: bool, fmt: str | None = None, **columns: str | None):
        data_cfg = self.data_config(format=fmt, **columns)
        examples = read_examples(self.task, path, data_cfg, self.tokenizer, with_labels=with_labels)
        if with_labels:
            self.task.check_examples(examples, str(path))
        self.check_coverage(examples, str(path))
        return examples, data_cfg

    def check_coverage(self, examples: Sequence[dict[str, Any]], source: str) -> dict[str, Any]:
        """Measure how much of the inputs' text the tokenizer knows, and warn (one line) when the share of
        unknown tokens is far above that of the training data (`training_coverage`, from the run)."""
        cov = coverage(list(examples), self.tokenizer)
        trained = (self.training_coverage or {}).get("unknown_share")
        if far_above(cov["unknown_share"], trained):
            than = f"training's {100 * trained:.1f}%" if trained is not None else "what the model was trained on"
            log.warning("%s: the tokenizer does not know %.1f%% of the tokens (%s), most often %s: the model reads "
                        "this text worse than its training data, and its predictions will be poorer",
                        source, 100 * cov["unknown_share"], than, " ".join(cov["top_unknown"][:10]))
        return cov

    def outputs(self, examples: Sequence[dict[str, Any]], data_cfg: DataConfig | None = None) -> Any:
        return self._outputs_and_features(examples, data_cfg)[0]

    def _outputs_and_features(self, examples: Sequence[dict[str, Any]], data_cfg: DataConfig | None,
                              source: str | None = None) -> tuple[Any, list[dict[str, Any]]]:
        """The task's outputs and the features they came from; with `source` (a file), one line says how many
        inputs were longer than the window and what was done with them."""
        data_cfg = data_cfg or self.config.data
        features = self.task.preprocess(examples, self.tokenizer, data_cfg, with_labels=False)
        if source is not None and self.task.reads_long_inputs:
            summary = long_inputs.summarise(features, self.task.max_length(data_cfg))
            line = summary.line("inputs", self.task.cfg.long_inputs)
            if line:
                (log.warning if summary.cut_examples else log.info)("%s: %s", source, line)
        return predict_outputs(self.model, self.task, features, self.rt, self.pad_id, len(examples)), features

    def predict(self, inputs: Sequence[Any]) -> list[dict[str, Any]]:
        """Predictions for raw inputs: for classification strings, or (text, text_pair) / {"text",
        "text_pair"} for pairs; for NER raw strings or lists of tokens."""
        check_inputs_text(inputs)
        return self.predict_examples(self.task.make_examples(inputs, self.tokenizer))

    def predict_examples(self, examples: Sequence[dict[str, Any]], data_cfg: DataConfig | None = None, *,
                         source: str | None = None) -> list[dict[str, Any]]:
        """One prediction per example; one read in several windows says how many (`windows`), one partly
        left unread says how many tokens (`cut_tokens`)."""
        outputs, features = self._outputs_and_features(examples, data_cfg, source)
        predictions = self.task.postprocess(outputs, examples)
        for prediction, note in zip(predictions, self.task.input_notes(features, len(examples))):
            prediction.update(note)
        return predictions

    def evaluate_examples(self, examples: Sequence[dict[str, Any]], data_cfg: DataConfig | None = None, *,
                          source: str | None = None) -> dict[str, float]:
        """Metrics on labelled examples (each scored whole, however many windows it took), with the decision
        parameters fixed at training (no tuning)."""
        return self.task.metrics(self._outputs_and_features(examples, data_cfg, source)[0], examples)
