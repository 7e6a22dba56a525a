"""The New-run form's task list, each task's options and the data columns it reads, from the registered
task plug-ins and their config classes: a task added with `@register_task` appears in the form with its
options (`TaskConfig` fields: a choice list for a `Literal`, the field's help as the hint) and its columns
(the `data.*_column` fields tagged with the task or with none) without a line here."""

from __future__ import annotations

import typing
from typing import Any

__all__ = ["task_forms", "task_keys"]


def _choices(hint: Any) -> list[str] | None:
    found = [a for a in typing.get_args(hint) if isinstance(a, str)]
    found += [a for arg in typing.get_args(hint) for a in typing.get_args(arg) if isinstance(a, str)]
    return found or None


def _field(row: Any) -> dict[str, Any]:
    default = row.field.default
    return {"key": row.key, "name": row.key.split(".", 1)[1], "help": row.field.metadata.get("help", ""),
            "default": default if isinstance(default, (str, int, float, bool)) else None,
            "choices": _choices(row.hint), "flag": row.flag}


def task_forms() -> list[dict[str, Any]]:
    """[{name, intended_use, options: [field], columns: [field]}], classification (the default) first; a
    field is {key, name, help, default, choices, flag}."""
    from bertkit.config_flags import config_flags
    from bertkit.tasks.base import TASKS

    rows = config_flags()
    forms = []
    for name in sorted(TASKS, key=lambda n: (n != "classification", n)):
        mine = [row for row in rows if row.tasks is None or name in row.tasks]  # untagged: every task's
        forms.append({
            "name": name, "intended_use": TASKS[name].intended_use,
            "options": [_field(r) for r in mine if r.key.startswith("task.") and r.key != "task.name"],
            "columns": [_field(r) for r in mine if r.key.startswith("data.") and r.key.endswith("_column")]})
    return forms


def task_keys(task: str) -> tuple[set[str], set[str]]:
    """The option keys (`task.problem`) and column names (`text_column`) the form may send for `task`."""
    form = next((f for f in task_forms() if f["name"] == task), None)
    if form is None:
        return set(), set()
    return {f["key"] for f in form["options"]}, {f["name"] for f in form["columns"]}
