"""The learning-rate schedules are transformers' (linear, cosine, constant with warmup), step by step."""

import pytest
import torch

from bertkit.config import TrainConfig
from bertkit.training.optim import build_scheduler


@pytest.mark.parametrize("name, reference", [("linear", "linear"), ("cosine", "cosine"),
                                             ("constant", "constant_with_warmup")])
@pytest.mark.parametrize("total, ratio", [(100, 0.06), (7, 0.1), (10, 0.0), (3, 0.5)])
def test_schedules_match_transformers_at_every_step(name, reference, total, ratio):
    from transformers import get_scheduler

    def optimizer():
        return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)

    ours_opt, theirs_opt = optimizer(), optimizer()
    ours = build_scheduler(ours_opt, TrainConfig(scheduler=name, warmup_ratio=ratio), total)
    warmup = int(round(ratio * total))
    theirs = get_scheduler(reference, theirs_opt, num_warmup_steps=warmup, num_training_steps=total)
    for _ in range(total + 2):
        assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), abs=1e-12)
        ours_opt.step(), theirs_opt.step(), ours.step(), theirs.step()
    state = ours.state_dict()  # a checkpoint's scheduler state restores the position
    again = build_scheduler(optimizer(), TrainConfig(scheduler=name, warmup_ratio=ratio), total)
    again.load_state_dict(state)
    assert again.get_last_lr() == ours.get_last_lr()
