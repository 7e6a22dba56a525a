"""CoNLL column files: one token per line, blank lines between sentences, `-DOCSTART-` between documents."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path

from bertkit.data.readers import read_text
from bertkit.errors import DataError
from bertkit.io import split_lines

__all__ = ["Sentence", "read_conll"]


@dataclass
class Sentence:
    tokens: list[str]
    tags: list[str] | None
    line: int  # line of the first token
    doc: int  # document number (counts -DOCSTART- lines)


def read_conll(path: str | Path, *, token_index: int = 0, tag_index: int = -1, encoding: str = "utf-8",
               with_tags: bool = True) -> list[Sentence]:
    """Sentences of a CoNLL file (gzip allowed). Columns are split on whitespace; every token line must
    have as many columns as the first one.

    Raises:
        DataError: missing or unreadable file, a ragged line, or a file without sentences (file:line).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: file not found; check the path")
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    start, doc, width = 0, 0, None

    def close() -> None:
        nonlocal tokens, tags
        if tokens:
            sentences.append(Sentence(tokens, tags if with_tags else None, start, doc))
        tokens, tags = [], []

    for n, raw in enumerate(split_lines(read_text(p, encoding)), start=1):
        line = raw.strip()
        if "\x00" in line:
            raise DataError(f"{p}:{n}: NUL byte in the line; the file looks binary or corrupt")
        if not line:
            close()
            continue
        if line.startswith("-DOCSTART-"):
            close()
            doc += 1
            continue
        columns = line.split()
        if width is None:
            width = len(columns)
            needed = max(token_index if token_index >= 0 else -token_index - 1,
                         (tag_index if tag_index >= 0 else -tag_index - 1) if with_tags else 0) + 1
            if width < needed or (with_tags and width < 2):
                raise DataError(f"{p}:{n}: {width} column(s), but the token and tag columns need {max(needed, 2)}; "
                                "check data.format, data.token_index and data.tag_index")
        elif len(columns) != width:
            odd = sorted({ch for ch in line.strip() if ch.isspace() and ch not in " \t"})
            if odd:
                named = ", ".join(f"U+{ord(ch):04X} ({unicodedata.name(ch, 'a space character')})" for ch in odd)
                raise DataError(f"{p}:{n}: {len(columns)} columns where earlier lines have {width}: the line holds "
                                f"{named}, which separates columns like a space; replace it in the token (with "
                                "nothing, '_' or a plain character)")
            raise DataError(f"{p}:{n}: {len(columns)} columns where earlier lines have {width}; "
                            "a token with a space, or a missing tag?")
        if not tokens:
            start = n
        tokens.append(columns[token_index])
        if with_tags:
            tags.append(columns[tag_index])
    close()
    if not sentences:
        raise DataError(f"{p}: no sentences found; is it a CoNLL file (one token per line)?")
    return sentences
