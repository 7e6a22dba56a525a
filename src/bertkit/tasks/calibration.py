"""Calibration of classifier probabilities: expected calibration error, reliability bins, and temperature
scaling (Guo et al., 2017), a single scalar T fitted on dev so that softmax(logits / T) matches how often
the model is right. Dividing by T never changes the predicted class, only the confidence."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["ReliabilityBins", "reliability", "expected_calibration_error", "fit_temperature", "softmax"]


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits.astype(np.float64) / temperature
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass
class ReliabilityBins:
    """Equal-width confidence bins: mean confidence, accuracy and count of the predictions in each."""

    edges: np.ndarray  # (n_bins + 1,)
    confidence: np.ndarray  # (n_bins,), nan where a bin is empty
    accuracy: np.ndarray
    count: np.ndarray

    @property
    def ece(self) -> float:
        """Expected calibration error: the count-weighted mean |accuracy - confidence| over the bins."""
        filled = self.count > 0
        total = self.count.sum()
        if total == 0:
            return 0.0
        gaps = np.abs(self.accuracy[filled] - self.confidence[filled])
        return float((gaps * self.count[filled]).sum() / total)


def reliability(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> ReliabilityBins:
    """Bins of the top-class confidence of `probs` (N, L) against gold `labels` (N,)."""
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # A confidence equal to an upper edge belongs to that bin (right-closed, as in Guo et al.).
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(which, weights=confidence, minlength=n_bins) / count
        acc = np.bincount(which, weights=correct, minlength=n_bins) / count
    return ReliabilityBins(edges, conf, acc, count)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    return reliability(probs, labels, n_bins).ece


def fit_temperature(logits: np.ndarray, labels: np.ndarray, max_iter: int = 200) -> float:
    """The temperature T > 0 minimising the negative log-likelihood of softmax(logits / T) on (logits,
    labels); optimised over log T with L-BFGS. 1.0 when there is nothing to fit."""
    if len(labels) == 0:
        return 1.0
    z = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.long)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    return t if np.isfinite(t) and 1e-2 <= t <= 1e2 else 1.0
