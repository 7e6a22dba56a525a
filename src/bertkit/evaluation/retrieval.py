"""Search with what a run learned, and its evaluation the way the field does it.

- `SearchData`: a corpus, queries and relevance judgements, read from a BEIR folder (`corpus.jsonl`,
  `queries.jsonl`, `qrels/<split>.tsv`) or from a pairs file (query and passage columns: the distinct passages
  are the corpus);
- rankings by an embedding run (exact cosine similarity), by BM25 (`bertkit.data.mining`), by
  reciprocal-rank fusion of two rankings, and a rerank run's reordering of a ranking's top candidates;
- `evaluate_search`: Recall@k, MRR@10 and nDCG@10 of each (`bertkit.tasks.retrieval_metrics`);
- `mine_negatives`: hard negatives for training pairs, from BM25 or an embedding run, skipping the query's
  own positives and near-duplicates of them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bertkit.data.mining import bm25_rankings, negatives_from_rankings
from bertkit.data.readers import read_table, text_lines
from bertkit.errors import ConfigError, DataError
from bertkit.tasks.embedding import ANCHOR_NAMES, POSITIVE_NAMES
from bertkit.tasks.retrieval_metrics import metrics_of_rankings, ranked

__all__ = ["SearchData", "read_search_data", "dense_rankings", "bm25_rankings", "fuse", "rerank_rankings",
           "evaluate_search", "mine_negatives", "mine_file", "search_corpus"]

log = logging.getLogger("bertkit")
DEPTH = 100


@dataclass
class SearchData:
    doc_ids: list[str]
    docs: list[str]
    query_ids: list[str]
    queries: list[str]
    relevant: list[dict[int, float]] = field(default_factory=list)  # per query: corpus row -> grade


def read_search_data(path: str | Path, split: str = "test") -> SearchData:
    """A BEIR folder or a pairs file as corpus, queries and judgements."""
    path = Path(path)
    if path.is_dir():
        return _read_beir(path, split)
    table = read_table(path)
    query, passage = _pair_columns(table)
    docs: dict[str, int] = {}
    queries: dict[str, int] = {}
    data = SearchData([], [], [], [])
    for i, row in enumerate(table.rows):
        q, p = row.get(query), row.get(passage)
        if not isinstance(q, str) or not isinstance(p, str) or not q.strip() or not p.strip():
            raise DataError(f"{table.where(i)}: an empty query or passage; fill it in or remove the row")
        if p not in docs:
            docs[p] = len(data.docs)
            data.doc_ids.append(str(row.get("doc_id", len(data.docs))))
            data.docs.append(p)
        if q not in queries:
            queries[q] = len(data.queries)
            data.query_ids.append(str(len(data.queries)))
            data.queries.append(q)
            data.relevant.append({})
        data.relevant[queries[q]][docs[p]] = 1.0
    return data


def _pair_columns(table: Any) -> tuple[str, str]:
    """The query and passage columns of a pairs file, by the names the embedding task reads."""
    query = next((c for c in ANCHOR_NAMES if c in table.columns), None)
    passage = next((c for c in POSITIVE_NAMES if c in table.columns), None)
    if query is None or passage is None:
        raise DataError(f"{table.path}: a pairs file needs a query column ({', '.join(ANCHOR_NAMES)}) and a passage "
                        f"column ({', '.join(POSITIVE_NAMES)}); columns found: {', '.join(table.columns)}")
    return query, passage


def _jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a BEIR JSON-lines file; each must be an object with an `_id` and a `text`."""
    if not path.is_file():
        raise DataError(f"{path}: missing; a BEIR folder holds corpus.jsonl, queries.jsonl and qrels/<split>.tsv")
    rows = []
    for n, line in enumerate(text_lines(path, "utf-8"), 1):
        if line.strip():
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise DataError(f"{path}:{n}: not JSON ({exc})") from None
            if not isinstance(row, dict) or "_id" not in row or not isinstance(row.get("text"), str):
                raise DataError(f"{path}:{n}: a BEIR row is an object with \"_id\" and \"text\"; fix or remove it")
            rows.append(row)
    return rows


def _read_beir(folder: Path, split: str) -> SearchData:
    corpus, queries = _jsonl(folder / "corpus.jsonl"), _jsonl(folder / "queries.jsonl")
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        raise DataError(f"{qrels_path}: missing; choose the split with --split (qrels/<split>.tsv)")
    doc_row = {}
    data = SearchData([], [], [], [])
    for row in corpus:
        doc_row[str(row["_id"])] = len(data.docs)
        data.doc_ids.append(str(row["_id"]))
        title = row.get("title") or ""
        data.docs.append(f"{title} {row.get('text', '')}".strip() if title else row.get("text", ""))
    judged: dict[str, dict[int, float]] = {}
    for n, line in enumerate(text_lines(qrels_path, "utf-8"), 1):
        parts = line.rstrip("\n").split("\t")
        if n == 1 and parts[0] in ("query-id", "query_id", "qid"):
            continue
        if len(parts) < 3:
            raise DataError(f"{qrels_path}:{n}: expected query-id, corpus-id and score separated by tabs")
        if parts[1] not in doc_row:
            raise DataError(f"{qrels_path}:{n}: corpus-id {parts[1]!r} is not in corpus.jsonl")
        judged.setdefault(parts[0], {})[doc_row[parts[1]]] = float(parts[2])
    texts = {str(q["_id"]): q["text"] for q in queries}
    for qid, grades in judged.items():
        if qid not in texts:
            raise DataError(f"{qrels_path}: query-id {qid!r} is not in queries.jsonl")
        data.query_ids.append(qid)
        data.queries.append(texts[qid])
        data.relevant.append(grades)
    return data


