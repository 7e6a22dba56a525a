"""Property-based tests: any bytes in a data file make a reader either return rows or raise a
`BertkitError` naming the file; never another exception (which would print a traceback)."""

import itertools
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bertkit.data.conll import read_conll
from bertkit.data.readers import read_table
from bertkit.data.squad import read_squad
from bertkit.data.task_files import read_examples
from bertkit.errors import BertkitError

# Bytes biased towards the characters that break parsers: delimiters, quotes, newlines, NUL, BOM, latin-1.
_PIECES = st.sampled_from([b",", b"\t", b'"', b"\n", b"\r\n", b"\x00", b"\xef\xbb\xbf", b"\xe9", b"{", b"}", b"[",
                           b"]", b":", b"text", b"label", b'"text"', b'"label"', b"1", b"-DOCSTART-", b"B-PER",
                           b"O", b" ", b"\\", b"null", b"NaN", b"\xff\xfe"])
_CONTENT = st.one_of(st.binary(max_size=300), st.lists(_PIECES, max_size=80).map(b"".join))
_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


_ROOT = tempfile.TemporaryDirectory(prefix="bertkit-fuzz-")  # one folder for every generated file
_COUNT = itertools.count()


@pytest.fixture(scope="module", autouse=True)
def _remove_generated_files():
    yield
    _ROOT.cleanup()  # a few thousand files otherwise left in the temp folder by every run


def _write(content: bytes, suffix: str) -> Path:
    folder = Path(_ROOT.name) / str(next(_COUNT))
    folder.mkdir()
    path = folder / f"data{suffix}"
    path.write_bytes(content)
    return path


def _check(read, path: Path) -> None:
    try:
        read(path)
    except BertkitError as exc:
        assert str(path.name) in str(exc), f"the message does not name the file: {exc}"


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
@_SETTINGS
@given(content=_CONTENT)
def test_tables(suffix, content):
    _check(read_table, _write(content, suffix))


@_SETTINGS
@given(content=_CONTENT)
def test_conll(content):
    _check(read_conll, _write(content, ".conll"))


@_SETTINGS
@given(content=_CONTENT)
def test_squad_json(content):
    _check(read_squad, _write(content, ".json"))


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
@_SETTINGS
@given(content=_CONTENT)
def test_classification_rows(suffix, content):
    """Table parsing plus the task's row checks (empty text, missing or mixed labels, NaN targets)."""
    from bertkit.config import DataConfig, TaskConfig
    from bertkit.tasks.base import get_task

    task = get_task(TaskConfig())

    def read(path):
        examples = read_examples(task, str(path), DataConfig(), None)
        if examples:
            task.fit(examples)
            task.check_examples(examples, str(path))

    _check(read, _write(content, suffix))


_VALUES = st.one_of(st.text(max_size=20), st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.none(),
                    st.booleans(), st.lists(st.text(max_size=5), max_size=3), st.dictionaries(st.text(max_size=3),
                                                                                           st.integers(), max_size=2))
_ROWS = st.lists(st.fixed_dictionaries({"text": _VALUES, "label": _VALUES}), min_size=1, max_size=30)


@_SETTINGS
@given(rows=_ROWS, header_csv=st.booleans())
def test_classification_structured_rows(rows, header_csv):
    """Well-formed files with hostile values: mixed label types, NaN/inf targets, empty or non-text texts."""
    import csv
    import io
    import json

    from bertkit.config import DataConfig, TaskConfig
    from bertkit.tasks.base import get_task

    if header_csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["text", "label"])
        writer.writerows([[r["text"], r["label"]] for r in rows])
        path = _write(buffer.getvalue().encode(), ".csv")
    else:
        path = _write("".join(json.dumps(r) + "\n" for r in rows).encode(), ".jsonl")
    task = get_task(TaskConfig())

    def read(p):
        examples = read_examples(task, str(p), DataConfig(), None)
        task.fit(examples)
        task.check_examples(examples, str(p))
        assert all(isinstance(ex["text"], str) and ex["text"].strip() for ex in examples)

    _check(read, path)
