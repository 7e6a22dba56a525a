"""The data of a training run: examples read and checked, the task fitted once, a dev split when there is no
dev file, and features from the tokenisation cache (or streamed into a memory-mapped store)."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertkit.config import RunConfig
from bertkit.data.cache import cache_root, cached_features, data_fingerprint, fingerprint
from bertkit.data.checks import check_examples
from bertkit.data.coverage import UNKNOWN_WARNING, coverage, example_texts
from bertkit.data.feature_store import FeatureStore, FeatureWriter
from bertkit.data.splits import stratified_split
from bertkit.data.task_files import iter_examples, read_examples
from bertkit.errors import ConfigError
from bertkit.io import atomic_write_text
from bertkit.models import vocab
from bertkit.run_dir import RunDir
from bertkit.tasks import long_inputs
from bertkit.tasks.base import Task
from bertkit.training.defaults import NO_DEV_BELOW

__all__ = ["RunData", "load_run_data", "task_features", "STREAM_FOLDER", "coverage"]

log = logging.getLogger("bertkit")
STREAM_FOLDER = "stream-features"  # streamed features of a run, when the tokenisation cache is off


@dataclass
class RunData:
    """Training features (a list, or a `FeatureStore` when streamed), dev examples and features, and the
    fingerprints of the files they came from. `train_examples` is None for a streamed file. With
    model.extend_vocab, `tokenizer` is the extended tokenizer the features were made with and `added_tokens`
    what it added (the model is resized to match); else the tokenizer given and []."""

    train_features: Any
    dev_examples: list[dict[str, Any]]
    dev_features: list[dict[str, Any]]
    fingerprints: dict[str, Any]
    train_examples: list[dict[str, Any]] | None
    tokenizer: Any = None
    added_tokens: list[str] = field(default_factory=list)
    window: tuple[int, str] | None = None  # the input length chosen from the training data, and why


def load_run_data(config: RunConfig, task: Task, tokenizer: Any, run: RunDir,
                  keep_all_below: Callable[[list[dict[str, Any]]], int] | None = None,
                  choose_window: Callable[[list[dict[str, Any]], Any], tuple[int, str] | None] | None = None
                  ) -> RunData:
    """Read, check and tokenise the run's data; the task is fitted on the training examples. With no dev file,
    a training set smaller than `keep_all_below(examples)` (default `defaults.NO_DEV_BELOW`) keeps all its
    examples. `choose_window(examples, tokenizer)` may set the input length from the training examples before
    they are tokenised."""
    extend = bool(config.model.extend_vocab or config.model.extend_vocab_list)
    if config.data.stream:
        if extend:
            raise ConfigError("model.extend_vocab needs the whole training text before tokenising, and data.stream "
                              "reads it in chunks; extend the vocabulary in a run without data.stream (bertkit "
                              "pretrain on a sample of the text), then start from it with model.init_from")
        train_features, dev_examples, fingerprints = _streamed_data(config, task, tokenizer, run)
        train_examples = None
    else:
        train_examples, dev_examples, fingerprints = _read_data(config, task, tokenizer, keep_all_below)
    added: list[str] = []
    if extend:
        tokenizer, added, fingerprints["vocabulary"], fingerprints["coverage"] = _extend_vocab(
            config, tokenizer, train_examples)
    window = choose_window(train_examples, tokenizer) if choose_window and train_examples else None
    if window is not None:
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, max_length=window[0]))
    if train_examples is not None:
        train_features = task_features(task, train_examples, tokenizer, config)
    dev_features = task_features(task, dev_examples, tokenizer, config) if dev_examples else []
    if task.reads_long_inputs:
        _say_lengths(task, config, fingerprints, train_features if train_examples is not None else None,
                     dev_features)
    if "coverage" not in fingerprints:  # an extended vocabulary measured it with its new tokenizer already
        fingerprints["coverage"] = coverage(train_examples if train_examples is not None else dev_examples,
                                            tokenizer)
    if fingerprints["coverage"]["unknown_share"] > UNKNOWN_WARNING:
        cov = fingerprints["coverage"]
        fix = (f"lower model.extend_vocab_min_count (now {config.model.extend_vocab_min_count}) to add rarer ones"
               if extend and not config.model.extend_vocab_list else
               "use a model whose vocabulary covers the language (a local folder, --model DIR), or adapt this one: "
               "bertkit pretrain --extend-vocab --train TEXT, then train with --init-from that run")
        log.warning("the tokenizer of %s does not know %.1f%% of the training tokens (its %s), most often %s: the "
                    "model cannot read much of this text; %s", config.model.name, 100 * cov["unknown_share"],
                    tokenizer.unk_token, " ".join(cov["top_unknown"][:10]), fix)
    if fingerprints["coverage"]["normalised_away"] > UNKNOWN_WARNING:
        cov = fingerprints["coverage"]
        log.warning("the tokenizer of %s removes or replaces %.1f%% of the training characters before it reads them "
                    "(most often %s; accents stripped, control characters dropped): the model never sees that "
                    "distinction; if it matters, use a model whose tokenizer keeps them (a cased or multilingual "
                    "one, --model DIR)", config.model.name, 100 * cov["normalised_away"],
                    " ".join(cov["top_normalised"][:10]))
    return RunData(train_features, dev_examples, dev_features, fingerprints, train_examples, tokenizer, added, window)


def _say_lengths(task: Task, config: RunConfig, fingerprints: dict[str, Any], train_features: list[dict] | None,
                 dev_features: list[dict]) -> None:
    """The tokenised lengths of the training and dev inputs against the window (environment.json's data), and
    one line each when some are longer: how many windows read them, or how much of them is cut."""
    window, mode = task.max_length(config.data), config.task.long_inputs
    for name, features in (("training", train_features), ("dev", dev_features)):
        if not features:
            continue
        summary = long_inputs.summarise(features, window)
        fingerprints.setdefault("lengths", {})["train" if name == "training" else "dev"] = summary.as_dict()
        line = summary.line(f"{name} inputs", mode)
        if line:
            (log.warning if summary.cut_examples else log.info)("%s", line)


def _extend_vocab(config: RunConfig, tokenizer: Any, train_examples: list[dict[str, Any]]
                  ) -> tuple[Any, list[str], dict[str, Any], dict[str, Any]]:
    """The tokenizer with the training text's unknown characters (or model.extend_vocab_list) added, the
    added tokens, a record of what changed (for environment.json), and the coverage under the new tokenizer."""
    mc = config.model
    texts = example_texts(train_examples, sample=len(train_examples))
    before = coverage(train_examples, tokenizer)["unknown_share"]
    wanted = (vocab.read_token_list(mc.extend_vocab_list) if mc.extend_vocab_list
              else vocab.new_tokens(texts, tokenizer, mc.extend_vocab_min_count))
    extended, added = vocab.extend_tokenizer(tokenizer, wanted) if wanted else (tokenizer, [])
    measured = coverage(train_examples, extended)
    after = measured["unknown_share"]
    source = mc.extend_vocab_list or f"the training text, characters seen at least {mc.extend_vocab_min_count} times"
    if added:
        log.info("vocabulary: %d tokens added from %s (%s%s); unknown tokens %.1f%% -> %.1f%% of the training text; "
                 "their embeddings start from what the model knows, so pre-train on the text (bertkit pretrain) "
                 "before fine-tuning", len(added), source, " ".join(added[:10]), " ..." if len(added) > 10 else "",
                 100 * before, 100 * after)
    else:
        log.info("vocabulary: nothing to add (%s): the tokenizer represents %s", source,
                 "every listed token already" if mc.extend_vocab_list else "the training text")
    record = {"added": len(added), "source": source, "unknown_share_before": before, "unknown_share_after": after,
              "vocab_size": len(extended)}
    return extended, added, record, measured


def _read_data(config: RunConfig, task: Task, tokenizer: Any,
               keep_all_below: Callable[[list[dict[str, Any]]], int] | None
               ) -> tuple[list[dict], list[dict], dict[str, Any]]:
    data = config.data
    train_examples = read_examples(task, data.train, data, tokenizer)
    limit = keep_all_below(train_examples) if keep_all_below is not None and not data.dev else NO_DEV_BELOW
    fingerprints = {"train": {**data_fingerprint(data.train), "rows": len(train_examples)}}
    if data.dev:
        dev_examples = read_examples(task, data.dev, data, tokenizer)
        fingerprints["dev"] = {**data_fingerprint(data.dev), "rows": len(dev_examples)}
        sha = fingerprints["dev"].get("sha256")
        if sha and sha == fingerprints["train"].get("sha256"):
            log.warning("data.dev %s is the training data (the same content as data.train): its scores will be "
                        "those of data the model learned, not of unseen data; give a separate dev file, or drop "
                        "data.dev to split one off", data.dev)
    elif len(train_examples) < limit:
        # A split would be too small to select a checkpoint on (fewer than 20 examples), or, for the few-shot
        # recipe, which selects nothing, to calibrate on (fewer than 50): a tenth of a small training set lost
        # for a noisy figure. Every example trains; the last step's model is kept.
        log.info("no dev file and %d training examples: none held out (a split would hold fewer than %d, too few "
                 "to %s); every example trains, the model of the last step is kept and the run has no dev "
                 "figures: score it with bertkit evaluate RUN --data FILE (other labelled examples), or give data.dev",
                 len(train_examples), round(limit * data.dev_fraction),
                 "select on" if limit == NO_DEV_BELOW else "calibrate on, and the few-shot recipe selects nothing")
        dev_examples = []
        fingerprints["dev"] = {"rows": 0, "held_out": "none (too few training examples to split a dev set off)"}
    else:
        # The split keeps the proportions of the task's stratification key (a class label), which the raw
        # examples carry; the task is fitted once, on what remains for training.
        keys = task.stratify_keys(train_examples)
        train_idx, dev_idx = stratified_split(keys, data.dev_fraction, config.train.seed)
        dev_examples = [train_examples[i] for i in dev_idx]
        train_examples = [train_examples[i] for i in train_idx]
        fingerprints["dev"] = {"split_from_train": data.dev_fraction, "seed": config.train.seed,
                               "rows": len(dev_examples)}
    task.fit(train_examples)
    task.check_examples(dev_examples, data.dev or f"{data.train} (dev split)")
    fingerprints["checks"] = _say_checks(task, train_examples, dev_examples, data.train,
                                         data.dev or f"{data.train} (dev split)")
    train_examples, note = task.complete_training(train_examples)
    if note:
        log.info("%s", note)
    return train_examples, dev_examples, fingerprints


def _say_checks(task: Task, train: list[dict], dev: list[dict], train_source: str, dev_source: str
                ) -> list[dict[str, Any]]:
    """What `bertkit data check` would say of the data (duplicates, conflicting labels, dev rows in train,
    imbalance), one warning line each; the findings as environment.json records them."""
    report = check_examples(train, dev or None, train_source=str(train_source), dev_source=str(dev_source),
                            problem=task.state().get("problem"))
    for finding in report.findings:
        where = f" (first: {', '.join(finding.where[:3])})" if finding.where else ""
        log.warning("data check: %s%s", finding.message, where)
    return [dataclasses.asdict(f) for f in report.findings]


def tokenizer_fingerprint(tokenizer: Any) -> str:
    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    backend.pop("truncation", None), backend.pop("padding", None)  # call state, set by each tokenizer call
    return fingerprint(type(tokenizer).__name__, backend)


def task_features(task: Task, examples: list[dict], tokenizer: Any, config: RunConfig) -> list[dict]:
    """The task's features of `examples`, from the tokenisation cache when the same examples were tokenised
    the same way before (see `bertkit.data.cache`)."""
    key = {"examples": fingerprint(examples), "tokenizer": tokenizer_fingerprint(tokenizer),
           "task": task.name, "task_config": config.task.__dict__,
           "task_state": task.state(), "data": config.data.__dict__}
    task.use_tokenizer(tokenizer)
    return cached_features(key, lambda: task.preprocess(examples, tokenizer, config.data))


def _streamed_data(config: RunConfig, task: Task, tokenizer: Any, run: RunDir
                   ) -> tuple[FeatureStore, list[dict], dict]:
    """Training features of a file read in chunks (`data.stream`): one pass fits the task (labels), a
    second tokenises each chunk and appends it to a memory-mapped feature file. The file is kept in the
    tokenisation cache under a key of the data file's sha256 and every setting the features depend on,
    with the fitted task state beside it; with the cache off it lives in the run directory until the run
    completes."""
    data = config.data
    if not data.dev:
        raise ConfigError("data.stream needs a data.dev file (a streamed file is never held whole, so no dev split "
                          "is taken from it); split off a dev file, or drop data.stream")
    if config.train.distill_from:
        raise ConfigError("data.stream cannot be combined with train.distill_from (the teacher labels every example "
                          "in memory); drop one of them")
    dev_examples = read_examples(task, data.dev, data, tokenizer)
    source = data_fingerprint(data.train)
    key = fingerprint(source.get("sha256") or source, tokenizer_fingerprint(tokenizer), task.name,
                      config.task.__dict__, {k: v for k, v in data.__dict__.items() if k not in ("dev", "train")})
    root = cache_root()
    folder = (root / "features") if root is not None else run.path / STREAM_FOLDER
    store_path, meta_path = folder / f"stream-{key}.arrow", folder / f"stream-{key}.json"
    meta = _read_json(meta_path) if store_path.is_file() else None
    if meta is not None:
        task.load_state(meta["task_state"])
        log.info("streamed features from the cache: %s", store_path)
    else:
        meta = _write_stream(config, task, tokenizer, store_path, meta_path)
    task.check_examples(dev_examples, data.dev)
    fingerprints = {"train": {**source, "rows": meta["examples"], "streamed": True},
                    "dev": {**data_fingerprint(data.dev), "rows": len(dev_examples)}}
    return FeatureStore(store_path), dev_examples, fingerprints


def _write_stream(config: RunConfig, task: Task, tokenizer: Any, store_path: Path, meta_path: Path
                  ) -> dict[str, Any]:
    data, chunk = config.data, config.data.stream_chunk_rows
    task.fit_chunks(iter_examples(task, data.train, data, tokenizer, chunk))  # pass 1: labels
    task.use_tokenizer(tokenizer)
    examples = 0
    with FeatureWriter(store_path) as writer:  # pass 2: tokenise chunk by chunk
        for examples_chunk in iter_examples(task, data.train, data, tokenizer, chunk):
            writer.write(task.preprocess(examples_chunk, tokenizer, data))
            examples += len(examples_chunk)
        writer.close()
    meta = {"task_state": task.state(), "examples": examples}
    atomic_write_text(meta_path, json.dumps(meta))
    return meta


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
