"""Vectors from an embedding run: `embed_texts` for a list of texts, `embed_file` for a data file of any size
(read and embedded a chunk at a time, written to NumPy `.npy`, Parquet or JSON lines through a temporary file
that is renamed when complete)."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bertkit.data.readers import iter_table
from bertkit.errors import ConfigError, DataError
from bertkit.io import output_target
from bertkit.tasks.embedding import ANCHOR_NAMES

__all__ = ["embed_texts", "embed_file", "require_embedding", "OUTPUT_FORMATS", "text_column"]

log = logging.getLogger("bertkit")
OUTPUT_FORMATS = (".npy", ".parquet", ".jsonl")


def require_embedding(predictor: Any, what: str) -> None:
    if not hasattr(predictor.task, "embed"):
        raise ConfigError(f"{what} needs an embedding run (bertkit train --task embedding); this run's task is "
                          f"{predictor.task.name}")


def embed_texts(predictor: Any, texts: Sequence[str]) -> np.ndarray:
    """(N, H) float32 vectors of `texts`, as the run's model and pooling make them."""
    require_embedding(predictor, "embedding")
    if not len(texts):
        return np.zeros((0, 0), dtype=np.float32)
    examples = predictor.task.make_examples(list(texts), predictor.tokenizer)
    return np.ascontiguousarray(predictor.outputs(examples)[:, 0], dtype=np.float32)


def text_column(columns: Sequence[str], given: str | None, path: str) -> str:
    """The column to embed: the one given, else the first of the anchor names (text, query...) the file has."""
    if given is not None:
        if given not in columns:
            raise DataError(f"{path}: no column '{given}'; columns found: {', '.join(columns)}; pass --column")
        return given
    found = next((c for c in ("text", *ANCHOR_NAMES) if c in columns), None)
    if found is None:
        raise DataError(f"{path}: no text column (looked for text, {', '.join(ANCHOR_NAMES[:-1])}); name it with "
                        f"--column (columns found: {', '.join(columns)})")
    return found


def embed_file(predictor: Any, source: str | Path, output: str | Path, *, column: str | None = None,
               fmt: str | None = None, id_column: str | None = None, chunk_rows: int = 4096) -> int:
    """Embed one column of a data file into `output` (.npy: an (N, H) float32 array; .parquet: `embedding` and
    the id column when the file has one; .jsonl: one {"id", "embedding"} per line), in input order. Returns N."""
    require_embedding(predictor, "bertkit embed")
    suffix = next((s for s in OUTPUT_FORMATS if str(output).endswith(s)), None)
    if suffix is None:
        raise ConfigError(f"--output {output}: name a .npy, .parquet or .jsonl file")
    target = output_target(output, inputs=(source,))
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    rows, width, writer = 0, 0, None
    try:
        with open(tmp + ".raw", "wb") if suffix == ".npy" else open(tmp, "w" if suffix == ".jsonl" else "wb") as fh:
            for table in iter_table(source, fmt, chunk_rows=chunk_rows):
                col = text_column(table.columns, column, str(source))
                ids_col = id_column or next((c for c in ("id", "_id", "doc_id") if c in table.columns), None)
                texts = []
                for i, row in enumerate(table.rows):
                    value = row.get(col)
                    if not isinstance(value, str) or not value.strip():
                        raise DataError(f"{table.where(i)}: column '{col}' is empty; fill it in or remove the row")
                    texts.append(value)
                vectors = embed_texts(predictor, texts)
                width = vectors.shape[1]
                ids = [row.get(ids_col) for row in table.rows] if ids_col else list(range(rows, rows + len(texts)))
                if suffix == ".npy":
                    fh.write(vectors.tobytes())
                elif suffix == ".jsonl":
                    fh.write("".join(json.dumps({"id": i, "embedding": v.tolist()}) + "\n"
                                     for i, v in zip(ids, vectors)))
                else:
                    writer = _parquet_chunk(writer, fh, ids, vectors)
                rows += len(texts)
                log.info("embedded %d rows", rows)
            if writer is not None:
                writer.close()
        if suffix == ".npy":
            _npy_from_raw(tmp + ".raw", tmp, rows, width)
        os.replace(tmp, target)
    finally:
        for leftover in (tmp, tmp + ".raw"):
            Path(leftover).unlink(missing_ok=True)
    return rows


def _parquet_chunk(writer: Any, fh: Any, ids: list[Any], vectors: np.ndarray) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    values = pa.array(vectors.reshape(-1), type=pa.float32())
    table = pa.table({"id": pa.array(ids), "embedding": pa.FixedSizeListArray.from_arrays(values, vectors.shape[1])})
    if writer is None:
        writer = pq.ParquetWriter(fh, table.schema)
    writer.write_table(table)
    return writer


def _npy_from_raw(raw: str, out: str, rows: int, width: int) -> None:
    """A .npy file of the float32 rows written to `raw` (the header needs the row count, known only at the end)."""
    import shutil

    with open(out, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (rows, width)})
        with open(raw, "rb") as src:
            shutil.copyfileobj(src, fh, 1 << 20)
