"""The rerank task: candidate groups, the listwise loss, its dev metrics against a direct count, and a run on the
tiny model whose folder sentence-transformers' CrossEncoder loads with the same scores."""

import json

import numpy as np
import pytest
import torch

from bertkit.config import DataConfig, task_config
from bertkit.data.task_files import read_examples
from bertkit.errors import DataError
from bertkit.tasks import get_task
from conftest import cli_train, write_jsonl
from tasks.test_embedding import toy_pairs


def rerank_task(**options):
    return get_task(task_config("rerank", **options))


def test_groups_hold_the_positive_first_then_negatives_then_other_passages(tmp_path):
    task = rerank_task(group_size=3)
    path = write_jsonl(tmp_path / "r.jsonl", [
        {"query": "q1", "passage": "p1", "negative": ["n1", "p1", "n1", "n2", "n3"]},
        {"query": "q2", "passage": "p2", "negative": "n4"},
        {"query": "q3", "passage": "p3"}])
    examples = read_examples(task, path, DataConfig(), None)
    task.fit(examples)
    groups = task.groups(examples)
    assert groups[0] == ["p1", "n1", "n2"]  # its own passage and repeats dropped, cut at group_size
    assert groups[1][:2] == ["p2", "n4"] and groups[1][2] in {"p1", "p3"}
    assert groups[2][0] == "p3" and set(groups[2][1:]) <= {"p1", "p2"} and len(set(groups[2])) == 3
    assert task.groups(examples) == groups  # the same every time
    write_jsonl(path, [{"query": "q1", "passage": "p1", "negative": 3}])
    with pytest.raises(DataError, match=r"r.jsonl:1: column 'negative' is empty or not a text"):
        read_examples(task, path, DataConfig(), None)


def test_dev_metrics_count_the_positives_rank_in_its_group():
    task = rerank_task()
    outputs = np.array([[3.0, 1.0, 2.0, 0.0],   # first
                        [1.0, 2.0, 0.5, 3.0],   # third
                        [1.0, 1.0, 0.0, 0.0]])  # a tie counts against it: second
    scores = task.metrics(outputs, [{}] * 3)
    assert scores["recall@1"] == pytest.approx(1 / 3) and scores["mrr@10"] == pytest.approx((1 + 1 / 3 + 1 / 2) / 3)
    loss = task.loss(torch.tensor(outputs), {"labels": torch.zeros(3, dtype=torch.long)})
    expected = -np.mean([o[0] - np.log(np.exp(o).sum()) for o in outputs])
    assert float(loss) == pytest.approx(expected, rel=1e-6)


@pytest.fixture(scope="module")
def rerank_run(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("rerank")
    train = write_jsonl(tmp / "t.jsonl", toy_pairs(480, 1))  # negatives: other rows' passages
    dev_rows = toy_pairs(40, 2)
    dev = write_jsonl(tmp / "d.jsonl", dev_rows)
    return cli_train("rerank", train, dev, tmp / "run", tiny_model_dir, "--lr", "3e-3", "--epochs", "6",
                     "--max-length", "48"), dev_rows


def test_a_rerank_run_learns_and_cross_encoder_loads_it_with_the_same_scores(rerank_run):
    from sentence_transformers import CrossEncoder

    from bertkit.api import predict
    from bertkit.inference.predictor import Predictor

    run, dev_rows = rerank_run
    results = json.loads((run / "results.json").read_text())
    assert results["dev"]["mrr@10"] > 0.65  # a random order of 4 candidates scores 0.52 on average

    pairs = [{"query": r["query"], "passage": p} for r in dev_rows[:5] for p in (r["passage"], dev_rows[0]["passage"])]
    ours = predict(run, pairs)
    assert all(set(p) == {"score", "logit"} for p in ours)
    theirs = CrossEncoder(str(run / "model"), device="cpu").predict([(p["query"], p["passage"]) for p in pairs])
    fp32 = Predictor.from_run(run, precision="fp32").predict(pairs)
    assert np.abs(np.array([p["score"] for p in fp32]) - theirs).max() < 1e-5


def test_bertkit_serve_answers_rerank_requests_in_score_order(rerank_run, toy_run):
    pytest.importorskip("fastapi")
    from bertkit.api import predict
    from serve.test_server import ThreadServer

    run, dev_rows = rerank_run
    query, documents = dev_rows[0]["query"], [r["passage"] for r in dev_rows[:6]]
    scores = [p["score"] for p in predict(run, [{"query": query, "passage": d} for d in documents])]
    server = ThreadServer(run)
    try:
        status, body = server.call("POST", "/v1/rerank", {"query": query, "documents": documents, "top_n": 3,
                                                         "return_documents": True})
        assert status == 200 and len(body["results"]) == 3
        assert [r["index"] for r in body["results"]] == sorted(range(6), key=lambda i: -scores[i])[:3]
        assert body["results"][0]["relevance_score"] == pytest.approx(max(scores), abs=1e-4)
        assert body["results"][0]["document"]["text"] == documents[body["results"][0]["index"]]
        assert server.call("POST", "/v1/rerank", {"query": query, "documents": []})[0] == 422
    finally:
        server.stop()
    server = ThreadServer(toy_run[0])
    try:
        status, body = server.call("POST", "/v1/rerank", {"query": "q", "documents": ["d"]})
        assert status == 404 and body["error"]["code"] == "not_a_rerank_model"
    finally:
        server.stop()
