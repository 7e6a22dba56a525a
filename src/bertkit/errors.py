"""The exceptions bertkit raises for problems a user can fix.

Every message names the bad value, where it was found and how to fix it. The command line turns these
into one line on stderr and exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["BertkitError", "ConfigError", "DataError", "ModelLoadError", "CheckpointError", "TrainingError"]


class BertkitError(Exception):
    """Base class of every error a user can fix."""


class ConfigError(BertkitError):
    """A configuration key or value is wrong (unknown key, wrong type, impossible value)."""


class DataError(BertkitError):
    """An input data file is missing, unreadable or has a bad row."""


class ModelLoadError(BertkitError):
    """A model or tokenizer could not be loaded from the name or directory given."""


class CheckpointError(BertkitError):
    """A run directory or checkpoint is missing, incomplete or inconsistent."""


class TrainingError(BertkitError):
    """Training cannot go on (a non-finite loss, out of memory); the message says what to change."""
