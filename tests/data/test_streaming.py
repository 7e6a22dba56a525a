"""Streamed training data: chunked readers, the memory-mapped feature store, chunked fitting, and a
streamed run that trains exactly as the same run from memory."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bertkit.config import DataConfig, task_config
from bertkit.data.feature_store import FeatureStore, FeatureWriter
from bertkit.data.readers import iter_table, read_table
from bertkit.data.text import iter_documents, read_documents
from bertkit.errors import ConfigError, DataError
from bertkit.tasks.base import get_task
from conftest import tiny_config, toy_ner, write_conll, write_csv, write_jsonl, write_toy_sentiment


@pytest.mark.parametrize("name", ["a.csv", "a.tsv", "a.jsonl", "a.parquet"])
def test_chunks_hold_the_rows_and_lines_of_the_whole_read(tmp_path, name):
    rows = [{"text": f"row {i}, with a comma", "label": str(i % 3)} for i in range(11)]
    p = tmp_path / name
    if name.endswith(".csv"):
        write_csv(p, ["text", "label"], [(r["text"], r["label"]) for r in rows])
    elif name.endswith(".tsv"):
        p.write_text("text\tlabel\n\n" + "".join(f"{r['text']}\t{r['label']}\n" for r in rows), encoding="utf-8")
    elif name.endswith(".jsonl"):
        write_jsonl(p, rows)
    else:
        pq.write_table(pa.Table.from_pylist(rows), p)
    whole = read_table(p)
    chunks = list(iter_table(p, chunk_rows=4))
    assert [len(c.rows) for c in chunks] == [4, 4, 3]
    assert [r for c in chunks for r in c.rows] == whole.rows == rows
    assert [n for c in chunks for n in c.lines] == whole.lines
    assert [c.where(0) for c in chunks] == [whole.where(0), whole.where(4), whole.where(8)]


def test_an_error_in_a_later_chunk_names_its_line(tmp_path):
    lines = ["text,label"] + [f"ok {i},1" for i in range(20)] + ["bad,row,here"] + ["ok,0"] * 3
    p = tmp_path / "late.csv"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    chunks = iter_table(p, chunk_rows=5)
    for _ in range(4):
        next(chunks)  # the first 20 rows are fine
    with pytest.raises(DataError, match=r"late.csv:22: 3 fields where the header has 2"):
        next(chunks)
    p.write_bytes(b"text,label\n" + b"fine,1\n" * 70_000 + b"caf\xe9,1\n")  # past the decoder's first blocks
    with pytest.raises(DataError, match=r"late.csv:70002: bytes that are not valid utf-8"):
        list(iter_table(p, chunk_rows=1000))


def test_documents_in_chunks_equal_the_whole_read(tmp_path):
    p = tmp_path / "corpus.txt"
    p.write_text("first doc\n\nsecond doc\r\nthird\n fourth \n", encoding="utf-8")
    chunks = list(iter_documents(str(p), fmt=None, encoding="utf-8", text_column="text", chunk_rows=2))
    assert [len(c) for c in chunks] == [2, 2]
    whole = read_documents(str(p), fmt=None, encoding="utf-8", text_column="text")
    assert [d for c in chunks for d in c] == whole
    assert [d["where"] for d in whole] == [f"{p}:1", f"{p}:3", f"{p}:4", f"{p}:5"]
    assert whole[1]["text"] == "second doc" and whole[3]["text"] == " fourth "


def test_feature_store_round_trip_lengths_and_atomic_write(tmp_path):
    features = [{"input_ids": list(range(2 + i % 5)), "label": i % 2, "multi": [0.0, 1.0]} for i in range(20_000)]
    path = tmp_path / "f.arrow"
    with FeatureWriter(path) as writer:
        writer.write(features[:7])
        writer.write(features[7:])
        assert not path.exists()  # nothing under the final name until it is complete
        writer.close()
    store = FeatureStore(path)
    assert len(store) == 20_000
    assert [store[i] for i in (0, 6, 7, 8191, 8192, 19_999, -1)] == [features[i] for i in (0, 6, 7, 8191, 8192,
                                                                                          19_999, -1)]
    assert store.lengths.tolist() == [len(f["input_ids"]) for f in features]
    assert list(store)[:3] == features[:3]
    with pytest.raises(IndexError):
        store[20_000]
    # A crash while writing leaves neither the file nor its temporary.
    with pytest.raises(RuntimeError), FeatureWriter(tmp_path / "g.arrow") as writer:
        writer.write(features[:5])
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == [path]
    (tmp_path / "cut.arrow").write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match="not a readable feature file"):
        FeatureStore(tmp_path / "cut.arrow")


@pytest.mark.parametrize("labels,overrides", [
    (["pos", "neg", "neg", "neu", "pos", "neg", "neg"], {"class_weights": "auto"}),
    ([["a"], ["a", "b"], ["c"], [], ["b"], ["a"], ["c", "a"]], {"class_weights": "auto"}),
    (["0.5", "1", "2.25", "3", "0", "1.5", "2"], {}),
])
def test_fitting_in_chunks_equals_fitting_at_once(labels, overrides):
    examples = [{"where": f"f.csv:{i + 2}", "text": "t", "label": v} for i, v in enumerate(labels)]
    whole, chunked = (get_task(task_config("classification", **overrides)) for _ in range(2))
    whole.fit(examples)
    chunked.fit_chunks(examples[i:i + 3] for i in range(0, len(examples), 3))
    assert chunked.state() == whole.state()


def test_chunked_fitting_names_the_row_of_a_bad_regression_target():
    task = get_task(task_config("classification", problem="regression"))
    chunks = [[{"where": "f.csv:2", "text": "t", "label": "1.5"}], [{"where": "f.csv:3", "text": "t", "label": "nan"}]]
    with pytest.raises(DataError, match=r"f.csv:3: regression target 'nan'"):
        task.fit_chunks(chunks)


def _records(run):
    """The learning curve without timings: losses, learning rates, dev metrics."""
    timings = ("tokens_per_s", "eval_seconds")
    return [{k: v for k, v in json.loads(line).items() if k not in timings}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_streamed_run_trains_as_the_same_run_from_memory(tmp_path, tiny_model_dir, monkeypatch):
    from bertkit.api import train
    from bertkit.training.run_data import STREAM_FOLDER

    train_file, dev_file = write_toy_sentiment(tmp_path)
    memory = train(tiny_config(tiny_model_dir, train_file, dev_file, tmp_path / "memory"), progress=False)
    streamed = train(tiny_config(tiny_model_dir, train_file, dev_file, tmp_path / "streamed", **{
        "data.stream": True, "data.stream_chunk_rows": 37}), progress=False)
    assert _records(tmp_path / "streamed") == _records(tmp_path / "memory")
    assert streamed.metrics == memory.metrics
    env = json.loads((tmp_path / "streamed" / "environment.json").read_text())
    assert env["data"]["train"]["rows"] == 240 and env["data"]["train"]["streamed"] is True
    labels = [json.loads((tmp_path / r / "labels.json").read_text()) for r in ("memory", "streamed")]
    assert labels[0] == labels[1]

    # The cache holds the streamed features: a second run reads them (and the fitted labels) back.
    import bertkit.data.cache as cache

    entries = sorted((cache.cache_root() / "features").glob("stream-*"))
    assert [e.suffix for e in entries] == [".arrow", ".json"]
    monkeypatch.setattr("bertkit.training.run_data.iter_examples", lambda *a, **k: pytest.fail("tokenised again"))
    again = train(tiny_config(tiny_model_dir, train_file, dev_file, tmp_path / "again", **{
        "data.stream": True, "data.stream_chunk_rows": 37}), progress=False)
    assert again.metrics == memory.metrics
    monkeypatch.undo()

    # With the cache off the features live in the run directory until the run completes.
    monkeypatch.setenv("BERTKIT_CACHE", "off")
    train(tiny_config(tiny_model_dir, train_file, dev_file, tmp_path / "nocache", **{
        "data.stream": True, "train.max_steps": 5}), progress=False)
    assert not (tmp_path / "nocache" / STREAM_FOLDER).exists()
    assert json.loads((tmp_path / "nocache" / "status.json").read_text())["status"] == "completed"


def test_stream_needs_a_dev_file_and_a_table_task(tmp_path, tiny_model_dir):
    from bertkit.api import train

    train_file, dev_file = write_toy_sentiment(tmp_path)
    with pytest.raises(ConfigError, match="data.stream needs a data.dev file"):
        train(tiny_config(tiny_model_dir, train_file, None, tmp_path / "a", **{"data.stream": True}), progress=False)
    conll = write_conll(tmp_path / "ner.conll", toy_ner(20, seed=1))
    with pytest.raises(ConfigError, match="the ner task reads its data files whole"):
        train(tiny_config(tiny_model_dir, conll, conll, tmp_path / "b", **{"data.stream": True, "task.name": "ner"}),
              progress=False)


def test_data_config_rejects_empty_chunks():
    with pytest.raises(ConfigError, match="stream_chunk_rows"):
        DataConfig(stream_chunk_rows=0)


def test_streamed_pre_training_text_trains_as_from_memory(tmp_path, tiny_model_dir):
    from bertkit.api import train
    from conftest import toy_sentiment

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(text for text, _ in toy_sentiment(120, seed=3)) + "\n", encoding="utf-8")
    dev = tmp_path / "dev.txt"
    dev.write_text("\n".join(text for text, _ in toy_sentiment(20, seed=4)) + "\n", encoding="utf-8")
    common = {"task.name": "mlm", "train.max_steps": 12, "train.eval_every": 6}
    train(tiny_config(tiny_model_dir, corpus, dev, tmp_path / "memory", **common), progress=False)
    train(tiny_config(tiny_model_dir, corpus, dev, tmp_path / "streamed", **common, **{
        "data.stream": True, "data.stream_chunk_rows": 25}), progress=False)
    assert _records(tmp_path / "streamed") == _records(tmp_path / "memory")
