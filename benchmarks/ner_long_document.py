"""Sliding windows on real documents: feed whole CoNLL documents (far longer than the model's window) to a
trained NER run as single inputs and score them against the gold tags, next to sentence-by-sentence input.

    python benchmarks/ner_long_document.py --run runs/conll --data ../shared/data/conll2003/valid.txt [--docs 20]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from itertools import groupby

from bertkit.data.conll import read_conll
from bertkit.inference.predictor import Predictor
from bertkit.tasks.tagging import entity_scores


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a trained ner run directory")
    parser.add_argument("--data", required=True, help="a CoNLL file with -DOCSTART- documents")
    parser.add_argument("--docs", type=int, default=20, help="how many of the longest documents to use")
    args = parser.parse_args()

    predictor = Predictor.from_run(args.run)
    window = predictor.task.max_length(predictor.config.data)
    sentences = read_conll(args.data)
    docs = [list(group) for _, group in groupby(sentences, key=lambda s: s.doc)]
    docs = sorted(docs, key=lambda d: -sum(len(s.tokens) for s in d))[: args.docs]

    doc_tokens = [[t for s in d for t in s.tokens] for d in docs]
    doc_tags = [[t for s in d for t in s.tags] for d in docs]
    subwords = [len(predictor.tokenizer(tokens, is_split_into_words=True, add_special_tokens=False)["input_ids"])
                for tokens in doc_tokens]
    start = time.perf_counter()
    as_documents = predictor.predict(doc_tokens)
    doc_seconds = time.perf_counter() - start
    by_sentence = predictor.predict([s.tokens for d in docs for s in d])

    sent_tags = [p["tags"] for p in by_sentence]
    flat_sentence_tags, k = [], 0
    for d in docs:  # regroup sentence predictions per document
        flat_sentence_tags.append([t for s in sent_tags[k : k + len(d)] for t in s])
        k += len(d)
    doc_pred = [p["tags"] for p in as_documents]
    assert all(len(p) == len(g) for p, g in zip(doc_pred, doc_tags)), "a word lost its prediction"
    print(json.dumps({
        "documents": len(docs), "model_window_tokens": window,
        "words_per_document": {"min": min(map(len, doc_tokens)), "max": max(map(len, doc_tokens))},
        "subword_tokens_per_document": {"min": min(subwords), "max": max(subwords)},
        "words_without_prediction": sum(len(g) - len(p) for p, g in zip(doc_pred, doc_tags)),
        "f1_whole_documents_windowed": round(entity_scores(doc_tags, doc_pred)["f1"], 4),
        "f1_sentence_by_sentence": round(entity_scores(doc_tags, flat_sentence_tags)["f1"], 4),
        "seconds_whole_documents": round(doc_seconds, 2),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
