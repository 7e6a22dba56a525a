"""Extractive question answering (SQuAD v1.1 and v2.0): answer spans found across sliding windows.

Question + context go in as a pair; contexts longer than the window are cut into windows over the context
only (`doc_stride` tokens shared), each keeping its offset mapping. A window that does not contain the
answer is trained to point at [CLS] (the v2 convention). Each window is reduced to its n-best spans right
after the forward pass, so evaluation holds a few candidates per question, never the whole dataset's
logits; the spans of all windows of a question then compete for its answer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from bertkit.config import DataConfig, TaskConfig, option
from bertkit.data.batching import pad_batch
from bertkit.errors import ConfigError, DataError
from bertkit.tasks.base import Task, register_task
from bertkit.tasks.long_inputs import cut_text
from bertkit.tasks.spans import trim_span
from bertkit.tasks.squad_metrics import best_null_threshold, f1, squad_scores

__all__ = ["QaTask", "QaConfig"]

log = logging.getLogger(__name__)


@dataclass
class QaConfig(TaskConfig):
    doc_stride: int = option(128, "context tokens shared by consecutive windows")
    n_best: int = option(20, "start/end candidates kept per window")
    max_answer_length: int = option(30, "longest answer in tokens")
    answer_mismatch: Literal["fix", "reject"] = option("fix", "an answer whose text is not at answer_start is "
                                                       "searched for in the context, or rejected")
    null_threshold: float | None = option(None, "SQuAD v2: answer only if the best span beats no-answer by this "
                                          "much; tuned on dev when unset")

    def __post_init__(self) -> None:
        if self.doc_stride < 0:
            raise ConfigError(f"task.doc_stride must be >= 0, got {self.doc_stride}")
        for key in ("n_best", "max_answer_length"):
            if getattr(self, key) < 1:
                raise ConfigError(f"task.{key} must be at least 1, got {getattr(self, key)}")


@register_task("qa")
class QaTask(Task):
    config_class = QaConfig
    auto_model_class = "AutoModelForQuestionAnswering"
    pipeline_tag = "question-answering"
    intended_use = "Extracts the answer span to a question from a given context passage."
    example_keys = ("where", "id", "question", "context", "answers")
    saves_dev_predictions = True
    input_schema = {"anyOf": [
        {"type": "object", "required": ["question", "context"],
         "properties": {"question": {"type": "string"}, "context": {"type": "string"}}},
        {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2,
         "description": "question, context"},
    ]}
    input_examples = ({"question": "Where does John live?", "context": "John lives in Paris."},)
    output_names = ("start_logits", "end_logits")
    default_max_length = 384
    primary_metric = "f1"

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.version_2 = False
        self.null_threshold = cfg.null_threshold if cfg.null_threshold is not None else 0.0

    # --- data -----------------------------------------------------------------------------------------
    def file_kind(self, path: str, data_cfg: DataConfig) -> str:
        return "squad"

    def read_examples(self, table, data_cfg: DataConfig, with_labels: bool = True, tokenizer=None):
        """Questions of a SQuAD file; an answer not found at its answer_start is moved to the nearest
        occurrence of its text (or refused: task.answer_mismatch)."""
        records = [{**row, "where": table.where(i)} for i, row in enumerate(table.rows)]
        fixed: list[str] = []
        for r in records:
            r["answers"] = [self._checked_answer(a, r) for a in r["answers"]] if with_labels else []
            fixed += [r["where"] for a in r["answers"] if a.pop("fixed")]
        if fixed:
            log.warning("%d answer(s) did not match the context at answer_start and were moved to the nearest "
                        "occurrence of their text (--set task.answer_mismatch=reject refuses them): %s%s",
                        len(fixed), "; ".join(fixed[:5]), " ..." if len(fixed) > 5 else "")
        return records

    def _checked_answer(self, answer: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
        text, start, context = answer["text"], answer["answer_start"], record["context"]
        if not 0 <= start < len(context):
            raise DataError(f"{record['where']}: answer_start {start} lies outside the context (0 to "
                            f"{len(context) - 1}); fix the offset or drop the question")
        if text and context[start : start + len(text)] == text:
            return {"text": text, "start": start, "fixed": 0}
        found = [i for i in range(len(context)) if context.startswith(text, i)] if text else []
        if not found or self.cfg.answer_mismatch == "reject":
            how = "and it does not occur in the context" if not found else f"(it occurs at {found[:3]})"
            raise DataError(f"{record['where']}: answer {text!r} is not at answer_start {start} {how}; fix the "
                            "offset or drop the question")
        nearest = min(found, key=lambda i: abs(i - start))
        return {"text": text, "start": nearest, "fixed": 1}

    def make_examples(self, inputs, tokenizer) -> list[dict[str, Any]]:
        examples = []
        for i, item in enumerate(inputs):
            if isinstance(item, dict):
                question, context = item.get("question"), item.get("context")
            elif isinstance(item, (list, tuple)) and len(item) == 2:
                question, context = item
            else:
                raise DataError(f"input {i}: expected {{'question', 'context'}} or a (question, context) pair")
            if not isinstance(question, str) or not question.strip() or not isinstance(context, str) \
                    or not context.strip():
                raise DataError(f"input {i}: question and context must be non-empty text")
            examples.append({"id": str(i), "question": question, "context": context, "answers": [],
                             "where": f"input {i}"})
        return examples

    def fit(self, train) -> None:
        self.version_2 = any(not ex["answers"] for ex in train)

    def check_examples(self, examples, source: str) -> None:
        return None  # any span of the context is a valid answer; there is no label set to check

    # --- features ---------------------------------------------------------------------------------------
    def preprocess(self, examples, tokenizer, data_cfg: DataConfig, with_labels: bool = True):
        max_length = self.max_length(data_cfg)
        # questions longer than half the window are cut (at a token boundary) so the context fits
        questions, lengths = zip(*(cut_text(tokenizer, ex["question"], max_length // 2)
                                   for ex in examples)) if examples else ((), ())
        # The windows' overlap must leave each window new context after the longest question; the tokenizer
        # refuses (it panics) a stride as long as the context part.
        room = max_length - max(lengths, default=0) - tokenizer.num_special_tokens_to_add(pair=True)
        stride = min(self.cfg.doc_stride, max_length // 2, max(room // 2, 0))
        enc = tokenizer(list(questions), [ex["context"] for ex in examples], truncation="only_second",
                        max_length=max_length, stride=stride, return_overflowing_tokens=True,
                        return_offsets_mapping=True)
        features = []
        for j, ids in enumerate(enc["input_ids"]):
            i = enc["overflow_to_sample_mapping"][j]
            sequence = enc.sequence_ids(j)
            offsets = [tuple(o) if sequence[k] == 1 else None for k, o in enumerate(enc["offset_mapping"][j])]
            context = examples[i]["context"]  # spans without the space a BPE/SentencePiece piece carries
            offsets = [trim_span(context, o) if o is not None else None for o in offsets]
            feat = {"input_ids": ids, "offsets": offsets, "example_index": i}
            if "token_type_ids" in enc:  # the tokenizer's choice: RoBERTa-style tokenizers make none
                feat["token_type_ids"] = enc["token_type_ids"][j]
            if with_labels:
                feat["start_positions"], feat["end_positions"] = self._positions(examples[i]["answers"], offsets)
            features.append(feat)
        return features

    @staticmethod
    def _positions(answers: list[dict[str, Any]], offsets: list[tuple[int, int] | None]) -> tuple[int, int]:
        """Token positions of the first answer in this window, or (0, 0) ([CLS]) when it is not inside."""
        if not answers:
            return 0, 0
        start_char = answers[0]["start"]
        end_char = start_char + len(answers[0]["text"])
        context = [k for k, o in enumerate(offsets) if o is not None]
        if offsets[context[0]][0] > start_char or offsets[context[-1]][1] < end_char:
            return 0, 0
        start = next(k for k in context if offsets[k][1] > start_char)
        end = next(k for k in reversed(context) if offsets[k][0] < end_char)
        return start, end

    def collate(self, features, pad_id: int) -> dict[str, torch.Tensor]:
        batch = pad_batch(features, pad_id, {"token_type_ids": 0} if "token_type_ids" in features[0] else None)
        if "start_positions" in features[0]:
            for key in ("start_positions", "end_positions"):
                batch[key] = torch.tensor([f[key] for f in features], dtype=torch.long)
        return batch

    # --- model ----------------------------------------------------------------------------------------
    def model_config(self) -> dict[str, Any]:
        return {}

    def logits(self, model_output) -> torch.Tensor:
        return torch.stack([model_output.start_logits, model_output.end_logits], dim=-1)  # (B, T, 2)

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        start = F.cross_entropy(logits[..., 0], batch["start_positions"])
        end = F.cross_entropy(logits[..., 1], batch["end_positions"])
        return (start + end) / 2

    # --- outputs --------------------------------------------------------------------------------------
    def reduce_feature(self, output: np.ndarray, feature: dict[str, Any]) -> dict[str, Any]:
        """The n-best (score, char start, char end) spans of one window and its no-answer score."""
        starts, ends = output[:, 0], output[:, 1]  # (T,)
        offsets = feature["offsets"]
        in_context = np.array([o is not None for o in offsets])
        n = self.cfg.n_best
        top_s = [k for k in np.argsort(-np.where(in_context, starts, -np.inf))[:n] if in_context[k]]
        top_e = [k for k in np.argsort(-np.where(in_context, ends, -np.inf))[:n] if in_context[k]]
        spans = [(float(starts[a] + ends[b]), offsets[a][0], offsets[b][1])
                 for a in top_s for b in top_e if a <= b < a + self.cfg.max_answer_length]
        spans.sort(reverse=True)
        return {"spans": spans[:n], "null": float(starts[0] + ends[0])}

    def combine(self, outputs, features, n_examples: int) -> list[dict[str, Any]]:
        merged: list[dict[str, Any]] = [{"spans": [], "null": np.inf} for _ in range(n_examples)]
        for out, feat in zip(outputs, features):
            m = merged[feat["example_index"]]
            m["spans"] = sorted(m["spans"] + out["spans"], reverse=True)[: self.cfg.n_best]
            m["null"] = min(m["null"], out["null"])  # the window most sure there is an answer decides
        return merged

    def _answer(self, merged: dict[str, Any], context: str) -> dict[str, Any]:
        spans = merged["spans"]
        if not spans:
            return {"answer": "", "score": 1.0, "start": 0, "end": 0}
        scores = np.array([s for s, _, _ in spans] + ([merged["null"]] if self.version_2 else []))
        probs = np.exp(scores - scores.max())
        probs /= probs.sum()
        best, start, end = spans[0]
        if self.version_2 and merged["null"] - best > self.null_threshold:
            return {"answer": "", "score": float(probs[-1]), "start": 0, "end": 0}
        return {"answer": context[start:end], "score": float(probs[0]), "start": int(start), "end": int(end)}

    def postprocess(self, outputs, examples) -> list[dict[str, Any]]:
        return [{"id": ex["id"], **self._answer(m, ex["context"])} for m, ex in zip(outputs, examples)]

    def metrics(self, outputs, examples) -> dict[str, float]:
        answers = [self._answer(m, ex["context"])["answer"] for m, ex in zip(outputs, examples)]
        golds = [[a["text"] for a in ex["answers"]] for ex in examples]
        return squad_scores(answers, golds, with_no_answer=self.version_2)

    def tune(self, outputs, examples) -> dict[str, Any]:
        if not self.version_2 or self.cfg.null_threshold is not None:
            return {}
        margins, f1s, has = [], [], []
        for m, ex in zip(outputs, examples):
            golds = [a["text"] for a in ex["answers"]]
            best = m["spans"][0] if m["spans"] else (-np.inf, 0, 0)
            margins.append(m["null"] - best[0])
            f1s.append(max(f1(ex["context"][best[1] : best[2]], g) for g in (golds or [""])))
            has.append(bool(golds))
        self.null_threshold = best_null_threshold(margins, f1s, has)
        return {"null_threshold": self.null_threshold}

    # --- persistence ----------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"task": self.name, "problem": "extractive_qa", "version_2": self.version_2,
                "null_threshold": self.null_threshold}

    def load_state(self, state: dict[str, Any]) -> None:
        self.version_2 = bool(state.get("version_2", False))
        self.null_threshold = float(state.get("null_threshold", 0.0))
