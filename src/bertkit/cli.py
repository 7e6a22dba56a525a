"""The `bertkit` command line: parse arguments, call the Python API, print results.

User errors (`BertkitError`) print one line on stderr and exit with code 2; no traceback.
"""

from __future__ import annotations

import argparse
import errno
import gc
import json
import logging
import os
import signal
import sys
from typing import Any

from bertkit.config_flags import config_flags, with_flags
from bertkit.errors import BertkitError, ConfigError, DataError

_SECTIONS = (("task", "task"), ("data", "data"), ("model", "model"), ("train", "training"))


def _add_config_flags(p: argparse.ArgumentParser, command: str) -> None:
    """The settings of a run as flags, one group per config section. `bertkit pretrain` leaves out the
    settings of other tasks and takes several --train files."""
    import typing

    groups = {name: p.add_argument_group(f"{title} settings ({name}.*)") for name, title in _SECTIONS}
    for flag, key, f, hint, tasks in config_flags():
        if command == "pretrain" and tasks is not None and "mlm" not in tasks:
            continue
        group = groups.get(key.split(".")[0], p)
        help_text = f.metadata.get("help", "") + (f" ({', '.join(tasks)})" if tasks else "")
        if key == "data.train" and command == "pretrain":
            group.add_argument(flag, dest=key, nargs="+", default=None, metavar="FILE",
                               help="text files, folders or glob patterns")
        elif hint is bool:
            group.add_argument(flag, dest=key, action="store_const", const=not f.default, default=None,
                               help=help_text)
        elif hint == (bool | None):  # auto unless given: --flag / --no-flag
            group.add_argument(flag, dest=key, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            choices = [a for a in typing.get_args(hint) if isinstance(a, str)]
            if not choices:  # Optional[Literal[...]]
                choices = [a for arg in typing.get_args(hint) for a in typing.get_args(arg) if isinstance(a, str)]
            metavar = "{" + ",".join(choices) + "}" if choices else key.split(".")[-1].upper()
            group.add_argument(flag, dest=key, default=None, metavar=metavar, help=help_text)


def _train_parser(sub, name: str = "train", run_flags: bool = True) -> None:
    if name == "pretrain":
        p = sub.add_parser("pretrain", help="continue masked-language-model pre-training on unlabelled text",
                           description="Continue pre-training (MLM) on in-domain text: plain text (one document "
                           "per line), JSONL or a table, gzip allowed. The run directory is a starting point "
                           "for any task (--init-from). Settings: defaults < CONFIG.yaml < flags.")
    else:
        p = sub.add_parser("train", help="fine-tune a model and write a run directory",
                           description="Fine-tune a model. Settings: defaults < CONFIG.yaml < flags; every "
                           "setting of the run config has a flag, and --set KEY=VALUE sets any of them.")
    p.add_argument("config", nargs="?", help="YAML run config (sections task, data, model, train)")
    if run_flags:  # the flags come from the task plug-ins (torch); `bertkit --help` does without them
        _add_config_flags(p, name)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set train.log_every=50")
    p.add_argument("--quiet", action="store_true", help="no progress bar and only warnings")


def _column_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", default=None, help="csv | tsv | jsonl | parquet | conll (default: by extension)")
    p.add_argument("--text-column", default=None, help="text column (default: as in training)")
    p.add_argument("--text-pair-column", default=None, help="second text column (default: as in training)")


def build_parser(run_flags: bool = True) -> argparse.ArgumentParser:
    from bertkit import __version__

    parser = argparse.ArgumentParser(prog="bertkit", description="Fine-tune BERT-family encoders and use them.")
    parser.add_argument("--version", action="version", version=f"bertkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub, run_flags=run_flags)
    _train_parser(sub, "pretrain", run_flags=run_flags)

    p = sub.add_parser("pipeline", help="run a multi-stage transfer pipeline (stages: in a YAML file)")
    p.add_argument("config", help="YAML file with out, defaults and stages")
    p.add_argument("--out", default=None, help="folder for the stages' run directories (overrides the file)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and only warnings")

    p = sub.add_parser("lineage", help="show the chain of runs from a run back to its base model")
    p.add_argument("run_dir")
    p.add_argument("--json", action="store_true", help="print the chain as JSON")

    p = sub.add_parser("tune", help="search hyperparameters with Optuna (the config's search section)",
                       description="Each trial is a run directory under OUT/trials; the study is kept in "
                       "OUT/tune.db so an interrupted search resumes; OUT/best.yaml is the best config.")
    p.add_argument("config", help="run config YAML with a search section (search.params: setting -> range)")
    p.add_argument("--trials", type=int, required=True, help="finished trials the study should hold")
    p.add_argument("--out", required=True, help="folder for the study, the trial runs and best.yaml")
    p.add_argument("--baseline", action="store_true", help="also train the config as it is, to report the gain")
    p.add_argument("--quiet", action="store_true", help="only warnings and errors")

    p = sub.add_parser("report", help="write a run's HTML report (curves, diagnosis, per-class views, calibration)")
    p.add_argument("run_dir")
    p.add_argument("--out", help="HTML file to write (default: RUN/report.html)")

    p = sub.add_parser("runs", help="list the runs under a folder, or compare runs (settings, metrics, curves)")
    runs = p.add_subparsers(dest="runs_command", required=True)
    q = runs.add_parser("list", help="one line per run directory found under DIR (default: runs)")
    q.add_argument("dir", nargs="?", default="runs")
    q.add_argument("--json", action="store_true", help="print the summaries as JSON lines")
    q = runs.add_parser("compare", help="settings that differ and dev metrics; --report writes overlaid curves")
    q.add_argument("run_dirs", nargs="+")
    q.add_argument("--report", help="HTML file with the comparison and the learning curves overlaid")
    q.add_argument("--json", action="store_true", help="print the comparison as JSON")
    _data_parser(sub)
    _model_commands(sub)
    return parser


def _data_parser(sub) -> None:
    p = sub.add_parser("data", help="check a data set before training")
    data = p.add_subparsers(dest="data_command", required=True)
    q = data.add_parser("check", help="labels, duplicates, conflicting labels, dev rows in train, lengths, "
                        "unknown tokens; exits 1 on what would make training wrong",
                        description="Reads FILE (and --dev) as `bertkit train` would and reports what a person "
                        "should look at before training. Exit status: 0 checked, 1 an error finding (one class, "
                        "a dev set that is the training set, dev labels training never has), 2 unreadable data.")
    q.add_argument("file", help="training data file")
    q.add_argument("--dev", help="dev data file")
    q.add_argument("--task", default="classification", help="task plug-in name (default: classification)")
    q.add_argument("--model", default=None, help="model whose tokenizer and window to measure with (default: embedded)")
    q.add_argument("--max-length", type=int, default=None, help="the window (default: as a run would choose it)")
    _column_flags(q)
    q.add_argument("--label-column", default=None, help="label column (default: label)")
    q.add_argument("--find-label-errors", action="store_true",
                   help="rank the rows whose label an out-of-fold model of the other rows contradicts (cleanlab)")
    q.add_argument("--json", action="store_true", help="print the report as one JSON object")


def _model_commands(sub) -> None:
    """The commands that use a trained model: export, serve, ui, evaluate, predict."""
    _export_parser(sub)
    _serve_parser(sub)
    _ui_parser(sub)
    _use_parsers(sub)


def _export_parser(sub) -> None:
    p = sub.add_parser("export", help="write a run's final model as a Hugging Face model directory or ONNX")
    p.add_argument("run_dir")
    p.add_argument("--out", required=True, help="directory to create")
    p.add_argument("--format", choices=["hf", "onnx"], default="hf",
                   help="hf: safetensors model directory (default); onnx: ONNX graph for ONNX Runtime")
    p.add_argument("--quantize", choices=["int8"], default=None, help="onnx: dynamic int8 weights (smaller, "
                   "faster on CPU; the accuracy change is measured on dev and reported)")
    p.add_argument("--check-data", default=None, help="labelled file for the parity check (default: the run's dev)")
    p.add_argument("--merge", action="store_true", help="fold a LoRA adapter into the base weights")


def _serve_parser(sub) -> None:
    p = sub.add_parser("serve", help="serve a run (or an ONNX export) over HTTP with dynamic batching")
    p.add_argument("run_dir")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="server processes, each with its own model")
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' (default: "
                   "$BERTKIT_API_KEY; none: open)")
    p.add_argument("--max-items", type=int, default=64, help="inputs per request (413 above)")
    p.add_argument("--max-chars", type=int, default=20_000, help="characters per text (413 above)")
    p.add_argument("--max-body-bytes", type=int, default=2 * 2**20, help="request body size (413 above)")
    p.add_argument("--no-batching", action="store_true", help="run each request alone")
    p.add_argument("--max-batch-items", type=int, default=64, help="examples per batched forward pass")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a request waits for company")
    p.add_argument("--body-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="answer 408 to a client that has not sent its whole body after this long")
    p.add_argument("--header-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="close a connection whose request line and headers are not in after this long (408)")
    p.add_argument("--max-json-depth", type=int, default=16, help="nesting of the request's JSON (422 above)")
    p.add_argument("--quiet", action="store_true", help="only warnings (no access log)")


def _ui_parser(sub) -> None:
    p = sub.add_parser("ui", help="a local web app: start, watch and try runs from a browser",
                       description="Runs, new runs (upload, preview, map columns), live training, try it, export; "
                       "jobs run one at a time as processes of their own (a restarted UI finds them).")
    p.add_argument("--workspace", default=".", help="the folder of the UI's uploads, runs and exports (default: .)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--token", "--api-key", dest="token", default=None,
                   help="the secret every request must carry (default: $BERTKIT_UI_TOKEN, else a fresh one each "
                   "launch, printed in the address to open)")
    p.add_argument("--no-token", action="store_true", help="serve without a token (anyone who can reach the port "
                   "can read the workspace and start jobs)")
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="a Host name to answer besides localhost and IP addresses (repeatable; '*': any)")
    p.add_argument("--allow-path", action="append", default=[], metavar="FOLDER",
                   help="a folder outside the workspace that its paths and symlinks may lead into (repeatable)")
    p.add_argument("--max-upload-mb", type=float, default=200.0, help="the largest file an upload may be")
    p.add_argument("--header-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="close a connection whose request headers are not in after this long")


def _use_parsers(sub) -> None:
    """evaluate and predict: a run's model on a labelled file, or on new text."""
    p = sub.add_parser("evaluate", help="score a run's model on a labelled file")
    p.add_argument("run_dir")
    p.add_argument("--data", required=True, help="labelled data file; for an embedding run also a BEIR folder "
                   "(corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv), scored as search beside BM25")
    p.add_argument("--split", default="test", help="embedding, BEIR folder: the qrels split (default test)")
    p.add_argument("--rerank", default=None, help="embedding: a rerank run that reorders the best first ranking")
    p.add_argument("--rerank-depth", type=int, default=20, help="candidates the reranker reads (default 20)")
    p.add_argument("--no-bm25", action="store_true", help="embedding: leave BM25 and fusion out")
    _zero_shot_flag(p)
    _column_flags(p)
    p.add_argument("--label-column", default=None, help="label column (default: as in training)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    _quantize_flag(p)

    p = sub.add_parser("predict", help="label new text with a run's model")
    p.add_argument("run_dir")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", help="data file; one prediction per row, in input order")
    src.add_argument("--text", help="one text; prints one JSON object")
    src.add_argument("--question", help="qa: a question; with --context, prints one JSON object")
    p.add_argument("--text-pair", help="second text of a pair, with --text")
    p.add_argument("--context", help="qa: the passage that holds the answer, with --question")
    p.add_argument("--output", help="JSONL file for the predictions of --input (default: stdout)")
    _column_flags(p)
    _quantize_flag(p)
    _zero_shot_flag(p)

    p = sub.add_parser("search", help="the passages of a corpus nearest to a query, by an embedding run")
    p.add_argument("run_dir")
    p.add_argument("--corpus", required=True, help="data file of the passages (column: --column)")
    p.add_argument("--query", required=True, action="append", help="a query (repeat for several)")
    p.add_argument("--top-k", type=int, default=10, help="passages per query (default 10)")
    p.add_argument("--column", default=None, help="column of the passages (default: text, or passage/...)")
    p.add_argument("--vectors", default=None, help="the corpus's vectors from bertkit embed (.npy), made once and "
                   "reused; written here when the file does not exist")
    p.add_argument("--index", default=None, help="an approximate (HNSW) index file of the corpus, built on the "
                   "first call and reused: for corpora too large to compare every vector (needs usearch)")
    p.add_argument("--rerank", default=None, help="a rerank run that reorders the top --rerank-depth passages")
    p.add_argument("--rerank-depth", type=int, default=20, help="candidates the reranker reads (default 20)")

    p = sub.add_parser("mine", help="hard negatives for (query, passage) pairs, from BM25 or an embedding run")
    p.add_argument("--input", required=True, help="pairs file (query/anchor and passage/positive columns)")
    p.add_argument("--output", required=True, help="JSONL file: each pair with a 'negative' list")
    p.add_argument("--count", type=int, default=3, help="negatives per pair (default 3)")
    p.add_argument("--model", default=None, help="an embedding run to rank with (default: BM25)")
    p.add_argument("--corpus", default=None, help="more passages to draw negatives from (column: text or passage)")
    p.add_argument("--skip-top", type=int, default=0, help="pass over this many of the best non-positive passages "
                   "(likely unlabelled positives); default 0")

    p = sub.add_parser("embed", help="vectors of a file's texts from an embedding run (.npy, .parquet or .jsonl)")
    p.add_argument("run_dir")
    p.add_argument("--input", required=True, help="data file (CSV, TSV, JSONL, Parquet), read a chunk at a time")
    p.add_argument("--output", required=True, help="file to write: .npy (an N x H float32 array), .parquet or "
                   ".jsonl (id and embedding per row)")
    p.add_argument("--column", default=None, help="column to embed (default: text, or query/anchor/...)")
    p.add_argument("--id-column", default=None, help="column copied beside each vector (default: id when present)")
    p.add_argument("--format", default=None, help="input format (default: by extension)")


def _zero_shot_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--zero-shot", action="append", default=None, metavar="LABEL=DESCRIPTION",
                   help="classify without training: each label described in words (repeat per label); RUN_DIR may "
                   "be an embedding run or a model ('embedded', a model folder)")


def _quantize_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quantize", choices=["int8"], default=None,
                   help="run the model with PyTorch dynamic int8 (CPU); RUN_DIR may also be an ONNX export folder")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (it may be replaced after set-up, e.g. by pytest)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _configure_logging(quiet: bool) -> None:
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("bertkit: %(message)s"))
    root = logging.getLogger("bertkit")
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if quiet else logging.INFO)
    root.propagate = False


