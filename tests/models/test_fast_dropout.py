import pytest
import torch

from bertkit.models.fast_dropout import FastDropout, keep_mask, use_fast_dropout


def test_keep_rate_and_scaling_match_dropout():
    torch.manual_seed(0)
    mask = keep_mask(torch.Size([1000, 1000]), 0.1, torch.device("cpu"))
    assert abs(mask.float().mean().item() - 0.9) < 0.002
    x = torch.ones(200_000)
    out = FastDropout(0.25).train()(x)
    assert out.unique().tolist() == [0.0, pytest.approx(1 / 0.75)]
    assert abs(out.mean().item() - 1.0) < 0.01  # expectation preserved
    assert torch.equal(FastDropout(0.25).eval()(x), x)


def test_same_seed_same_mask_and_gradient_flows_through_kept_elements():
    x = torch.randn(64, 32, requires_grad=True)
    torch.manual_seed(3)
    a = FastDropout(0.5).train()(x)
    torch.manual_seed(3)
    b = FastDropout(0.5).train()(x)
    assert torch.equal(a, b)
    a.sum().backward()
    assert torch.equal(x.grad != 0, a != 0) and torch.allclose(x.grad[a != 0], torch.tensor(2.0))


def test_swaps_every_dropout_of_a_model(tiny_model_dir):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    before = sum(type(m) is torch.nn.Dropout for m in model.modules())
    assert before > 0 and use_fast_dropout(model) == before
    assert not any(type(m) is torch.nn.Dropout for m in model.modules())
    assert model.bert.encoder.layer[0].attention.self.dropout.p == 0.1  # sdpa still reads p from it
