"""Inference layer: a trained model on new inputs. Batched outputs over task features (`batched`, which dev
evaluation during training uses too, so this layer sits below training), the `Predictor` (a run directory
or an ONNX export, ready to label text), the ONNX Runtime model and dynamic int8 quantisation. Evaluation,
export and serving build on it; none of it loads the training code."""

from bertkit.inference.predictor import Predictor

__all__ = ["Predictor"]
