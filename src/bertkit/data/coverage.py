"""How much of a text a tokenizer can represent: the share of tokens it maps to its unknown token (with the
text behind them), and the share of characters its normaliser removes or replaces (accents stripped,
control characters dropped; case aside). Measured on every run's training data and, against that, on the
files given to `bertkit evaluate` and `bertkit predict`."""

from __future__ import annotations

from collections import Counter
from typing import Any

__all__ = ["UNKNOWN_WARNING", "coverage", "example_texts", "far_above"]

#: Above this share of unknown tokens a run warns that the model cannot read its text.
UNKNOWN_WARNING = 0.02


def example_texts(examples: list[dict[str, Any]], sample: int = 2000) -> list[str]:
    """The text of up to `sample` examples: their string fields and token lists."""
    texts = []
    for ex in examples[:sample]:
        for key, value in ex.items():
            if key == "where":
                continue
            if isinstance(value, str):
                texts.append(value)
            elif isinstance(value, list) and value and all(isinstance(v, str) for v in value) and key == "tokens":
                texts.append(" ".join(value))
    return texts


def coverage(examples: list[dict[str, Any]], tokenizer: Any, sample: int = 2000) -> dict[str, Any]:
    """{"unknown_share", "tokens", "top_unknown", "normalised_away", "top_normalised"} over up to `sample`
    examples: the share of tokens that are the unknown token and the text most often behind them; the
    share of (non-space) characters the normaliser removes or replaces, and the commonest of them."""
    texts = example_texts(examples, sample)
    result = {"unknown_share": 0.0, "tokens": 0, "top_unknown": [], **_normalised(texts, tokenizer)}
    if not texts or tokenizer.unk_token_id is None:
        return result
    tokenizer.deprecation_warnings["sequence-length-is-longer-than-the-specified-maximum"] = True  # only counted
    enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    unknown, total = Counter(), 0
    for text, ids, offsets in zip(texts, enc["input_ids"], enc["offset_mapping"]):
        total += len(ids)
        unknown.update(text[s:e] for i, (s, e) in zip(ids, offsets) if i == tokenizer.unk_token_id)
    share = sum(unknown.values()) / total if total else 0.0
    return {**result, "unknown_share": round(share, 4), "tokens": total,
            "top_unknown": [t for t, _ in unknown.most_common(20)]}


def _normalised(texts: list[str], tokenizer: Any) -> dict[str, Any]:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    normalizer = getattr(backend, "normalizer", None)
    chars = Counter(ch for text in texts for ch in text if not ch.isspace())
    total = sum(chars.values())
    if normalizer is None or not total:
        return {"normalised_away": 0.0, "top_normalised": []}
    changed = Counter()
    for ch, n in chars.items():
        out = normalizer.normalize_str(ch).strip()
        if out.casefold() != ch.casefold():
            changed[ch] = n
    return {"normalised_away": round(sum(changed.values()) / total, 4),
            "top_normalised": [c for c, _ in changed.most_common(10)]}


def far_above(share: float, trained: float | None) -> bool:
    """Whether an input's unknown-token share is far above training's: above the warning threshold and
    three times training's share (when that is known)."""
    return share > UNKNOWN_WARNING and (trained is None or share > 3 * trained)
