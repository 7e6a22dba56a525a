"""`bertkit data check`: a training file (and a dev file) read as a run of its task would read them, then
checked (`bertkit.data.checks`); optionally, the rows whose label disagrees with what a quick model learns
from the others (`bertkit.evaluation.label_errors`)."""

from __future__ import annotations

import logging

from bertkit.data.checks import DataReport, check_examples

__all__ = ["check_files"]

log = logging.getLogger("bertkit")


def check_files(train: str, dev: str | None = None, *, task: str = "classification", model: str | None = None,
                max_length: int | None = None, fmt: str | None = None, find_label_errors: bool = False,
                **columns: str | None) -> DataReport:
    """Read `train` (and `dev`) as a run of `task` would (the same readers, columns and errors) and check them;
    the window is the one such a run would choose (or `max_length`)."""
    from bertkit.config import RunConfig
    from bertkit.data.task_files import read_examples
    from bertkit.errors import BertkitError
    from bertkit.models.loading import load_tokenizer, max_positions
    from bertkit.tasks.base import get_task
    from bertkit.tasks.long_inputs import input_lengths
    from bertkit.training.defaults import ModelInfo, window_for

    overrides = {"task.name": task, "data.train": train, "data.dev": dev, "data.max_length": max_length,
                 "data.format": fmt, **{f"data.{k}": v for k, v in columns.items() if v is not None}}
    if model is not None:
        overrides["model.name"] = model
    config = RunConfig().with_overrides({k: v for k, v in overrides.items() if v is not None})
    plug_in = get_task(config.task)
    tokenizer = load_tokenizer(config.model.name)
    train_examples = read_examples(plug_in, train, config.data, tokenizer)
    dev_examples = read_examples(plug_in, dev, config.data, tokenizer) if dev else None
    problem = None
    try:
        plug_in.fit(train_examples)
        problem = plug_in.state().get("problem")
    except BertkitError as exc:  # what the run would refuse is an error here too
        log.warning("%s", exc)
    lengths = window = None
    if plug_in.reads_long_inputs:
        lengths = input_lengths(train_examples, tokenizer)
        window = config.data.max_length or window_for(
            lengths, plug_in.default_max_length, ModelInfo(max_positions=max_positions(config.model.name)))[0]
    report = check_examples(train_examples, dev_examples, train_source=str(train), dev_source=dev,
                            tokenizer=tokenizer, window=window, lengths=lengths, problem=problem)
    if find_label_errors:
        from bertkit.evaluation.label_errors import find_label_errors as find

        report.label_errors = find(train_examples, config.model.name)
    return report
