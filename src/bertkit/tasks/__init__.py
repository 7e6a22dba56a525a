"""Task plug-ins. Each module registers itself with `@register_task`; importing it here is the one line
that makes it available to the command line and the API."""

from bertkit.tasks.base import TASKS, Task, get_task, register_task
from bertkit.tasks import classification, embedding, mlm, multiple_choice, ner, qa, rerank  # noqa: F401  (registers)

__all__ = ["TASKS", "Task", "get_task", "register_task"]
