import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bertkit.data.readers import detect_format, read_table
from bertkit.errors import DataError


def test_csv_tsv_jsonl_parquet_and_gzip_give_the_same_rows(tmp_path):
    rows = [{"text": "great, \"quoted\" film", "label": "pos"}, {"text": "这部电影很好看", "label": "neg"}]
    (tmp_path / "a.csv").write_text('text,label\n"great, ""quoted"" film",pos\n这部电影很好看,neg\n', encoding="utf-8")
    (tmp_path / "a.tsv").write_text('text\tlabel\ngreat, "quoted" film\tpos\n这部电影很好看\tneg\n', encoding="utf-8")
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    with gzip.open(tmp_path / "b.csv.gz", "wb") as fh:
        fh.write((tmp_path / "a.csv").read_bytes())
    for name in ("a.csv", "a.tsv", "a.jsonl", "a.parquet", "b.csv.gz"):
        table = read_table(tmp_path / name)
        assert table.rows == rows, name
    assert read_table(tmp_path / "a.csv").lines == [2, 3]


def test_format_flag_overrides_extension(tmp_path):
    p = tmp_path / "data.txt"
    p.write_text("text\tlabel\nhello\tx\n", encoding="utf-8")
    with pytest.raises(DataError, match="data.format"):
        read_table(p)
    assert read_table(p, "tsv").rows == [{"text": "hello", "label": "x"}]
    assert detect_format("x.jsonl.gz") == "jsonl"


def test_bom_is_accepted_and_tsv_keeps_quotes_as_text(tmp_path):
    p = tmp_path / "mrpc.tsv"
    p.write_bytes('\ufeffQuality\t#1 String\n1\t" The pie business .\n'.encode("utf-8"))
    table = read_table(p)
    assert table.columns == ["Quality", "#1 String"]
    assert table.rows[0]["#1 String"] == '" The pie business .'


@pytest.mark.parametrize(
    "content,pattern",
    [
        (b"", "empty"),
        (b"text,label\n", "no data rows"),
        (b"text,label\nok,1\nbad\xff\xfe,0\n", r":3: bytes that are not valid utf-8.*data.encoding"),
        (b"text,label\nok,1\na,b,c\n", r":3: 3 fields where the header has 2"),
        (b"text,label\nok,1\nnul\x00,1\n", r":3: NUL byte"),
    ],
)
def test_bad_csv_names_file_and_line(tmp_path, content, pattern):
    p = tmp_path / "bad.csv"
    p.write_bytes(content)
    with pytest.raises(DataError, match=pattern) as info:
        read_table(p)
    assert str(p) in str(info.value)


def test_bad_jsonl_and_missing_and_truncated_files(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"text": "a"}\n{"text": \n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.jsonl:2: not valid JSON"):
        read_table(p)
    with pytest.raises(DataError, match="file not found"):
        read_table(tmp_path / "nope.csv")
    gz = tmp_path / "cut.csv.gz"
    gz.write_bytes(gzip.compress(b"text,label\n" + b"x,1\n" * 1000)[:-12])
    with pytest.raises(DataError, match="truncated gzip"):
        read_table(gz)


def test_latin1_with_encoding_flag(tmp_path):
    p = tmp_path / "l1.csv"
    p.write_bytes("text,label\nsister\xf0city,1\n".encode("latin-1"))
    with pytest.raises(DataError):
        read_table(p)
    assert read_table(p, encoding="latin-1").rows[0]["text"] == "sister\xf0city"


def test_every_kind_of_task_file_names_where_its_rows_came_from(tmp_path):
    from bertkit.config import DataConfig
    from bertkit.data.task_files import iter_rows

    conll = tmp_path / "a.conll"
    conll.write_text("-DOCSTART- O\n\nJohn B-PER\nlives O\n\nParis B-LOC\n", encoding="utf-8")
    (table,) = iter_rows(conll, "conll", DataConfig())
    assert [table.where(i) for i in range(len(table.rows))] == [f"{conll}:3", f"{conll}:6"]
    assert table.rows[1] == {"tokens": ["Paris"], "tags": ["B-LOC"], "doc": 1}
    (no_tags,) = iter_rows(conll, "conll", DataConfig(), with_labels=False)
    assert "tags" not in no_tags.rows[0]

    text = tmp_path / "corpus.txt"
    text.write_text("one\n\ntwo\nthree\n", encoding="utf-8")
    chunks = list(iter_rows(text, "documents", DataConfig(), chunk_rows=2))
    assert [[c.where(i) for i in range(len(c.rows))] for c in chunks] == [[f"{text}:1", f"{text}:3"], [f"{text}:4"]]

    squad = tmp_path / "q.jsonl"
    squad.write_text('{"id": "a", "question": "q?", "context": "c", "answers": {"text": [], "answer_start": []}}\n',
                     encoding="utf-8")
    (questions,) = iter_rows(squad, "squad", DataConfig())
    assert questions.where(0) == f"{squad}:1" and questions.rows[0]["id"] == "a" and "where" not in questions.rows[0]


@pytest.mark.parametrize("name,fmt", [("gb.csv", "csv"), ("gb.jsonl", "jsonl")])
def test_gb18030_files_read_with_their_encoding_and_the_utf8_error_names_it(tmp_path, name, fmt):
    rows = [{"text": "这部电影很好看，演员也不错", "label": "正面"}, {"text": "剧情糟糕，非常无聊", "label": "负面"}]
    if fmt == "csv":
        content = "text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in rows)
    else:
        content = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    path = tmp_path / name
    path.write_bytes(content.encode("gb18030"))
    assert read_table(path, encoding="gb18030").rows == rows
    with pytest.raises(DataError, match=r"not valid utf-8.*data.encoding gb18030 \(--encoding gb18030\)"):
        read_table(path)
