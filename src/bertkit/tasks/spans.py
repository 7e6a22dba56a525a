"""Character spans of tokens as every tokenizer family gives them: WordPiece offsets are the word's own
characters, but a byte-level BPE (RoBERTa, ModernBERT) or SentencePiece (XLM-R, ALBERT, DeBERTa-v3) piece
carries the space before it. NER words and entities and QA answers are built from these helpers, so they
slice the input exactly whatever the model."""

from __future__ import annotations

import json

__all__ = ["trim_span", "spaces_words"]


def trim_span(text: str, span: tuple[int, int]) -> tuple[int, int]:
    """A token's character span without the whitespace some tokenizers fold into it (the space before a
    byte-level BPE or SentencePiece piece), so that it slices exactly the token's text. A span of only
    whitespace keeps its start, empty."""
    start, end = span
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def spaces_words(tokenizer) -> bool:
    """Whether words handed over one by one (`is_split_into_words`) must carry their leading space to be
    encoded as inside a text: a byte-level BPE pre-tokenizer (RoBERTa, ModernBERT) that adds none itself.
    WordPiece ignores the space and SentencePiece's Metaspace adds its own."""
    cached = getattr(tokenizer, "_bertkit_spaces_words", None)
    if cached is None:
        try:
            pre = json.loads(tokenizer.backend_tokenizer.to_str()).get("pre_tokenizer") or {}
        except (AttributeError, ValueError):
            pre = {}
        parts = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
        cached = any(p.get("type") == "ByteLevel" and not p.get("add_prefix_space") for p in parts)
        tokenizer._bertkit_spaces_words = cached
    return cached
