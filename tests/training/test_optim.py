"""The learning-rate schedules against transformers' `get_scheduler`, step for step."""

from __future__ import annotations

import pytest
import torch

from bertkit.config import TrainConfig
from bertkit.training.optim import build_scheduler


def _rates(scheduler: torch.optim.lr_scheduler.LRScheduler, steps: int) -> list[float]:
    rates = []
    for _ in range(steps):
        rates.append(scheduler.get_last_lr()[0])
        scheduler.optimizer.step()
        scheduler.step()
    return rates


@pytest.mark.parametrize("kind,name", [("linear", "linear"), ("cosine", "cosine"),
                                       ("constant", "constant_with_warmup")])
@pytest.mark.parametrize("total,warmup_ratio", [(50, 0.06), (50, 0.0), (7, 0.5), (4, 0.9), (1, 0.06)])
def test_the_schedules_are_transformers_own(kind, name, total, warmup_ratio):
    from transformers import get_scheduler

    def optimizer() -> torch.optim.Optimizer:
        return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=3e-4)

    cfg = TrainConfig(scheduler=kind, warmup_ratio=warmup_ratio)
    ours = _rates(build_scheduler(optimizer(), cfg, total), total + 2)  # and past the end
    warmup = int(round(warmup_ratio * total))
    theirs = _rates(get_scheduler(name, optimizer(), num_warmup_steps=warmup, num_training_steps=total), total + 2)
    assert ours == pytest.approx(theirs, abs=1e-12)
    assert len(set(ours)) > 1 or (kind == "constant" and warmup == 0)  # the rate moves where the schedule says


def test_a_scheduler_state_round_trips_for_resume():
    cfg = TrainConfig(scheduler="cosine", warmup_ratio=0.1)
    param = torch.nn.Parameter(torch.zeros(1))
    first = build_scheduler(torch.optim.SGD([param], lr=1e-3), cfg, 40)
    _rates(first, 13)
    again = build_scheduler(torch.optim.SGD([param], lr=1e-3), cfg, 40)
    again.load_state_dict(first.state_dict())
    assert _rates(again, 5) == _rates(first, 5)
