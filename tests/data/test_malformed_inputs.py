"""Malformed and hostile input files through `bertkit train`, reader by reader.

Each case either trains (input that is odd but valid: a BOM, a one-megabyte line, latin-1 with
--encoding) or stops with exit status 2, one message naming the file and line (or row, or field) and how
to fix it, no traceback, and no run directory left behind.
"""

import gzip
import io
import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bertkit.cli import main
from conftest import toy_ner, toy_sentiment

GOOD = [(t, s) for t, s in toy_sentiment(40, seed=5)]


def _csv(rows, header="text,label", sep=",") -> bytes:
    return (header + "\n" + "".join(f"{t}{sep}{s}\n" for t, s in rows)).encode()


def _conll(sentences) -> bytes:
    lines = []
    for tokens, tags in sentences:
        lines += [f"{t} {g}" for t, g in zip(tokens, tags)] + [""]
    return "\n".join(lines).encode()


def _squad(paragraphs) -> bytes:
    return json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": paragraphs}]}).encode()


def _qa(qid, context, text, start):
    return {"id": qid, "question": "who is it?", "answers": [{"text": text, "answer_start": start}]}


CONTEXT = "john smith visited paris in may ."
GOOD_SQUAD = [{"context": CONTEXT, "qas": [_qa(f"q{i}", CONTEXT, "paris", 19) for i in range(8)]}]
GOOD_CONLL = _conll(toy_ner(30, seed=3))
GOOD_TEXT = "\n".join(t for t, _ in GOOD).encode()


def _parquet(rows) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), sink)
    return sink.getvalue()


PARQUET_GOOD = _parquet([{"text": t, "label": s} for t, s in GOOD])
_twice = pa.Table.from_arrays([pa.array([t for t, _ in GOOD]), pa.array([s for _, s in GOOD]),
                                pa.array(["other"] * len(GOOD))], names=["text", "label", "text"])
_sink = io.BytesIO()
pq.write_table(_twice, _sink)
PARQUET_TWICE = _sink.getvalue()