def dense_rankings(predictor: Any, queries: Sequence[str], docs: Sequence[str], depth: int = DEPTH,
                   doc_vectors: np.ndarray | None = None) -> list[list[int]]:
    """Each query's `depth` nearest documents by the cosine similarity of an embedding run's vectors."""
    from bertkit.inference.embed import embed_texts

    q = embed_texts(predictor, list(queries))
    d = embed_texts(predictor, list(docs)) if doc_vectors is None else doc_vectors
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    return [row for start in range(0, len(q), 1024) for row in ranked(q[start:start + 1024] @ d.T, depth).tolist()]


def fuse(*rankings: list[list[int]], k: int = 60, depth: int = DEPTH) -> list[list[int]]:
    """Reciprocal-rank fusion (Cormack et al. 2009): a document scores the sum of 1 / (k + rank) over the
    rankings; ties keep the first ranking's order."""
    out = []
    for lists in zip(*rankings):
        score: dict[int, float] = {}
        for ranking in lists:
            for rank, doc in enumerate(ranking):
                score[doc] = score.get(doc, 0.0) + 1.0 / (k + rank + 1)
        out.append(sorted(score, key=lambda d: -score[d])[:depth])
    return out


def rerank_rankings(predictor: Any, queries: Sequence[str], docs: Sequence[str], rankings: list[list[int]],
                    depth: int = 20) -> list[list[int]]:
    """Each ranking's top `depth` reordered by a rerank run's scores; the rest keep their order below them."""
    if predictor.task.name != "rerank":
        raise ConfigError(f"--rerank needs a rerank run (bertkit train --task rerank); that run's task is "
                          f"{predictor.task.name}")
    pairs = [{"query": queries[i], "passage": docs[d]} for i, ranking in enumerate(rankings) for d in ranking[:depth]]
    scores = [p["logit"] for p in predictor.predict(pairs)] if pairs else []
    out, k = [], 0
    for ranking in rankings:
        top = ranking[:depth]
        order = np.argsort(-np.array(scores[k:k + len(top)]), kind="stable")
        out.append([top[i] for i in order] + ranking[depth:])
        k += len(top)
    return out


def evaluate_search(data: SearchData, *, embedder: Any = None, bm25: bool = True, fusion: bool = True,
                    reranker: Any = None, rerank_depth: int = 20) -> dict[str, dict[str, float]]:
    """The search metrics of each system: the embedding run, BM25, their fusion, and the reranker over the
    best of those; with the seconds each took."""
    results: dict[str, dict[str, float]] = {}
    rankings: dict[str, list[list[int]]] = {}

    def score(name: str, make) -> None:
        start = time.perf_counter()
        rankings[name] = make()
        results[name] = {**metrics_of_rankings(rankings[name], data.relevant),
                         "seconds": round(time.perf_counter() - start, 2)}
        log.info("%s: %s", name, {k: round(v, 4) for k, v in results[name].items()})

    if bm25:
        score("bm25", lambda: bm25_rankings(data.queries, data.docs))
    if embedder is not None:
        score("model", lambda: dense_rankings(embedder, data.queries, data.docs))
    if fusion and "bm25" in rankings and "model" in rankings:
        score("fusion", lambda: fuse(rankings["model"], rankings["bm25"]))
    if reranker is not None:
        first = max(rankings, key=lambda name: results[name]["ndcg@10"]) if rankings else None
        if first is None:
            score("bm25", lambda: bm25_rankings(data.queries, data.docs))
            first = "bm25"
        score(f"rerank({first})", lambda: rerank_rankings(reranker, data.queries, data.docs, rankings[first],
                                                          rerank_depth))
    return results


def mine_negatives(queries: Sequence[str], positives: Sequence[str], *, count: int = 3, corpus: Sequence[str] = (),
                   embedder: Any = None, skip_top: int = 0, depth: int = 50) -> list[list[str]]:
    """Hard negatives for each (query, positive) pair: the highest-ranked documents of the corpus (the distinct
    positives, plus `corpus`) by BM25, or by `embedder` (an embedding run), that are not one of the query's own
    positives nor a near-duplicate of one (`negatives_from_rankings`)."""
    docs = list(dict.fromkeys([*positives, *corpus]))
    distinct = list(dict.fromkeys(queries))
    found = dense_rankings(embedder, distinct, docs, depth) if embedder is not None else \
        bm25_rankings(distinct, docs, depth)
    return negatives_from_rankings(queries, positives, docs, found, count, skip_top)


