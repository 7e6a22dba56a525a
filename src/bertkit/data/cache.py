"""Cached tokenisation: features stored under a key made of everything they depend on.

The key is the sha256 of the examples themselves (so a changed file, another dev split or other columns
give another key), the tokenizer's full serialisation, the task's settings and fitted state, the data
settings and the bertkit version. Entries are JSON files written atomically; a file that cannot be read
is ignored and rewritten. The cache lives in `$BERTKIT_CACHE`, else `$XDG_CACHE_HOME/bertkit`, else
`~/.cache/bertkit`; `BERTKIT_CACHE=off` turns it off.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bertkit.data.text import expand_paths
from bertkit.io import atomic_write_text, sha256_file

__all__ = ["cache_root", "cached_features", "fingerprint", "file_fingerprint", "data_fingerprint"]

log = logging.getLogger(__name__)
_VERSION = 1  # bump when the layout of features changes


def cache_root() -> Path | None:
    """The cache folder, or None when caching is off."""
    value = os.environ.get("BERTKIT_CACHE")
    if value is not None:
        return None if value.strip().lower() in ("", "0", "off", "false", "no") else Path(value)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bertkit"


def fingerprint(*parts: Any) -> str:
    """sha256 of JSON-serialisable parts (dict keys sorted)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, default=str, ensure_ascii=False).encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def cached_features(key_parts: dict[str, Any], compute: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The features for `key_parts`: read from the cache, or computed by `compute` and stored."""
    root = cache_root()
    if root is None:
        return compute()
    from bertkit import __version__

    path = root / "features" / f"{fingerprint(key_parts, __version__, _VERSION)}.json"
    if path.is_file():
        try:
            features = json.loads(path.read_text(encoding="utf-8"))
            log.debug("tokenised features from the cache: %s", path)
            return features
        except (OSError, ValueError):
            log.debug("unreadable cache entry %s; tokenising again", path)
    features = compute()
    sample = features[:64]  # features of one task share their types: a sample tells whether JSON keeps them
    if json.loads(json.dumps(sample)) != sample:  # tuples, arrays...: stored only if JSON gives them back
        return features
    text = json.dumps(features, ensure_ascii=False, separators=(",", ":"))
    try:
        atomic_write_text(path, text)  # readers see the whole entry or none
    except OSError as exc:  # a read-only or full disk must not stop training
        log.warning("could not write the tokenisation cache %s: %s", path, exc)
    return features


def file_fingerprint(path: str | Path) -> dict[str, Any]:
    """sha256 and size of a data file, to tell later which data a run saw."""
    p = Path(path)
    return {"path": str(p.resolve()), "bytes": p.stat().st_size, "sha256": sha256_file(p)}


def data_fingerprint(spec: str) -> dict[str, Any]:
    """The fingerprint of a data file, or of each file when `spec` names several (pre-training text)."""
    if Path(spec).is_file():
        return file_fingerprint(spec)
    files = [file_fingerprint(p) for p in expand_paths(spec)]
    return {"files": files, "bytes": sum(f["bytes"] for f in files)}
