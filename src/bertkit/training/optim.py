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


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    from transformers import get_scheduler

    warmup = int(round(cfg.warmup_ratio * total_steps))
    name = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}[cfg.scheduler]
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)
