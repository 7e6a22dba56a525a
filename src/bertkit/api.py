"""The Python API: `train`, `evaluate`, `predict`, `lineage`. The command line is a thin shell over these.

A run itself is assembled in `bertkit.training.session`; this module adds what reads a finished run
directory (the model card, the HTML report) and loads models for evaluation and prediction.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bertkit.config import RunConfig
from bertkit.data.checks import DataReport
from bertkit.evaluation.data_check import check_files
from bertkit.evaluation.report import REPORT_FILE, write_report
from bertkit.export.model_card import write_model_card
from bertkit.inference.predictor import Predictor
from bertkit.run_dir import lineage
from bertkit.training import session
from bertkit.training.session import TrainResult

__all__ = ["TrainResult", "train", "train_events", "evaluate", "predict", "lineage", "check_data", "DataReport",
           "evaluate_search", "search", "mine", "zero_shot", "evaluate_zero_shot", "embedder"]

log = logging.getLogger("bertkit")


def train(config: RunConfig, *, progress: bool = True) -> TrainResult:
    """Fine-tune as `config` says and leave a complete run directory behind."""
    for event in train_events(config, progress=progress):
        if event["kind"] == "finished":
            return event["result"]
    raise AssertionError("a run ends with a 'finished' event")


def train_events(config: RunConfig, *, progress: bool = True) -> Iterator[dict[str, Any]]:
    """`train` as a stream of the loop's events plus a final {"kind": "finished", "result": ...}.

    Stopping the iteration early leaves the run directory exactly as a crash would (resumable)."""
    for event in session.train_events(config, progress=progress, before_complete=write_model_card):
        if event["kind"] == "finished" and event["result"].main_process:
            _report(event["result"].run_dir)
        yield event


def _report(run_dir: Path) -> None:
    """The run report of a completed run (it can be made again from the run directory with bertkit report)."""
    try:
        write_report(run_dir)
    except Exception as exc:  # noqa: BLE001 - the run is complete; a report can be made again later
        log.warning("could not write %s (%s); make it with: bertkit report %s", REPORT_FILE, exc, run_dir)


def evaluate(run_dir: str | Path, data: str | Path, *, fmt: str | None = None, quantize: str | None = None,
             **columns: str | None) -> dict[str, float]:
    """Metrics of a run's final model (or of an ONNX export) on a labelled file (columns default to those
    used in training); `quantize="int8"` scores the run's model with PyTorch dynamic int8."""
    predictor = Predictor.from_path(run_dir, quantize=quantize)
    examples, data_cfg = predictor.read_file(data, with_labels=True, fmt=fmt, **columns)
    return predictor.evaluate_examples(examples, data_cfg, source=str(data))


def predict(run_dir: str | Path, inputs: list[Any], *, quantize: str | None = None) -> list[dict[str, Any]]:
    """Predictions of a run's final model (or of an ONNX export) for raw inputs (see `Predictor.predict`)."""
    return Predictor.from_path(run_dir, quantize=quantize).predict(inputs)


def evaluate_search(run_dir: str | Path, data: str | Path, *, split: str = "test", bm25: bool = True,
                    rerank: str | Path | None = None, rerank_depth: int = 20) -> dict[str, dict[str, float]] | None:
    """For an embedding run, search metrics (Recall@1/10/100, MRR@10, nDCG@10) on a BEIR folder or a pairs file:
    the model, BM25 and their reciprocal-rank fusion, and a rerank run over the best of them; None for a run
    of another task or a file of scored pairs (`evaluate` scores those)."""
    from bertkit.evaluation.retrieval import evaluate_search as search_metrics
    from bertkit.evaluation.retrieval import read_search_data

    predictor = Predictor.from_path(run_dir)
    if predictor.task.name != "embedding" or predictor.task.state().get("problem") == "scored":
        return None
    reranker = Predictor.from_path(rerank) if rerank else None
    return search_metrics(read_search_data(data, split), embedder=predictor, bm25=bm25, fusion=bm25,
                          reranker=reranker, rerank_depth=rerank_depth)


def search(run_dir: str | Path, corpus: str | Path, queries: list[str], *, top_k: int = 10,
           column: str | None = None, vectors: str | Path | None = None, index: str | Path | None = None,
           rerank: str | Path | None = None, rerank_depth: int = 20) -> list[list[dict[str, Any]]]:
    """The `top_k` passages of `corpus` (a data file) nearest to each query by an embedding run's vectors
    (exact cosine similarity; with `index`, a usearch HNSW index file, built once), reordered by a rerank run
    when given. `vectors`: a .npy file of the corpus's vectors (`bertkit embed`), read when it exists and
    written when it does not."""
    from bertkit.evaluation.retrieval import search_corpus

    return search_corpus(embedder(run_dir), corpus, queries, top_k=top_k, column=column, vectors=vectors,
                         index=index, reranker=Predictor.from_path(rerank) if rerank else None,
                         rerank_depth=rerank_depth)


def mine(pairs: str | Path, output: str | Path, *, count: int = 3, model: str | Path | None = None,
         corpus: str | Path | None = None, skip_top: int = 0) -> int:
    """Write `pairs` (query and passage columns) to `output` (JSONL) with a `negative` list of `count` hard
    negatives each, from BM25 or an embedding run; returns the number of pairs."""
    from bertkit.evaluation.retrieval import mine_file

    return mine_file(pairs, output, count=count, embedder=Predictor.from_path(model) if model else None,
                     corpus=corpus, skip_top=skip_top)


def embedder(path: str | Path) -> Predictor:
    """An embedding run, or a model that was never a run ('embedded', a model folder, a hub id) as one."""
    from bertkit.run_dir import RunDir

    if RunDir(path).exists() or (Path(path) / "bertkit_export.json").is_file():
        return Predictor.from_path(path)
    return Predictor.from_encoder(str(path))


def zero_shot(model: str | Path, texts: list[str], labels: dict[str, str]) -> list[dict[str, Any]]:
    """Each text's label among `labels` ({label: description in words}) by the similarity of its vector with the
    descriptions', from an embedding run or model (`embedder`)."""
    from bertkit.inference.zero_shot import zero_shot as classify

    return classify(embedder(model), texts, labels)


def evaluate_zero_shot(model: str | Path, data: str | Path, labels: dict[str, str], *, fmt: str | None = None,
                       text_column: str | None = None, label_column: str | None = None) -> dict[str, float]:
    """Accuracy, macro F1 and MCC of `zero_shot` on a labelled file (text and label columns: text, label)."""
    from bertkit.inference.zero_shot import evaluate_file

    return evaluate_file(embedder(model), data, labels, fmt=fmt, text_column=text_column, label_column=label_column)


def check_data(train: str | Path, dev: str | Path | None = None, *, task: str = "classification",
               model: str | None = None, find_label_errors: bool = False, **options: Any) -> DataReport:
    """Check a training file (and a dev file) before training: labels and imbalance, duplicates, conflicting
    labels, dev rows also in train, lengths against the window, unknown tokens; with `find_label_errors`, the
    rows whose label a quick out-of-fold model contradicts. `options`: max_length, fmt and column names."""
    return check_files(str(train), str(dev) if dev else None, task=task, model=model,
                       find_label_errors=find_label_errors, **options)