def _cmd_train(args: argparse.Namespace) -> int:
    from bertkit.api import train
    from bertkit.config import RunConfig, load_config

    cfg = load_config(args.config) if args.config else RunConfig()
    overrides = {row.key: getattr(args, row.key, None) for row in config_flags()}
    if args.command == "pretrain":
        if overrides["task.name"] not in (None, "mlm"):
            raise BertkitError(f"bertkit pretrain trains the mlm task; --task {overrides['task.name']} belongs to "
                               "bertkit train")
        overrides["task.name"] = "mlm"
        if overrides["data.train"]:
            overrides["data.train"] = os.pathsep.join(overrides["data.train"])
    for item in args.overrides:
        if "=" not in item:
            raise BertkitError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.lr=3e-5")
        key, value = item.split("=", 1)
        overrides[key.strip()] = value
    cfg = cfg.with_overrides(overrides)
    result = train(cfg, progress=not args.quiet)
    if int(os.environ.get("RANK", "0")) != 0:  # one summary from a data-parallel launch, not one per process
        return 0
    if result.metrics:
        metrics = " ".join(f"{k}={v:.4f}" for k, v in result.metrics.items())
        print(f"dev {metrics} (best step {result.best_step} of {result.steps}, {result.train_seconds:.0f} s)")
    else:
        print(f"no dev set: the model of the last step ({result.steps}, {result.train_seconds:.0f} s) is kept; "
              f"score it with: bertkit evaluate {result.run_dir} --data FILE")
    print(f"run directory: {result.run_dir}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from bertkit.api import evaluate, evaluate_search, evaluate_zero_shot
    from bertkit.inference.zero_shot import parse_labels

    if args.zero_shot:
        metrics = evaluate_zero_shot(args.run_dir, args.data, parse_labels(args.zero_shot), fmt=args.format,
                                     text_column=args.text_column, label_column=args.label_column)
        print(json.dumps(metrics) if args.json else "\n".join(f"{k:>16}  {v:.4f}" for k, v in metrics.items()))
        return 0

    table = evaluate_search(args.run_dir, args.data, split=args.split, bm25=not args.no_bm25, rerank=args.rerank,
                            rerank_depth=args.rerank_depth)
    if table is not None:
        if args.json:
            print(json.dumps(table))
        else:
            keys = [k for k in next(iter(table.values())) if k != "seconds"]
            print(f"{'system':>16}  " + "  ".join(f"{k:>10}" for k in keys) + f"  {'seconds':>8}")
            for name, row in table.items():
                print(f"{name:>16}  " + "  ".join(f"{row[k]:>10.4f}" for k in keys) + f"  {row['seconds']:>8.1f}")
        return 0

    metrics = evaluate(args.run_dir, args.data, fmt=args.format, quantize=args.quantize, text_column=args.text_column,
                       text_pair_column=args.text_pair_column, label_column=args.label_column)
    if args.json:
        print(json.dumps(metrics))
    else:
        for key, value in metrics.items():
            print(f"{key:>16}  {value:.4f}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from bertkit.inference.predictor import Predictor
    from bertkit.io import output_target, write_output

    if args.output:
        output_target(args.output, inputs=(args.input,))  # refused before the model is loaded
    if args.text_pair and args.text is None:
        raise DataError("--text-pair needs --text")
    if (args.question is None) != (args.context is None):
        raise DataError("--question and --context go together")
    if args.zero_shot:
        return _zero_shot_predict(args)
    predictor = Predictor.from_path(args.run_dir, quantize=args.quantize)
    if args.question is not None:
        print(json.dumps(predictor.predict([{"question": args.question, "context": args.context}])[0],
                         ensure_ascii=False))
        return 0
    if args.text is not None:
        item: Any = {"text": args.text, "text_pair": args.text_pair} if args.text_pair else args.text
        print(json.dumps(predictor.predict([item])[0], ensure_ascii=False))
        return 0
    examples, data_cfg = predictor.read_file(args.input, with_labels=False, fmt=args.format,
                                             text_column=args.text_column, text_pair_column=args.text_pair_column)
    predictions = predictor.predict_examples(examples, data_cfg, source=str(args.input))
    lines = "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in predictions)
    if args.output:
        write_output(args.output, lines, inputs=(args.input,))
        logging.getLogger("bertkit").info("wrote %d predictions to %s", len(predictions), args.output)
    else:
        sys.stdout.write(lines)
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    from bertkit.api import search

    for query, hits in zip(args.query, search(args.run_dir, args.corpus, args.query, top_k=args.top_k,
                                               column=args.column, vectors=args.vectors, index=args.index,
                                               rerank=args.rerank,
                                               rerank_depth=args.rerank_depth)):
        print(json.dumps({"query": query, "hits": hits}, ensure_ascii=False))
    return 0


def _cmd_mine(args: argparse.Namespace) -> int:
    from bertkit.api import mine

    rows = mine(args.input, args.output, count=args.count, model=args.model, corpus=args.corpus,
                skip_top=args.skip_top)
    logging.getLogger("bertkit").info("wrote %d pairs with negatives to %s", rows, args.output)
    return 0


def _cmd_embed(args: argparse.Namespace) -> int:
    from bertkit.inference.embed import embed_file
    from bertkit.inference.predictor import Predictor
    from bertkit.io import output_target

    output_target(args.output, inputs=(args.input,))  # refused before the model is loaded
    rows = embed_file(Predictor.from_path(args.run_dir), args.input, args.output, column=args.column,
                      fmt=args.format, id_column=args.id_column)
    logging.getLogger("bertkit").info("wrote %d vectors to %s", rows, args.output)
    return 0


def _zero_shot_predict(args: argparse.Namespace) -> int:
    from bertkit.api import zero_shot
    from bertkit.data.readers import read_table
    from bertkit.inference.zero_shot import parse_labels
    from bertkit.io import write_output

    labels = parse_labels(args.zero_shot)
    if args.text is not None:
        print(json.dumps(zero_shot(args.run_dir, [args.text], labels)[0], ensure_ascii=False))
        return 0
    if args.input is None:
        raise DataError("--zero-shot takes --text or --input")
    table = read_table(args.input, args.format)
    column = args.text_column or "text"
    table.require(column, "data.text_column")
    lines = "".join(json.dumps(p, ensure_ascii=False) + "\n"
                    for p in zero_shot(args.run_dir, [str(row.get(column)) for row in table.rows], labels))
    if args.output:
        write_output(args.output, lines, inputs=(args.input,))
    else:
        sys.stdout.write(lines)
    return 0


def _cmd_pipeline(args: argparse.Namespace) -> int:
    from bertkit.pipeline import run_pipeline

    run_pipeline(args.config, out=args.out, progress=not args.quiet,
                 on_stage=lambda name, what: print(f"stage {name}: {what}", flush=True))
    return 0


def _cmd_tune(args: argparse.Namespace) -> int:
    try:
        from bertkit.tune import tune
    except ImportError:
        raise BertkitError("bertkit tune needs optuna; pip install 'bertkit[tune]'") from None
    if args.trials < 1:
        raise BertkitError("--trials must be at least 1")
    result = tune(args.config, args.out, trials=args.trials, baseline=args.baseline)
    for row in result.trials:
        value = f"{row['value']:.4f}" if isinstance(row["value"], float) else "-"
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row["params"].items())
        print(f"trial {row['trial']:>3}  {row['state']:<8} {result.metric} {value:>8}  {params}")
    print(f"best: {result.metric} {result.best_value:.4f} with {result.best_params} ({result.best_run})")
    if result.baseline is not None:
        print(f"baseline (the config as given): {result.metric} {result.baseline:.4f}; "
              f"gain {result.best_value - result.baseline:+.4f}")
    print(f"best config: {result.best_config}  (bertkit train {result.best_config} --out RUN)")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from bertkit.evaluation.report import write_report

    print(f"report: {write_report(args.run_dir, args.out)}")
    return 0


def _cmd_runs(args: argparse.Namespace) -> int:
    from bertkit.evaluation import runs

    if args.runs_command == "list":
        found = runs.list_runs(args.dir)
        if args.json:
            sys.stdout.write("".join(json.dumps(s) + "\n" for s in found))
            return 0
        if not found:
            print(f"no run directories under {args.dir}")
            return 0
        width = max(len(s["run"]) for s in found)
        print(f"{'run':<{width}}  {'task':<28} {'status':<11} {'steps':>6} {'best':>6}  dev")
        for s in found:
            score = f"{s['metric']} {s['value']:.4f}" if s["value"] is not None else "-"
            print(f"{s['run']:<{width}}  {s['task'] + '/' + s['problem']:<28} {s['status']:<11} "
                  f"{s['steps'] if s['steps'] is not None else '-':>6} "
                  f"{s['best_step'] if s['best_step'] is not None else '-':>6}  {score}")
        for s in found:
            if "error" in s:
                print(f"bertkit runs: {s['run']} is damaged: {s['error']}", file=sys.stderr)
        return 0
    table = runs.compare(args.run_dirs)
    if args.report:
        print(f"report: {runs.write_comparison(args.run_dirs, args.report)}")
    if args.json:
        print(json.dumps(table, indent=2, default=str))
        return 0
    names = [str(i + 1) for i in range(len(table["runs"]))]
    for name, path in zip(names, table["runs"]):
        print(f"[{name}] {path}")
    rows = [("setting", names)] + [(k, [repr(x) for x in v]) for k, v in table["differences"].items()]
    rows += [("dev " + k, [f"{x:.4f}" if isinstance(x, float) else "-" for x in v])
             for k, v in table["metrics"].items()]
    width = max(len(r[0]) for r in rows)
    for key, values in rows:
        print(f"{key:<{width}}  " + "  ".join(f"{v:>12}" for v in values))
    if not table["differences"]:
        print("(the runs have the same settings)")
    return 0


def _cmd_lineage(args: argparse.Namespace) -> int:
    from bertkit.run_dir import lineage

    chain = lineage(args.run_dir)
    if args.json:
        print(json.dumps(chain, indent=2, ensure_ascii=False))
        return 0
    for depth, item in enumerate(chain):
        lead = "" if depth == 0 else "  " * (depth - 1) + "<- "
        if "run" in item:
            data = item.get("train_data") or {}
            sha = (data.get("sha256") or "")[:12] or f"{len(data.get('files', []))} files"
            dev = item.get("dev") or {}
            metric = item.get("primary_metric")
            score = f"; dev {metric} {dev[metric]:.4f}" if metric in dev else ""
            extras = "".join([", LoRA" if item["lora"] else "", f", distilled from {item['teacher']}"
                              if item.get("teacher") else "", ", config changed since" if item["config_changed"]
                              else ""])
            init = item.get("init") or {}
            if init.get("layers_kept"):
                extras += f", layers {init['layers_kept']} of its parent"
            if init.get("vocabulary"):
                added = init["vocabulary"].get("tokens") or []
                extras += f", +{len(added)} tokens ({' '.join(added[:8])}{' ...' if len(added) > 8 else ''})"
            print(f"{lead}{item['run']}  [{item['task']}/{item['problem']}, {item['status']}{extras}]")
            print(f"{'  ' * depth}   data {data.get('path', '?')} ({data.get('rows', '?')} rows, {sha}){score}; "
                  f"head {init.get('head', '?')}")
        elif "cycle_to" in item:
            print(f"{lead}{item['cycle_to']}  [cycle: this run is also listed above; a run directory was replaced "
                  f"by a run started from it]; base model {item.get('base_model')}")
        elif "missing_run" in item:
            print(f"{lead}{item['missing_run']}  [missing: moved or deleted]; base model {item.get('base_model')}")
        else:
            print(f"{lead}{item['base_model']}  [base model]")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from bertkit.export import export_model, export_onnx

    if args.format == "hf":
        if args.quantize:
            raise ConfigError("--quantize needs --format onnx (or run predict/evaluate --quantize int8 on the run)")
        out = export_model(args.run_dir, args.out, merge=args.merge)
        print(f"model directory: {out}")
        return 0
    out, manifest = export_onnx(args.run_dir, args.out, quantize=args.quantize, check_data=args.check_data)
    parity = manifest.get("parity")
    print(f"ONNX export: {out} ({manifest['model_file']}, {manifest['size_mb']} MB)")
    if parity:
        print(f"parity on {parity['examples']} examples of {parity['data']}: agreement {parity['agreement']:.4f}, "
              f"{parity['metric']} {parity['torch']:.4f} (PyTorch) -> {parity['export']:.4f} (export)")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from bertkit.serve.app import ServeSettings, serve

    for flag in ("workers", "max_items", "max_chars", "max_body_bytes", "max_batch_items"):
        if getattr(args, flag) < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} must be at least 1")
    if args.max_wait_ms < 0:
        raise ConfigError(f"--max-wait-ms must be >= 0, got {args.max_wait_ms}")
    for flag in ("body_timeout", "header_timeout"):
        if not getattr(args, flag) > 0:
            raise ConfigError(f"--{flag.replace('_', '-')} must be positive, got {getattr(args, flag)}")
    if args.max_json_depth < 2:
        raise ConfigError(f"--max-json-depth must be at least 2 (an object holding a list), got {args.max_json_depth}")
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be a TCP port, 0 to 65535, got {args.port}")
    key = args.api_key if args.api_key is not None else os.environ.get("BERTKIT_API_KEY")
    if key is not None and not key.strip():
        raise ConfigError("the API key (--api-key or $BERTKIT_API_KEY) is empty, which would leave the server open; "
                          "give a key, or unset it to serve without one")
    settings = ServeSettings(path=args.run_dir, api_key=key, body_timeout=args.body_timeout,
                             header_timeout=args.header_timeout, max_json_depth=args.max_json_depth,
                             max_items=args.max_items, max_chars=args.max_chars, max_body_bytes=args.max_body_bytes,
                             batching=not args.no_batching, max_batch_items=args.max_batch_items,
                             max_wait_ms=args.max_wait_ms)
    from bertkit.inference.onnx_model import read_manifest

    if read_manifest(args.run_dir) is None:  # a clear error before the server starts (it would exit 3)
        from bertkit.models.loading import verify_model_dir
        from bertkit.run_dir import RunDir

        run = RunDir(args.run_dir).require(model=True)
        run.load_config(), run.read_state()
        verify_model_dir(run.model_dir)
    serve(settings, host=args.host, port=args.port, workers=args.workers,
          log_level="warning" if args.quiet else "info")
    return 0


