"""Files, written so that a crash never leaves half of one: atomic writes through a temp file and a rename,
user-named outputs checked before any work, hashing, and whether a process recorded in a file still runs.
Every layer writes through here."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from bertkit.errors import DataError

__all__ = ["atomic_write_text", "output_target", "write_output", "normal_permissions", "sha256_file",
           "process_alive", "split_lines"]

_LINE_END = re.compile(r"\r\n|\r|\n")


def split_lines(text: str) -> list[str]:
    """The lines of a text file's content, split at \\n, \\r\\n or \\r only. `str.splitlines` also splits at
    U+0085, U+2028, U+2029 and other separators that real text carries inside a line (a JSON string, a
    review, a token), which would cut one record in two."""
    lines = _LINE_END.split(text)
    return lines[:-1] if lines and lines[-1] == "" else lines


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the permissions open() would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

def output_target(path: str | Path, *, inputs: tuple[str | Path, ...] = ()) -> Path:
    """Where a file the user named for output (predictions, a report) is written: through a symbolic link
    to its target. Refused, before any work: a folder, a file that is one of `inputs`, and a place where no
    file can be created (a read-only folder or file system)."""
    target = Path(os.path.realpath(path))
    if target.is_dir():
        raise DataError(f"{path}: is a folder; name a file to write")
    for source in inputs:
        if source and Path(source).exists() and target.exists() and os.path.samefile(target, source):
            raise DataError(f"{path}: is the input file {source}; writing there would replace it; choose another "
                            "file")
    if not target.exists() or target.is_file():  # written through a temp file beside it: that must be possible
        folder = next(p for p in (target.parent, *target.parent.parents) if p.exists())
        try:
            fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
        except OSError as exc:
            raise DataError(f"{path}: cannot write in {folder} ({exc.strerror}); choose a file in a writable "
                            "folder") from None
        os.close(fd)
        os.unlink(probe)
    return target

def write_output(path: str | Path, text: str, *, inputs: tuple[str | Path, ...] = ()) -> Path:
    """Write a user-named output: a regular file (new or not) atomically, through a link to its target; a
    FIFO, a device or another non-regular file directly (it cannot be renamed over). Returns the target."""
    target = output_target(path, inputs=inputs)
    if target.exists() and not target.is_file():
        with open(target, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        atomic_write_text(target, text)
    return target

def normal_permissions(folder: Path) -> None:
    """Give every file under `folder` the permissions open() would (some writers create them 0600)."""
    mode = 0o666 & ~_umask()
    for path in folder.rglob("*"):
        if path.is_file():
            os.chmod(path, mode)

def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

def sha256_file(path: str | Path) -> str:
    """The sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def process_alive(pid: Any) -> bool:
    """Whether process `pid` is running: it exists (owned by anyone) and is not a zombie (finished, not yet
    reaped by its parent)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):  # no /proc (macOS): os.kill said it exists
        return True
