"""Readers for tabular task data: CSV, TSV, JSONL and Parquet, gzip read transparently.

Readers return rows as dicts with the file line (or Parquet row) each came from, so that later checks can
name `file:line`. They never split, strip or normalise text: that is the tokenizer's job, and it keeps
text in any language (Chinese included) exactly as written.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from bertkit.errors import DataError

__all__ = ["Table", "check_inputs_text", "lone_surrogate",
           "read_table", "iter_table", "read_text", "text_lines", "detect_format", "FORMATS"]

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
    #: Where each row came from, for readers whose rows are not lines (a SQuAD question's id, a document
    #: of several files); `lines` is then unused.
    wheres: list[str] | None = None

    def require(self, column: str, key: str, hint: str = "") -> None:
        """Raise DataError naming the file, the columns it has and the setting to change, when `column` is
        not one of them."""
        if column not in self.columns:
            raise DataError(f"{self.path}: no column '{column}'; columns found: {', '.join(self.columns)}; "
                            f"set {key} to one of them{hint}")

    def where(self, i: int) -> str:
        if self.wheres is not None:
            return self.wheres[i]
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
            f"set data.format to one of {', '.join(FORMATS)}"
        )
    return _EXTENSIONS[suffix]


def read_table(path: str | Path, fmt: str | None = None, encoding: str = "utf-8") -> Table:
    """Read a whole data file into a `Table`.

    Raises:
        DataError: the file is missing, empty, undecodable or malformed (naming file and line).
    """
    (table,) = iter_table(path, fmt, encoding)  # without chunk_rows: the whole file as one chunk
    return table


def iter_table(path: str | Path, fmt: str | None = None, encoding: str = "utf-8",
               chunk_rows: int | None = None) -> Iterator[Table]:
    """The rows of a data file as `Table`s of at most `chunk_rows` rows each (all in one when None), read
    from disk as they are needed: a file larger than memory streams through. Every chunk carries the
    file's lines, so errors name `file:line` whichever chunk they are found in.

    Raises:
        DataError: as `read_table`, when the reading reaches the bad part of the file.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: file not found; check the path (relative paths start at {Path.cwd()})")
    if p.is_dir():
        raise DataError(f"{p}: is a directory; pass a data file")
    fmt = detect_format(p, fmt)
    if fmt == "parquet":
        rows = _parquet_rows(p)
    else:
        lines = text_lines(p, encoding)
        rows = _jsonl_rows(p, lines) if fmt == "jsonl" else _delimited_rows(p, lines, fmt)
    columns = next(rows)  # the header (JSONL: the columns grow with the rows)
    unit = "row" if fmt == "parquet" else "line"
    chunk: list[dict[str, Any]] = []
    where: list[int] = []
    found = False
    for line, row in rows:
        chunk.append(row)
        where.append(line)
        if chunk_rows is not None and len(chunk) >= chunk_rows:
            found = True
            yield Table(str(p), list(columns), chunk, where, unit)
            chunk, where = [], []
    if chunk or not found:
        if not chunk and not found:
            raise DataError(f"{p}: the file has no data rows; a header line alone is not enough")
        yield Table(str(p), list(columns), chunk, where, unit)


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _codec(encoding: str) -> str:
    if encoding.lower().replace("-", "").replace("_", "") in ("utf8", "utf8sig"):
        return "utf-8-sig"  # accept a BOM, as Excel writes one
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise DataError(f"unknown encoding '{encoding}'; use a Python codec name such as utf-8 or latin-1") from None
    return encoding


def _open_binary(path: Path) -> BinaryIO:
    return gzip.open(path) if _is_gzip(path) else open(path, "rb")  # type: ignore[return-value]


def text_lines(path: Path, encoding: str) -> Iterator[str]:
    """The lines of a text file (gzip read transparently, newlines kept), decoded as they are read."""
    codec = _codec(encoding)
    seen = False
    try:
        with io.TextIOWrapper(_open_binary(path), encoding=codec, newline="") as fh:
            for line in fh:
                seen = seen or bool(line.strip())
                yield line
    except UnicodeDecodeError:
        raise _decode_error(path, codec) from None
    except UnicodeError as exc:  # a codec's own complaint, e.g. utf-16 without its byte-order mark
        raise DataError(f"{path}: cannot be read as {codec} ({exc}); save the file as UTF-8 or set data.encoding "
                        "to the one it was saved in") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read the file ({exc}); is it a truncated gzip?") from None
    if not seen:
        raise DataError(f"{path}: the file is empty")


def _decode_error(path: Path, codec: str) -> DataError:
    """The error for bytes `codec` cannot decode, naming their line (found by decoding again, in blocks)."""
    decoder = codecs.getincrementaldecoder(codec)()
    line, block_size = 1, 1 << 16
    with _open_binary(path) as fh:
        while block := fh.read(block_size):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                bad = block[exc.start:exc.start + 4]
                line += block[: max(exc.start, 0)].count(b"\n")
                break
            line += block.count(b"\n")
        else:
            bad = b""
    hint = "set data.encoding (for example latin-1)"
    utf16 = utf16_guess(path)
    if utf16 and not codec.startswith("utf-16"):
        hint = f"set data.encoding {utf16} (--encoding {utf16}): the file is UTF-16 ({_UTF16_WHY[utf16]})"
    elif codec != "gb18030" and _reads_as_chinese(path):
        hint = "set data.encoding gb18030 (--encoding gb18030): the file reads as Chinese text in GB18030"
    return DataError(
        f"{path}:{line}: bytes that are not valid {codec.removesuffix('-sig')} ({bad!r}); "
        f"save the file as UTF-8 or {hint}"
    )


