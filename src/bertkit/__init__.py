"""bertkit: fine-tune BERT-family encoders offline, evaluate them, and carry what they learned onward.

The names below load on first use (PEP 562), so `import bertkit` and `bertkit --help` stay fast and a
program that serves or exports a model never loads the training code.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "train": "bertkit.api", "evaluate": "bertkit.api", "predict": "bertkit.api", "TrainResult": "bertkit.api",
    "check_data": "bertkit.api", "search": "bertkit.api", "mine": "bertkit.api", "evaluate_search": "bertkit.api",
    "zero_shot": "bertkit.api", "evaluate_zero_shot": "bertkit.api",
    "lineage": "bertkit.run_dir", "run_pipeline": "bertkit.pipeline", "export_model": "bertkit.export",
    "Predictor": "bertkit.inference.predictor",
    "RunConfig": "bertkit.config", "TaskConfig": "bertkit.config", "DataConfig": "bertkit.config",
    "ModelConfig": "bertkit.config", "TrainConfig": "bertkit.config", "load_config": "bertkit.config",
    "BertkitError": "bertkit.errors", "ConfigError": "bertkit.errors", "DataError": "bertkit.errors",
    "ModelLoadError": "bertkit.errors", "CheckpointError": "bertkit.errors", "TrainingError": "bertkit.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bertkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
