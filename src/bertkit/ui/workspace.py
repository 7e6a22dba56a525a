"""The UI's workspace folder and the one rule for every path a request or the YAML panel can name.

A path is taken relative to the workspace, may not hold the path-list separator (':' on POSIX) or start with
'~', and is resolved with its symlinks followed; what it resolves to must lie inside the workspace or inside
a folder given with `bertkit ui --allow-path`. So a data file or model folder symlinked into the workspace
from an allowed place works on every page, and a symlink to anywhere else is refused like '../x' is.
Files the UI writes itself (uploads) are created under a fresh name with O_EXCL|O_NOFOLLOW and renamed into
place, so a planted symlink is replaced, never written through.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bertkit.errors import DataError
from bertkit.ui.jobs import STATE_DIR, JobQueue

__all__ = ["Workspace", "confine_config", "RUNS", "UPLOADS", "EXPORTS", "MODELS", "DATA_SUFFIXES", "NAME"]

DATA_SUFFIXES = (".csv", ".tsv", ".tab", ".jsonl", ".ndjson", ".json", ".parquet", ".pq", ".conll", ".txt", ".gz")
RUNS, UPLOADS, EXPORTS, MODELS = "runs", "uploads", "exports", "models"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")


class Workspace:
    """The workspace folder and every path a request may name, checked to lie inside it (or an allowed
    folder)."""

    def __init__(self, root: str | Path, allowed: Iterable[str | Path] = ()) -> None:
        self.root = Path(root).resolve()
        self.allowed = tuple(Path(a).expanduser().resolve() for a in allowed)  # the user's own flag
        for sub in (RUNS, UPLOADS, EXPORTS, MODELS):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.jobs = JobQueue(self.root)

    def _permitted(self, path: Path) -> bool:
        return any(path == r or r in path.parents for r in (self.root, *self.allowed))

    def inside(self, name: str) -> Path:
        """`name` (relative to the workspace) resolved, symlinks followed, when the rule admits it.

        Raises:
            DataError: no name, a list separator or '~', or a path that leads outside the workspace.
        """
        if not name or "\0" in name:
            raise DataError("no file named")
        if os.pathsep in name:
            raise DataError(f"{name}: one path per field ({os.pathsep!r} joins several, which only a list of "
                            "pre-training files may)")
        if name.startswith("~"):
            raise DataError(f"{name}: '~' is not expanded here; name a path inside the workspace {self.root}")
        lexical = self.root / name
        path = lexical.resolve()
        if not self._permitted(path):
            via = f" (it leads to {path})" if _has_link(self.root, lexical) else ""
            raise DataError(f"{name}: outside the workspace{via}; pick a file inside {self.root}, or start "
                            "bertkit ui with --allow-path FOLDER for a folder of your own outside it")
        inner = [path.relative_to(self.root).parts if self.root in path.parents else ()]
        if lexical.is_relative_to(self.root):
            inner.append(lexical.relative_to(self.root).parts)
        if any(STATE_DIR in parts for parts in inner):
            raise DataError(f"{name}: the UI's own files are not data")
        return path

    def inside_list(self, spec: str) -> str:
        """A list of pre-training files (os.pathsep-joined files, folders or glob patterns), each part and
        each file it expands to checked by the same rule; returns the list with resolved parts."""
        from bertkit.data.text import expand_paths

        parts = [str(self.inside(part)) for part in spec.split(os.pathsep) if part]
        if not parts:
            raise DataError("no file named")
        joined = os.pathsep.join(parts)
        for path in expand_paths(joined):
            if not self._permitted(path.resolve()):
                raise DataError(f"{path}: outside the workspace (it leads to {path.resolve()}); pick files "
                                f"inside {self.root}")
        return joined

    def run(self, name: str) -> Path:
        if not NAME.match(name or ""):
            raise DataError(f"{name!r}: a run name is letters, digits, '.', '_' and '-' (up to 100)")
        return self.root / RUNS / name

    def rel(self, path: Path) -> str:
        """How pages name `path`: relative to the workspace as listed (a symlink keeps its own name)."""
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.resolve().relative_to(self.root).as_posix()

    def _admits(self, path: Path) -> bool:
        try:
            self.inside(self.rel(path))
        except (DataError, ValueError, OSError):
            return False
        return True

    def data_files(self) -> list[str]:
        """Data files in the workspace (not inside runs, exports or the UI's own folder) that the rule admits,
        newest first."""
        found = []
        for path in self.root.rglob("*"):
            parts = path.relative_to(self.root).parts
            if parts[0] in (RUNS, EXPORTS, STATE_DIR, MODELS) or len(parts) > 4 or not path.is_file():
                continue
            if path.name.lower().endswith(DATA_SUFFIXES) and self._admits(path):
                found.append(path)
        return [self.rel(p) for p in sorted(found, key=lambda p: -p.stat().st_mtime)]

    def models(self) -> list[str]:
        """"embedded" and the model folders (config.json inside) under WORKSPACE/models that the rule admits."""
        folders = sorted(p.parent for p in (self.root / MODELS).glob("*/config.json"))
        return ["embedded", *(self.rel(p) for p in folders if self._admits(p))]

    def upload_target(self, name: str) -> tuple[Path, int]:
        """The final path of upload `name` and the file descriptor of a fresh temp file beside it, opened
        O_CREAT|O_EXCL|O_NOFOLLOW (a planted file or symlink of that name makes a new name, never a write
        through it)."""
        folder = self.root / UPLOADS
        if not self._permitted(folder.resolve()):
            raise DataError(f"{folder}: the uploads folder leads outside the workspace; make it a plain folder")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        for _ in range(8):
            tmp = folder / f".{name}.{secrets.token_hex(8)}.part"
            try:
                return tmp, os.open(tmp, flags, 0o600)
            except FileExistsError:
                continue  # something (a planted symlink) holds that name: take another
        raise DataError(f"{folder}: could not create a temp file for {name}")


def _has_link(root: Path, path: Path) -> bool:
    """Whether a component of `path` below `root` is a symlink (the message then says where it leads)."""
    current = root
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return False
    for part in parts:
        current = current / part
        if current.is_symlink():
            return True
    return False


def confine_config(ws: Workspace, config: Any) -> Any:
    """`config` with every file or folder it names checked by the rule and resolved (the job reads what was
    checked). Raises DataError naming the key."""
    def check(key: str, value: str, fn) -> str:
        try:
            return str(fn(value))
        except DataError as exc:
            raise DataError(f"{key}: {exc}") from None

    overrides: dict[str, Any] = {}
    if config.data.train:
        overrides["data.train"] = check("data.train", config.data.train, ws.inside_list)
    for key, value in (("data.dev", config.data.dev), ("model.init_from", config.model.init_from),
                       ("train.distill_from", config.train.distill_from),
                       ("model.extend_vocab_list", config.model.extend_vocab_list)):
        if value:
            overrides[key] = check(key, str(value), ws.inside)
    name = str(config.model.name)
    if name != "embedded" and (not _HUB_ID.match(name) or ".." in name or (ws.root / name).exists()):
        overrides["model.name"] = check("model.name", name, ws.inside)  # a path: confined; else a hub id
    return config.with_overrides(overrides) if overrides else config
