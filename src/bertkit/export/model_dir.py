"""`bertkit export RUN --out DIR [--merge]`: a run's final model as a plain Hugging Face model directory.

A LoRA run keeps only its adapter and head; `merge=True` folds the adapter into the base weights so the
result loads with `transformers` alone. The directory is written under a temporary name and renamed, so
an interrupted export leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

from bertkit.errors import ConfigError
from bertkit.export.model_card import model_card
from bertkit.io import atomic_write_text, normal_permissions
from bertkit.models.init_source import write_merged_model
from bertkit.models.loading import is_adapter_dir, verify_model_dir, write_checksums
from bertkit.run_dir import RunDir

__all__ = ["export_model", "staged_output", "check_out"]


def export_model(run_dir: str | Path, out: str | Path, *, merge: bool = False) -> Path:
    """Write the final model of `run_dir` to `out` (which must not exist or be empty); returns `out`.

    Raises:
        ConfigError: `out` holds files, or the run is LoRA and `merge` is off.
    """
    run = RunDir(run_dir).require(model=True)
    check_out(out, run.path)
    verify_model_dir(run.model_dir)  # never copy damaged or missing files
    adapter = is_adapter_dir(run.model_dir)
    if adapter and not merge:
        raise ConfigError(f"{run.path}: a LoRA run holds only its adapter and head; pass --merge to fold them "
                          "into the base model and write a plain model directory")
    with staged_output(out) as tmp:
        if adapter:
            write_merged_model(run.path, tmp)
        else:
            shutil.copytree(run.model_dir, tmp)
        atomic_write_text(tmp / "README.md", model_card(run.path, extra={
            "format": "Hugging Face model directory (safetensors)", "LoRA merged": True if adapter else None}))
        write_checksums(tmp)
    return Path(out)


def check_out(out: str | Path, run_dir: str | Path) -> None:
    """Refuse an export folder inside the run directory it exports (each export would copy the one before,
    doubling the run) or one that holds the run."""
    dest, run = Path(out).expanduser().resolve(), Path(run_dir).resolve()
    if dest == run or run in dest.parents:
        raise ConfigError(f"--out {out}: inside the run directory {run}, which the export reads (each export "
                          f"would copy the last one too); choose a folder outside it, e.g. {run.parent / 'exports'}")
    if dest in run.parents:
        raise ConfigError(f"--out {out}: holds the run directory {run}; choose a new folder outside it")


@contextlib.contextmanager
def staged_output(out: str | Path) -> Iterator[Path]:
    """A temporary folder (not yet created) beside `out` that becomes `out` when the block succeeds and
    is removed when it fails. `out` must not exist or be an empty folder."""
    dest = Path(out)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ConfigError(f"{dest}: exists and is not an empty folder; choose a new --out")
    tmp = dest.parent / f".{dest.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield tmp
        normal_permissions(tmp)
        if dest.exists():
            dest.rmdir()
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
