"""Tokenised features on disk: an Arrow IPC file written chunk by chunk and read back memory-mapped.

A training file larger than memory is read in chunks, each chunk tokenised and appended here; training
then reads rows from the memory-mapped file, so the process holds one chunk of text at a time and the
pages of the features it is using, which the kernel can drop again (they are backed by the file).
The file appears under its final name only when complete (written to a temporary name, then renamed).
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bertkit.errors import DataError

__all__ = ["FeatureStore", "FeatureWriter", "feature_lengths"]


def _compact(schema: pa.Schema) -> pa.Schema:
    """Token ids as int32 (half the bytes of the int64 Arrow infers from Python ints)."""
    fields = []
    for f in schema:
        if pa.types.is_list(f.type) and pa.types.is_int64(f.type.value_type):
            f = f.with_type(pa.list_(pa.int32()))
        fields.append(f)
    return pa.schema(fields)


class FeatureWriter:
    """Append lists of feature dicts to `path`; `close()` publishes the file, `abort()` removes it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self._sink: Any = None
        self._schema: pa.Schema | None = None
        self._writer: Any = None
        self.rows = 0

    def write(self, features: Sequence[dict[str, Any]]) -> None:
        if not features:
            return
        if self._writer is None:
            self._schema = _compact(pa.Table.from_pylist(list(features)).schema)
            self._sink = pa.OSFile(str(self._tmp), "wb")
            self._writer = pa.ipc.new_file(self._sink, self._schema)
        try:
            table = pa.Table.from_pylist(list(features), schema=self._schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise DataError(f"features of this chunk do not match the earlier ones ({exc})") from None
        self._writer.write_table(table, max_chunksize=8192)
        self.rows += len(features)

    def close(self) -> Path:
        if self._writer is None:
            raise DataError(f"{self.path}: no features to store (the training data has no rows)")
        self._writer.close()
        self._sink.close()
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        for handle in (self._writer, self._sink):
            try:
                if handle is not None:
                    handle.close()
            except Exception:  # noqa: BLE001 - the file is removed anyway
                pass
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> FeatureWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


class FeatureStore(Sequence):
    """Read-only, memory-mapped features: `store[i]` is the i-th feature dict, `store.lengths` the token
    counts of all of them (a NumPy array, 4 bytes a row)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            source = pa.memory_map(str(self.path), "r")
            reader = pa.ipc.open_file(source)
            self._batches = [reader.get_batch(k) for k in range(reader.num_record_batches)]
        except (OSError, pa.ArrowInvalid) as exc:
            raise DataError(f"{self.path}: not a readable feature file ({exc}); delete it to tokenise again"
                            ) from None
        self._starts = [0]
        for batch in self._batches:
            self._starts.append(self._starts[-1] + batch.num_rows)
        self._names = reader.schema.names
        self.lengths = np.concatenate(
            [pc.list_value_length(b.column("input_ids")).to_numpy(zero_copy_only=False).astype(np.int32)
             for b in self._batches]) if self._batches else np.zeros(0, dtype=np.int32)

    def __len__(self) -> int:
        return self._starts[-1]

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        k = bisect.bisect_right(self._starts, i) - 1
        batch, j = self._batches[k], i - self._starts[k]
        return {name: batch.column(c)[j].as_py() for c, name in enumerate(self._names)}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch in self._batches:
            yield from batch.to_pylist()


def feature_lengths(features: Sequence[dict[str, Any]]) -> Sequence[int]:
    """Token counts of features: read from a store's index, or counted from feature dicts in memory."""
    if isinstance(features, FeatureStore):
        return features.lengths
    return [len(f["input_ids"]) for f in features]
