"""Unlabelled text for masked-language-model pre-training: plain text (one document per line), JSONL,
or any table format, gzip read transparently; several files, folders and glob patterns at once."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bertkit.data.readers import Table, iter_table, text_lines
from bertkit.errors import DataError

__all__ = ["expand_paths", "read_documents", "iter_documents", "table_documents", "TEXT_SUFFIXES"]

TEXT_SUFFIXES = (".txt", ".text", ".md")


def expand_paths(spec: str) -> list[Path]:
    """The files named by `spec`: paths joined with os.pathsep, each a file, a folder or a glob pattern."""
    files: list[Path] = []
    for part in filter(None, spec.split(os.pathsep)):
        p = Path(part).expanduser()
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
        elif any(c in part for c in "*?["):
            found = sorted(Path(f) for f in glob.glob(part, recursive=True) if Path(f).is_file())
        else:
            found = [p]
        if not found:
            raise DataError(f"{part}: no files match; check the path or pattern")
        files.extend(found)
    if not files:
        raise DataError("no training text given; set data.train to one or more files")
    return files


def _is_plain_text(path: Path, fmt: str | None) -> bool:
    name = path.name.lower().removesuffix(".gz")
    return fmt is None and (Path(name).suffix in TEXT_SUFFIXES or Path(name).suffix == "")


def read_documents(spec: str, *, fmt: str | None, encoding: str, text_column: str) -> list[dict[str, Any]]:
    """Documents `{"where", "text"}` from every file of `spec`; blank lines and empty texts are skipped.

    Raises:
        DataError: a missing or unreadable file, a table without `text_column`, or no text at all.
    """
    return [doc for chunk in iter_documents(spec, fmt=fmt, encoding=encoding, text_column=text_column)
            for doc in chunk]


def iter_documents(spec: str, *, fmt: str | None, encoding: str, text_column: str,
                   chunk_rows: int | None = None) -> Iterator[list[dict[str, Any]]]:
    """`read_documents` in chunks of at most `chunk_rows` documents, read from disk as they are needed."""
    for path in expand_paths(spec):
        if not path.is_file():
            raise DataError(f"{path}: file not found; check the path")
        found = False
        if _is_plain_text(path, fmt):
            chunk: list[dict[str, Any]] = []
            for number, line in enumerate(text_lines(path, encoding), start=1):
                if "\x00" in line:
                    raise DataError(f"{path}:{number}: NUL byte in the text; is this a binary file?")
                line = line.rstrip("\r\n")
                if line.strip():
                    chunk.append({"where": f"{path}:{number}", "text": line})
                    if chunk_rows is not None and len(chunk) >= chunk_rows:
                        found = True
                        yield chunk
                        chunk = []
            if chunk:
                found = True
                yield chunk
        else:
            for table in iter_table(path, fmt, encoding, chunk_rows):
                docs = table_documents(table, text_column)
                if docs:
                    found = True
                    yield docs
        if not found:
            raise DataError(f"{path}: no text found; a pre-training file needs at least one non-empty document")


def table_documents(table: Table, text_column: str) -> list[dict[str, Any]]:
    """Documents `{"where", "text"}` from the non-empty cells of `text_column`.

    Raises:
        DataError: the column is missing (listing those found) or holds something that is not text.
    """
    table.require(text_column, "data.text_column")
    docs = []
    for i, row in enumerate(table.rows):
        value = row.get(text_column)
        if value is not None and not isinstance(value, str):
            raise DataError(f"{table.where(i)}: column '{text_column}' holds {type(value).__name__} {value!r}, "
                            "not text")
        if value and value.strip():
            docs.append({"where": table.where(i), "text": value})
    return docs
