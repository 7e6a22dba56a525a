"""`bertkit export RUN --format onnx [--quantize int8]`: a run's final model as an ONNX graph, checked.

The folder holds `model.onnx` (fp32, or int8 weights with ONNX Runtime's dynamic quantisation), the
tokenizer, the model config, and `bertkit-export.json` (the run's config and task state, so that
`bertkit predict/evaluate FOLDER` work without the run, plus the parity check). The parity check runs the
run's dev set (or `check_data`) through PyTorch in fp32 and through the export and compares the decisions:
an fp32 export that agrees on fewer than 99.5 % of the examples is refused; for int8 the metric change is
recorded. The folder is written under a temporary name and renamed, so a failed export leaves nothing.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from bertkit.errors import ConfigError, ModelLoadError
from bertkit.export.model_card import model_card
from bertkit.export.model_dir import check_out, staged_output
from bertkit.inference.onnx_model import EXPORT_MANIFEST
from bertkit.inference.predictor import Predictor
from bertkit.io import atomic_write_text
from bertkit.models.init_source import load_run_model
from bertkit.models.loading import load_tokenizer, quiet_transformers
from bertkit.run_dir import RunDir
from bertkit.runtime import Runtime

__all__ = ["export_onnx", "MIN_FP32_AGREEMENT"]

MIN_FP32_AGREEMENT = 0.995


class _Graph(torch.nn.Module):
    """The model with positional tensor inputs and a tuple of named outputs, as the exporter wants."""

    def __init__(self, model: torch.nn.Module, outputs: tuple[str, ...]) -> None:
        super().__init__()
        self.model, self.outputs = model, outputs

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra)
        return tuple(getattr(out, name) for name in self.outputs)


def export_onnx(run_dir: str | Path, out: str | Path, *, quantize: str | None = None,
                check_data: str | None = None, check_limit: int = 2000) -> tuple[Path, dict[str, Any]]:
    """Write the ONNX export of `run_dir` to `out`; returns the folder and its manifest."""
    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise ConfigError("ONNX export needs onnx, onnxscript and onnxruntime; install bertkit[onnx]") from None
    if quantize not in (None, "int8"):
        raise ConfigError(f"quantize={quantize!r} is not supported; use int8")
    run = RunDir(run_dir).require(model=True)
    check_out(out, run.path)
    config = run.load_config()
    model, task = load_run_model(run.path)
    if hasattr(model, "merge_and_unload"):  # LoRA: fold the adapter in
        model = model.merge_and_unload()
    model = model.float().eval()
    tokenizer = load_tokenizer(str(run.model_dir))
    sample, axes = task.export_inputs(tokenizer)
    inputs = list(sample)
    outputs = task.output_names
    check = check_data or config.data.dev
    if check_data and not Path(check_data).is_file():
        raise ConfigError(f"--check-data {check_data}: no such file; give a labelled file for the parity check")
    reference = Predictor(model, tokenizer, task, config, Runtime("fp32", cpu=True))  # the model loaded above

    with staged_output(out) as tmp:
        tmp.mkdir()
        _write_graph(model, [sample[k] for k in inputs], inputs, axes, outputs, tmp / "model.fp32.onnx")
        model_file = "model.onnx"
        if quantize:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(str(tmp / "model.fp32.onnx"), str(tmp / model_file), weight_type=QuantType.QInt8,
                             per_channel=True)  # a scale per output column, as the PyTorch path
            (tmp / "model.fp32.onnx").unlink()
        else:
            (tmp / "model.fp32.onnx").rename(tmp / model_file)
        with quiet_transformers():
            tokenizer.save_pretrained(tmp)
            model.config.save_pretrained(tmp)
        manifest = {"format": "onnx", "model_file": model_file, "quantize": quantize, "inputs": inputs,
                    "outputs": list(outputs), "source_run": str(run.path.resolve()), "config": config.to_dict(),
                    "task_state": task.state(),
                    "size_mb": round((tmp / model_file).stat().st_size / 2**20, 1)}
        atomic_write_text(tmp / EXPORT_MANIFEST, json.dumps(manifest, indent=2))
        manifest["parity"] = _parity(reference, tmp, check, check_limit)
        parity = manifest["parity"]
        if parity and quantize is None and parity["agreement"] < MIN_FP32_AGREEMENT:
            raise ModelLoadError(f"{run.path}: the ONNX export agrees with PyTorch on only "
                                 f"{parity['agreement']:.2%} of {parity['examples']} examples (needs "
                                 f"{MIN_FP32_AGREEMENT:.1%}); nothing was written")
        atomic_write_text(tmp / EXPORT_MANIFEST, json.dumps(manifest, indent=2))
        atomic_write_text(tmp / "README.md", model_card(run.path, extra={
            "format": "ONNX (ONNX Runtime)", "quantisation": "dynamic int8, per-channel" if quantize else None,
            "parity with PyTorch fp32": None if parity is None else
            f"{parity['agreement']:.2%} same decisions on {parity['examples']} examples of {parity['data']}; "
            f"{parity['metric']} {parity['torch']:.4f} -> {parity['export']:.4f}"}))
    return Path(out), manifest


def _write_graph(model: torch.nn.Module, sample: list[torch.Tensor], inputs: list[str], axes: dict[int, str],
                 outputs: tuple[str, ...], path: Path) -> None:
    from torch.export import Dim

    limits = {"sequence": (2, model.config.max_position_embeddings)}  # any other axis: 1 to 4096
    dims = {i: Dim(name, min=limits.get(name, (1, 4096))[0], max=limits.get(name, (1, 4096))[1])
            for i, name in axes.items()}
    with warnings.catch_warnings(), quiet_transformers(), torch.no_grad(), _export_errors(type(model).__name__):
        warnings.simplefilter("ignore")
        torch.onnx.export(_Graph(model, outputs), tuple(sample), str(path), input_names=inputs,
                          output_names=list(outputs), dynamic_shapes={k: dims for k in inputs},
                          opset_version=18, dynamo=True, external_data=False, verbose=False)


@contextlib.contextmanager
def _export_errors(architecture: str) -> Iterator[None]:
    """The exporter's own failures (an operator it cannot translate...) as one line naming the model."""
    try:
        yield
    except Exception as exc:  # torch.export and the ONNX translation raise many unrelated types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"{architecture}: the ONNX exporter failed ({first}); export with --format hf "
                             "instead") from None


