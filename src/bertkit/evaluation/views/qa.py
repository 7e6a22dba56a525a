"""The run report's view of a QA run's dev set: EM and F1 by question type and by gold answer length, and
the worst-answered questions."""

from __future__ import annotations

from typing import Any

import numpy as np

from bertkit.evaluation.html import COLOURS, DevData, html_table, new_figure, plot_block, to_svg
from bertkit.evaluation.views import register_view
from bertkit.tasks.squad_metrics import exact_match, normalize_answer
from bertkit.tasks.squad_metrics import f1 as squad_f1

__all__ = ["question_type", "answer_length_bucket", "qa_view"]


@register_view("qa")
def qa_view(d: DevData) -> str | None:
    return None if d.predictions is None else _qa_section(d.predictions, d.examples, d.top)


_WH = ("what", "who", "whom", "whose", "when", "where", "why", "which", "how")


def question_type(question: str) -> str:
    """The question's wh-word ('how many' and 'how much' apart from 'how'), or 'other'."""
    words = normalize_answer(question).split()
    for i, w in enumerate(words[:4]):
        if w == "how" and i + 1 < len(words) and words[i + 1] in ("many", "much"):
            return f"how {words[i + 1]}"
        if w in _WH:
            return {"whom": "who", "whose": "who"}.get(w, w)
    return "other"


def answer_length_bucket(answers: list[dict[str, Any]]) -> str:
    if not answers:
        return "no answer"
    n = len(normalize_answer(answers[0]["text"]).split())
    return "1 word" if n <= 1 else "2-3 words" if n <= 3 else "4-6 words" if n <= 6 else "7+ words"


def _qa_section(predictions: list[dict[str, Any]], examples: list[dict[str, Any]], top: int) -> str:
    by_id = {p["id"]: p for p in predictions}
    rows = []
    for ex in examples:
        pred = by_id.get(ex["id"], {"answer": "", "score": 0.0})
        golds = [a["text"] for a in ex["answers"]] or [""]
        rows.append({"ex": ex, "answer": pred["answer"], "score": float(pred.get("score", 0.0)),
                     "em": max(exact_match(pred["answer"], g) for g in golds),
                     "f1": max(squad_f1(pred["answer"], g) for g in golds),
                     "type": question_type(ex["question"]), "length": answer_length_bucket(ex["answers"])})
    parts = []
    order = {"length": ["1 word", "2-3 words", "4-6 words", "7+ words", "no answer"]}
    fig, axes = new_figure(9.5, 3.0, 2)
    for ax, key, title in zip(axes, ("type", "length"), ("question type", "gold answer length")):
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            groups.setdefault(r[key], []).append(r)
        names = [n for n in order.get(key, sorted(groups, key=lambda g: -len(groups[g]))) if n in groups]
        table = [[n, len(groups[n]), 100 * np.mean([r["em"] for r in groups[n]]),
                  100 * np.mean([r["f1"] for r in groups[n]])] for n in names]
        parts.append(f"<h3>By {title}</h3>" + html_table([title, "questions", "EM", "F1"], table))
        ax.bar(names, [t[3] for t in table], color=COLOURS["train"])
        ax.set_title(f"F1 by {title}")
        ax.set_ylim(0, 100)
        ax.tick_params(axis="x", rotation=45)
    parts.insert(0, plot_block(to_svg(fig)))
    worst = sorted(range(len(rows)), key=lambda i: (rows[i]["f1"], -rows[i]["score"]))[:top]
    parts.append("<h3>Worst-answered dev questions</h3><p>Lowest F1 first, the most confident among equals "
                 "(QA keeps no per-question loss).</p>" + html_table(
                     ["id", "question", "gold", "predicted", "confidence", "F1"],
                     [[rows[i]["ex"]["id"], rows[i]["ex"]["question"],
                       " | ".join(a["text"] for a in rows[i]["ex"]["answers"]) or "(none)",
                       rows[i]["answer"] or "(none)", rows[i]["score"], rows[i]["f1"]] for i in worst]))
    return "".join(parts)


