"""SQuAD v1.1 / v2.0 JSON (the official nesting) and SQuAD-style JSONL rows, as flat question records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bertkit.data.readers import read_table, read_text
from bertkit.errors import DataError

__all__ = ["read_squad"]


def read_squad(path: str | Path, encoding: str = "utf-8", with_labels: bool = True) -> list[dict[str, Any]]:
    """Records {id, question, context, answers: [{text, answer_start}], where} from a SQuAD JSON file
    (v1.1 or v2.0, gzip allowed) or a JSONL file with question, context, answers{text, answer_start}, id.

    In SQuAD JSON that is not v2 (no "version": "v2..." and no is_impossible), a question without answers
    is an error naming its id when the answers are wanted (`with_labels`): it would silently switch the run
    to SQuAD v2 and its metrics."""
    p = Path(path)
    name = p.name.lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".ndjson")):
        table = read_table(p, "jsonl", encoding)
        records = [_jsonl_record(row, table.where(i)) for i, row in enumerate(table.rows)]
    else:
        if not p.is_file():
            raise DataError(f"{p}: file not found; check the path")
        try:
            data = json.loads(read_text(p, encoding))
        except json.JSONDecodeError as exc:
            raise DataError(f"{p}:{exc.lineno}: not valid JSON ({exc.msg}); is the file truncated?") from None
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise DataError(f"{p}: not SQuAD JSON (no top-level 'data' list); for one question per line use .jsonl")
        records = _json_records(p, data, with_labels)
    seen: dict[str, str] = {}
    for r in records:
        if r["id"] in seen:
            raise DataError(f"{r['where']}: duplicated question id (also at {seen[r['id']]}); ids must be unique")
        seen[r["id"]] = r["where"]
    if not records:
        raise DataError(f"{p}: no questions found")
    return records


def _json_records(p: Path, data: dict[str, Any], with_labels: bool) -> list[dict[str, Any]]:
    version_2 = str(data.get("version", "")).lower().lstrip("v").startswith("2")
    records = []
    for a, article in enumerate(data["data"]):
        for j, paragraph in enumerate(_items(article, "paragraphs", f"{p} (data[{a}])")):
            context = paragraph.get("context")
            for qa in _items(paragraph, "qas", f"{p} (data[{a}].paragraphs[{j}])"):
                where = f"{p} (id {qa.get('id', '?')})"
                impossible = qa.get("is_impossible", False)
                if not isinstance(impossible, bool):
                    raise DataError(f"{where}: is_impossible must be true or false (a JSON boolean), got "
                                    f"{impossible!r:.40}")
                version_2 = version_2 or "is_impossible" in qa
                answers = [] if impossible else qa.get("answers", [])
                if not isinstance(answers, list):
                    raise DataError(f"{where}: 'answers' must be a list of {{text, answer_start}}")
                records.append(_record(qa.get("id"), qa.get("question"), context, answers, where))
    if with_labels and not version_2:
        unanswered = [r["where"] for r in records if not r["answers"]]
        if unanswered:
            raise DataError(f"{unanswered[0]}: no answers, in a SQuAD v1.1 file ({len(unanswered)} such questions); "
                            "give each question its answers, or mark the file v2 (\"version\": \"v2.0\", "
                            "is_impossible: true) if these are meant to be unanswerable")
    return records


def _items(parent: Any, key: str, where: str) -> list[dict[str, Any]]:
    """parent[key] as the list of JSON objects SQuAD nests there, or a DataError naming the field."""
    if not isinstance(parent, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(parent).__name__}; is this SQuAD JSON?")
    items = parent.get(key, [])
    if not isinstance(items, list) or not all(isinstance(x, dict) for x in items):
        raise DataError(f"{where}: '{key}' must be a list of JSON objects; is this SQuAD JSON?")
    return items


def _jsonl_record(row: dict[str, Any], where: str) -> dict[str, Any]:
    answers = row.get("answers") or {"text": [], "answer_start": []}
    if not isinstance(answers, dict) or len(answers.get("text", [])) != len(answers.get("answer_start", [])):
        raise DataError(f"{where}: 'answers' must be {{\"text\": [...], \"answer_start\": [...]}} of equal length")
    pairs = [{"text": t, "answer_start": s} for t, s in zip(answers["text"], answers["answer_start"])]
    return _record(row.get("id", where), row.get("question"), row.get("context"), pairs, where)


def _record(qid: Any, question: Any, context: Any, answers: list, where: str) -> dict[str, Any]:
    if not isinstance(question, str) or not question.strip():
        raise DataError(f"{where}: empty or missing question")
    if not isinstance(context, str) or not context.strip():
        raise DataError(f"{where}: empty or missing context")
    checked = []
    for a in answers:
        start = a.get("answer_start") if isinstance(a, dict) else None
        text = a.get("text") if isinstance(a, dict) else None
        if not isinstance(text, str) or not isinstance(start, int) or isinstance(start, bool):
            raise DataError(f"{where}: each answer needs a string 'text' and an integer 'answer_start', got "
                            f"{a!r:.80}")
        checked.append({"text": text, "answer_start": start})
    return {"id": str(qid), "question": question, "context": context, "answers": checked, "where": where}