def _decision(prediction: Any) -> Any:
    """What a prediction decides, without its confidence: labels, spans and answers; regression values
    to two decimals."""
    if isinstance(prediction, dict):
        return {k: _decision(v) for k, v in prediction.items() if k not in ("score", "probabilities")}
    if isinstance(prediction, list):
        return [_decision(v) for v in prediction]
    if isinstance(prediction, float):
        return round(prediction, 2)
    return prediction


def _parity(reference: Predictor, export_dir: Path, data: str | None, limit: int) -> dict[str, Any] | None:
    """Decisions and the primary metric of PyTorch (`reference`, fp32) and of the export on up to `limit`
    labelled examples; None when there is no labelled file to check on (the run's dev file has moved)."""
    if not data or not Path(data).is_file():
        return None
    exported = Predictor.from_export(export_dir)
    examples, data_cfg = reference.read_file(data, with_labels=True)
    examples = examples[:limit]
    task, metric = reference.task, reference.task.primary_metric
    outputs = [p.outputs(examples, data_cfg) for p in (reference, exported)]
    ours, theirs = (task.postprocess(o, examples) for o in outputs)
    agreement = sum(_decision(a) == _decision(b) for a, b in zip(ours, theirs)) / max(len(examples), 1)
    return {"data": str(data), "examples": len(examples), "agreement": round(agreement, 4), "metric": metric,
            "torch": task.metrics(outputs[0], examples)[metric], "export": task.metrics(outputs[1], examples)[metric]}
