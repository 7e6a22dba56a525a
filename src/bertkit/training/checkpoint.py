"""Atomic training checkpoints: model, optimiser, scheduler, RNG and loop state.

A checkpoint is written into a hidden temporary folder and renamed into place only when complete, so a
crash at any moment leaves either the previous checkpoints or the new one, never a half-written one.
Weights are safetensors; optimiser and RNG state are loaded with `weights_only=True` (no arbitrary
unpickling).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import random
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from bertkit.errors import CheckpointError
from bertkit.io import sha256_file

__all__ = ["save_checkpoint", "latest_checkpoint", "load_checkpoint", "verify_checkpoint", "load_weights",
           "prune_checkpoints", "restore_latest"]

log = logging.getLogger(__name__)

_STATE = "trainer_state.json"  # written last: its presence marks a complete checkpoint


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _state_dict_for_save(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    # safetensors refuses tensors that share storage (tied embeddings); save each once, contiguous.
    seen: dict[int, str] = {}
    out = {}
    for name, tensor in model.state_dict().items():
        key = tensor.data_ptr()
        if key in seen and tensor.numel() > 0:
            continue
        seen[key] = name
        out[name] = tensor.detach().contiguous().cpu()
    return out


def save_checkpoint(ckpt_root: Path, step: int, model: torch.nn.Module, optimizer, scheduler,
                    loop_state: dict[str, Any]) -> Path:
    """Write checkpoint `step-NNNNNNNN` under `ckpt_root` atomically and return its path.

    Raises:
        CheckpointError: the disk is full or read-only; the half-written checkpoint is removed and the run
            resumes from the previous one.
    """
    tmp = ckpt_root / f".tmp-step-{step:08d}"
    try:
        return _write_checkpoint(ckpt_root, tmp, step, model, optimizer, scheduler, loop_state)
    except (OSError, SafetensorError) as exc:  # safetensors reports a full disk as its own error
        shutil.rmtree(tmp, ignore_errors=True)
        why = getattr(exc, "strerror", None) or exc
        raise CheckpointError(f"{why} while writing the checkpoint of step {step} in {ckpt_root}; free space (or "
                              "make it writable) and run the same command with resume") from None


def _write_checkpoint(ckpt_root: Path, tmp: Path, step: int, model: torch.nn.Module, optimizer, scheduler,
                      loop_state: dict[str, Any]) -> Path:
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / f"step-{step:08d}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_file(_state_dict_for_save(model), str(tmp / "model.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    torch.save({"torch": torch.get_rng_state(), "python": random.getstate(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}, tmp / "rng.pt")
    checksums = {f.name: sha256_file(f) for f in sorted(tmp.iterdir())}
    with open(tmp / _STATE, "w", encoding="utf-8") as fh:
        json.dump({**loop_state, "checksums": checksums}, fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    _fsync_dir(tmp)
    if final.exists():  # an earlier attempt of the same step (resumed run): replace it
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(ckpt_root)
    return final


def _complete(path: Path) -> bool:
    return (path / _STATE).is_file() and (path / "model.safetensors").is_file()


def list_checkpoints(ckpt_root: Path) -> list[Path]:
    if not ckpt_root.is_dir():
        return []
    found = [p for p in ckpt_root.iterdir() if p.name.startswith("step-") and _complete(p)]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def latest_checkpoint(ckpt_root: Path) -> Path | None:
    found = list_checkpoints(ckpt_root)
    return found[-1] if found else None


def prune_checkpoints(ckpt_root: Path, keep: int, protect: set[int]) -> None:
    """Delete all but the newest `keep` checkpoints, sparing the steps in `protect` (the best one)."""
    found = list_checkpoints(ckpt_root)
    for path in found[:-keep] if keep > 0 else found:
        if int(path.name.split("-")[1]) not in protect:
            shutil.rmtree(path, ignore_errors=True)
    for stale in ckpt_root.glob(".tmp-step-*"):  # left by a crash during a write
        shutil.rmtree(stale, ignore_errors=True)


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Load `model.safetensors` of a checkpoint into `model` (tied weights re-tied by name)."""
    try:
        weights = load_file(str(path / "model.safetensors"))
    except Exception as exc:  # safetensors raises its own error types for truncated files
        raise CheckpointError(f"{path}: cannot read model.safetensors ({exc}); the checkpoint is damaged") from None
    missing, unexpected = model.load_state_dict(weights, strict=False)
    shared = {n for n, t in model.state_dict().items() if n not in weights}
    if unexpected or (set(missing) - shared):
        raise CheckpointError(f"{path}: weights do not match the model (missing {missing[:3]}, unexpected "
                              f"{unexpected[:3]}); was the run directory built with another model?")


def verify_checkpoint(path: Path) -> dict[str, Any]:
    """The loop state of a checkpoint whose files match the checksums it was written with.

    Raises:
        CheckpointError: the state is unreadable, or a file is missing or differs (cut or corrupted)."""
    try:
        loop_state = json.loads((path / _STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot read {_STATE} ({exc}); the checkpoint is damaged") from None
    for name, expected in loop_state.get("checksums", {}).items():
        if not (path / name).is_file() or sha256_file(path / name) != expected:
            raise CheckpointError(f"{path}: {name} is missing or does not match its checksum; the checkpoint "
                                  "is damaged")
    return loop_state


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer, scheduler) -> dict[str, Any]:
    """Restore everything `save_checkpoint` wrote, after checking its files; returns the loop state."""
    loop_state = verify_checkpoint(path)
    load_weights(model, path)
    try:
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True, map_location="cpu"))
        scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
        rng = torch.load(path / "rng.pt", weights_only=True)
    except (OSError, RuntimeError, ValueError, KeyError, pickle.UnpicklingError) as exc:
        # weights_only refuses anything but tensors and plain values: a crafted pickle ends here
        raise CheckpointError(f"{path}: cannot restore the checkpoint ({str(exc).splitlines()[0][:200]}); "
                              "delete this checkpoint folder to resume from the one before") from None
    torch.set_rng_state(rng["torch"])
    random.setstate(_as_tuple(rng["python"]))
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return loop_state


def restore_latest(ckpt_root: Path, model: torch.nn.Module, optimizer, scheduler) -> dict[str, Any] | None:
    """Restore the newest checkpoint that reads back whole and return its loop state; a damaged one
    (checksum mismatch, cut file) is reported and the one before it used. None when there is none.

    Raises:
        CheckpointError: there are checkpoints, but none reads back whole."""
    found = list_checkpoints(ckpt_root)
    for path in reversed(found):
        try:
            return load_checkpoint(path, model, optimizer, scheduler)
        except CheckpointError as exc:
            log.warning("%s; trying the checkpoint before it", exc)
    if found:
        raise CheckpointError(f"{ckpt_root}: no checkpoint reads back whole; start a new run (set out to a new folder)")
    return None


def _as_tuple(x):
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x
