"""The training loop: one function, read top to bottom.

It yields events ("train"; "eval", in the one schema of `run_dir.eval_record` that metrics.jsonl keeps too;
"save", "early_stop", "done") and leaves logging and writing to the caller; while the caller handles an
event the loop is paused, so a checkpoint taken on "save" captures the exact model, optimiser, RNG and data
position of that step.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch

from bertkit.config import TrainConfig
from bertkit.data.batching import epoch_batches
from bertkit.errors import TrainingError
from bertkit.run_dir import eval_record
from bertkit.runtime import Runtime
from bertkit.training.objectives import Objective

__all__ = ["LoopState", "train_loop", "plan_epoch"]


@dataclass
class LoopState:
    """Where training stands; saved in every checkpoint and restored on resume."""

    step: int = 0  # optimiser steps taken
    epoch: int = 0  # current epoch (0-based)
    group_in_epoch: int = 0  # optimiser steps already taken in this epoch (the data position)
    tokens: int = 0  # real (non-pad) tokens trained on, this process
    best_metric: float | None = None
    best_step: int | None = None
    evals_without_improvement: int = 0
    stopped_early: bool = False
    # The logging window in progress (since the last "train" event), so that a resumed run logs the same
    # averages as an uninterrupted one.
    window_loss: float = 0.0
    window_steps: int = 0
    window_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> LoopState:
        return cls(**{f.name: raw[f.name] for f in fields(cls) if f.name in raw})


@contextlib.contextmanager
def _out_of_memory_hint(batch: dict[str, Any], cfg: TrainConfig) -> Iterator[None]:
    """Turn running out of device or host memory into an error that says what to change."""
    try:
        yield
    except (torch.OutOfMemoryError, MemoryError, RuntimeError) as exc:
        if not isinstance(exc, (torch.OutOfMemoryError, MemoryError)) and "can't allocate memory" not in str(exc):
            raise
        rows, length = batch["input_ids"].shape[:2]
        raise TrainingError(
            f"out of memory on a batch of {rows} x {length} tokens; lower train.batch_size (now {cfg.batch_size}) and "
            "raise train.grad_accum to keep the effective batch, or lower data.max_length, or set train.batch_tokens"
        ) from None


def plan_epoch(lengths: list[int], cfg: TrainConfig, epoch: int, num_shards: int = 1, shard: int = 0
               ) -> list[list[int]]:
    """The batches of one epoch for this process, as the run's batching settings make them."""
    return epoch_batches(lengths, cfg.batch_size, seed=cfg.seed, epoch=epoch, group_by_length=cfg.length_grouping,
                         num_shards=num_shards, shard=shard, max_tokens=cfg.batch_tokens, packed=cfg.packing)


def train_loop(
    *,
    model: torch.nn.Module,
    objective: Objective,
    features: Sequence[dict[str, Any]],
    cfg: TrainConfig,
    rt: Runtime,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    evaluate: Callable[[torch.nn.Module], dict[str, float]],
    total_steps: int,
    pad_id: int,
    state: LoopState,
    metric: str,
    greater_is_better: bool = True,
    before_step: Callable[[int], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Train `objective` until `total_steps` or early stopping, yielding progress events; checkpoints are
    selected by the dev `metric` that `evaluate` returns.

    `before_step(step)` runs before each optimiser step (gradual unfreezing sets what trains there)."""
    lengths = objective.lengths(features)
    sign = 1.0 if greater_is_better else -1.0
    window_start = time.perf_counter()
    model.train()
    while state.step < total_steps:
        batches = plan_epoch(lengths, cfg, state.epoch, rt.num_processes, rt.process_index)
        groups = [batches[i : i + cfg.grad_accum] for i in range(0, len(batches), cfg.grad_accum)]
        for g in range(state.group_in_epoch, len(groups)):
            # --- one optimiser step over `grad_accum` micro-batches -----------------------------------
            if before_step is not None:
                before_step(state.step)
            step_loss = 0.0
            for j, idx in enumerate(groups[g]):
                chosen = [features[i] for i in idx]
                batch = rt.to_device(objective.collate(chosen, pad_id, cfg.pack_length if cfg.packing else None))
                with rt.sync_gradients(model, sync=j == len(groups[g]) - 1), _out_of_memory_hint(batch, cfg):
                    with rt.autocast():
                        outputs = objective.forward(model, batch)  # logits (B, L) or (B, T, L); pooled states
                    loss = objective.loss(outputs.float(), batch) / len(groups[g])
                    rt.backward(loss)
                step_loss += loss.item()
                state.window_tokens += sum(int(v.sum()) for k, v in batch.items() if k.startswith("attention_mask"))
            if not math.isfinite(step_loss):
                raise TrainingError(
                    f"the loss became {step_loss} at step {state.step + 1}; lower train.lr, keep "
                    "train.max_grad_norm at 1.0, or set train.precision to fp32"
                )
            grad_norm = rt.clip(model, cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            state.group_in_epoch = g + 1
            state.window_loss, state.window_steps = state.window_loss + step_loss, state.window_steps + 1
            epoch_end = g == len(groups) - 1
            if epoch_end:  # the data position moves to the start of the next epoch
                state.epoch, state.group_in_epoch = state.epoch + 1, 0
            last = state.step >= total_steps

            if state.step % cfg.log_every == 0 or last:
                elapsed = time.perf_counter() - window_start
                state.tokens += state.window_tokens
                yield {"kind": "train", "step": state.step, "epoch": state.epoch + (0 if epoch_end else
                       round(state.group_in_epoch / len(groups), 4)),
                       "loss": rt.reduce_mean(state.window_loss / state.window_steps), "lr": scheduler.get_last_lr()[0],
                       "grad_norm": grad_norm, "tokens_per_s": state.window_tokens * rt.num_processes / elapsed}
                state.window_loss, state.window_steps, state.window_tokens = 0.0, 0, 0
                window_start = time.perf_counter()

            # --- evaluation, model selection, early stopping ------------------------------------------
            due_eval = last or (state.step % cfg.eval_every == 0 if cfg.eval_every else epoch_end)
            is_best = False
            if due_eval:
                eval_start = time.perf_counter()
                metrics = evaluate(model)
                model.train()
                value = metrics.get(metric)  # None without a dev set: the latest is kept
                is_best = value is None or state.best_metric is None or sign * (value - state.best_metric) > 0
                if is_best:
                    state.best_metric, state.best_step, state.evals_without_improvement = value, state.step, 0
                else:
                    state.evals_without_improvement += 1
                yield eval_record(state.step, state.epoch, metrics, is_best=is_best,
                                  seconds=time.perf_counter() - eval_start)
                window_start += time.perf_counter() - eval_start  # keep evaluation out of throughput
            patience = cfg.early_stopping_patience
            stop = patience is not None and state.evals_without_improvement >= patience
            state.stopped_early = stop
            due_save = is_best or last or stop or (
                state.step % cfg.save_every == 0 if cfg.save_every else due_eval)
            if due_save:
                yield {"kind": "save", "step": state.step}
            if stop:
                yield {"kind": "early_stop", "step": state.step, "best_step": state.best_step}
                return
            if last:
                break
    yield {"kind": "done", "step": state.step}