def _cmd_ui(args: argparse.Namespace) -> int:
    from bertkit.serve.app import require_server_stack
    from bertkit.ui.app import serve_ui

    require_server_stack()
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be a TCP port, 0 to 65535, got {args.port}")
    if not args.max_upload_mb > 0:
        raise ConfigError(f"--max-upload-mb must be positive, got {args.max_upload_mb}")
    if not args.header_timeout > 0:
        raise ConfigError(f"--header-timeout must be positive, got {args.header_timeout}")
    token = args.token if args.token is not None else os.environ.get("BERTKIT_UI_TOKEN")
    if token is not None and not token.strip():
        raise ConfigError("the token (--token or $BERTKIT_UI_TOKEN) is empty; give one, leave it unset for a fresh "
                          "one, or pass --no-token to run without")
    if token and args.no_token:
        raise ConfigError("--token and --no-token contradict each other; pass one")
    if not os.path.isdir(args.workspace):
        raise ConfigError(f"--workspace {args.workspace}: not a folder; create it first")
    for folder in args.allow_path:
        if not os.path.isdir(folder):
            raise ConfigError(f"--allow-path {folder}: not a folder")
    serve_ui(args.workspace, host=args.host, port=args.port, token=token, no_token=args.no_token,
             allowed_hosts=tuple(args.allowed_host), allowed_paths=tuple(args.allow_path),
             max_upload_mb=args.max_upload_mb, header_timeout=args.header_timeout)
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    from bertkit.api import check_data

    report = check_data(args.file, args.dev, task=args.task, model=args.model,
                        find_label_errors=args.find_label_errors, max_length=args.max_length, fmt=args.format,
                        text_column=args.text_column, text_pair_column=args.text_pair_column,
                        label_column=args.label_column)
    if args.json:
        print(json.dumps(report.as_dict(), ensure_ascii=False))
    else:
        print("\n".join(report.lines()))
    return 1 if report.errors else 0


