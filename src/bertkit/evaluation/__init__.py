"""Evaluation layer: the Predictor, the run report and run comparisons. Batched inference lives in
`bertkit.models.inference`, below both training and evaluation."""

from bertkit.evaluation.predictor import Predictor

__all__ = ["Predictor"]
