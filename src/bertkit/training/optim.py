"""AdamW with decoupled weight decay (never on biases or LayerNorm), optional layer-wise learning-rate
decay, and warmup + decay schedules."""

from __future__ import annotations

import math

import torch

from bertkit.config import TrainConfig

__all__ = ["build_optimizer", "build_scheduler", "count_steps"]


def _no_decay(name: str, param: torch.nn.Parameter) -> bool:
    return param.ndim < 2 or "LayerNorm" in name or "layer_norm" in name or name.endswith(".bias")


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig, depths: dict[str, int] | None = None,
                    n_layers: int = 0) -> torch.optim.Optimizer:
    """AdamW over the parameters that train. With `depths` (0 embeddings, 1..n layers, n+1 head) and
    `cfg.layer_lr_decay` < 1, a parameter at depth d learns at lr x decay^(n + 1 - d)."""
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        scale = 1.0
        if depths is not None and cfg.layer_lr_decay < 1.0:
            scale = cfg.layer_lr_decay ** (n_layers + 1 - depths[name])
        wd = 0.0 if _no_decay(name, param) else cfg.weight_decay
        groups.setdefault((scale, wd), []).append(param)
    param_groups = [{"params": ps, "lr": cfg.lr * scale, "weight_decay": wd}
                    for (scale, wd), ps in sorted(groups.items(), key=lambda kv: (-kv[0][0], -kv[0][1]))]
    try:  # the fused kernel is several times faster on CPU and GPU; older builds lack it for some devices
        return torch.optim.AdamW(param_groups, lr=cfg.lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(param_groups, lr=cfg.lr)


def count_steps(cfg: TrainConfig, batches_per_epoch: int) -> int:
    """Optimiser steps of the run: `max_steps`, else epochs x batches / accumulation."""
    if cfg.max_steps is not None:
        return cfg.max_steps
    return max(1, math.ceil(cfg.epochs * batches_per_epoch / cfg.grad_accum))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig,
                    total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A linear warm-up over `warmup_ratio` of the steps, then linear or cosine decay to 0, or a constant rate:
    transformers' `get_scheduler` schedules ("linear", "cosine", "constant_with_warmup"), step for step
    (`tests/training/test_optim.py` compares them). Written out because importing them loads transformers'
    Trainer utilities and PEFT, which a run without LoRA never needs (with `accelerate`'s `set_seed` in place
    of transformers', 0.4 s less import time at the start of a run, measured with `python -X importtime`)."""
    warmup = int(round(cfg.warmup_ratio * total_steps))
    kind = cfg.scheduler

    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        if kind == "constant":
            return 1.0
        if kind == "linear":
            return max(0.0, (total_steps - step) / max(1, total_steps - warmup))
        progress = (step - warmup) / max(1, total_steps - warmup)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
