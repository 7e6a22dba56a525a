"""A task's data files, read in the data layer. Each kind of file has its reader here; a task names the kind it
reads (`Task.file_kind`) and turns the rows into its examples (`Task.read_examples`) without opening a file.

Every reader hands over a `Table` whose rows know where they came from (file:line, or a question's id), so
the task's checks name the place of a bad row whichever format it was read from.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bertkit.config import DataConfig
from bertkit.data.conll import read_conll
from bertkit.data.readers import Table, iter_table
from bertkit.data.squad import read_squad
from bertkit.data.text import iter_documents
from bertkit.errors import ConfigError

__all__ = ["KINDS", "STREAMED", "iter_rows", "read_examples", "iter_examples"]

#: table: CSV, TSV, JSONL or Parquet; conll: one token per line, blank lines between sentences; squad: SQuAD
#: JSON (or its JSONL form); documents: unlabelled text (plain text, one document per line, or any table).
KINDS = ("table", "conll", "squad", "documents")
#: The kinds that can be read in chunks (`data.stream`); the others are read whole.
STREAMED = ("table", "documents")


def iter_rows(path: str | Path, kind: str, data_cfg: DataConfig, *, with_labels: bool = True,
              chunk_rows: int | None = None) -> Iterator[Table]:
    """The rows of a data file of `kind` as `Table`s of at most `chunk_rows` rows (all in one when None)."""
    if kind == "table":
        yield from iter_table(path, data_cfg.format, data_cfg.encoding, chunk_rows)
    elif kind == "documents":
        column = data_cfg.text_column
        for docs in iter_documents(str(path), fmt=data_cfg.format, encoding=data_cfg.encoding, text_column=column,
                                   chunk_rows=chunk_rows):
            yield Table(str(path), [column], [{column: d["text"]} for d in docs], [],
                        wheres=[d["where"] for d in docs])
    elif kind == "conll":
        sentences = read_conll(path, token_index=data_cfg.token_index, tag_index=data_cfg.tag_index,
                               encoding=data_cfg.encoding, with_tags=with_labels)
        rows: list[dict[str, Any]] = [{data_cfg.tokens_column: s.tokens, "doc": s.doc} for s in sentences]
        if with_labels:
            for row, s in zip(rows, sentences):
                row[data_cfg.tags_column] = s.tags
        columns = [data_cfg.tokens_column, "doc"] + ([data_cfg.tags_column] if with_labels else [])
        yield Table(str(path), columns, rows, [s.line for s in sentences])
    elif kind == "squad":
        records = read_squad(path, data_cfg.encoding, with_labels=with_labels)
        wheres = [r.pop("where") for r in records]
        yield Table(str(path), ["id", "question", "context", "answers"], records, [], wheres=wheres)
    else:
        raise ConfigError(f"unknown kind of data file '{kind}'; one of {', '.join(KINDS)}")


def read_examples(task: Any, path: str | Path, data_cfg: DataConfig, tokenizer: Any, *,
                  with_labels: bool = True) -> list[dict[str, Any]]:
    """The examples of a whole data file of `task` (read, then checked and converted by the task)."""
    examples: list[dict[str, Any]] = []
    for table in iter_rows(path, task.file_kind(str(path), data_cfg), data_cfg, with_labels=with_labels):
        examples += task.read_examples(table, data_cfg, with_labels=with_labels, tokenizer=tokenizer)
    return examples


def iter_examples(task: Any, path: str | Path, data_cfg: DataConfig, tokenizer: Any, chunk_rows: int
                  ) -> Iterator[list[dict[str, Any]]]:
    """The training examples of a file in chunks of about `chunk_rows`, read as they are needed (`data.stream`).

    Raises:
        ConfigError: the task's files are of a kind that is read whole (CoNLL, SQuAD JSON).
    """
    kind = task.file_kind(str(path), data_cfg)
    if kind not in STREAMED:
        raise ConfigError(f"data.stream: the {task.name} task reads its data files whole; drop data.stream")
    for table in iter_rows(path, kind, data_cfg, chunk_rows=chunk_rows):
        yield task.read_examples(table, data_cfg, tokenizer=tokenizer)
