"""Zero-shot classification with an embedding model: each label described in words ("positive": "a review that
loves the film"), each text given the label whose description's vector is nearest (cosine similarity); the
scores are a softmax over the similarities times the in-batch loss's scale (20). A baseline that needs no
labelled examples, from the embedded model or any embedding run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bertkit.errors import ConfigError, DataError
from bertkit.inference.embed import embed_texts

__all__ = ["parse_labels", "zero_shot", "evaluate_file", "SCALE"]

SCALE = 20.0


def parse_labels(items: Sequence[str]) -> dict[str, str]:
    """`LABEL=DESCRIPTION` strings (a bare `LABEL` is its own description) as {label: description}."""
    labels: dict[str, str] = {}
    for item in items:
        name, _, description = item.partition("=")
        name, description = name.strip(), (description or name).strip()
        if not name or not description:
            raise ConfigError(f"--zero-shot {item!r}: expected LABEL=DESCRIPTION, e.g. positive='a review that loves "
                              "the film'")
        if name in labels:
            raise ConfigError(f"--zero-shot: label {name!r} is given twice")
        labels[name] = description
    if len(labels) < 2:
        raise ConfigError("--zero-shot: give two labels or more (--zero-shot A=... --zero-shot B=...)")
    return labels


def zero_shot(embedder: Any, texts: Sequence[str], labels: dict[str, str]) -> list[dict[str, Any]]:
    """One {"label", "score", "scores"} per text."""
    names = list(labels)
    anchors = embed_texts(embedder, [labels[n] for n in names])
    vectors = embed_texts(embedder, list(texts))
    anchors /= np.maximum(np.linalg.norm(anchors, axis=1, keepdims=True), 1e-12)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    logits = SCALE * vectors @ anchors.T
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    return [{"label": names[int(p.argmax())], "score": round(float(p.max()), 6),
             "scores": {n: round(float(x), 6) for n, x in zip(names, p)}} for p in probs]


def evaluate_file(embedder: Any, data: Any, labels: dict[str, str], *, fmt: str | None = None,
                  text_column: str | None = None, label_column: str | None = None) -> dict[str, float]:
    """Accuracy, macro F1 and MCC of `zero_shot` on a labelled file (columns: text and label by default)."""
    from bertkit.data.readers import read_table
    from bertkit.tasks.metrics import accuracy, f1_macro, mcc

    table = read_table(data, fmt)
    text, label = text_column or "text", label_column or "label"
    table.require(text, "data.text_column")
    table.require(label, "data.label_column")
    gold = [str(row.get(label)) for row in table.rows]
    unknown = sorted(set(gold) - set(labels))
    if unknown:
        raise DataError(f"{data}: labels {unknown[:5]} have no --zero-shot description; describe every label")
    names = list(labels)
    predicted = [p["label"] for p in zero_shot(embedder, [str(row.get(text)) for row in table.rows], labels)]
    refs, preds = [names.index(g) for g in gold], [names.index(p) for p in predicted]
    return {"accuracy": accuracy(refs, preds), "f1": f1_macro(refs, preds), "mcc": mcc(refs, preds)}
