"""The classifier's fast forward (last layer for [CLS] only, packed rows) against the stock forward."""

import pytest
import torch

from bertkit.config import DataConfig, TaskConfig
from bertkit.models.loading import build_model, load_tokenizer
from bertkit.tasks.base import Task, get_task
from bertkit.tasks.first_token import packed_logits_through_forward, supports_first_token_path

TEXTS = ["good film", "the plot was very dull and the acting quite weak", "fun", "a lovely warm story",
         "bad", "the movie is superb and the story quite nice"]


@pytest.fixture
def setup(tiny_model_dir):
    task = get_task(TaskConfig())
    examples = [{"text": t, "label": str(i % 3), "where": str(i)} for i, t in enumerate(TEXTS)]
    task.fit(examples)
    tok = load_tokenizer(str(tiny_model_dir))
    model, _ = build_model(str(tiny_model_dir), task, init="pretrained", parent=None)
    features = task.preprocess(examples, tok, DataConfig())
    return task, model, features


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_fast_and_packed_forward_equal_the_stock_forward(setup, attention):
    task, model, features = setup
    model.eval()
    model.config._attn_implementation = attention
    assert supports_first_token_path(model)
    with torch.no_grad():
        stock = Task.forward(task, model, task.collate(features, 0))
        fast = task.forward(model, task.collate(features, 0))
        packed_batch = task.collate_packed(features, 0, 16)
        assert packed_batch["input_ids"].shape[0] < len(features)  # several examples share rows
        packed = task.forward(model, packed_batch)
        through_forward = packed_logits_through_forward(model, packed_batch)  # the data-parallel route
    torch.testing.assert_close(fast, stock, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(through_forward, stock, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(packed, stock, atol=1e-5, rtol=1e-4)


def test_fast_path_gradients_equal_the_stock_ones(setup):
    task, model, features = setup
    model.eval()  # no dropout: both passes compute the same function
    grads = []
    for forward, batch in ((lambda m, b: Task.forward(task, m, b), task.collate(features, 0)),
                           (task.forward, task.collate_packed(features, 0, 16))):
        model.zero_grad()
        task.loss(forward(model, batch), batch).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-5, rtol=1e-3)
