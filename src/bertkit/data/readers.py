"""Readers for tabular task data: CSV, TSV, JSONL and Parquet, gzip read transparently.

Readers return rows as dicts with the file line (or Parquet row) each came from, so that later checks can
name `file:line`. They never split, strip or normalise text: that is the tokenizer's job, and it keeps
text in any language (Chinese included) exactly as written.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertkit.errors import DataError

__all__ = ["Table", "read_table", "read_text", "detect_format", "FORMATS"]

FORMATS = ("csv", "tsv", "jsonl", "parquet")
_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
               ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


@dataclass
class Table:
    """Rows of one file. `lines[i]` is where `rows[i]` starts (1-based line, or row for Parquet)."""

    path: str
    columns: list[str]
    rows: list[dict[str, Any]]
    lines: list[int]
    unit: str = "line"

    def where(self, i: int) -> str:
        return f"{self.path}:{self.lines[i]}" if self.unit == "line" else f"{self.path} row {self.lines[i]}"


def detect_format(path: str | Path, given: str | None = None) -> str:
    """The format named by `given`, else by the extension (ignoring a trailing .gz)."""
    if given:
        if given not in FORMATS:
            raise DataError(f"unknown format '{given}'; choose one of {', '.join(FORMATS)}")
        return given
    name = Path(path).name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    suffix = Path(name).suffix
    if suffix not in _EXTENSIONS:
        raise DataError(
            f"{path}: cannot tell the format from the extension '{suffix or '(none)'}'; "
            f"pass --format with one of {', '.join(FORMATS)}"
        )
    return _EXTENSIONS[suffix]


def read_table(path: str | Path, fmt: str | None = None, encoding: str = "utf-8") -> Table:
    """Read a whole data file into a `Table`.

    Raises:
        DataError: the file is missing, empty, undecodable or malformed (naming file and line).
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: file not found; check the path (relative paths start at {Path.cwd()})")
    if p.is_dir():
        raise DataError(f"{p}: is a directory; pass a data file")
    fmt = detect_format(p, fmt)
    if fmt == "parquet":
        table = _read_parquet(p)
    else:
        text = read_text(p, encoding)
        table = _read_jsonl(p, text) if fmt == "jsonl" else _read_delimited(p, text, fmt)
    if not table.rows:
        raise DataError(f"{p}: the file has no data rows; a header line alone is not enough")
    return table


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def read_text(path: Path, encoding: str) -> str:
    """The whole text of a file (gzip read transparently), or a DataError naming the line of a bad byte."""
    try:
        raw = gzip.open(path).read() if _is_gzip(path) else path.read_bytes()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read the file ({exc}); is it a truncated gzip?") from None
    if not raw.strip():
        raise DataError(f"{path}: the file is empty")
    if encoding.lower().replace("-", "") in ("utf8", "utf8sig"):
        encoding = "utf-8-sig"  # accept a BOM, as Excel writes one
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}:{line}: bytes that are not valid {encoding} ({raw[exc.start:exc.start + 4]!r}); "
            "save the file as UTF-8 or pass --encoding (for example latin-1)"
        ) from None
    except LookupError:
        raise DataError(f"unknown encoding '{encoding}'; use a Python codec name such as utf-8 or latin-1") from None


def _read_delimited(path: Path, text: str, fmt: str) -> Table:
    # TSV follows the GLUE convention: tabs separate fields and quotes are ordinary characters.
    if fmt == "tsv":
        reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(io.StringIO(text, newline=""))
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        header = next(reader)
    except (StopIteration, csv.Error) as exc:
        raise DataError(f"{path}:1: cannot read a header line ({exc})") from None
    header = [h.strip() for h in header]
    if len(header) < 2 and fmt == "csv" and "\t" in text.split("\n", 1)[0]:
        raise DataError(f"{path}:1: the header has tabs but is read as CSV; pass --format tsv")
    rows, lines = [], []
    line = reader.line_num + 1
    try:
        for fields in reader:
            if not fields or all(not f.strip() for f in fields):
                line = reader.line_num + 1
                continue
            if len(fields) != len(header):
                raise DataError(
                    f"{path}:{line}: {len(fields)} fields where the header has {len(header)}; "
                    f"check the delimiter ({'tab' if fmt == 'tsv' else 'comma'}) and quoting of this row"
                )
            if any("\x00" in f for f in fields):
                raise DataError(f"{path}:{line}: NUL byte in the row; the file looks binary or corrupt")
            rows.append(dict(zip(header, fields)))
            lines.append(line)
            line = reader.line_num + 1
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num}: malformed {fmt.upper()} ({exc}); check quoting") from None
    return Table(str(path), header, rows, lines)


def _read_jsonl(path: Path, text: str) -> Table:
    rows, lines, columns = [], [], {}
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{n}: not valid JSON ({exc.msg}); each line must hold one JSON object") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{n}: expected a JSON object per line, got {type(obj).__name__}")
        columns.update(dict.fromkeys(obj))
        rows.append(obj)
        lines.append(n)
    return Table(str(path), list(columns), rows, lines)


def _read_parquet(path: Path) -> Table:
    import pyarrow.parquet as pq

    try:
        data = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for bad files
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
    rows = data.to_pylist()
    return Table(str(path), list(data.column_names), rows, list(range(1, len(rows) + 1)), unit="row")

