"""Evaluation layer: batched inference, scoring and the Predictor."""

from bertkit.evaluation.inference import predict_outputs, score
from bertkit.evaluation.predictor import Predictor

__all__ = ["Predictor", "predict_outputs", "score"]
