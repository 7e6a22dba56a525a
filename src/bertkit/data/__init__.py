"""Data layer: read task files, split them, and batch token sequences."""

from bertkit.data.batching import epoch_batches, eval_batches
from bertkit.data.readers import FORMATS, Table, detect_format, read_table
from bertkit.data.splits import stratified_split

__all__ = ["FORMATS", "Table", "detect_format", "read_table", "stratified_split", "epoch_batches", "eval_batches"]
