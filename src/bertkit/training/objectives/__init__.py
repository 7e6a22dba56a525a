"""What the training loop minimises, as composable objectives over the model's outputs: the task's own loss
(`TaskLoss`), distillation from a teacher (`Distillation`, the task loss mixed with soft targets) and the
few-shot recipe's contrastive phase (`Contrastive`, pairs of examples and their cosine similarity) and gradient
caching for in-batch losses (`GradCache`, a large batch embedded in mini-batches). Each
says how its batches are built from the training features, what the model computes on one, and the loss;
the task itself is only asked for what is its own (its batches, its forward pass, its loss)."""

from bertkit.training.objectives.base import Objective, TaskLoss
from bertkit.training.objectives.contrastive import Contrastive
from bertkit.training.objectives.distillation import Distillation
from bertkit.training.objectives.grad_cache import GradCache

__all__ = ["Objective", "TaskLoss", "Distillation", "Contrastive", "GradCache"]
