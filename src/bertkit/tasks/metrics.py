"""Standard metrics as pure numpy functions (oracle-tested against scikit-learn and SciPy).

They take integer class ids or 0/1 indicator matrices, never label names, and follow scikit-learn's
conventions for degenerate cases: an F1 with zero precision and recall counts as 0, an MCC with a zero
denominator is 0, and macro averages run over the classes present in either references or predictions.
"""

from __future__ import annotations

import numpy as np

__all__ = ["accuracy", "f1_macro", "f1_binary", "mcc", "multilabel_f1", "pearson", "spearman", "mse",
           "higher_is_better"]

LOWER_IS_BETTER = frozenset({"loss", "perplexity", "mse"})  # every other metric bertkit reports rises when better


def higher_is_better(name: str) -> bool:
    """Whether a larger value of the metric `name` (as bertkit names them) is better."""
    return name not in LOWER_IS_BETTER


def _confusion(refs: np.ndarray, preds: np.ndarray, n: int) -> np.ndarray:
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (refs, preds), 1)
    return cm  # (true class, predicted class)


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    denom = 2 * tp + fp + fn
    return np.divide(2 * tp, denom, out=np.zeros(tp.shape, dtype=np.float64), where=denom > 0)


def accuracy(refs, preds) -> float:
    refs, preds = np.asarray(refs), np.asarray(preds)
    return float((refs == preds).mean()) if refs.size else 0.0


def f1_macro(refs, preds) -> float:
    """Unweighted mean of per-class F1 over classes seen in refs or preds (sklearn `average='macro'`)."""
    refs, preds = np.asarray(refs, dtype=np.int64), np.asarray(preds, dtype=np.int64)
    present = np.union1d(refs, preds)
    n = int(present.max()) + 1 if present.size else 1
    cm = _confusion(refs, preds, n)
    tp = np.diag(cm)
    f1 = _f1(tp, cm.sum(0) - tp, cm.sum(1) - tp)
    return float(f1[present].mean()) if present.size else 0.0


def f1_binary(refs, preds, positive: int = 1) -> float:
    """F1 of one class (sklearn `average='binary'`), as GLUE reports for MRPC and QQP."""
    refs, preds = np.asarray(refs), np.asarray(preds)
    tp = np.sum((refs == positive) & (preds == positive))
    fp = np.sum((refs != positive) & (preds == positive))
    fn = np.sum((refs == positive) & (preds != positive))
    return float(_f1(np.array([tp]), np.array([fp]), np.array([fn]))[0])


def mcc(refs, preds) -> float:
    """Matthews correlation coefficient, multi-class form (Gorodkin 2004), as sklearn computes it."""
    refs, preds = np.asarray(refs, dtype=np.int64), np.asarray(preds, dtype=np.int64)
    if not refs.size:
        return 0.0
    n = int(max(refs.max(), preds.max())) + 1
    cm = _confusion(refs, preds, n).astype(np.float64)
    t, p = cm.sum(1), cm.sum(0)
    c, s = np.trace(cm), cm.sum()
    denom = np.sqrt(s * s - p @ p) * np.sqrt(s * s - t @ t)
    return float((c * s - t @ p) / denom) if denom > 0 else 0.0


def multilabel_f1(refs, preds) -> dict[str, float]:
    """Micro and macro F1 over label columns of 0/1 matrices of shape (N, L)."""
    refs, preds = np.asarray(refs, dtype=bool), np.asarray(preds, dtype=bool)
    tp = (refs & preds).sum(0)
    fp = (~refs & preds).sum(0)
    fn = (refs & ~preds).sum(0)
    micro = _f1(np.array([tp.sum()]), np.array([fp.sum()]), np.array([fn.sum()]))[0]
    macro = _f1(tp, fp, fn).mean() if tp.size else 0.0
    return {"f1_micro": float(micro), "f1_macro": float(macro)}


def pearson(refs, preds) -> float:
    x, y = np.asarray(refs, dtype=np.float64), np.asarray(preds, dtype=np.float64)
    x, y = x - x.mean(), y - y.mean()
    denom = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denom) if denom > 0 else 0.0


def _ranks(a: np.ndarray) -> np.ndarray:
    """Average ranks with ties sharing the mean rank (as scipy.stats.rankdata)."""
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    boundaries = np.flatnonzero(np.diff(sorted_a)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [a.size]])
    ranks = np.empty(a.size, dtype=np.float64)
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + e + 1) / 2.0  # mean of 1-based ranks s+1 .. e
    return ranks


def spearman(refs, preds) -> float:
    x, y = np.asarray(refs, dtype=np.float64), np.asarray(preds, dtype=np.float64)
    return pearson(_ranks(x), _ranks(y)) if x.size else 0.0


def mse(refs, preds) -> float:
    x, y = np.asarray(refs, dtype=np.float64), np.asarray(preds, dtype=np.float64)
    return float(((x - y) ** 2).mean()) if x.size else 0.0


def per_class_scores(gold: np.ndarray, pred: np.ndarray, n: int) -> list[tuple[float, float, float, int]]:
    """(precision, recall, F1, support) of each class; 0 where a ratio is undefined (as scikit-learn's
    zero_division=0)."""
    out = []
    for c in range(n):
        tp = int(((pred == c) & (gold == c)).sum())
        predicted, support = int((pred == c).sum()), int((gold == c).sum())
        p = tp / predicted if predicted else 0.0
        r = tp / support if support else 0.0
        out.append((p, r, 2 * p * r / (p + r) if p + r else 0.0, support))
    return out
