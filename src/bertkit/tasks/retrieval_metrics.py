"""Search metrics the field reports (BEIR, MTEB, TREC): Recall@k, MRR@10 and nDCG@10, from a query x document
score matrix and each query's relevant documents (a set, or grades for graded judgements). Definitions are
trec_eval's (`recall_k`, `ndcg_cut_10` with gain = grade and a log2 discount, reciprocal rank cut at 10);
tests check them against pytrec_eval. Pure numpy; ties are broken by document order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["retrieval_metrics", "ranked", "RECALL_AT", "metrics_of_rankings"]

RECALL_AT = (1, 10, 100)


def ranked(scores: np.ndarray, depth: int) -> np.ndarray:
    """(Q, min(depth, D)) document indices of each query's highest scores, best first."""
    depth = min(depth, scores.shape[1])
    if depth == 0:
        return np.zeros((scores.shape[0], 0), dtype=np.int64)
    top = np.argpartition(-scores, depth - 1, axis=1)[:, :depth] if depth < scores.shape[1] else \
        np.tile(np.arange(scores.shape[1]), (scores.shape[0], 1))
    order = np.lexsort((top, -np.take_along_axis(scores, top, axis=1)), axis=1)
    return np.take_along_axis(top, order, axis=1)


def retrieval_metrics(scores: np.ndarray, relevant: Sequence[set[int] | Mapping[int, float]],
                      recall_at: Sequence[int] = RECALL_AT) -> dict[str, float]:
    """Mean Recall@k, MRR@10 and nDCG@10 over the queries that have a relevant document."""
    return metrics_of_rankings(ranked(scores, max(max(recall_at), 10)), relevant, recall_at)


def metrics_of_rankings(rankings: Sequence[Sequence[int]], relevant: Sequence[set[int] | Mapping[int, float]],
                        recall_at: Sequence[int] = RECALL_AT) -> dict[str, float]:
    """The same metrics from rankings already made (each query's documents, best first)."""
    sums = {f"recall@{k}": 0.0 for k in recall_at} | {"mrr@10": 0.0, "ndcg@10": 0.0}
    counted = 0
    for ranking, rel in zip(rankings, relevant):
        grades = {d: float(g) for d, g in rel.items()} if isinstance(rel, Mapping) else {d: 1.0 for d in rel}
        grades = {d: g for d, g in grades.items() if g > 0}
        if not grades:
            continue
        counted += 1
        ranking = list(ranking)
        for k in recall_at:
            sums[f"recall@{k}"] += sum(1 for d in ranking[:k] if d in grades) / len(grades)
        first = next((r for r, d in enumerate(ranking[:10]) if d in grades), None)
        sums["mrr@10"] += 0.0 if first is None else 1.0 / (first + 1)
        dcg = sum(grades.get(d, 0.0) / np.log2(r + 2) for r, d in enumerate(ranking[:10]))
        ideal = sum(g / np.log2(r + 2) for r, g in enumerate(sorted(grades.values(), reverse=True)[:10]))
        sums["ndcg@10"] += float(dcg / ideal)
    return {k: v / counted if counted else 0.0 for k, v in sums.items()}
