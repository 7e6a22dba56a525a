"""Evaluation layer: the run report, its diagnosis and run comparisons. Predicting (the `Predictor`) and
batched inference live in `bertkit.inference`, below training and evaluation."""
