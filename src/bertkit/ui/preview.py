"""What the New-run form shows of a data file before a run starts: its first rows, its kind (a table, CoNLL,
SQuAD JSON), the columns and task it suggests, and the defaults a run on it would take."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

__all__ = ["preview", "suggest_columns", "size_defaults_for"]


def _looks_conll(path: Path) -> bool:
    from bertkit.data.readers import text_lines

    lines = []
    for line in text_lines(path, "utf-8"):
        if line.strip():
            lines.append(line.split())
        if len(lines) >= 20:
            break
    return bool(lines) and all(2 <= len(parts) <= 6 for parts in lines) and any(
        parts[-1] == "O" or parts[-1][:2] in ("B-", "I-", "E-", "S-") for parts in lines)


def _is_squad(path: Path) -> bool:
    name = path.name.lower().removesuffix(".gz")
    if not name.endswith(".json"):
        return False
    from bertkit.data.readers import text_lines

    head = "".join(line for _, line in zip(range(5), text_lines(path, "utf-8")))
    return '"data"' in head[:2000] and ('"paragraphs"' in head or '"version"' in head)


def suggest_columns(columns: list[str], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The text, pair and label columns and the task (and classification problem) a file suggests: the label
    by name or by few distinct values, the text as the longest remaining string column, a pair when a second
    text column is named so, regression for fractional or many distinct numbers."""
    def values(c: str) -> list[Any]:
        return [r.get(c) for r in rows if r.get(c) not in (None, "")]

    def mean_len(c: str) -> float:
        vs = values(c)
        return sum(len(str(v)) for v in vs) / len(vs) if vs else 0.0

    named = {c.lower(): c for c in columns}
    label = next((named[n] for n in ("label", "labels", "sentiment", "class", "category", "target", "y", "tags")
                  if n in named), None)
    if label is None:
        def distinct(c: str) -> int:
            return len({json.dumps(v, sort_keys=True) for v in values(c)})

        few = [c for c in columns if 0 < distinct(c) <= max(2, len(rows) // 3) and mean_len(c) < 20]
        label = few[-1] if few else None
    texts = sorted((c for c in columns if c != label and mean_len(c) > 0), key=mean_len, reverse=True)
    pair_names = ("sentence2", "text_b", "text_pair", "hypothesis", "question2", "#2 string")
    pair = next((c for c in texts if c.lower() in pair_names), None)
    text = next((c for c in texts if c != pair and c.lower() not in ("id", "idx")), None)
    problem = None
    if label is not None and rows:
        sample = values(label)
        if not (sample and all(isinstance(v, list) for v in sample)):  # a list per row: multi-label, as fitting says
            numbers = [_number(v) for v in sample]
            if sample and None not in numbers and (any(not n.is_integer() for n in numbers)
                                                   or len(set(numbers)) > max(10, len(sample) // 2)):
                problem = "regression"  # scores: fractions (as fitting decides), or many distinct whole numbers
    return {"task": "classification", **({"task.problem": problem} if problem else {}), "text_column": text,
            "text_pair_column": pair, "label_column": label}


def _number(value: Any) -> float | None:
    """A label as a finite number (CSV cells are strings), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def preview(path: Path, limit: int = 8) -> dict[str, Any]:
    """The first rows of a data file, its kind, and what to do with it (raises DataError for a bad file)."""
    from bertkit.data.readers import iter_table

    if _is_squad(path):
        return {"kind": "squad", "columns": [], "rows": [], "suggested": {"task": "qa"}}
    if path.name.lower().removesuffix(".gz").endswith((".conll", ".txt")) and _looks_conll(path):
        from bertkit.data.conll import read_conll

        sentences = read_conll(path)
        rows = [{"tokens": " ".join(s.tokens), "tags": " ".join(s.tags)} for s in sentences[:limit]]
        return {"kind": "conll", "columns": ["tokens", "tags"], "rows": rows, "count": len(sentences),
                "suggested": {"task": "ner"}, "defaults": size_defaults_for(len(sentences))}
    chunks = iter_table(path, chunk_rows=2000)
    table = next(chunks)
    count = len(table.rows) + sum(len(t.rows) for t in chunks)
    suggested = suggest_columns(table.columns, table.rows)
    return {"kind": "table", "columns": table.columns, "rows": table.rows[:limit], "count": count,
            "suggested": suggested, "defaults": size_defaults_for(count), "checks": _checks(table, suggested)}


def _checks(table: Any, suggested: dict[str, Any]) -> list[dict[str, Any]]:
    """What `bertkit data check` says of the first rows (up to 2,000) with the suggested columns: duplicates,
    conflicting labels, imbalance."""
    from dataclasses import asdict

    from bertkit.data.checks import check_examples

    text, label = suggested.get("text_column"), suggested.get("label_column")
    if not text:
        return []
    examples = [{"text": str(row.get(text) or ""), "where": table.where(i),
                 **({"label": row.get(label)} if label and row.get(label) not in (None, "") else {})}
                for i, row in enumerate(table.rows)]
    report = check_examples(examples, None, train_source=str(table.path), problem=suggested.get("task.problem"))
    return [asdict(f) for f in report.findings]


def size_defaults_for(rows: int) -> dict[str, Any]:
    """What a standard run on `rows` training rows and no dev file would choose (the form shows it), from the
    run's own rules (`bertkit.training.defaults`)."""
    from bertkit.config import RunConfig
    from bertkit.training import defaults

    # The learning rate follows the model, chosen further down the form: the rule is shown in words.
    config = RunConfig().with_overrides({"train.method": "standard", "train.lr": 1.0})
    split = rows >= defaults.holdout_below(config, defaults.DataStats(train=rows), defaults.ModelInfo())
    n = rows - round(rows * config.data.dev_fraction) if split else rows
    resolved, _ = defaults.resolve(config, defaults.DataStats(train=n), defaults.ModelInfo())
    return {"examples": n, "dev_split": split, "batch_size": resolved.train.batch_size,
            "epochs": resolved.train.epochs, "lr": defaults.lr_rule()}