# (id, task, file name, train bytes, extra flags, expected: "ok" or a regex the message must match)
CASES = [
    # --- CSV / TSV ---------------------------------------------------------------------------------
    ("csv-truncated-gzip", "classification", "train.csv.gz", gzip.compress(_csv(GOOD))[:-20], [],
     r"train.csv.gz: cannot read the file .*truncated gzip"),
    ("csv-unterminated-quote", "classification", "train.csv", _csv(GOOD) + b'"cut off,1\n', [],
     r"train.csv:42: .*(quot|fields)"),
    ("csv-semicolon-delimiter", "classification", "train.csv", _csv(GOOD, "text;label", ";"), [],
     r"train.csv: no column 'text'; columns found: text;label.*delimiter"),
    ("csv-tabs-read-as-csv", "classification", "train.csv", _csv(GOOD, "text\tlabel", "\t"), [],
     r"train.csv:1: the header has tabs but is read as CSV; set --format \(data.format\) to tsv"),
    ("csv-ragged-row", "classification", "train.csv", _csv(GOOD[:5]) + b"a,b,c\n" + _csv(GOOD[5:])[11:], [],
     r"train.csv:7: 3 fields where the header has 2"),
    ("csv-short-row", "classification", "train.csv", _csv(GOOD[:5]) + b"lonely\n" + _csv(GOOD[5:])[11:], [],
     r"train.csv:7: 1 fields where the header has 2"),
    ("csv-bom", "classification", "train.csv", b"\xef\xbb\xbf" + _csv(GOOD), [], "ok"),
    ("csv-latin1", "classification", "train.csv", _csv(GOOD[:3]) + "caf\xe9 ok,positive\n".encode("latin-1")
     + _csv(GOOD[3:])[11:], [], r"train.csv:5: bytes that are not valid utf-8.*--encoding"),
    ("csv-latin1-with-encoding", "classification", "train.csv", _csv(GOOD[:3]) + "caf\xe9 ok,positive\n".encode(
        "latin-1") + _csv(GOOD[3:])[11:],
     ["--encoding", "latin-1"], "ok"),
    ("csv-nul-byte", "classification", "train.csv", _csv(GOOD[:8]) + b"nul\x00here,positive\n", [],
     r"train.csv:10: NUL byte"),
    ("csv-one-megabyte-line", "classification", "train.csv",
     _csv(GOOD) + b"great " * 180_000 + b",positive\n", [], "ok"),
    ("csv-empty-text", "classification", "train.csv", _csv(GOOD[:3]) + b",positive\n", [],
     r"train.csv:5: empty text in column 'text'"),
    ("csv-missing-label", "classification", "train.csv", _csv(GOOD[:3]) + b"some text,\n", [],
     r"train.csv:5: missing label in column 'label'"),
    ("csv-no-label-column", "classification", "train.csv", _csv(GOOD, "text,sentiment"), [],
     r"train.csv: no column 'label'; columns found: text, sentiment; set --label-column \(data.label_column\)"),
    ("csv-header-only", "classification", "train.csv", b"text,label\n", [], r"train.csv: the file has no data rows"),
    ("csv-empty", "classification", "train.csv", b"", [], r"train.csv: the file is empty"),
    ("csv-binary-garbage", "classification", "train.csv", bytes(range(256)) * 4, [], r"train.csv:\d+: "),
    ("regression-nan-target", "classification", "train.csv", _csv([("a", "0.5"), ("b", "1.5"), ("c", "nan")]),
     ["--problem", "regression"], r"train.csv:4: regression target 'nan' is not a finite number"),
    ("regression-text-target", "classification", "train.csv", _csv([("a", "0.5"), ("b", "lots")]),
     ["--problem", "regression"], r"train.csv:3: regression target 'lots' is not a finite number"),
    ("single-label-only-one-class", "classification", "train.csv", _csv([("a", "pos"), ("b", "pos")]), [],
     r"train.csv: training data has only the label 'pos'"),
    ("csv-duplicate-column", "classification", "train.csv", _csv([(t, f"{s},{t}") for t, s in GOOD], "text,label,text"),
     [], r"train.csv:1: the header names the column 'text' twice \(fields 1 and 3 of text, label, text\).*rename"),
    ("csv-duplicate-label-column", "classification", "train.csv",
     _csv([(t, f"{s},negative") for t, s in GOOD], "text,label,label"), [], r"the column 'label' twice"),
    ("csv-utf16-bom", "classification", "train.csv", _csv(GOOD).decode().encode("utf-16"), [],
     r"train.csv:1: bytes that are not valid utf-8.*--encoding utf-16\): the file is UTF-16 \(it starts with a "
     r"UTF-16 byte-order mark\)"),
    ("csv-utf16-with-encoding", "classification", "train.csv", _csv(GOOD).decode().encode("utf-16"),
     ["--encoding", "utf-16"], "ok"),
    ("csv-utf8-read-as-utf16", "classification", "train.csv", _csv(GOOD), ["--encoding", "utf-16"],
     r"train.csv: cannot be read as utf-16 \(UTF-16 stream does not start with BOM\)"),
    ("csv-utf16le-no-bom", "classification", "train.csv", _csv(GOOD).decode().encode("utf-16-le"), [],
     r"train.csv:2: NUL bytes in the row: the file is UTF-16 .*--encoding utf-16-le"),
    ("classes-with-one-fraction", "classification", "train.csv",
     _csv([(t, str(i % 2)) for i, (t, _) in enumerate(GOOD[:39])] + [("an odd one", "0.5")]), [],
     r"train.csv:41: the label '0.5' is a fraction \(1 of 40 labels are; the rest are the whole numbers 0, 1, "
     r".*set --problem \(task.problem\) to regression if the labels are scores"),
    ("regression-with-one-fraction-asked-for", "classification", "train.csv",
     _csv([(t, str(i % 2)) for i, (t, _) in enumerate(GOOD[:39])] + [("an odd one", "0.5")]),
     ["--problem", "regression"], "ok"),
    ("tsv-ragged-row", "classification", "train.tsv", _csv(GOOD[:3], "text\tlabel", "\t") + b"x\ty\tz\n", [],
     r"train.tsv:5: 3 fields where the header has 2"),
    # --- JSONL -------------------------------------------------------------------------------------
    ("jsonl-truncated-last-line", "classification", "train.jsonl",
     b"".join(json.dumps({"text": t, "label": s}).encode() + b"\n" for t, s in GOOD) + b'{"text": "cut', [],
     r"train.jsonl:41: not valid JSON"),
    ("jsonl-lone-surrogate", "classification", "train.jsonl",
     b'{"text": "a", "label": "x"}\n{"text": "b \\ud800", "label": "y"}\n', [],
     r"train.jsonl:2: a .*lone UTF-16 surrogate"),
    ("ner-jsonl-lone-surrogate", "ner", "train.jsonl",
     b'{"tokens": ["a", "\\udc00"], "tags": ["O", "B-X"]}\n', [], r"train.jsonl:1: .*lone UTF-16 surrogate"),
    ("jsonl-array-line", "classification", "train.jsonl", b'{"text": "a", "label": "x"}\n[1, 2]\n', [],
     r"train.jsonl:2: expected a JSON object per line, got list"),
    ("jsonl-dict-label", "classification", "train.jsonl",
     b'{"text": "a", "label": "x"}\n{"text": "b", "label": {"y": 1}}\n', [], r"train.jsonl:2: "),
    ("jsonl-number-text", "classification", "train.jsonl", b'{"text": "a", "label": "x"}\n{"text": 7, "label": "y"}\n',
     [], r"train.jsonl:2: column 'text' holds int 7, not text"),
    ("jsonl-nan-target", "classification", "train.jsonl",
     b'{"text": "a", "label": 0.5}\n{"text": "b", "label": NaN}\n{"text": "c", "label": 1.5}\n', [],
     r"train.jsonl:2: "),
    ("jsonl-mixed-label-types", "classification", "train.jsonl",
     b"".join(json.dumps({"text": t, "label": [1, "pos", 2.0, True][i % 4]}).encode() + b"\n"
              for i, (t, _) in enumerate(GOOD)), [], "ok"),
    # --- Parquet -----------------------------------------------------------------------------------
    ("parquet-truncated", "classification", "train.parquet", PARQUET_GOOD[: len(PARQUET_GOOD) // 2], [],
     r"train.parquet: not a readable Parquet file"),
    ("parquet-duplicate-column", "classification", "train.parquet", PARQUET_TWICE, [],
     r"train.parquet: the schema names the column 'text' twice"),
    ("parquet-null-label", "classification", "train.parquet",
     _parquet([{"text": t, "label": s} for t, s in GOOD[:4]] + [{"text": "x", "label": None}]), [],
     r"train.parquet row 5: missing label"),
    ("parquet-nan-target", "classification", "train.parquet",
     _parquet([{"text": "a", "label": 0.5}, {"text": "b", "label": float("nan")}]), ["--problem", "regression"],
     r"train.parquet row 2: "),
    # --- CoNLL -------------------------------------------------------------------------------------
    ("conll-truncated-line", "ner", "train.conll", GOOD_CONLL + b"\nParis", [],
     r"train.conll:\d+: 1 columns where earlier lines have 2"),
    ("conll-ragged-columns", "ner", "train.conll", b"EU NNP B-ORG\nrejects VBZ O\nGerman JJ B-MISC extra\n", [],
     r"train.conll:3: 4 columns where earlier lines have 3"),
    ("conll-bad-tag", "ner", "train.conll", GOOD_CONLL + b"\n\nParis X-LOC\n", [], r"train.conll:\d+: .*X-LOC"),
    ("conll-latin1", "ner", "train.conll", GOOD_CONLL + b"\n\ncaf\xe9 O\n", [],
     r"train.conll:\d+: bytes that are not valid utf-8"),
    ("conll-nul-byte", "ner", "train.conll", GOOD_CONLL + b"\n\nnu\x00l O\n", [], r"train.conll:\d+: .*NUL"),
    ("conll-one-megabyte-token", "ner", "train.conll", GOOD_CONLL + b"\n\n" + b"x" * 1_000_000 + b" O\n", [], "ok"),
    ("conll-no-break-space", "ner", "train.conll", GOOD_CONLL + "\n\n10\u00a0000 O\npeople O\n".encode(), [],
     r"train.conll:\d+: 3 columns where earlier lines have 2: the line holds U\+00A0 \(NO-BREAK SPACE\)"),
    ("conll-empty", "ner", "train.conll", b"\n\n", [], r"train.conll: (the file is empty|no sentences found)"),
    # --- SQuAD JSON --------------------------------------------------------------------------------
    ("squad-truncated", "qa", "train.json", _squad(GOOD_SQUAD)[:-30], [], r"train.json:1: not valid JSON"),
    ("squad-answer-outside-context", "qa", "train.json",
     _squad([{"context": CONTEXT, "qas": [_qa("q0", CONTEXT, "paris", 19), _qa("q1", CONTEXT, "paris", 400)]}]),
     [], r"train.json \(id q1\): .*answer"),
    ("squad-answer-text-mismatch", "qa", "train.json",
     _squad([{"context": CONTEXT, "qas": [_qa("q0", CONTEXT, "paris", 19), _qa("q1", CONTEXT, "paris", 0)]}]),
     [], "ok"),  # moved to where its text occurs, with a warning naming the question (task.answer_mismatch)
    ("squad-answer-not-in-context", "qa", "train.json",
     _squad([{"context": CONTEXT, "qas": [_qa("q0", CONTEXT, "paris", 19), _qa("q1", CONTEXT, "rome", 3)]}]),
     [], r"train.json \(id q1\): answer 'rome' is not at answer_start 3 and it does not occur in the context"),
    ("squad-negative-offset", "qa", "train.json",
     _squad([{"context": CONTEXT, "qas": [_qa("q0", CONTEXT, "paris", -3)]}]), [], r"train.json \(id q0\): .*answer"),
    ("squad-duplicated-ids", "qa", "train.json",
     _squad([{"context": CONTEXT, "qas": [_qa("q0", CONTEXT, "paris", 19), _qa("q0", CONTEXT, "paris", 19)]}]),
     [], r"train.json \(id q0\): duplicated question id"),
    ("squad-is-impossible-a-string", "qa", "train.json",
     _squad([{"context": CONTEXT, "qas": [_qa("q0", CONTEXT, "paris", 19),
                                          {**_qa("q1", CONTEXT, "paris", 19), "is_impossible": "false"}]}]), [],
     r"train.json \(id q1\): is_impossible must be true or false"),
    ("squad-v1-without-answers", "qa", "train.json",
     _squad([{"context": CONTEXT, "qas": [_qa("q0", CONTEXT, "paris", 19),
                                          {**_qa("q1", CONTEXT, "paris", 19), "answers": []}]}]), [],
     r"train.json \(id q1\): no answers, in a SQuAD v1.1 file \(1 such questions\)"),
    ("squad-fractional-answer-start", "qa", "train.json",
     _squad([{"context": CONTEXT, "qas": [_qa("q0", CONTEXT, "paris", 19.5)]}]), [],
     r"train.json \(id q0\): each answer needs a string 'text' and an integer 'answer_start'"),
    ("squad-boolean-answer-start", "qa", "train.json",
     _squad([{"context": CONTEXT, "qas": [_qa("q0", CONTEXT, "paris", True)]}]), [],
     r"train.json \(id q0\): each answer needs"),
    ("squad-not-squad", "qa", "train.json", b'{"version": "1.1"}', [], r"train.json: not SQuAD JSON"),
    ("squad-paragraphs-not-a-list", "qa", "train.json", json.dumps({"data": [{"paragraphs": 5}]}).encode(), [],
     r"train.json \(data\[0\]\): 'paragraphs' must be a list of JSON objects"),
    ("squad-latin1", "qa", "train.json", _squad(GOOD_SQUAD).replace(b"smith", b"sm\xefth"), [],
     r"train.json:1: bytes that are not valid utf-8"),
    # --- text for pre-training ---------------------------------------------------------------------
    ("text-nul-byte", "mlm", "train.txt", GOOD_TEXT + b"\nnul\x00byte\n", [], r"train.txt:41: NUL byte"),
    ("text-latin1", "mlm", "train.txt", GOOD_TEXT + b"\ncaf\xe9\n", [], r"train.txt:41: bytes that are not valid"),
    ("text-blank", "mlm", "train.txt", b"\n \n\t\n", [], r"train.txt: the file is empty"),
    ("text-truncated-gzip", "mlm", "train.txt.gz", gzip.compress(GOOD_TEXT)[:-10], [], r"truncated gzip"),
    ("text-one-megabyte-line", "mlm", "train.txt", GOOD_TEXT + b"\n" + b"word " * 200_000 + b"\n", [], "ok"),
]

DEV = {"classification": ("dev.csv", _csv(GOOD)), "ner": ("dev.conll", GOOD_CONLL),
       "qa": ("dev.json", _squad(GOOD_SQUAD)), "mlm": ("dev.txt", GOOD_TEXT)}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_malformed_training_input(case, tmp_path, tiny_model_dir, capsys):
    name, task, filename, content, flags, expected = case
    train = tmp_path / filename
    train.write_bytes(content)
    dev_name, dev_content = DEV[task]
    dev = tmp_path / dev_name
    dev.write_bytes(dev_content if "regression" not in name and "nan" not in name else _csv([("a", "0.5")]))
    if name == "csv-utf16-with-encoding":  # --encoding is the dev file's too
        dev.write_bytes(dev_content.decode().encode("utf-16"))
    if name == "jsonl-mixed-label-types":
        dev = tmp_path / "dev.jsonl"
        dev.write_bytes(content)
    out = tmp_path / "run"
    argv = ["train", "--task", task, "--train", str(train), "--dev", str(dev), "--out", str(out),
            "--model", str(tiny_model_dir), "--precision", "fp32", "--max-steps", "2", "--eval-every", "2",
            "--quiet", *flags]
    if task == "qa":
        argv += ["--max-length", "48"]
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if expected == "ok":
        assert code == 0, err
        return
    assert code == 2, err
    message = err.strip().splitlines()[-1]
    assert re.search(expected, message), message
    assert str(tmp_path) in message  # names the file (its full path)
    assert not out.exists()  # nothing half-written
