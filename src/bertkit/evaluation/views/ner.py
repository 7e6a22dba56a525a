"""The run report's view of a NER run's dev set: per-type scores, the most frequent errors (missed, spurious,
a type read as another, a boundary cut or stretched) and the highest-loss sentences."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from bertkit.evaluation.html import COLOURS, DevData, html_table, new_figure, plot_block, to_svg
from bertkit.evaluation.views import register_view
from bertkit.tasks.calibration import softmax
from bertkit.tasks.tagging import entity_scores, get_entities

__all__ = ["entity_errors", "ner_view"]


@register_view("ner")
def ner_view(d: DevData) -> str | None:
    if "outputs_flat" not in d.arrays or not all("tags" in ex and "tokens" in ex for ex in d.examples):
        return None
    return _ner_section(d.task.labels, d.arrays["outputs_flat"], d.arrays["lengths"], d.examples, d.top)


def entity_errors(gold_tags: list[list[str]], pred_tags: list[list[str]]) -> Counter[str]:
    """Counts of the ways predicted entities differ from gold ones: a type error (same span, other type),
    a boundary error (overlapping span, same type), both, a missed entity (nothing overlaps) and a
    spurious one (no gold entity overlaps)."""
    errors: Counter[str] = Counter()
    for gold_seq, pred_seq in zip(gold_tags, pred_tags):
        gold, pred = set(get_entities(gold_seq)), set(get_entities(pred_seq))
        for kind, start, end in gold - pred:
            overlap = [p for p in pred - gold if p[1] <= end and start <= p[2]]
            if not overlap:
                errors[f"missed {kind}"] += 1
            elif any((p[1], p[2]) == (start, end) for p in overlap):
                errors[f"type: {kind} read as {next(p[0] for p in overlap if (p[1], p[2]) == (start, end))}"] += 1
            elif any(p[0] == kind for p in overlap):
                errors[f"boundary: {kind} span cut or stretched"] += 1
            else:
                errors[f"boundary and type: {kind} read as {overlap[0][0]}"] += 1
        for kind, start, end in pred - gold:
            if not any(g[1] <= end and start <= g[2] for g in gold):
                errors[f"spurious {kind}"] += 1
    return errors


def _ner_section(labels: list[str], flat: np.ndarray, lengths: np.ndarray, examples: list[dict[str, Any]],
                 top: int) -> str:
    logits = np.split(flat, np.cumsum(lengths)[:-1])
    pred_tags = [[labels[k] for k in row.argmax(-1)] for row in logits]
    gold_tags = [ex["tags"] for ex in examples]
    scores = entity_scores(gold_tags, pred_tags)
    types = sorted({k[: -len("_f1")] for k in scores if k.endswith("_f1") and k != "f1"})
    support = Counter(kind for tags in gold_tags for kind, _, _ in get_entities(tags))
    parts = ["<h3>Per entity type</h3>" + html_table(
        ["type", "precision", "recall", "F1", "gold entities"],
        [[t, scores[f"{t}_precision"], scores[f"{t}_recall"], scores[f"{t}_f1"], support.get(t, 0)] for t in types]
        + [["all (micro)", scores["precision"], scores["recall"], scores["f1"], sum(support.values())]])]
    errors = entity_errors(gold_tags, pred_tags)
    if errors:
        fig, ax = new_figure(7.5, 0.35 * min(len(errors), top) + 1.0)
        common = errors.most_common(top)[::-1]
        ax.barh([name for name, _ in common], [n for _, n in common], color=COLOURS["dev"])
        ax.set_xlabel("count on dev")
        ax.set_title("Most frequent entity errors")
        parts.append("<h3>Most frequent errors</h3>" + plot_block(to_svg(fig)))
    index = {name: i for i, name in enumerate(labels)}
    losses = []
    for row, tags in zip(logits, gold_tags):
        gold = [index.get(t, 0) for t in tags[: len(row)]]
        p_gold = softmax(row)[np.arange(len(gold)), gold]
        losses.append(float(-np.log(np.clip(p_gold, 1e-12, 1)).mean()) if gold else 0.0)
    worst = np.argsort(-np.array(losses))[:top]
    parts.append("<h3>Highest-loss dev sentences</h3>" + html_table(
        ["where", "sentence", "gold entities", "predicted entities", "loss"],
        [[examples[i].get("where", i), " ".join(examples[i]["tokens"])[:200], _entities(examples[i]["tokens"],
          gold_tags[i]), _entities(examples[i]["tokens"], pred_tags[i]), losses[i]] for i in worst]))
    return "".join(parts)


def _entities(tokens: list[str], tags: list[str]) -> str:
    return "; ".join(f"{kind}: {' '.join(tokens[s:e + 1])}" for kind, s, e in get_entities(tags)) or "-"


