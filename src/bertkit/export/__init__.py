"""Export a run's final model for use outside bertkit: a Hugging Face model directory or an ONNX graph."""

from bertkit.export.model_dir import export_model
from bertkit.export.onnx import export_onnx

__all__ = ["export_model", "export_onnx"]
