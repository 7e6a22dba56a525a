"""Every setting of a run as a command-line flag, generated from the typed config (`config_flags`), and error
messages of the layers below, which name config keys, said with those flags (`with_flags`). The command line
builds its parser from it; the web app speaks its errors through it."""

from __future__ import annotations

import re
from typing import Any, NamedTuple

__all__ = ["Flag", "config_flags", "with_flags"]


class Flag(NamedTuple):
    flag: str  # --batch-size
    key: str  # train.batch_size
    field: Any  # the dataclass field: default, help and flag metadata
    hint: Any  # its type
    tasks: tuple[str, ...] | None  # the tasks it means something to (None: every task)


def config_flags() -> list[Flag]:
    """Every setting of a run as a flag, generated from the config's fields: the flag is the field's name
    (`train.batch_size` -> `--batch-size`) unless its metadata names another; a boolean field is a switch
    (`--packing`), or a pair for one left unset to be decided at run start (`--length-grouping` and
    `--no-length-grouping`). The task section holds the options of every task, each declared by its task
    (`Task.config_class`); a key two tasks share is one flag."""
    import dataclasses
    import typing

    from bertkit.config import RunConfig, task_configs

    def flag(f) -> str:
        return f.metadata.get("flag") or "--" + f.name.replace("_", "-")

    rows: dict[str, Flag] = {}
    hints = typing.get_type_hints(RunConfig)
    for f in dataclasses.fields(RunConfig):
        if f.name == "task":
            for task, cls in task_configs().items():
                own = typing.get_type_hints(cls)
                for g in dataclasses.fields(cls):
                    key = f"task.{g.name}"
                    tasks = None if g.name == "name" else (*(rows[key].tasks if key in rows else ()), task)
                    rows[key] = Flag(flag(g), key, rows[key].field if key in rows else g, own[g.name], tasks)
        elif dataclasses.is_dataclass(hints[f.name]):
            own = typing.get_type_hints(hints[f.name])
            for g in dataclasses.fields(hints[f.name]):
                key = f"{f.name}.{g.name}"
                rows[key] = Flag(flag(g), key, g, own[g.name], g.metadata.get("tasks"))
        else:
            rows[f.name] = Flag(flag(f), f.name, f, hints[f.name], None)
    return list(rows.values())


# A config key in a message: not part of a path or file name, not the KEY of `--set KEY=VALUE`.
_KEY = re.compile(r"(?<![\w./\\=-])((?:task|data|model|train)\.[a-z_]+|(?<=set )(?:out|resume))\b(?![=/\\])")


def with_flags(message: str) -> str:
    """An error of the layers below, which name config keys (`train.lr`), as the command line says it: the
    key's flag beside it (`--lr (train.lr)`). A key written as `--set key=value` stays as it is."""
    flags = {row.key: row.flag for row in config_flags()}

    def flag_of(match: re.Match) -> str:
        key = match.group(1)
        if key not in flags:
            return key  # a word that only looks like a key ("data.csv")
        return flags[key] if "." not in key else f"{flags[key]} ({key})"

    return _KEY.sub(flag_of, message)