def main(argv: list[str] | None = None) -> int:
    words = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")]
    args = build_parser(run_flags=bool(words) and words[0] in ("train", "pretrain")).parse_args(argv)
    _configure_logging(getattr(args, "quiet", False))
    commands = {"train": _cmd_train, "pretrain": _cmd_train, "evaluate": _cmd_evaluate, "predict": _cmd_predict,
                "pipeline": _cmd_pipeline, "lineage": _cmd_lineage, "report": _cmd_report, "runs": _cmd_runs,
                "tune": _cmd_tune, "data": _cmd_data, "embed": _cmd_embed,
                "search": _cmd_search, "mine": _cmd_mine,
                "export": _cmd_export,
                "serve": _cmd_serve, "ui": _cmd_ui}
    if args.command not in ("serve", "ui"):  # the server stops gracefully on its own signal handlers
        signal.signal(signal.SIGTERM, _terminated)
    try:
        code = commands[args.command](args)
        sys.stdout.flush()  # a full or closed stdout fails here, inside the handlers, not at exit
        return code
    except BertkitError as exc:
        print(f"bertkit {args.command}: error: {with_flags(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        term = isinstance(exc, Terminated)
        print(f"bertkit {args.command}: {'terminated (SIGTERM)' if term else 'interrupted'}", file=sys.stderr)
        return 143 if term else 130
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM):
            raise
        where = f" ({exc.filename})" if exc.filename else " (standard output)"
        print(f"bertkit {args.command}: error: {exc.strerror}{where}; free space or choose a writable place, "
              "then run the same command again (a training run: with --resume)", file=sys.stderr)
        _drop_stdout()
        return 2


def entry() -> None:
    """The `bertkit` program (and `python -m bertkit`): `main`, then the exit. Before it, the objects alive
    are moved out of the garbage collector's reach (`gc.freeze`), so that the interpreter's final
    collections do not walk the millions of objects that torch and transformers create, which would add
    seconds to every short command (benchmarks/exit_time.py measures it). Files are closed and atexit
    handlers run as before; only objects in reference cycles are left to the operating system, as they are
    at any exit."""
    code = main()
    gc.freeze()
    sys.exit(code)


def _drop_stdout() -> None:
    """After stdout failed (a full device), send what is left in its buffer nowhere, so that the exit does not
    print a second error."""
    try:
        sys.stdout.flush()
    except OSError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


class Terminated(KeyboardInterrupt):
    """SIGTERM (docker stop, Kubernetes, Slurm), handled as Ctrl-C is: the run is marked interrupted."""


def _terminated(signum, frame) -> None:
    raise Terminated()


if __name__ == "__main__":
    entry()
