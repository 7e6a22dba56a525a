"""Search: SQuAD v1.1 questions -> the paragraph that answers them, with BM25, the shipped embedding model,
`bertkit train --task embedding` with no flags, the sentence-transformers trainer with the same loss, batch,
steps and learning rate on the same pairs, and reciprocal-rank fusion of BM25 with the fine-tuned model.

    python benchmarks/retrieval.py [--data ../shared/data] [--held-out 6] [--dev 2] \
        [--systems bm25 shipped bertkit st fusion rerank] [--bertkit-set KEY=VALUE ...] [--label NAME] \
        [--rerank-queries 2000] [--rerank-depth 10]

Data: `squad_v1.1/dev-v1.1-articles-00-37.json.gz` (38 articles, 8,582 questions). The last `--held-out`
articles (32-37 by default) are the held-out queries, never trained on or used to choose anything; the `--dev`
articles before them are the dev pairs bertkit selects its checkpoint on; the rest are the training pairs
(question, paragraph). The corpus searched is every paragraph of the 38 articles. Scores: Recall@1, Recall@10,
MRR@10 and nDCG@10 (`bertkit.tasks.retrieval_metrics`, checked against pytrec_eval in the tests), of the
held-out questions and, as `dev_queries`, of the dev articles' questions against the same corpus (what settings
are chosen on); training
speed as training pairs per second of training (epochs x pairs / seconds), bertkit's from its results.json,
the trainer's timed around `trainer.train()`; both in the precision `bertkit` chooses (bf16 where the CPU has
it). The reranker (`rerank`) trains on the first `--rerank-queries` training pairs with three BM25 negatives
each (`bertkit mine`, then `bertkit train --task rerank`) and reorders the top `--rerank-depth` of the fusion
ranking (else bertkit's, else BM25's: a fixed order, nothing chosen on the held-out queries). One JSON line per
system.
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SYSTEMS = ("bm25", "shipped", "bertkit", "st", "fusion", "rerank")


def load(data: Path, held_out: int, dev: int) -> dict:
    with gzip.open(data / "squad_v1.1" / "dev-v1.1-articles-00-37.json.gz", "rt", encoding="utf-8") as fh:
        articles = json.load(fh)["data"]
    corpus, parts = [], {"train": [], "dev": [], "test": []}
    for a, article in enumerate(articles):
        part = "test" if a >= len(articles) - held_out else "dev" if a >= len(articles) - held_out - dev else "train"
        for paragraph in article["paragraphs"]:
            corpus.append(paragraph["context"])
            for qa in paragraph["qas"]:
                parts[part].append({"query": qa["question"], "passage": paragraph["context"], "doc": len(corpus) - 1})
    return {"corpus": corpus, **parts, "queries": parts["test"] + parts["dev"]}  # ranked together, scored apart


def scores_of(rankings: list[list[int]], queries: list[dict]) -> dict:
    from bertkit.tasks.retrieval_metrics import metrics_of_rankings

    metrics = metrics_of_rankings(rankings, [{q["doc"]} for q in queries], recall_at=(1, 10, 100))
    return {k: round(v, 4) for k, v in metrics.items()}


def dense_rankings(queries: np.ndarray, corpus: np.ndarray, depth: int = 100) -> list[list[int]]:
    from bertkit.tasks.retrieval_metrics import ranked

    return ranked(queries @ corpus.T, depth).tolist()


def bm25(data: dict) -> tuple[list[list[int]], dict]:
    from bertkit.evaluation.retrieval import bm25_rankings

    start = time.perf_counter()
    rankings = bm25_rankings([q["query"] for q in data["queries"]], data["corpus"])
    return rankings, {"seconds": round(time.perf_counter() - start, 1)}


def st_vectors(model, texts: list[str]) -> np.ndarray:
    return model.encode(texts, batch_size=64, convert_to_numpy=True, normalize_embeddings=True)


def shipped(data: dict) -> tuple[list[list[int]], dict]:
    from sentence_transformers import SentenceTransformer

    from bertkit.models.loading import embedded_model_dir

    model = SentenceTransformer(str(embedded_model_dir()), device="cpu")
    start = time.perf_counter()
    queries = st_vectors(model, [q["query"] for q in data["queries"]])
    rankings = dense_rankings(queries, st_vectors(model, data["corpus"]))
    return rankings, {"encode_seconds": round(time.perf_counter() - start, 1)}


def write_pairs(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps({"query": r["query"], "passage": r["passage"]}) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def bertkit(data: dict, work: Path, extra: list[str]) -> tuple[list[list[int]], dict]:
    from bertkit.inference.embed import embed_texts
    from bertkit.inference.predictor import Predictor

    train, dev = write_pairs(work / "train.jsonl", data["train"]), write_pairs(work / "dev.jsonl", data["dev"])
    run = work / "bertkit-run"
    command = [sys.executable, "-m", "bertkit", "train", "--task", "embedding", "--train", str(train), "--dev",
               str(dev), "--out", str(run), *(["--set", *extra] if extra else [])]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - start
    results = json.loads((run / "results.json").read_text())
    config = (run / "config.yaml").read_text()
    epochs = float(next(line.split(":")[1] for line in config.splitlines() if line.strip().startswith("epochs:")))
    predictor = Predictor.from_run(run)
    start = time.perf_counter()
    rankings = dense_rankings(embed_texts(predictor, [q["query"] for q in data["queries"]]),
                              embed_texts(predictor, data["corpus"]))
    return rankings, {"wall_seconds": round(wall, 1), "train_seconds": results["train_seconds"],
                      "pairs_per_s": round(len(data["train"]) * epochs / results["train_seconds"], 1),
                      "dev": results["dev"], "steps": results["steps"], "encode_seconds":
                      round(time.perf_counter() - start, 1), "run": str(run)}


def st_trainer(data: dict, work: Path, run: Path | None) -> tuple[list[list[int]], dict]:
    """The sentence-transformers 6.x trainer, MultipleNegativesRankingLoss (scale 20, cosine), batches without
    duplicate texts, with the batch size, epochs, learning rate, warm-up, weight decay and precision that the
    bertkit run took (read from its config.yaml)."""
    import datasets
    import torch
    import yaml
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, losses
    from sentence_transformers.training_args import BatchSamplers, SentenceTransformerTrainingArguments

    from bertkit.models.loading import embedded_model_dir
    from bertkit.runtime import Runtime

    cfg = yaml.safe_load((run / "config.yaml").read_text())["train"] if run else {}
    bf16 = Runtime("auto").precision == "bf16"
    model = SentenceTransformer(str(embedded_model_dir()), device="cpu")
    rows = [{"anchor": r["query"], "positive": r["passage"]} for r in data["train"]]
    task_cfg = yaml.safe_load((run / "config.yaml").read_text())["task"] if run else {}
    if task_cfg.get("mine_negatives"):  # the negatives the bertkit run mined, by the same code
        from bertkit.config import task_config
        from bertkit.tasks import get_task

        task = get_task(task_config("embedding", mine_negatives=True))
        examples = [{"where": str(i), **r} for i, r in enumerate(rows)]
        task.fit(examples)
        mined, note = task.complete_training(examples)
        if "negative" in mined[0]:
            rows = [{"anchor": ex["anchor"], "positive": ex["positive"], "negative": ex["negative"]} for ex in mined]
    train = datasets.Dataset.from_list(rows)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(work / "st-run"), num_train_epochs=cfg.get("epochs", 1.0),
        per_device_train_batch_size=cfg.get("batch_size", 32), learning_rate=cfg.get("lr", 5e-5),
        warmup_ratio=cfg.get("warmup_ratio", 0.06), weight_decay=cfg.get("weight_decay", 0.01), bf16=bf16,
        use_cpu=True, batch_sampler=BatchSamplers.NO_DUPLICATES, save_strategy="no", logging_steps=50,
        report_to="none", seed=cfg.get("seed", 42), dataloader_num_workers=0)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train,
                                         loss=losses.MultipleNegativesRankingLoss(model, scale=20.0))
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    model.eval()
    with torch.inference_mode():
        rankings = dense_rankings(st_vectors(model, [q["query"] for q in data["queries"]]),
                                  st_vectors(model, data["corpus"]))
    return rankings, {"train_seconds": round(seconds, 1), "bf16": bf16, "negatives": "negative" in rows[0],
                      "pairs_per_s": round(len(data["train"]) * args.num_train_epochs / seconds, 1)}


def rerank(data: dict, work: Path, first: list[list[int]], queries: int, depth: int) -> tuple[list[list[int]], dict]:
    """`bertkit mine` (BM25 negatives) on `queries` training pairs, `bertkit train --task rerank` with no other
    flags, then the run's reordering of the top `depth` of the `first` ranking."""
    from bertkit.evaluation.retrieval import rerank_rankings
    from bertkit.inference.predictor import Predictor

    pairs = write_pairs(work / "rerank-pairs.jsonl", data["train"][:queries])
    mined, run = work / "rerank-mined.jsonl", work / "rerank-run"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bertkit", "mine", "--input", str(pairs), "--output", str(mined)], check=True)
    subprocess.run([sys.executable, "-m", "bertkit", "train", "--task", "rerank", "--train", str(mined), "--dev",
                    str(write_pairs(work / "dev.jsonl", data["dev"])), "--out", str(run)], check=True)
    wall = time.perf_counter() - start
    results = json.loads((run / "results.json").read_text())
    start = time.perf_counter()
    reordered = rerank_rankings(Predictor.from_run(run), [q["query"] for q in data["queries"]], data["corpus"], first,
                                depth)
    return reordered, {"wall_seconds": round(wall, 1), "train_seconds": results["train_seconds"],
                       "dev": results["dev"], "rerank_seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    parser.add_argument("--held-out", type=int, default=6, help="last articles held out as the test queries")
    parser.add_argument("--dev", type=int, default=2, help="articles before them: bertkit's dev pairs")
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    parser.add_argument("--bertkit-set", nargs="*", default=[], help="KEY=VALUE settings for the bertkit run")
    parser.add_argument("--label", default=None, help="name of the bertkit row (default: bertkit)")
    parser.add_argument("--work", default=None, help="folder for the runs (default: a temporary one)")
    parser.add_argument("--bertkit-run", default=None, help="st without bertkit: the run whose settings it takes")
    parser.add_argument("--rerank-queries", type=int, default=2000, help="training pairs the reranker trains on")
    parser.add_argument("--rerank-depth", type=int, default=10, help="candidates of the first ranking reranked")
    args = parser.parse_args()
    data = load(Path(args.data), args.held_out, args.dev)
    print(json.dumps({"corpus": len(data["corpus"]), "train_pairs": len(data["train"]), "dev_pairs": len(data["dev"]),
                      "test_queries": len(data["test"])}), flush=True)
    work = Path(args.work or tempfile.mkdtemp(prefix="retrieval-"))
    work.mkdir(parents=True, exist_ok=True)
    rankings: dict[str, list[list[int]]] = {}
    run = None
    for system in args.systems:
        if system == "bm25":
            rankings[system], extra = bm25(data)
        elif system == "shipped":
            rankings[system], extra = shipped(data)
        elif system == "bertkit":
            rankings[system], extra = bertkit(data, work, args.bertkit_set)
            run = Path(extra["run"])
        elif system == "st":
            settings_of = run or (Path(args.bertkit_run) if args.bertkit_run else None)
            rankings[system], extra = st_trainer(data, work, settings_of)
        elif system == "rerank":
            first = next((s for s in ("fusion", "bertkit", "bm25") if s in rankings), None)  # fixed, not chosen
            if first is None:
                raise SystemExit("rerank needs a first ranking: bm25, bertkit or fusion in --systems before it")
            rankings[system], extra = rerank(data, work, rankings[first], args.rerank_queries, args.rerank_depth)
            extra["of"] = f"top {args.rerank_depth} of {first}"
        else:
            if "bm25" not in rankings or "bertkit" not in rankings:
                raise SystemExit("fusion needs bm25 and bertkit in --systems before it")
            from bertkit.evaluation.retrieval import fuse

            rankings[system], extra = fuse(rankings["bertkit"], rankings["bm25"]), {"of": "bertkit + bm25, k 60"}
        name = args.label if system == "bertkit" and args.label else system
        n = len(data["test"])
        print(json.dumps({"system": name, **scores_of(rankings[system][:n], data["test"]),
                          "dev_queries": scores_of(rankings[system][n:], data["dev"]), **extra}), flush=True)


if __name__ == "__main__":
    main()