_UTF16_WHY = {"utf-16": "it starts with a UTF-16 byte-order mark",
              "utf-16-le": "every other byte is NUL", "utf-16-be": "every other byte is NUL"}


def utf16_guess(path: Path, size: int = 4096) -> str | None:
    """The UTF-16 codec a file is in (what Excel's "Unicode text" and PowerShell write), or None: its byte-order
    mark, else NUL bytes in most odd (little-endian) or even (big-endian) places of mostly-ASCII text."""
    with _open_binary(path) as fh:
        head = fh.read(size)
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return None
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    pairs = len(head) // 2
    if pairs < 4:
        return None
    for codec, nul_at in (("utf-16-le", 1), ("utf-16-be", 0)):
        if head[nul_at::2].count(0) > 0.6 * pairs and head[1 - nul_at::2].count(0) < 0.05 * pairs:
            return codec
    return None


def _reads_as_chinese(path: Path, size: int = 1 << 16) -> bool:
    """Whether the start of a file decodes as GB18030 (GBK, GB2312) into text with Chinese characters."""
    with _open_binary(path) as fh:
        head = fh.read(size)
    try:
        text = codecs.getincrementaldecoder("gb18030")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def read_text(path: Path, encoding: str) -> str:
    """The whole text of a file (gzip read transparently), or a DataError naming the line of a bad byte."""
    return "".join(text_lines(path, encoding))


def _delimited_rows(path: Path, lines: Iterator[str], fmt: str) -> Iterator[Any]:
    # TSV follows the GLUE convention: tabs separate fields and quotes are ordinary characters.
    if fmt == "tsv":
        reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(lines)
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{path}: the file is empty") from None
    except csv.Error as exc:
        raise DataError(f"{path}:1: cannot read a header line ({exc})") from None
    if len(header) < 2 and fmt == "csv" and any("\t" in h for h in header):
        raise DataError(f"{path}:1: the header has tabs but is read as CSV; set data.format to tsv")
    header = [h.strip() for h in header]
    _unique_columns(path, header, "1: the header")
    yield header
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
                utf16 = utf16_guess(path)
                if utf16:
                    raise DataError(f"{path}:{line}: NUL bytes in the row: the file is UTF-16 ({_UTF16_WHY[utf16]});"
                                    f" set data.encoding {utf16} (--encoding {utf16}) or save it as UTF-8")
                raise DataError(f"{path}:{line}: NUL byte in the row; the file looks binary or corrupt")
            yield line, dict(zip(header, fields))
            line = reader.line_num + 1
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num}: malformed {fmt.upper()} ({exc}); check quoting") from None


def _unique_columns(path: Path, columns: list[str], where: str) -> None:
    """Refuse a header that names a column twice: one of the two would silently win."""
    seen: dict[str, int] = {}
    for i, name in enumerate(columns, start=1):
        if name in seen:
            raise DataError(f"{path}:{where} names the column {name!r} twice (fields {seen[name]} and {i} of "
                            f"{', '.join(columns)}); one would silently replace the other: rename one")
        seen[name] = i


def lone_surrogate(value: Any) -> str | None:
    """The first string in `value` (a string, or lists and dicts of them) holding a lone UTF-16 surrogate,
    which JSON's \\uD800 escapes can carry but no Unicode text can (tokenizers refuse it), else None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value
        return None
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else ()
    return next((found for found in map(lone_surrogate, items) if found is not None), None)


def check_inputs_text(inputs: Any) -> None:
    """Refuse raw inputs with a lone surrogate, naming the input, before they reach a tokenizer."""
    for i, item in enumerate(inputs):
        found = lone_surrogate(item)
        if found is not None:
            raise DataError(f"input {i}: the text {found[:40]!r} holds a lone UTF-16 surrogate, which is not "
                            "valid Unicode; send UTF-8 text")


def _jsonl_rows(path: Path, lines: Iterator[str]) -> Iterator[Any]:
    columns: dict[str, None] = {}
    yield columns  # filled in as rows are read; each chunk copies what is known by then
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{n}: not valid JSON ({exc.msg}); each line must hold one JSON object") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{n}: expected a JSON object per line, got {type(obj).__name__}")
        if "\\u" in line and lone_surrogate(obj) is not None:  # only an escape can carry one
            raise DataError(f"{path}:{n}: a \\uD800-\\uDFFF escape without its pair (a lone UTF-16 surrogate) "
                            "is not valid Unicode text; fix or remove the row")
        columns.update(dict.fromkeys(obj))
        yield n, obj


def _parquet_rows(path: Path) -> Iterator[Any]:
    import pyarrow.parquet as pq

    try:
        data = pq.ParquetFile(path)
        names = list(data.schema_arrow.names)
        _unique_columns(path, names, " the schema")
        yield names
        n = 0
        for batch in data.iter_batches(batch_size=8192):
            for row in batch.to_pylist():
                n += 1
                yield n, row
    except DataError:
        raise
    except Exception as exc:  # pyarrow raises several unrelated types for bad files
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
