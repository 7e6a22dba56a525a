"""Named entity recognition: word-level tagging with subword alignment and sliding windows.

Words are the unit: CoNLL tokens, JSONL token lists, or, for raw text, the words the tokenizer's own
pre-tokenizer finds (with character offsets into the original text, so text without spaces works).
Each word is labelled on its first subword. An input longer than the model's window is cut into
overlapping windows; each word takes its prediction from the window where it has the most context on
both sides, so no word is ever dropped.
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
from bertkit.data.readers import Table
from bertkit.errors import ConfigError, DataError
from bertkit.tasks.base import Task, register_task
from bertkit.tasks.spans import spaces_words, trim_span
from bertkit.tasks.tagging import bio_decode, bio_labels, detect_scheme, entity_scores, get_entities, split_tag, to_bio

__all__ = ["NerTask", "NerConfig"]

log = logging.getLogger(__name__)


@dataclass
class NerConfig(TaskConfig):
    tag_scheme: Literal["auto", "iob1", "iob2", "iobes", "bilou"] = option("auto", "tag scheme of the input")
    invalid_tags: Literal["repair", "reject"] = option("repair", "an I-X that opens an entity is made B-X, or "
                                                       "rejected with file:line")
    label_all_subwords: bool = option(False, "train on every subword, not only the first of each word")
    stride: int = option(32, "tokens shared by consecutive windows over a long input")
    context_sentences: int = option(0, "neighbouring sentences of the same document fed as context")
    strict: bool = option(False, "seqeval strict mode (entities must start with B-)", flag="--strict-entities")
    decode: Literal["bio", "argmax"] = option("bio", "tags from the scores: the best valid BIO sequence (an I-X only "
                                              "after B-X or I-X), or each word's likeliest tag alone")

    def __post_init__(self) -> None:
        if self.stride < 0 or self.context_sentences < 0:
            raise ConfigError(f"task.stride and task.context_sentences must be >= 0, got {self.stride}, "
                              f"{self.context_sentences}")


IGNORE = -100  # label of positions the loss skips (special tokens, context, non-first subwords)
_CONLL_EXTENSIONS = (".conll", ".conllu", ".txt", ".iob", ".bio", ".iob2")


def _format(path: str, given: str | None) -> str:
    if given:
        if given not in ("conll", "jsonl"):
            raise DataError(f"{path}: the ner task reads conll or jsonl files, not {given}")
        return given
    name = path.lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    if name.endswith(_CONLL_EXTENSIONS):
        return "conll"
    raise DataError(f"{path}: cannot tell the format from the extension; set data.format to conll or jsonl")


@register_task("ner")
class NerTask(Task):
    config_class = NerConfig
    auto_model_class = "AutoModelForTokenClassification"
    pipeline_tag = "token-classification"
    intended_use = "Finds entity spans of the trained types in text."
    example_keys = ("where", "text", "tokens", "tags")
    saves_dev_predictions = True
    input_schema = {"anyOf": [{"type": "string", "minLength": 1, "description": "raw text"},
                              {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1,
                               "description": "tokens"}]}
    input_examples = ("John lives in Paris.", ["John", "lives", "in", "Paris", "."])

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.labels: list[str] = []
        self.scheme: str = cfg.tag_scheme

    # --- data -----------------------------------------------------------------------------------------
    def file_kind(self, path: str, data_cfg: DataConfig) -> str:
        return "conll" if _format(path, data_cfg.format) == "conll" else "table"

    def read_examples(self, table: Table, data_cfg: DataConfig, with_labels: bool = True, tokenizer=None):
        """Sentences of a CoNLL file (rows of tokens and tags) or JSONL rows of tokens and tags, or of raw
        text and entity spans; tags are brought to BIO."""
        raw_text = data_cfg.tokens_column not in table.columns
        if raw_text and data_cfg.text_column not in table.columns:
            raise DataError(f"{table.path}: neither a '{data_cfg.tokens_column}' nor a '{data_cfg.text_column}' "
                            f"field; fields found: {', '.join(table.columns)}; set data.tokens_column or "
                            "data.text_column")
        if raw_text and with_labels and data_cfg.entities_column not in table.columns:
            # without it every sentence would be scored (or trained) as having no entities at all
            raise DataError(f"{table.path}: raw text but no '{data_cfg.entities_column}' field to label it; fields "
                            f"found: {', '.join(table.columns)}; give each row a list of {{start, end, label}} "
                            "spans ([] for a sentence without entities), or set data.entities_column")
        examples = []
        for i, row in enumerate(table.rows):
            where = table.where(i)
            if raw_text:
                ex = self._raw_text_example(row, data_cfg, where, with_labels)
            else:
                ex = self._token_example(row, data_cfg, where, with_labels)
            examples.append(ex)
        if raw_text:
            if tokenizer is None:
                raise DataError(f"{table.path}: raw text needs the model's tokenizer to find its words")
            self.segment(examples, tokenizer)
        if with_labels:
            self._normalise_tags(examples, table.path)
        return examples

    @staticmethod
    def _token_example(row, data_cfg: DataConfig, where: str, with_labels: bool) -> dict[str, Any]:
        tokens = row.get(data_cfg.tokens_column)
        if not isinstance(tokens, list) or not all(isinstance(t, str) and t for t in tokens):
            raise DataError(f"{where}: '{data_cfg.tokens_column}' must be a list of non-empty strings")
        if not tokens:
            raise DataError(f"{where}: empty sentence (no tokens); remove the row")
        ex: dict[str, Any] = {"tokens": tokens, "where": where, "doc": row.get("doc", 0)}
        if with_labels:
            tags = row.get(data_cfg.tags_column)
            if not isinstance(tags, list) or len(tags) != len(tokens):
                got = len(tags) if isinstance(tags, list) else type(tags).__name__
                raise DataError(f"{where}: {len(tokens)} tokens but {got} tags in '{data_cfg.tags_column}'")
            ex["tags"] = [str(t) for t in tags]
        return ex

    @staticmethod
    def _raw_text_example(row, data_cfg: DataConfig, where: str, with_labels: bool) -> dict[str, Any]:
        text = row.get(data_cfg.text_column)
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: empty text in '{data_cfg.text_column}'; fill it in or remove the row")
        ex: dict[str, Any] = {"text": text, "where": where, "doc": row.get("doc", 0)}
        if with_labels:
            spans = row.get(data_cfg.entities_column, [])
            if not isinstance(spans, list):
                raise DataError(f"{where}: '{data_cfg.entities_column}' must be a list of {{start, end, label}}")
            checked = []
            for k, span in enumerate(spans):
                try:
                    start, end, label = int(span["start"]), int(span["end"]), str(span["label"])
                except (KeyError, TypeError, ValueError):
                    raise DataError(f"{where}: entity {k + 1} needs integer 'start', 'end' and a 'label'") from None
                if not 0 <= start < end <= len(text):
                    raise DataError(f"{where}: entity {k + 1} [{start}, {end}) lies outside the text "
                                    f"(length {len(text)}) or is empty")
                checked.append((start, end, label))
            checked.sort()
            for (s1, e1, l1), (s2, e2, l2) in zip(checked, checked[1:]):
                if s2 < e1:
                    raise DataError(f"{where}: entities [{s1}, {e1}) {l1} and [{s2}, {e2}) {l2} overlap; "
                                    "a tagger needs disjoint spans")
            ex["entities"] = checked
        return ex

    def segment(self, examples: list[dict[str, Any]], tokenizer) -> None:
        """Give raw-text examples their words (with character spans) and, from entity spans, BIO tags."""
        tokenizer.deprecation_warnings["sequence-length-is-longer-than-the-specified-maximum"] = True
        enc = tokenizer([ex["text"] for ex in examples], add_special_tokens=False, return_offsets_mapping=True)
        for i, ex in enumerate(examples):
            spans: dict[int, list[int]] = {}
            for wid, (s, e) in zip(enc.word_ids(i), enc["offset_mapping"][i]):
                s, e = trim_span(ex["text"], (s, e))  # the space a BPE or SentencePiece piece carries
                if wid is not None and s < e:
                    span = spans.setdefault(wid, [s, e])
                    span[0], span[1] = min(span[0], s), max(span[1], e)
            ex["spans"] = [tuple(spans[w]) for w in sorted(spans)]  # whitespace-only "words" are dropped
            ex["tokens"] = [ex["text"][s:e] for s, e in ex["spans"]]
            if not ex["tokens"]:
                raise DataError(f"{ex['where']}: the text has no words the tokenizer can read")
            if "entities" in ex:
                tags = ["O"] * len(ex["spans"])
                for start, end, label in ex["entities"]:
                    inside = [w for w, (s, e) in enumerate(ex["spans"]) if s < end and e > start]
                    for k, w in enumerate(inside):  # a span cutting a word takes the whole word
                        tags[w] = f"{'B' if k == 0 else 'I'}-{label}"
                ex["tags"] = tags

    def _normalise_tags(self, examples: list[dict[str, Any]], source: str) -> None:
        scheme = self.cfg.tag_scheme
        if scheme == "auto":
            scheme = detect_scheme([ex["tags"] for ex in examples])
        changed, sentences, first = 0, 0, ""
        for ex in examples:
            for i, tag in enumerate(ex["tags"]):
                if len(tag) > 2 and tag[1] == "-" and tag[0] not in "BIESLU":
                    raise DataError(f"{ex['where']}: tag {i + 1} '{tag}' has the unknown prefix '{tag[0]}-'; tags are "
                                    "O, B-/I-/E-/S-/L-/U- and a type, or a bare type (IO scheme)")
            repaired: list[int] = []
            original = ex["tags"]
            ex["tags"] = to_bio(original, scheme, repair=self.cfg.invalid_tags == "repair", where=ex["where"],
                                repaired=repaired)
            if repaired:
                changed += len(repaired)
                sentences += 1
                first = first or f"{ex['where']}, tag {repaired[0] + 1} '{original[repaired[0]]}'"
        if changed:
            log.warning("%s: %d tag(s) in %d sentence(s) continued an entity that never started and were made B- "
                        "(task.invalid_tags repair; the first: %s); set task.invalid_tags reject "
                        "(--invalid-tags reject) to refuse them, or task.tag_scheme iob1 if the file is IOB1",
                        source, changed, sentences, first)
        self.repaired_tags = changed
        self.scheme = scheme

    def fit(self, train) -> None:
        types = {split_tag(t)[1] for ex in train for t in ex["tags"]} - {""}
        if not types:
            raise DataError(f"{train[0]['where'].rsplit(':', 1)[0]}: the training data has no entities")
        self.labels = bio_labels(types)

    def check_examples(self, examples, source: str) -> None:
        known = set(self.labels)
        unseen: dict[str, str] = {}
        for ex in examples:
            for tag in ex["tags"]:
                if tag not in known:
                    unseen.setdefault(tag, ex["where"])
        if unseen:
            raise DataError(f"{source}: tags that training never saw: {', '.join(sorted(unseen))} (first at "
                            f"{next(iter(unseen.values()))}); known: {', '.join(self.labels)}")

    def make_examples(self, inputs, tokenizer) -> list[dict[str, Any]]:
        examples, raw = [], []
        for i, item in enumerate(inputs):
            if isinstance(item, str):
                if not item.strip():
                    raise DataError(f"input {i}: empty text")
                raw.append({"text": item, "where": f"input {i}", "doc": i})
                examples.append(raw[-1])
            elif isinstance(item, (list, tuple)) and item and all(isinstance(t, str) and t for t in item):
                examples.append({"tokens": list(item), "where": f"input {i}", "doc": i})
            else:
                raise DataError(f"input {i}: expected raw text or a non-empty list of tokens")
        if raw:
            self.segment(raw, tokenizer)
        return examples

    # --- features ---------------------------------------------------------------------------------------
    def preprocess(self, examples, tokenizer, data_cfg: DataConfig, with_labels: bool = True):
        cap = self.max_length(data_cfg) - 2  # room for [CLS] and [SEP]
        stride = min(self.cfg.stride, cap // 2)
        # Inputs longer than the model are expected here (windows follow): mute the tokenizer's warning.
        tokenizer.deprecation_warnings["sequence-length-is-longer-than-the-specified-maximum"] = True
        words = [ex["tokens"] for ex in examples]
        if spaces_words(tokenizer):  # a byte-level BPE word inside a text starts with its space (Ġ)
            words = [[" " + w for w in ws] for ws in words]
        enc = tokenizer(words, is_split_into_words=True, add_special_tokens=False)
        index = {name: i for i, name in enumerate(self.labels)}
        per_example = []
        for i, ex in enumerate(examples):
            ids, wids = enc["input_ids"][i], enc.word_ids(i)
            first = [w is not None and (k == 0 or wids[k - 1] != w) for k, w in enumerate(wids)]
            labels = None
            if with_labels:
                labels = [self._token_label(ex["tags"][w], is_first, index) if w is not None else IGNORE
                          for w, is_first in zip(wids, first)]
            per_example.append((ids, [w if f else -1 for w, f in zip(wids, first)], labels))
        features = []
        for i, (ids, words, labels) in enumerate(per_example):
            left, right = self._context(per_example, examples, i, cap - len(ids))
            seq_ids = left + ids + right
            seq_words = [-1] * len(left) + words + [-1] * len(right)
            seq_labels = [IGNORE] * len(left) + labels + [IGNORE] * len(right) if labels is not None else None
            for start, end in _windows(len(seq_ids), cap, stride):
                feat = {"input_ids": [tokenizer.cls_token_id, *seq_ids[start:end], tokenizer.sep_token_id],
                        "word_index": [-1, *seq_words[start:end], -1], "example_index": i,
                        "n_words": len(examples[i]["tokens"])}
                if seq_labels is not None:
                    feat["labels"] = [IGNORE, *seq_labels[start:end], IGNORE]
                features.append(feat)
        return features

    def _token_label(self, tag: str, is_first: bool, index: dict[str, int]) -> int:
        if is_first:
            return index[tag]
        if not self.cfg.label_all_subwords:
            return IGNORE
        return index["I" + tag[1:]] if tag.startswith("B-") else index[tag]

    def _context(self, per_example, examples, i: int, budget: int) -> tuple[list[int], list[int]]:
        """Token ids of neighbouring sentences of the same document, trimmed to `budget` tokens."""
        k = self.cfg.context_sentences
        if k == 0 or budget <= 0:
            return [], []
        doc = examples[i].get("doc")
        before = [t for j in range(max(0, i - k), i) if examples[j].get("doc") == doc for t in per_example[j][0]]
        after = [t for j in range(i + 1, min(len(examples), i + k + 1)) if examples[j].get("doc") == doc
                 for t in per_example[j][0]]
        n_before = min(len(before), max(budget // 2, budget - len(after)))
        n_after = min(len(after), budget - n_before)
        return before[len(before) - n_before:], after[:n_after]

    def collate(self, features, pad_id: int) -> dict[str, torch.Tensor]:
        return pad_batch(features, pad_id, {"labels": IGNORE} if "labels" in features[0] else None)

    # --- model ----------------------------------------------------------------------------------------
    def model_config(self) -> dict[str, Any]:
        return {"num_labels": len(self.labels), "id2label": dict(enumerate(self.labels)),
                "label2id": {name: i for i, name in enumerate(self.labels)}}

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        # logits (B, T, L); labels (B, T) with IGNORE on positions that carry no word label
        return F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=IGNORE)

    # --- outputs --------------------------------------------------------------------------------------
    def combine(self, outputs, features, n_examples: int) -> list[np.ndarray]:
        """Word-level logits per example; a word seen by several windows keeps the one where it has the
        most context (distance to the nearer window edge)."""
        n_labels = len(self.labels)
        words: list[np.ndarray] = [np.zeros((0, n_labels), dtype=np.float32)] * n_examples
        best: list[np.ndarray] = [np.zeros(0)] * n_examples
        for f, out in zip(features, outputs):
            i = f["example_index"]
            if words[i].shape[0] != f["n_words"]:
                words[i] = np.zeros((f["n_words"], n_labels), dtype=np.float32)
                words[i][:, 0] = 1.0  # a word the tokenizer dropped (no subword) reads as "O"
                best[i] = np.full(f["n_words"], -1.0)
            content = len(f["input_ids"]) - 2
            for pos, w in enumerate(f["word_index"]):
                if w >= 0:
                    score = min(pos - 1, content - pos) + 0.01 * content
                    if score > best[i][w]:
                        best[i][w], words[i][w] = score, out[pos]
        return words

    def _decode(self, logits: np.ndarray) -> tuple[list[str], np.ndarray]:
        """Tags of one example's words, and each chosen tag's probability."""
        shifted = logits - logits.max(-1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
        ids = bio_decode(log_probs, self.labels) if self.cfg.decode == "bio" else log_probs.argmax(-1)
        return [self.labels[k] for k in ids], np.exp(log_probs[np.arange(len(ids)), ids])

    def postprocess(self, outputs, examples) -> list[dict[str, Any]]:
        predictions = []
        for logits, ex in zip(outputs, examples):
            tags, conf = self._decode(logits)
            entities = []
            for kind, first, last in get_entities(tags):
                score = round(float(conf[first : last + 1].mean()), 6)
                if "spans" in ex:
                    start, end = ex["spans"][first][0], ex["spans"][last][1]
                    entities.append({"label": kind, "start": start, "end": end, "text": ex["text"][start:end],
                                     "score": score})
                else:
                    entities.append({"label": kind, "start": first, "end": last + 1,
                                     "text": " ".join(ex["tokens"][first : last + 1]), "score": score})
            pred: dict[str, Any] = {"entities": entities}
            if "spans" not in ex:
                pred = {"tokens": ex["tokens"], "tags": tags, **pred}
            predictions.append(pred)
        return predictions

    def metrics(self, outputs, examples) -> dict[str, float]:
        preds = [self._decode(logits)[0] for logits in outputs]
        refs = [ex["tags"] for ex in examples]
        scores = entity_scores(refs, preds, strict=self.cfg.strict)
        total = sum(len(r) for r in refs)
        scores["token_accuracy"] = sum(a == b for r, p in zip(refs, preds) for a, b in zip(r, p)) / max(total, 1)
        return scores

    primary_metric = "f1"

    # --- persistence ----------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"task": self.name, "problem": "token_classification", "labels": self.labels,
                "input_scheme": self.scheme, "strict": self.cfg.strict}

    def load_state(self, state: dict[str, Any]) -> None:
        self.labels = list(state["labels"])
        self.scheme = state.get("input_scheme", "iob2")


def _windows(n: int, cap: int, stride: int) -> list[tuple[int, int]]:
    """[start, end) windows of at most `cap` tokens over `n`, consecutive ones sharing `stride` tokens."""
    if n <= cap:
        return [(0, n)]
    spans, start = [], 0
    while True:
        end = min(start + cap, n)
        spans.append((start, end))
        if end == n:
            return spans
        start = end - stride

