"""Inputs longer than the model's window, for tasks that label a whole text: read in overlapping windows
(each scored, the scores combined per text), cut to its head and tail, or cut at the window.

The windows are the tokenizer's own overflow (`return_overflowing_tokens` with a stride), so every token
of the text is read exactly as a single pass would tokenise it. For a pair of texts the longer one is
windowed and the other kept whole in every window (cut to half the window when it is longer than that).
Every feature says which example it belongs to (`example_index`), how many content tokens that example has
(`tokens`) and how many of them no feature reads (`cut`), so that whatever is cut can be said.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bertkit.errors import ConfigError

__all__ = ["MODES", "encode", "default_stride", "LengthSummary", "summarise", "combine_windows", "notes",
           "input_lengths", "example_tokens", "HISTOGRAM_EDGES", "cut_text"]

#: Bin edges (tokens) of the length histogram a run records of its training inputs.
HISTOGRAM_EDGES = (0, 32, 64, 128, 256, 384, 512, 768, 1024, 2048, 4096)

MODES = ("windows", "head-tail", "truncate")


def default_stride(window: int) -> int:
    """Tokens consecutive windows share when none is given: a quarter of the window, so that a sentence cut
    by one window's edge is read whole by the next."""
    return window // 4


def encode(tokenizer: Any, texts: Sequence[str], pairs: Sequence[str] | None, window: int, mode: str,
           stride: int | None = None) -> list[dict[str, Any]]:
    """Features of `texts` (and `pairs`) for a window of `window` tokens, specials included."""
    if mode not in MODES:
        raise ConfigError(f"task.long_inputs {mode!r}: choose one of {', '.join(MODES)}")
    if pairs is not None:
        if mode == "head-tail":
            raise ConfigError("task.long_inputs head-tail cuts one text; a model of text pairs reads a long pair in "
                              "windows (the default) or cut at the window (truncate)")
        return _pairs(tokenizer, texts, pairs, window, mode, stride)
    specials = tokenizer.num_special_tokens_to_add(pair=False)
    room = window - specials
    step = 0 if mode != "windows" else min(default_stride(window) if stride is None else stride, room // 2)
    enc = tokenizer(list(texts), truncation=True, max_length=window, stride=step, return_overflowing_tokens=True,
                    return_attention_mask=False, return_special_tokens_mask=mode == "head-tail")
    groups: list[list[int]] = [[] for _ in texts]
    for j, i in enumerate(enc["overflow_to_sample_mapping"]):
        groups[i].append(j)
    features = []
    for i, rows in enumerate(groups):
        content = [len(enc["input_ids"][j]) - specials for j in rows]
        total = content[0] + sum(c - step for c in content[1:])  # the text's tokens, each counted once
        if mode == "windows":
            features += [_feature(enc, j, i, total + specials, 0) for j in rows]
        elif mode == "truncate" or len(rows) == 1:
            features.append(_feature(enc, rows[0], i, total + specials, total - content[0]))
        else:
            features.append(_head_tail(enc, rows, i, total, room))
    return features


def _feature(enc: Any, j: int, example: int, total: int, cut: int) -> dict[str, Any]:
    feat = {"input_ids": enc["input_ids"][j], "example_index": example, "tokens": total, "cut": cut}
    if "token_type_ids" in enc:
        feat["token_type_ids"] = enc["token_type_ids"][j]
    return feat


def _head_tail(enc: Any, rows: list[int], example: int, total: int, room: int) -> dict[str, Any]:
    """The first quarter of the window from the text's head, the rest from its tail (Sun et al., 2019: 128
    + 382 tokens read IMDB best of the cuts they tried), between the first window's special tokens."""
    first, mask = enc["input_ids"][rows[0]], enc["special_tokens_mask"][rows[0]]
    lead = next(k for k, m in enumerate(mask) if not m)
    trail = len(mask) - next(k for k, m in enumerate(reversed(mask)) if not m)
    content = [t for j in rows for t, m in zip(enc["input_ids"][j], enc["special_tokens_mask"][j]) if not m]
    head = room // 4
    ids = first[:lead] + content[:head] + content[len(content) - (room - head):] + first[trail:]
    feat = {"input_ids": ids, "example_index": example, "tokens": total + len(ids) - room, "cut": total - room}
    if "token_type_ids" in enc:
        feat["token_type_ids"] = [enc["token_type_ids"][rows[0]][0]] * len(ids)
    return feat


def _pairs(tokenizer: Any, texts: Sequence[str], pairs: Sequence[str], window: int, mode: str,
           stride: int | None) -> list[dict[str, Any]]:
    """Windows over the longer text of each pair, the other whole (or cut to half the window) in each."""
    sides = (list(texts), list(pairs))
    lengths = [[len(ids) for ids in tokenizer(side, add_special_tokens=False)["input_ids"]] for side in sides]
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    room = window - specials
    features: list[dict[str, Any]] = []
    for side in (0, 1):  # the side that is windowed: the longer one (the first on a tie)
        idx = [i for i, (a, b) in enumerate(zip(*lengths)) if (a >= b) == (side == 0)]
        if not idx:
            continue
        other = 1 - side
        # the lengths are known: only a kept text past half the window is tokenised again, to cut it
        kept = [(sides[other][i], lengths[other][i]) if lengths[other][i] <= room // 2
                else cut_text(tokenizer, sides[other][i], room // 2) for i in idx]
        long = [sides[side][i] for i in idx]
        first, second = (long, [k for k, _ in kept]) if side == 0 else ([k for k, _ in kept], long)
        step = 0 if mode == "truncate" else min(default_stride(window) if stride is None else stride,
                                                 (room - max(n for _, n in kept)) // 2)
        enc = tokenizer(first, second, truncation="only_first" if side == 0 else "only_second", max_length=window,
                        stride=step, return_overflowing_tokens=True, return_attention_mask=False)
        taken: set[int] = set()
        for j, local in enumerate(enc["overflow_to_sample_mapping"]):
            i = idx[local]
            if mode == "truncate" and i in taken:
                continue  # truncate keeps the first window only
            taken.add(i)
            cut = lengths[other][i] - kept[local][1]
            if mode == "truncate":
                cut += max(0, lengths[side][i] - (room - kept[local][1]))
            features.append(_feature(enc, j, i, lengths[0][i] + lengths[1][i] + specials, cut))
    features.sort(key=lambda f: f["example_index"])  # stable: each example's windows stay in order
    return features


def cut_text(tokenizer: Any, text: str, limit: int) -> tuple[str, int]:
    """(the text, its tokens) cut at a token boundary to at most `limit` tokens (a pair's kept text, a QA
    question)."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    if len(enc["input_ids"]) <= limit:
        return text, len(enc["input_ids"])
    return text[: enc["offset_mapping"][limit - 1][1]], limit


def input_lengths(examples: Sequence[dict[str, Any]], tokenizer: Any, sample: int = 4000) -> list[int]:
    """Tokens (specials included) of each of at most `sample` examples, drawn evenly through the list: enough
    to place a percentile within a few tokens, at a fraction of tokenising a large set."""
    step = max(1, len(examples) // sample)
    chosen = examples[::step][:sample]
    texts = [ex["text"] for ex in chosen]
    pairs = [ex["text_pair"] for ex in chosen] if chosen and "text_pair" in chosen[0] else None
    enc = tokenizer(texts, pairs, truncation=False, return_attention_mask=False, verbose=False)
    return [len(ids) for ids in enc["input_ids"]]


def combine_windows(outputs: Sequence[np.ndarray], features: Sequence[dict[str, Any]], n_examples: int
                    ) -> np.ndarray:
    """One row of outputs per example: the mean of its windows' logits (for a softmax, the normalised
    geometric mean of their probabilities; for regression, the mean value)."""
    if not outputs:
        return np.zeros((0, 1), dtype=np.float32)
    sums = np.zeros((n_examples, *np.shape(outputs[0])), dtype=np.float64)
    counts = np.zeros(n_examples)
    for out, f in zip(outputs, features):
        sums[f["example_index"]] += out
        counts[f["example_index"]] += 1
    if (counts == 0).any():
        raise AssertionError(f"examples without a window: {np.flatnonzero(counts == 0)[:5].tolist()}")
    return (sums / counts.reshape(-1, *([1] * (sums.ndim - 1)))).astype(np.float32)


def notes(features: Sequence[dict[str, Any]], n_examples: int) -> list[dict[str, int]]:
    """Per example, what a prediction says of its length: `windows` (when more than one was read) and
    `cut_tokens` (when some of it was not read)."""
    out: list[dict[str, int]] = [{} for _ in range(n_examples)]
    windows = np.zeros(n_examples, dtype=int)
    for f in features:
        windows[f["example_index"]] += 1
        if f.get("cut"):
            out[f["example_index"]]["cut_tokens"] = int(f["cut"])
    for i, n in enumerate(windows):
        if n > 1:
            out[i]["windows"] = int(n)
    return out


@dataclass(frozen=True)
class LengthSummary:
    """The tokenised lengths of a set of examples against the window they are read with."""

    examples: int
    window: int
    median: int
    p90: int
    longest: int
    over_window: int  # examples longer than the window
    windows: int  # features made in all
    cut_examples: int  # examples of which some tokens are read by no feature
    cut_tokens: int
    histogram: tuple[int, ...] = ()  # inputs per bin of HISTOGRAM_EDGES (the last bin: from its edge up)

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "over_window_share": self.over_window / self.examples if self.examples else 0.0}

    def line(self, what: str, mode: str) -> str | None:
        """The one line that says what happened to the long inputs, or None when none was long."""
        if not self.over_window:
            return None
        share = f"{self.over_window:,} of {self.examples:,} {what} ({100 * self.over_window / self.examples:.1f}%)"
        if self.cut_examples:
            return (f"{share} are longer than the window of {self.window} tokens (median {self.median}, longest "
                    f"{self.longest}): {self.cut_tokens:,} tokens of {self.cut_examples:,} of them are not read "
                    f"(task.long_inputs {mode}); --long-inputs windows reads every token")
        return (f"{share} are longer than the window of {self.window} tokens (median {self.median}, longest "
                f"{self.longest}): read whole in {self.windows:,} windows for {self.examples:,} inputs "
                f"(task.long_inputs windows)")


def summarise(features: Sequence[dict[str, Any]], window: int) -> LengthSummary:
    """The lengths of the examples behind `features` (made by `encode`; `tokens` counts the special tokens a
    single pass would add)."""
    tokens: dict[int, int] = {}
    cut: dict[int, int] = {}
    for f in features:
        tokens[f["example_index"]] = int(f["tokens"])
        cut[f["example_index"]] = max(cut.get(f["example_index"], 0), int(f.get("cut", 0)))
    lengths = np.array(list(tokens.values()), dtype=int)
    if not len(lengths):
        return LengthSummary(0, window, 0, 0, 0, 0, 0, 0, 0)
    over = int((lengths > window).sum())
    counts = np.histogram(lengths, bins=[*HISTOGRAM_EDGES, max(int(lengths.max()), HISTOGRAM_EDGES[-1]) + 1])[0]
    return LengthSummary(examples=len(lengths), window=window, median=int(np.median(lengths)),
                         p90=int(np.percentile(lengths, 90)), longest=int(lengths.max()), over_window=over,
                         windows=len(features), cut_examples=sum(1 for c in cut.values() if c > 0),
                         cut_tokens=sum(cut.values()), histogram=tuple(int(c) for c in counts))


def example_tokens(features: Sequence[dict[str, Any]], n_examples: int) -> list[int]:
    """Each example's tokens (specials included), from its features."""
    out = [0] * n_examples
    for f in features:
        out[f["example_index"]] = int(f["tokens"])
    return out
