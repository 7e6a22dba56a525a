"""Search with runs: BEIR folders and pairs files read as corpus, queries and judgements; BM25, fusion, a
reranker over a first ranking; hard negatives that are never the query's own passage; `bertkit evaluate`,
`search` and `mine` on a tiny embedding run and a tiny rerank run."""

import json

import numpy as np
import pytest

from bertkit.errors import DataError
from bertkit.evaluation.retrieval import fuse, mine_negatives, read_search_data
from conftest import cli_train, write_jsonl
from tasks.test_embedding import toy_embedding_run, toy_pairs

pytest.importorskip("bm25s")


def write_beir(folder, rows):
    folder.mkdir()
    docs = list(dict.fromkeys(r["passage"] for r in rows))
    write_jsonl(folder / "corpus.jsonl", [{"_id": f"d{i}", "title": "", "text": t} for i, t in enumerate(docs)])
    write_jsonl(folder / "queries.jsonl", [{"_id": f"q{i}", "text": r["query"]} for i, r in enumerate(rows)])
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"q{i}\td{docs.index(r['passage'])}\t1\n" for i, r in enumerate(rows)), encoding="utf-8")
    return folder


def test_a_beir_folder_and_a_pairs_file_give_the_same_search_problem(tmp_path):
    rows = toy_pairs(30, 5)
    rows = list({r["query"]: r for r in rows}.values())  # one passage per query text
    beir = read_search_data(write_beir(tmp_path / "beir", rows))
    pairs = read_search_data(write_jsonl(tmp_path / "pairs.jsonl", rows))
    assert beir.docs == pairs.docs and beir.queries == pairs.queries and beir.relevant == pairs.relevant
    assert beir.doc_ids[0] == "d0" and beir.query_ids[0] == "q0"

    (tmp_path / "beir" / "qrels" / "test.tsv").write_text("q0\tnope\t1\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"test.tsv:1: corpus-id 'nope' is not in corpus.jsonl"):
        read_search_data(tmp_path / "beir")
    with pytest.raises(DataError, match=r"qrels/dev.tsv: missing; choose the split with --split"):
        read_search_data(tmp_path / "beir", "dev")
    write_jsonl(tmp_path / "beir" / "queries.jsonl", [{"id": "q0", "text": "where ?"}])
    with pytest.raises(DataError, match=r'queries.jsonl:1: a BEIR row is an object with "_id" and "text"'):
        read_search_data(tmp_path / "beir")


def test_fusion_adds_reciprocal_ranks():
    fused = fuse([[1, 2, 3]], [[3, 2, 4]], k=60)
    # 3: 1/63 + 1/61 = 0.032266; 2: 1/62 + 1/62 = 0.032258; 1: 1/61; 4: 1/63
    assert fused == [[3, 2, 1, 4]]


def test_mined_negatives_are_never_the_querys_own_passage_or_a_near_copy_of_it():
    queries = ["where did alice go ?", "where did alice go ?", "what did bob see ?"]
    positives = ["Alice went to Paris.", "alice went to paris", "Bob saw a film in Rome."]
    corpus = ["Alice went to Paris!", "Alice stayed in Rome.", "Bob went to Paris.", "A film about nothing."]
    found = mine_negatives(queries, positives, count=2, corpus=corpus)
    for q, negs in zip(queries, found):
        assert len(negs) == 2
        assert not any(n.lower().strip("!.") == "alice went to paris" for n in negs) or q.startswith("what")
    assert found[0] == found[1]  # one query: one set of negatives
    assert "Alice stayed in Rome." in found[0]  # BM25 ranks the other Alice passage high


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("search")
    return (tmp, *toy_embedding_run(tmp, tiny_model_dir, 4))


def test_mine_search_and_evaluate_through_the_command_line(runs, tiny_model_dir, tmp_path, capsys):
    from bertkit.cli import main

    tmp, embedding, train, dev = runs
    mined = tmp_path / "mined.jsonl"
    assert main(["mine", "--input", str(train), "--output", str(mined), "--count", "2"]) == 0
    rows = [json.loads(line) for line in mined.read_text().splitlines()]
    assert len(rows) == 480 and all(len(r["negative"]) == 2 and r["passage"] not in r["negative"] for r in rows)

    rerank = cli_train("rerank", mined, write_jsonl(tmp_path / "rd.jsonl", rows[:40]), tmp_path / "rr", tiny_model_dir,
                       "--lr", "3e-3", "--max-steps", "30", "--max-length", "48")
    assert json.loads((rerank / "results.json").read_text())["primary_metric"] == "mrr@10"

    beir = write_beir(tmp_path / "beir", list({r["query"]: r for r in map(json.loads, dev.read_text().splitlines())}
                                              .values()))
    capsys.readouterr()
    assert main(["evaluate", str(embedding), "--data", str(beir), "--rerank", str(rerank), "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert set(table) == {"bm25", "model", "fusion", "rerank(" + max(
        ("bm25", "model", "fusion"), key=lambda k: table[k]["ndcg@10"]) + ")"}
    for row in table.values():
        assert {"recall@1", "recall@10", "recall@100", "mrr@10", "ndcg@10", "seconds"} <= set(row)
    # the model's row is what the task itself scores on the same pairs (one passage per query here)
    assert main(["evaluate", str(embedding), "--data", str(beir), "--no-bm25", "--json"]) == 0
    assert list(json.loads(capsys.readouterr().out)) == ["model"]

    corpus = write_jsonl(tmp_path / "corpus.jsonl",
                         [{"id": f"p{i}", "text": r["passage"]} for i, r in enumerate(rows[:50])])
    vectors = tmp_path / "corpus.npy"
    args = ["search", str(embedding), "--corpus", str(corpus), "--query", rows[7]["query"], "--top-k", "3",
            "--vectors", str(vectors)]
    assert main(args) == 0 and vectors.is_file()
    first = json.loads(capsys.readouterr().out)
    assert main(args[:-4] + ["--top-k", "5", "--vectors", str(vectors)]) == 0  # the saved vectors are reused
    top5 = [h["id"] for h in json.loads(capsys.readouterr().out)["hits"]]
    assert main(args + ["--rerank", str(rerank), "--rerank-depth", "5"]) == 0
    reranked = [h["id"] for h in json.loads(capsys.readouterr().out)["hits"]]
    assert [h["rank"] for h in first["hits"]] == [1, 2, 3] and top5[:3] == [h["id"] for h in first["hits"]]
    assert len(reranked) == 3 and set(reranked) <= set(top5)  # the reranker reorders the first five only
    np.load(vectors)
    index = tmp_path / "corpus.usearch"
    for _ in range(2):  # built, then read back
        assert main(["search", str(embedding), "--corpus", str(corpus), "--query", rows[7]["query"], "--top-k", "3",
                     "--index", str(index)]) == 0
        assert [h["id"] for h in json.loads(capsys.readouterr().out)["hits"]] == [h["id"] for h in first["hits"]]
    assert index.is_file() and not list(tmp_path.glob(".corpus.usearch*"))
    other = write_jsonl(tmp_path / "other.jsonl", [{"text": "a"}, {"text": "b"}])
    assert main(["search", str(embedding), "--corpus", str(other), "--query", "x", "--index", str(index)]) == 2
