"""Training layer: runtime (device, precision, distribution), optimiser, checkpoints and the loop."""

from bertkit.training.loop import LoopState, train_loop
from bertkit.training.runtime import Runtime, resolve_precision

__all__ = ["LoopState", "Runtime", "resolve_precision", "train_loop"]
