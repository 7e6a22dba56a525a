"""Which saved heads a task keeps: the head a model directory holds (read from its config.json by the task
whose architecture it is) and how a head trained for one task state serves another. The task declares what
its head is (`Task.auto_model_class`, `Task.head_architectures`, `Task.head_state_from_config`); the
decisions are made here, where models are built."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bertkit.tasks.base import Task

__all__ = ["head_endings", "head_state_of", "head_mapping", "why_new_head"]


def head_endings(task_cls: type[Task]) -> tuple[str, ...]:
    """Endings of the `architectures` names in a config.json whose head the task trains: those it declares,
    else its auto class's ("ForSequenceClassification"); none for a task whose model is the bare encoder
    (`AutoModel`: an embedding model has no head to recognise)."""
    if task_cls.head_architectures is not None:
        return task_cls.head_architectures
    ending = task_cls.auto_model_class.removeprefix("AutoModel")
    return (ending,) if ending else ()


def head_mapping(task: Task, parent: dict[str, Any]) -> list[int] | None:
    """How a head trained for `parent` (a task state: task, problem, labels) serves the fitted `task`: for each
    of the task's outputs the parent's output it comes from, or None when the head must be new. A head of the
    same task with the same label names is kept, re-ordered by name; a task without labels (QA, MLM) keeps
    the head of the same task as it is ([])."""
    ours = task.state()
    if parent.get("task") != task.name or parent.get("problem", ours.get("problem")) != ours.get("problem"):
        return None
    if "labels" not in ours:
        return []
    theirs = list(parent.get("labels") or [])
    if sorted(ours["labels"]) != sorted(theirs):
        return None
    return [theirs.index(name) for name in ours["labels"]]


def head_state_of(model_dir: str) -> dict[str, Any] | None:
    """What the head saved in a model directory was trained for (task, labels...), read from its
    config.json by the task whose architecture it is, or None when it has no task head (a bare encoder)."""
    import json

    from bertkit.tasks.base import TASKS

    try:
        config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    arch = (config.get("architectures") or [""])[0]
    for task_cls in TASKS.values():
        endings = head_endings(task_cls)
        if endings and arch.endswith(endings):
            return task_cls.head_state_from_config(config)
    return None


def why_new_head(task: Task, parent: dict[str, Any] | None, head_absent: bool) -> str:
    if parent is None:
        return "none saved"
    if parent.get("task") != task.name:
        return f"the parent was trained for {parent.get('task')}"
    if head_absent:
        return "none saved"
    return f"it was trained for {parent.get('task')} ({parent.get('problem')}) with labels {parent.get('labels')}"
