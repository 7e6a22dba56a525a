"""Pre-training text: plain text, gzip, JSONL, folders, globs, and clear errors."""

import gzip
import os

import pytest

from bertkit.data.text import expand_paths, read_documents
from bertkit.errors import DataError


def _read(spec, **kw):
    return read_documents(str(spec), fmt=kw.get("fmt"), encoding="utf-8", text_column=kw.get("column", "text"))


def test_plain_text_gzip_jsonl_and_several_files(tmp_path):
    (tmp_path / "a.txt").write_text("first doc\n\n  \nsecond doc\n", encoding="utf-8")
    with gzip.open(tmp_path / "b.txt.gz", "wt", encoding="utf-8") as fh:
        fh.write("third doc\n")
    (tmp_path / "c.jsonl").write_text('{"text": "fourth doc"}\n{"text": ""}\n', encoding="utf-8")
    spec = os.pathsep.join(str(tmp_path / n) for n in ("a.txt", "b.txt.gz", "c.jsonl"))
    docs = _read(spec)
    assert [d["text"] for d in docs] == ["first doc", "second doc", "third doc", "fourth doc"]
    assert docs[1]["where"].endswith("a.txt:4")
    assert len(_read(tmp_path / "*.txt*")) == 3 and len(expand_paths(str(tmp_path))) == 3


def test_bad_text_inputs_name_the_file_and_line(tmp_path):
    with pytest.raises(DataError, match="no files match"):
        _read(tmp_path / "missing-*.txt")
    (tmp_path / "empty.txt").write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty"):
        _read(tmp_path / "empty.txt")
    (tmp_path / "nul.txt").write_text("ok\nbad\x00line\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"nul.txt:2: NUL"):
        _read(tmp_path / "nul.txt")
    (tmp_path / "t.jsonl").write_text('{"body": "x"}\n', encoding="utf-8")
    with pytest.raises(DataError, match="no column 'text'.*body"):
        _read(tmp_path / "t.jsonl")
    (tmp_path / "latin.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match="latin.txt:1.*data.encoding"):
        _read(tmp_path / "latin.txt")
