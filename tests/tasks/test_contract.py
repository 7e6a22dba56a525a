"""The contract every task plug-in keeps, run over all registered tasks.

A new task adds a sample file and its data settings to SAMPLES; the rest of the suite picks it up.
"""

import json

import pytest
import torch

from bertkit.config import DataConfig, TaskConfig
from bertkit.data.task_files import read_examples
from bertkit.inference.batched import predict_outputs
from bertkit.models.loading import build_model, load_tokenizer
from bertkit.runtime import Runtime
from bertkit.tasks import TASKS, get_task
from bertkit.tasks.base import example_record

SAMPLES = {
    "classification": ("sample.csv", "text,label\ngood film,pos\nbad plot,neg\nthe acting was fine,pos\n",
                       DataConfig()),
    "qa": ("sample.jsonl", "".join(json.dumps(r) + "\n" for r in [
        {"id": "1", "question": "who left ?", "context": "john left paris .",
         "answers": {"text": ["john"], "answer_start": [0]}},
        {"id": "2", "question": "where ?", "context": "mary visited rome and london .",
         "answers": {"text": ["rome"], "answer_start": [13]}}]), DataConfig()),
    "mlm": ("sample.txt", "the movie was good\n\nthe plot was dull and the acting was weak\njohn visited paris\n",
            DataConfig()),
    "multiple_choice": ("sample.jsonl", "".join(json.dumps(r) + "\n" for r in [
        {"text": "which word is kind ?", "choices": ["good", "bad"], "label": 0},
        {"text": "which word is kind ?", "choices": ["awful", "nice"], "label": "nice"}]), DataConfig()),
    "ner": ("sample.conll", "-DOCSTART- O\n\njohn B-PER\nvisited O\nparis B-LOC\n\nmary B-PER\nleft O\n",
            DataConfig()),
    "embedding": ("sample.jsonl", "".join(json.dumps(r) + "\n" for r in [
        {"query": "who left paris ?", "passage": "john left paris ."},
        {"query": "where did mary go ?", "passage": "mary visited rome and london ."}]), DataConfig()),
    "rerank": ("sample.jsonl", "".join(json.dumps(r) + "\n" for r in [
        {"query": "who left paris ?", "passage": "john left paris .", "negative": ["mary visited rome ."]},
        {"query": "where did mary go ?", "passage": "mary visited rome .", "negative": "john left paris ."},
        {"query": "the plot ?", "passage": "the plot was dull ."}]), DataConfig()),
}


def test_every_registered_task_has_a_sample():
    assert set(TASKS) <= set(SAMPLES), f"add a sample for {set(TASKS) - set(SAMPLES)}"


@pytest.mark.parametrize("name", sorted(TASKS))
def test_task_contract(name, tiny_model_dir, tmp_path):
    filename, content, data_cfg = SAMPLES[name]
    path = tmp_path / filename
    path.write_text(content, encoding="utf-8")
    tokenizer = load_tokenizer(str(tiny_model_dir))
    task = get_task(TaskConfig(name=name))
    assert task.pipeline_tag and task.intended_use and task.output_names  # model cards, ONNX export
    examples = read_examples(task, str(path), data_cfg, tokenizer)
    assert examples and all("where" in ex for ex in examples)
    task.fit(examples)
    task.check_examples(examples, "sample")

    features = task.preprocess(examples, tokenizer, data_cfg)
    batch = task.collate(features, tokenizer.pad_token_id)
    assert batch["input_ids"].shape[0] == len(features) and batch["attention_mask"].dtype == torch.long
    model, _ = build_model(str(tiny_model_dir), task)
    train_batch = task.collate_train(features, tokenizer.pad_token_id)
    assert torch.isfinite(task.loss(task.forward(model, train_batch).float(), train_batch))
    loss = task.loss(task.forward(model, batch).float(), batch)
    loss.backward()
    assert torch.isfinite(loss)

    rt = Runtime("fp32", cpu=True)
    outputs = predict_outputs(model, task, features, rt, tokenizer.pad_token_id, len(examples))
    predictions = task.postprocess(outputs, examples)
    assert len(predictions) == len(examples)
    scores = task.metrics(outputs, examples)
    assert task.primary_metric in scores
    restored = get_task(TaskConfig(name=name), task.state())
    assert restored.postprocess(outputs, examples) == predictions


@pytest.mark.parametrize("name", sorted(TASKS))
def test_task_hooks(name, tiny_model_dir, tmp_path):
    """The optional hooks (each with a default) keep their promises for every task: what a run saves of its
    dev examples, the report's view of them, feature lengths for batching, ONNX sample inputs, input size."""
    from bertkit.evaluation.html import DevData
    from bertkit.evaluation.views import VIEWS, dev_view
    from bertkit.run_dir import RunDir

    filename, content, data_cfg = SAMPLES[name]
    path = tmp_path / filename
    path.write_text(content, encoding="utf-8")
    tokenizer = load_tokenizer(str(tiny_model_dir))
    task = get_task(TaskConfig(name=name))
    examples = read_examples(task, str(path), data_cfg, tokenizer)
    task.fit(examples)
    features = task.preprocess(examples, tokenizer, data_cfg)

    records = [example_record(task, ex) for ex in examples]
    assert all(set(r) <= set(task.example_keys) and "where" in r for r in records)
    json.dumps(records)  # saved as JSON lines
    lengths = task.feature_lengths(features)
    assert len(lengths) == len(features) and all(n >= len(f["input_ids"]) > 0 for n, f in zip(lengths, features))
    sample, axes = task.export_inputs(tokenizer)
    assert "input_ids" in sample and 0 in axes
    assert len({t.shape[0] for t in sample.values()}) == 1

    model, _ = build_model(str(tiny_model_dir), task)
    outputs = predict_outputs(model, task, features, Runtime("fp32", cpu=True), tokenizer.pad_token_id,
                              len(examples))
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    predictions = task.postprocess(outputs, examples) if task.saves_dev_predictions else None
    run.write_dev_outputs(outputs, records, predictions)
    saved_examples, arrays, saved_predictions = run.read_dev_outputs()
    assert saved_examples == json.loads(json.dumps(records))
    view = dev_view(DevData(task, {}, saved_examples, arrays, saved_predictions, 5))
    assert (name in VIEWS) == task.saves_dev_predictions  # a task with a view saves what it reads
    if name not in VIEWS:
        assert view is None
    else:
        assert isinstance(view, str) and "<table" in view

    # The inputs its schema documents are what prediction takes, and each has the schema's JSON type.
    kinds = {str: "string", list: "array", dict: "object"}
    allowed = {b["type"] for b in task.input_schema.get("anyOf", [task.input_schema])}
    assert task.input_examples and all(kinds[type(item)] in allowed for item in task.input_examples)
    raw = task.make_examples(list(task.input_examples), tokenizer)
    raw_features = task.preprocess(raw, tokenizer, data_cfg, with_labels=False)
    raw_outputs = predict_outputs(model, task, raw_features, Runtime("fp32", cpu=True), tokenizer.pad_token_id,
                                  len(raw))
    assert len(task.postprocess(raw_outputs, raw)) == len(raw)
