"""BM25 rankings and hard negatives from them: pure computation over texts (bm25s with a Snowball stemmer), used
by the embedding task's training (mined negatives), `bertkit mine` and search evaluation."""

from __future__ import annotations

from collections.abc import Sequence

from bertkit.data.checks import near_key
from bertkit.errors import ConfigError

__all__ = ["bm25_rankings", "negatives_from_rankings", "bm25_available"]


def bm25_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("bm25s", "Stemmer"))


def bm25_rankings(queries: Sequence[str], docs: Sequence[str], depth: int = 100, language: str = "english"
                  ) -> list[list[int]]:
    """Each query's `depth` best documents by BM25 (bm25s defaults: k1 1.5, b 0.75), words stemmed with Snowball's
    `language` stemmer and English stop words removed for English."""
    if not bm25_available():
        raise ConfigError("BM25 needs bm25s and PyStemmer; install bertkit[search]")
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer(language)
    stop = "en" if language == "english" else None
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(list(docs), stopwords=stop, stemmer=stemmer, show_progress=False),
                    show_progress=False)
    tokens = bm25s.tokenize(list(queries), stopwords=stop, stemmer=stemmer, show_progress=False)
    found, _ = retriever.retrieve(tokens, k=min(depth, len(docs)), show_progress=False, n_threads=1)
    return found.tolist()


def negatives_from_rankings(queries: Sequence[str], positives: Sequence[str], docs: Sequence[str],
                            rankings: Sequence[Sequence[int]], count: int, skip_top: int = 0) -> list[list[str]]:
    """For each (query, positive) pair, the `count` best-ranked documents (rankings of the distinct queries, in
    order of first appearance) that are none of the query's positives nor a near-duplicate of one (the same words
    once case, accents and punctuation are set aside), after passing over `skip_top` of them."""
    own: dict[str, set[str]] = {}
    for q, p in zip(queries, positives):
        own.setdefault(q, set()).add(near_key(p))
    by_query = {}
    for q, ranking in zip(dict.fromkeys(queries), rankings):
        keep = [docs[d] for d in ranking if near_key(docs[d]) not in own[q]]
        by_query[q] = keep[skip_top:skip_top + count]
    return [by_query[q] for q in queries]
