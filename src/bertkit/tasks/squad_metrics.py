"""The official SQuAD evaluation (v1.1 exact match and F1, v2.0 with no-answer questions), as pure functions.

Answers are normalised as the official scripts do: lower case, punctuation removed, the articles a/an/the
removed, whitespace collapsed. A question scores the maximum over its gold answers; a v2 question without
gold answers counts as correct only when the prediction is empty.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

__all__ = ["normalize_answer", "exact_match", "f1", "squad_scores", "best_null_threshold"]

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1(prediction: str, gold: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred or not ref:
        return float(pred == ref)
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def _best(fn, prediction: str, golds: Sequence[str]) -> float:
    return max(fn(prediction, g) for g in (golds or [""]))


def squad_scores(predictions: Sequence[str], golds: Sequence[Sequence[str]], with_no_answer: bool = False
                 ) -> dict[str, float]:
    """`exact_match` and `f1` in percent (as the official scripts print them); with `with_no_answer` also
    the v2 breakdown `HasAns_exact_match`, `HasAns_f1`, `NoAns_exact_match`, `NoAns_f1` (and totals)."""
    em = [_best(exact_match, p, g) for p, g in zip(predictions, golds)]
    fs = [_best(f1, p, g) for p, g in zip(predictions, golds)]
    n = max(len(em), 1)
    scores = {"exact_match": 100.0 * sum(em) / n, "f1": 100.0 * sum(fs) / n}
    if with_no_answer:
        for name, keep in (("HasAns", lambda g: bool(g)), ("NoAns", lambda g: not g)):
            idx = [i for i, g in enumerate(golds) if keep(g)]
            if idx:
                scores[f"{name}_exact_match"] = 100.0 * sum(em[i] for i in idx) / len(idx)
                scores[f"{name}_f1"] = 100.0 * sum(fs[i] for i in idx) / len(idx)
                scores[f"{name}_total"] = float(len(idx))
    return scores


def best_null_threshold(null_margins: Sequence[float], f1_if_answered: Sequence[float],
                        has_answer: Sequence[bool]) -> float:
    """The threshold t maximising total F1 when a question is left unanswered iff its margin (no-answer
    score minus best span score) exceeds t; a sweep over sorted margins, as the official v2 script does."""
    order = sorted(range(len(null_margins)), key=lambda i: null_margins[i])
    # start with every question unanswered (t below every margin), then answer them in margin order
    score = sum(0.0 if h else 1.0 for h in has_answer)
    best_score, best_t = score, (null_margins[order[0]] - 1.0) if order else 0.0
    for i in order:
        score += f1_if_answered[i] - (0.0 if has_answer[i] else 1.0)
        if score > best_score:
            best_score, best_t = score, null_margins[i]
    return float(best_t)
