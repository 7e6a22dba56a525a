"""An exported ONNX model (`bertkit export --format onnx`) run by ONNX Runtime, behind the small part of the
PyTorch model interface that inference uses: called with the batch's tensors, it returns an object whose
attributes are the graph's outputs (`logits`, or `start_logits`/`end_logits`) as tensors."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from bertkit.errors import ModelLoadError

__all__ = ["OnnxModel", "EXPORT_MANIFEST", "read_manifest"]

EXPORT_MANIFEST = "bertkit-export.json"


def read_manifest(folder: str | Path) -> dict[str, Any] | None:
    """The manifest of an export folder, or None when `folder` is not one."""
    path = Path(folder) / EXPORT_MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: unreadable export manifest ({exc}); export the run again") from None


class OnnxModel:
    training = False

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelLoadError(f"{path}: running an ONNX export needs onnxruntime; install bertkit[onnx]") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if not Path(path).is_file():
            raise ModelLoadError(f"{path}: no ONNX model file; export the run again")
        try:
            self.session = ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ONNX Runtime raises its own types for truncated or foreign files
            raise ModelLoadError(f"{path}: ONNX Runtime cannot load it ({str(exc).splitlines()[0]}); "
                                 "export the run again") from None
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, **inputs: torch.Tensor) -> SimpleNamespace:
        feed = {name: inputs[name].cpu().numpy() for name in self.input_names if name in inputs}
        if "token_type_ids" in self.input_names and "token_type_ids" not in feed:  # one segment: all zeros
            feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
        missing = set(self.input_names) - set(feed)
        if missing:
            raise ModelLoadError(f"the ONNX model needs inputs {sorted(missing)} that this batch lacks")
        outputs = self.session.run(self.output_names, feed)
        return SimpleNamespace(**{name: torch.from_numpy(out) for name, out in zip(self.output_names, outputs)})

    def eval(self) -> OnnxModel:
        return self

    def train(self, mode: bool = True) -> OnnxModel:
        return self

    def to(self, *args: Any, **kwargs: Any) -> OnnxModel:
        return self
