"""The contract every task plug-in keeps, run over all registered tasks.

A new task adds a sample (rows, data settings) to SAMPLES; the rest of the suite picks it up.
"""

import numpy as np
import pytest
import torch

from bertkit.config import DataConfig, TaskConfig
from bertkit.data.readers import Table
from bertkit.models.loading import build_model, load_tokenizer
from bertkit.tasks import TASKS, get_task

SAMPLES = {
    "classification": (
        [{"text": "good film", "label": "pos"}, {"text": "bad plot", "label": "neg"},
         {"text": "the acting was fine", "label": "pos"}],
        DataConfig(),
    ),
}


def test_every_registered_task_has_a_sample():
    assert set(TASKS) <= set(SAMPLES), f"add a sample for {set(TASKS) - set(SAMPLES)}"


@pytest.mark.parametrize("name", sorted(TASKS))
def test_task_contract(name, tiny_model_dir):
    rows, data_cfg = SAMPLES[name]
    task = get_task(TaskConfig(name=name))
    table = Table("sample.jsonl", list(rows[0]), rows, list(range(1, len(rows) + 1)))
    examples = task.read_examples(table, data_cfg)
    task.fit(examples)
    task.check_examples(examples, "sample")
    tokenizer = load_tokenizer(str(tiny_model_dir))
    features = task.preprocess(examples, tokenizer, data_cfg)
    batch = task.collate(features, tokenizer.pad_token_id)
    assert batch["input_ids"].shape[0] == len(rows) and batch["attention_mask"].dtype == torch.long
    model = build_model(str(tiny_model_dir), task)
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    loss = task.loss(logits.float(), batch)
    loss.backward()
    assert torch.isfinite(loss)
    out = task.postprocess(logits.detach().numpy())
    assert len(out) == len(rows)
    scores = task.metrics(logits.detach().numpy().astype(np.float32), examples)
    assert task.primary_metric in scores
    restored = get_task(TaskConfig(name=name), task.state())
    assert restored.postprocess(logits.detach().numpy()) == out
