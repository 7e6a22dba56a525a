"""The run report's views of a run's dev set, one per task, from what the run saved (`DevData`): HTML made
with `bertkit.evaluation.html`. A task gets a view with `@register_view("task name")` on a function of
`DevData` (returning None when the saved files do not allow one) and an import line below; a task without
one has no "Dev set in detail" section."""

from __future__ import annotations

from collections.abc import Callable

from bertkit.evaluation.html import DevData

__all__ = ["VIEWS", "register_view", "dev_view"]

VIEWS: dict[str, Callable[[DevData], str | None]] = {}


def register_view(task: str) -> Callable:
    """Function decorator: the report's view of the dev set of runs of `task`."""

    def deco(view: Callable[[DevData], str | None]) -> Callable[[DevData], str | None]:
        VIEWS[task] = view
        return view

    return deco


def dev_view(dev: DevData) -> str | None:
    """The view of `dev` for its task, or None (no view for the task, or the saved files do not allow one)."""
    view = VIEWS.get(dev.task.name)
    return view(dev) if view is not None else None


from bertkit.evaluation.views import classification, ner, qa  # noqa: E402, F401  (registers the views)
