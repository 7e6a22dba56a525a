"""A data set checked before training, as pure functions of the examples a task reads: label counts and
imbalance, exact and near duplicates, the same text with different labels, dev rows that also sit in train,
input lengths against the window and the share of tokens the tokenizer does not know.

What makes training wrong is an error (one class only, a dev set that is the training set); the rest are
warnings a person should look at. Every run logs them and records them in environment.json;
`bertkit data check` (`bertkit.evaluation.data_check`) prints them and exits 1 on an error.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bertkit.data.coverage import UNKNOWN_WARNING, coverage

__all__ = ["Finding", "DataReport", "check_examples", "text_of", "labels_of", "near_key"]

log = logging.getLogger("bertkit")

#: A label counted this many times more often than the rarest is imbalance worth a warning.
IMBALANCE_WARNING = 10.0
#: Rows named per finding (the count says how many there are in all).
SHOWN = 5


@dataclass
class Finding:
    level: str  # "error": training or its dev figures would be wrong; "warning": look at it; "info"
    code: str  # stable name for scripts: duplicates, near_duplicates, conflicting_labels, leakage, ...
    message: str
    count: int = 0
    where: list[str] = field(default_factory=list)  # the first rows concerned (file:line)


@dataclass
class DataReport:
    train: dict[str, Any]
    dev: dict[str, Any] | None
    findings: list[Finding]
    lengths: dict[str, Any] | None = None
    coverage: dict[str, Any] | None = None
    label_errors: list[dict[str, Any]] | None = None

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    def as_dict(self) -> dict[str, Any]:
        return {"train": self.train, "dev": self.dev, "findings": [asdict(f) for f in self.findings],
                "lengths": self.lengths, "coverage": self.coverage, "label_errors": self.label_errors,
                "errors": len(self.errors)}

    def lines(self) -> list[str]:
        """The report as text, one finding a line."""
        out = [_set_line("train", self.train)] + ([_set_line("dev", self.dev)] if self.dev else [])
        if self.lengths:
            out.append(f"lengths: median {self.lengths['median']} tokens, 90th percentile {self.lengths['p90']}, "
                       f"longest {self.lengths['longest']}; window {self.lengths['window']}: "
                       f"{100 * self.lengths['over_window_share']:.1f}% longer")
        if self.coverage:
            out.append(f"unknown tokens: {100 * self.coverage['unknown_share']:.2f}% of "
                       f"{self.coverage['tokens']:,} counted")
        for f in self.findings:
            where = f" (first: {', '.join(f.where)})" if f.where else ""
            out.append(f"{f.level}: {f.message}{where}")
        for e in self.label_errors or []:
            out.append(f"label error? {e['where']}: labelled {e['label']!r}, the other rows suggest "
                       f"{e['suggested']!r} ({e['confidence']:.2f}): {e['text'][:100]}")
        if not self.findings:
            out.append("no problems found")
        return out


def _set_line(name: str, info: dict[str, Any]) -> str:
    labels = info.get("labels") or {}
    shown = ", ".join(f"{k} {v:,}" for k, v in list(labels.items())[:12]) + (" ..." if len(labels) > 12 else "")
    return f"{name}: {info['path']}: {info['rows']:,} rows" + (f"; labels: {shown}" if labels else "")


def text_of(example: dict[str, Any]) -> str:
    """The text an example is read from: its text (and text pair), tokens, question and context, or the texts of
    an embedding pair (anchor, positive, negative)."""
    if "anchor" in example:
        return "\n".join(example[k] for k in ("anchor", "positive", "negative") if k in example)
    if "text" in example:
        return example["text"] + (f"\n{example['text_pair']}" if example.get("text_pair") else "")
    if "tokens" in example:
        return " ".join(example["tokens"])
    if "question" in example:
        return f"{example['question']}\n{example.get('context', '')}"
    return ""


def labels_of(example: dict[str, Any]) -> tuple[str, ...]:
    """The example's labels as names: a class, the classes of a multi-label row, or the entity types of its
    tags (B-PER -> PER); () for a task without labels."""
    label = example.get("label")
    if isinstance(label, (list, tuple)):
        return tuple(sorted(str(x) for x in label))
    if label is not None:
        return (str(label),)
    if example.get("tags"):
        return tuple(sorted({t.split("-", 1)[-1] for t in example["tags"] if t != "O"}))
    return ()


_NOT_WORD = re.compile(r"[\W_]+")


def near_key(text: str) -> str:
    """What two texts share when they differ only in case, accents, spacing or punctuation."""
    text = unicodedata.normalize("NFKD", text.casefold())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return _NOT_WORD.sub(" ", text).strip()


def _label_counts(examples: Sequence[dict[str, Any]]) -> dict[str, int]:
    counts: Counter = Counter()
    for ex in examples:
        label = ex.get("label")
        if isinstance(label, (list, tuple)):
            counts.update(str(x) for x in label)
        elif label is not None:
            counts[str(label)] += 1
        elif ex.get("tags"):
            counts.update(t.split("-", 1)[-1] for t in ex["tags"] if t.startswith("B-"))
    return dict(counts.most_common())


def check_examples(train: Sequence[dict[str, Any]], dev: Sequence[dict[str, Any]] | None, *, train_source: str,
                   dev_source: str | None = None, tokenizer: Any = None, window: int | None = None,
                   lengths: Sequence[int] | None = None, problem: str | None = None) -> DataReport:
    """The findings on `train` (and `dev`): pure, given the examples as a task reads them, the tokenizer and the
    window (for lengths and unknown tokens), and the tokenised `lengths` of (a sample of) the training
    examples, when measured."""
    findings: list[Finding] = []
    counts = _label_counts(train)
    info = {"path": train_source, "rows": len(train), "labels": counts}
    if counts and problem != "regression":
        rarest, commonest = min(counts.values()), max(counts.values())
        info["imbalance"] = commonest / rarest
        if len(counts) == 1 and problem in (None, "single_label"):
            findings.append(Finding("error", "one_class", f"every training row has the label {next(iter(counts))!r}: "
                                    "a classifier needs at least two classes; add rows of the others", len(train)))
        elif commonest / rarest >= IMBALANCE_WARNING:
            rare = [k for k, v in counts.items() if v == rarest][:3]
            findings.append(Finding("warning", "imbalance", f"the commonest label is {commonest / rarest:.0f} times "
                                    f"as frequent as the rarest ({', '.join(map(repr, rare))}: {rarest}); accuracy "
                                    "will hide how the rare ones fare: read the per-class scores, or set "
                                    "--class-weights auto", rarest))
    findings += _duplicates(train, "training")
    dev_info = None
    if dev is not None:
        dev_info = {"path": dev_source, "rows": len(dev), "labels": _label_counts(dev)}
        findings += _duplicates(dev, "dev") + _leakage(train, dev)
        unseen = sorted(set(dev_info["labels"]) - set(counts))
        if unseen and problem != "regression":
            findings.append(Finding("error", "unseen_labels", f"dev labels that training never has: "
                                    f"{', '.join(map(repr, unseen[:10]))}; they can never be predicted", len(unseen)))
    length_info = None
    if lengths and window:
        ordered = sorted(lengths)
        over = sum(1 for n in ordered if n > window)
        length_info = {"window": window, "measured": len(ordered), "median": ordered[len(ordered) // 2],
                       "p90": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], "longest": ordered[-1],
                       "over_window_share": over / len(ordered)}
        if over:
            findings.append(Finding("info", "long_inputs", f"{100 * over / len(ordered):.1f}% of the training inputs "
                                    f"measured are longer than the window of {window} tokens: bertkit reads them in "
                                    "windows (--long-inputs windows, the default) or says what it cut", over))
    cov = coverage(list(train), tokenizer) if tokenizer is not None else None
    if cov and cov["unknown_share"] > UNKNOWN_WARNING:
        findings.append(Finding("warning", "unknown_tokens", f"the tokenizer does not know "
                                f"{100 * cov['unknown_share']:.1f}% of the tokens (most often "
                                f"{' '.join(cov['top_unknown'][:8])}): use a model whose vocabulary covers this text, "
                                "or extend it (bertkit pretrain --extend-vocab)"))
    return DataReport(info, dev_info, findings, length_info,
                      {k: cov[k] for k in ("unknown_share", "tokens")} if cov else None)


def _duplicates(examples: Sequence[dict[str, Any]], name: str) -> list[Finding]:
    """Exact duplicates (same text, same labels), near duplicates (the same text but for case, accents,
    spacing or punctuation) and the same text with different labels."""
    exact: dict[tuple[str, tuple[str, ...]], list[str]] = defaultdict(list)
    near: dict[str, list[tuple[str, tuple[str, ...], str]]] = defaultdict(list)
    for ex in examples:
        text, labels = text_of(ex), labels_of(ex)
        exact[(text, labels)].append(ex.get("where", "?"))
        near[near_key(text)].append((text, labels, ex.get("where", "?")))
    out = []
    repeats = [rows for rows in exact.values() if len(rows) > 1]
    if repeats:
        extra = sum(len(r) - 1 for r in repeats)
        out.append(Finding("warning", "duplicates", f"{extra:,} {name} rows repeat an earlier row exactly "
                           f"({len(repeats):,} texts): they weigh double in training and, split into dev, score "
                           "text the model learned; drop the repeats", extra, [r[1] for r in repeats[:SHOWN]]))
    near_groups = [g for g in near.values() if len({t for t, _, _ in g}) > 1]
    if near_groups:
        extra = sum(len({t for t, _, _ in g}) - 1 for g in near_groups)
        out.append(Finding("warning", "near_duplicates", f"{extra:,} {name} rows are near duplicates (the same text "
                           "but for case, accents, spacing or punctuation)", extra,
                           [g[1][2] for g in near_groups[:SHOWN]]))
    conflicts = [g for g in near.values() if len({labels for _, labels, _ in g}) > 1]
    if conflicts:
        rows = sum(len(g) for g in conflicts)
        out.append(Finding("warning", "conflicting_labels", f"{len(conflicts):,} {name} texts carry different labels "
                           f"in different rows ({rows:,} rows): at most one label of each can be right; fix or drop "
                           "them", len(conflicts), [f"{g[0][2]} / {g[1][2]}" for g in conflicts[:SHOWN]]))
    return out


def _leakage(train: Sequence[dict[str, Any]], dev: Sequence[dict[str, Any]]) -> list[Finding]:
    """Dev rows whose text (up to case, accents, spacing and punctuation) is also a training text."""
    seen = {near_key(text_of(ex)) for ex in train}
    leaked = [ex.get("where", "?") for ex in dev if near_key(text_of(ex)) in seen]
    if not leaked:
        return []
    share = len(leaked) / max(1, len(dev))
    if share >= 0.5:
        return [Finding("error", "leakage", f"{100 * share:.0f}% of the dev rows are also training texts: the dev "
                        "figures would measure memory, not the model; give a dev set of other texts", len(leaked),
                        leaked[:SHOWN])]
    return [Finding("warning", "leakage", f"{len(leaked):,} dev rows ({100 * share:.1f}%) are also training texts: "
                    "they flatter the dev figures; drop them from one side", len(leaked), leaked[:SHOWN])]
