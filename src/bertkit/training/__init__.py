"""Training layer: optimiser, checkpoints, distillation, the loop, and the run session that assembles them.
The runtime (device, precision, distribution) sits below it, in `bertkit.runtime`."""

from bertkit.training.loop import LoopState, train_loop

__all__ = ["LoopState", "train_loop"]