def search_corpus(embedder: Any, corpus: str | Path, queries: Sequence[str], *, top_k: int = 10,
                  column: str | None = None, vectors: str | Path | None = None, index: str | Path | None = None,
                  reranker: Any = None, rerank_depth: int = 20) -> list[list[dict[str, Any]]]:
    """Each query's `top_k` passages of a corpus file (rank, id, text), by exact cosine similarity (or, with
    `index`, an approximate HNSW index of usearch, built once and saved there), reordered by `reranker` when
    given; `vectors` caches the corpus's vectors in a .npy file."""
    from bertkit.inference.embed import embed_file, text_column

    table = read_table(corpus)
    col = text_column(table.columns, column, str(corpus))
    docs = [str(row.get(col, "")) for row in table.rows]
    ids = [row.get("id", row.get("_id", i)) for i, row in enumerate(table.rows)]
    matrix = None
    if vectors is not None:
        if not Path(vectors).exists():
            embed_file(embedder, corpus, vectors, column=col)
        matrix = np.load(vectors)
        if matrix.shape[0] != len(docs):
            raise ConfigError(f"--vectors {vectors}: {matrix.shape[0]} vectors for a corpus of {len(docs)} rows; "
                              "delete it to have it made again")
    depth = max(top_k, rerank_depth if reranker is not None else 0)
    if index is not None:
        from bertkit.inference.embed import embed_texts

        if matrix is None and not Path(index).exists():
            matrix = embed_texts(embedder, docs)
        rankings = _index_rankings(Path(index), matrix, embed_texts(embedder, list(queries)), depth, len(docs))
    else:
        rankings = dense_rankings(embedder, list(queries), docs, depth, doc_vectors=matrix)
    if reranker is not None:
        rankings = rerank_rankings(reranker, list(queries), docs, rankings, rerank_depth)
    return [[{"rank": r + 1, "id": ids[d], "text": docs[d]} for r, d in enumerate(ranking[:top_k])]
            for ranking in rankings]


def _index_rankings(path: Path, docs: np.ndarray | None, queries: np.ndarray, depth: int, rows: int
                    ) -> list[list[int]]:
    """Rankings from a usearch HNSW index (cosine) of the corpus's vectors: read from `path`, or built from `docs`
    and saved there (through a temporary file) when it does not exist."""
    try:
        from usearch.index import Index
    except ImportError:
        raise ConfigError("--index needs usearch; install bertkit[search]") from None
    if path.exists():
        found = Index.restore(str(path))
        if found is None or len(found) != rows or found.ndim != queries.shape[1]:
            raise ConfigError(f"--index {path}: not an index of this corpus's {rows} vectors of this model; delete "
                              "it to have it built again")
    else:
        found = Index(ndim=docs.shape[1], metric="cos")
        found.add(np.arange(rows), np.ascontiguousarray(docs, dtype=np.float32))
        tmp = path.with_name(f".{path.name}.tmp")
        found.save(str(tmp))
        tmp.replace(path)
    matches = found.search(np.ascontiguousarray(queries, dtype=np.float32), min(depth, rows))
    if not hasattr(matches, "counts"):  # one query: usearch answers with a single Matches
        return [[int(k) for k in matches.keys]]
    return [[int(k) for k in row[:n]] for row, n in zip(matches.keys, matches.counts)]


def mine_file(pairs: str | Path, output: str | Path, *, count: int = 3, embedder: Any = None,
              corpus: str | Path | None = None, skip_top: int = 0) -> int:
    """`pairs` written to `output` (JSONL), each row with a `negative` list (`mine_negatives`)."""
    from bertkit.inference.embed import text_column
    from bertkit.io import write_output

    table = read_table(pairs)
    query, passage = _pair_columns(table)
    for i, row in enumerate(table.rows):
        if not all(isinstance(row.get(c), str) and row[c].strip() for c in (query, passage)):
            raise DataError(f"{table.where(i)}: an empty query or passage; fill it in or remove the row")
    extra: list[str] = []
    if corpus:
        more = read_table(corpus)
        col = "passage" if "passage" in more.columns else text_column(more.columns, None, str(corpus))
        extra = [str(row.get(col, "")) for row in more.rows]
    negatives = mine_negatives([r[query] for r in table.rows], [r[passage] for r in table.rows], count=count,
                               corpus=extra, embedder=embedder, skip_top=skip_top)
    lines = [json.dumps({**row, "negative": found}, ensure_ascii=False) + "\n"
             for row, found in zip(table.rows, negatives)]
    write_output(output, "".join(lines), inputs=(pairs,))
    return len(lines)
