"""Tag schemes, entity extraction and entity-level metrics for sequence labelling (pure functions).

Internally every sequence is IOB2 (BIO). Entity extraction follows seqeval exactly: the default mode is
the conlleval logic (an `I-X` after `O` opens an entity), the strict mode accepts only chunks that start
with `B-X` and continue with `I-X`. Both are oracle-tested against seqeval.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence

import numpy as np

from bertkit.errors import DataError

__all__ = ["SCHEMES", "split_tag", "detect_scheme", "to_bio", "get_entities", "entity_scores", "bio_labels",
           "bio_decode"]

SCHEMES = ("auto", "iob1", "iob2", "iobes", "bilou")


def split_tag(tag: str) -> tuple[str, str]:
    """("B", "PER") for "B-PER"; ("O", "") for "O"; a bare type "PER" (IO scheme) reads as ("I", "PER")."""
    if tag == "O":
        return "O", ""
    if len(tag) > 2 and tag[1] == "-" and tag[0] in "BIESLU":
        return tag[0], tag[2:]
    return "I", tag


def detect_scheme(sequences: Sequence[Sequence[str]]) -> str:
    """The scheme that explains the tags: iobes/bilou by their prefixes, iob1 when entities open with I-."""
    prefixes = Counter(split_tag(t)[0] for seq in sequences for t in seq)
    if prefixes["E"] or prefixes["S"]:
        return "iobes"
    if prefixes["L"] or prefixes["U"]:
        return "bilou"
    opens_with_b = opens_with_i = 0
    for seq in sequences:
        prev = ""
        for tag in seq:
            prefix, kind = split_tag(tag)
            if prefix != "O" and kind != prev:
                opens_with_b += prefix == "B"
                opens_with_i += prefix == "I"
            prev = kind
    return "iob1" if opens_with_i and not opens_with_b else "iob2"


def to_bio(tags: Sequence[str], scheme: str, *, repair: bool = True, where: str = "",
           repaired: list[int] | None = None) -> list[str]:
    """Convert one sequence to IOB2. An `I-X` that opens an entity in IOB2 input is made `B-X` when
    `repair` (its index appended to `repaired` when given), else rejected with a DataError naming `where`."""
    out, prev = [], ""
    for i, tag in enumerate(tags):
        prefix, kind = split_tag(tag)
        if prefix == "O":
            out.append("O")
        elif scheme == "iob1":
            out.append(f"I-{kind}" if prefix == "I" and prev == kind else f"B-{kind}")
        elif scheme in ("iobes", "bilou"):
            out.append(f"B-{kind}" if prefix in "BSU" else f"I-{kind}")
        else:  # iob2
            if prefix != "B" and prev != kind:
                if not repair:
                    raise DataError(
                        f"{where}: tag {i + 1} '{tag}' continues an entity that never started (after "
                        f"'{tags[i - 1] if i else 'the sentence start'}'); fix the tags, give the right "
                        "task.tag_scheme, or set task.invalid_tags to repair to make it B-"
                    )
                out.append(f"B-{kind}")
                if repaired is not None:
                    repaired.append(i)
            else:
                out.append(f"{'B' if prefix == 'B' else 'I'}-{kind}")
        prev = kind
    return out


def bio_labels(types: Sequence[str]) -> list[str]:
    """The label list of a tagger: O, then B- and I- of each entity type in sorted order."""
    return ["O"] + [f"{p}-{t}" for t in sorted(set(types)) for p in ("B", "I")]


@functools.lru_cache(maxsize=16)
def _bio_constraints(labels: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Which labels are `I-X` (no sequence opens with one), and the transition penalty [previous, current]:
    0 where `I-X` follows `B-X` or `I-X` or the current label is not `I-`, else -inf. Built once per label set,
    not per sentence."""
    parts = [split_tag(t) for t in labels]
    inside = np.array([p == "I" for p, _ in parts])
    allowed = np.ones((len(labels), len(labels)), dtype=bool)
    for j, (prefix, kind) in enumerate(parts):
        if prefix == "I":
            allowed[:, j] = [p in ("B", "I") and k == kind for p, k in parts]
    penalty = np.where(allowed, 0.0, -np.inf)
    inside.flags.writeable = penalty.flags.writeable = False  # shared by every call with these labels
    return inside, penalty


def bio_decode(log_probs: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """The best valid IOB2 sequence (label ids) for per-word log-probabilities (n, L): the highest summed
    log-probability among sequences where every `I-X` follows `B-X` or `I-X` (Viterbi). A tagger trained with
    cross-entropy scores each word alone, and its argmax can open an entity with `I-X` or switch type inside
    one; this reads the same scores as one sequence."""
    n, n_labels = log_probs.shape
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    inside, penalty = _bio_constraints(tuple(labels))
    score = np.where(inside, -np.inf, log_probs[0].astype(np.float64))
    back = np.zeros((n, n_labels), dtype=np.int64)
    for i in range(1, n):
        total = score[:, None] + penalty  # (previous, current)
        back[i] = total.argmax(0)
        score = total[back[i], np.arange(n_labels)] + log_probs[i]
    path = np.zeros(n, dtype=np.int64)
    path[-1] = int(score.argmax())
    for i in range(n - 1, 0, -1):
        path[i - 1] = back[i, path[i]]
    return path


def get_entities(tags: Sequence[str], strict: bool = False) -> list[tuple[str, int, int]]:
    """Entities (type, first, last) of one IOB2 sequence, inclusive, as seqeval finds them."""
    entities = []
    if strict:  # a chunk is B-X followed by I-X of the same type; anything else is not an entity
        i = 0
        while i < len(tags):
            prefix, kind = split_tag(tags[i])
            if prefix == "B":
                j = i + 1
                while j < len(tags) and split_tag(tags[j]) == ("I", kind):
                    j += 1
                entities.append((kind, i, j - 1))
                i = j
            else:
                i += 1
        return entities
    prev_prefix, prev_kind, begin = "O", "", 0
    for i, tag in enumerate([*tags, "O"]):
        prefix, kind = split_tag(tag)
        # conlleval: a chunk ends when the tag is B or O after B/I, or the type changes
        if prev_prefix != "O" and (prefix in ("B", "O") or prev_kind != kind):
            entities.append((prev_kind, begin, i - 1))
        if prefix == "B" or (prefix != "O" and (prev_prefix == "O" or prev_kind != kind)):
            begin = i
        prev_prefix, prev_kind = prefix, kind
    return entities


def entity_scores(refs: Sequence[Sequence[str]], preds: Sequence[Sequence[str]], strict: bool = False
                  ) -> dict[str, float]:
    """Micro precision/recall/F1 over all entities, and per type (`PER_f1`...), as seqeval computes them."""
    true, pred = set(), set()
    for n, (r, p) in enumerate(zip(refs, preds)):
        true.update((n, *e) for e in get_entities(r, strict))
        pred.update((n, *e) for e in get_entities(p, strict))
    scores = _prf(len(true & pred), len(pred), len(true))
    for kind in sorted({e[1] for e in true | pred}):
        t = {e for e in true if e[1] == kind}
        p = {e for e in pred if e[1] == kind}
        for key, value in _prf(len(t & p), len(p), len(t)).items():
            scores[f"{kind}_{key}"] = value
    return scores


def _prf(correct: int, predicted: int, gold: int) -> dict[str, float]:
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}
