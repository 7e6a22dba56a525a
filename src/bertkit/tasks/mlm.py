"""Masked language modelling: continued (domain-adaptive) pre-training on unlabelled text.

Documents are tokenised whole and cut into windows of `max_length` tokens. Training batches are masked
afresh each time (dynamic masking, the global RNG, so a resumed run masks as the uninterrupted one would);
evaluation masks each window the same way every time (seeded by its index), so dev perplexity is
comparable across evaluations. With whole-word masking every subword of a chosen word is masked; the words
are the tokenizer's, or with `task.word_segmenter jieba` those of the jieba segmenter, for Chinese, where
BERT's pre-tokenizer makes every character a word.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from bertkit.config import DataConfig, TaskConfig, option
from bertkit.data.batching import pad_batch
from bertkit.data.text import table_documents
from bertkit.errors import ConfigError, DataError
from bertkit.runtime import unwrap
from bertkit.tasks.base import Task, register_task
from bertkit.tasks.spans import trim_span

__all__ = ["MlmTask", "MlmConfig", "mask_tokens", "jieba_words"]

IGNORE = -100


def mask_tokens(input_ids: list[int], word_ids: list[int], *, probability: float, whole_word: bool,
                mask_id: int, vocab_size: int, generator: torch.Generator | None) -> tuple[list[int], list[int]]:
    """(masked input ids, labels): BERT's 80/10/10 rule over a `probability` share of the tokens (words).

    `word_ids[i]` is the word of token i, or -1 for special tokens (never masked). At least one token of
    every window is masked, so every window contributes to the loss.
    """
    n = len(input_ids)
    units = sorted({w for w in word_ids if w >= 0}) if whole_word else [i for i in range(n) if word_ids[i] >= 0]
    if not units:
        return list(input_ids), [IGNORE] * n
    draw = torch.rand(len(units), generator=generator)
    chosen = {u for u, r in zip(units, draw.tolist()) if r < probability}
    if not chosen:
        chosen = {units[int(torch.randint(len(units), (1,), generator=generator))]}
    positions = [i for i in range(n) if (word_ids[i] in chosen if whole_word else i in chosen) and word_ids[i] >= 0]
    ids, labels = list(input_ids), [IGNORE] * n
    rule = torch.rand(len(positions), generator=generator).tolist()
    random_tokens = torch.randint(vocab_size, (len(positions),), generator=generator).tolist()
    for pos, r, tok in zip(positions, rule, random_tokens):
        labels[pos] = input_ids[pos]
        if r < 0.8:
            ids[pos] = mask_id
        elif r < 0.9:
            ids[pos] = tok
    return ids, labels


@dataclass
class MlmConfig(TaskConfig):
    mlm_probability: float = option(0.15, "share of tokens (or words) masked")
    whole_word_masking: bool = option(False, "mask every subword of a chosen word together")
    word_segmenter: Literal["tokenizer", "jieba"] = option(
        "tokenizer", "the words of whole-word masking: the tokenizer's, or jieba's Chinese words (pip install jieba)")

    def __post_init__(self) -> None:
        if not 0.0 < self.mlm_probability < 1.0:
            raise ConfigError(f"task.mlm_probability must be in (0, 1), got {self.mlm_probability}")
        if self.word_segmenter != "tokenizer" and not self.whole_word_masking:
            raise ConfigError(f"task.word_segmenter {self.word_segmenter} finds the words of whole-word masking; "
                              "set task.whole_word_masking (--whole-word-masking) too")


@functools.cache
def _jieba() -> Any:
    try:
        import jieba
    except ImportError:
        raise ConfigError("task.word_segmenter jieba needs the jieba package: pip install jieba") from None
    jieba.setLogLevel(logging.WARNING)  # once, not per document
    return jieba


def jieba_words(text: str) -> np.ndarray:
    """For each character of `text`, the index of the jieba word it belongs to (one more entry, for the end)."""
    owner = np.zeros(len(text) + 1, dtype=np.int64)
    k = -1
    for k, (_, start, end) in enumerate(_jieba().tokenize(text)):
        owner[start:end] = k
    owner[len(text)] = k + 1  # a token of no characters at the very end: a word of its own
    return owner


@register_task("mlm")
class MlmTask(Task):
    config_class = MlmConfig
    auto_model_class = "AutoModelForMaskedLM"
    pipeline_tag = "fill-mask"
    intended_use = "Predicts masked words; meant as a starting point for fine-tuning on a downstream task."
    example_keys = ("where", "text")
    input_schema = {"type": "string", "description": "a text with the tokenizer's mask token, e.g. [MASK]"}
    input_examples = ("Paris is the [MASK] of France.",)
    primary_metric = "perplexity"
    greater_is_better = False
    lora_trains_head = False  # its decoder is tied to the word embeddings, which LoRA keeps frozen
    tunes_embeddings = True
    head_architectures = ("ForMaskedLM", "ForPreTraining")  # BERT's original checkpoints carry both heads

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.mask_id: int | None = None
        self.vocab_size: int | None = None
        self.tokenizer: Any = None  # for decoding fill-mask predictions

    # --- data -----------------------------------------------------------------------------------------
    def file_kind(self, path: str, data_cfg: DataConfig) -> str:
        return "documents"

    def read_examples(self, table, data_cfg: DataConfig, with_labels: bool = True, tokenizer=None):
        return table_documents(table, data_cfg.text_column)

    def make_examples(self, inputs, tokenizer) -> list[dict[str, Any]]:
        """Texts with the tokenizer's mask token (e.g. "a [MASK] film"): predict what each mask hides."""
        self.tokenizer = tokenizer
        examples = []
        for i, text in enumerate(inputs):
            if not isinstance(text, str) or tokenizer.mask_token not in text:
                raise DataError(f"input {i}: a text with {tokenizer.mask_token} where a word should be predicted")
            examples.append({"where": f"input {i}", "text": text, "fill": True})
        return examples

    def fit(self, train) -> None:
        if not train:
            raise DataError("no pre-training text")

    def fit_chunks(self, chunks) -> None:
        self.fit([ex for chunk in chunks for ex in chunk[:1]])  # nothing to learn; only that text exists

    def check_examples(self, examples, source: str) -> None:
        pass

    def use_tokenizer(self, tokenizer) -> None:
        if tokenizer.mask_token_id is None:
            raise DataError(f"{tokenizer.name_or_path}: the tokenizer has no mask token; it cannot pre-train "
                            "with masked language modelling")
        self.mask_id, self.vocab_size = tokenizer.mask_token_id, len(tokenizer)

    def preprocess(self, examples, tokenizer, data_cfg: DataConfig, with_labels: bool = True):
        self.use_tokenizer(tokenizer)
        # Long documents become consecutive windows (overflowing tokens), each with its special tokens.
        jieba = self.cfg.whole_word_masking and self.cfg.word_segmenter == "jieba"
        enc = tokenizer([ex["text"] for ex in examples], truncation=True, max_length=self.max_length(data_cfg),
                        return_overflowing_tokens=True, return_attention_mask=False, return_offsets_mapping=jieba)
        features, owners = [], {}
        for j, ids in enumerate(enc["input_ids"]):
            i = enc["overflow_to_sample_mapping"][j]
            word_ids = [w if w is not None else -1 for w in enc.word_ids(j)]
            if jieba and not examples[i].get("fill"):
                # the tokens whose first character (past the space a BPE or SentencePiece piece carries) falls
                # in one jieba word share its id (an English word's subwords too); special tokens keep -1
                if i not in owners:
                    owners = {i: jieba_words(examples[i]["text"])}  # a document's windows come together
                text = examples[i]["text"]
                word_ids = [int(owners[i][trim_span(text, span)[0]]) if w >= 0 else w
                            for span, w in zip(enc["offset_mapping"][j], word_ids)]
            features.append({"input_ids": ids, "word_ids": word_ids, "example_index": i,
                             "mask_seed": None if examples[i].get("fill") else j})
        return features

    def _masked(self, feature: dict[str, Any], generator: torch.Generator | None) -> tuple[list[int], list[int]]:
        if feature["mask_seed"] is None:  # fill-mask input: the masks are in the text
            return feature["input_ids"], [IGNORE] * len(feature["input_ids"])
        return mask_tokens(feature["input_ids"], feature["word_ids"], probability=self.cfg.mlm_probability,
                           whole_word=self.cfg.whole_word_masking, mask_id=self.mask_id,
                           vocab_size=self.vocab_size, generator=generator)

    @staticmethod
    def _batch(pad_id: int, masked: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
        rows = [{"input_ids": ids, "labels": labels} for ids, labels in masked]
        return pad_batch(rows, pad_id, {"labels": IGNORE})

    def collate(self, features, pad_id: int) -> dict[str, torch.Tensor]:
        """Evaluation batches: each window masked the same way every time (seeded by its index)."""
        masked = [self._masked(f, None if f["mask_seed"] is None else
                               torch.Generator().manual_seed(1_000_003 * f["mask_seed"] + 17)) for f in features]
        return self._batch(pad_id, masked)

    def collate_train(self, features, pad_id: int) -> dict[str, torch.Tensor]:
        """Training batches: fresh masks at every visit (dynamic masking)."""
        return self._batch(pad_id, [self._masked(f, None) for f in features])

    # --- model ----------------------------------------------------------------------------------------

    def model_config(self) -> dict[str, Any]:
        return {}

    def _selected(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, T) bool: the positions the head predicts: masked for the loss, or [MASK] in a fill-mask text."""
        return (batch["labels"] != IGNORE) | (batch["input_ids"] == self.mask_id)

    def forward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(N, V) logits at the selected positions only. The vocabulary projection costs as much as the
        encoder per token, so running it on the ~15 % masked tokens roughly halves the cost of a step.
        A model wrapped for data parallelism runs whole (its forward must be called for gradient sync)."""
        selected = self._selected(batch)
        core = unwrap(model, adapters=True)
        head = getattr(core, "cls", None) or getattr(core, "lm_head", None)
        if head is None or isinstance(model, torch.nn.parallel.DistributedDataParallel):
            return super().forward(model, batch)[selected]
        hidden = getattr(core, core.base_model_prefix)(input_ids=batch["input_ids"],
                                                       attention_mask=batch["attention_mask"])[0]  # (B, T, H)
        return head(hidden[selected])  # (N, V)

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        # logits (N, V) at the selected positions; their labels (N,), IGNORE at fill-mask positions
        return F.cross_entropy(logits, batch["labels"][self._selected(batch)], ignore_index=IGNORE)

    # --- outputs --------------------------------------------------------------------------------------
    def batch_outputs(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(N, V) logits -> (B, T, 12): per position the log-loss of the masked token (NaN where nothing
        was masked), whether the top prediction hits it, and the top-5 token ids and probabilities."""
        selected = self._selected(batch)
        labels = batch["labels"][selected]
        logp = logits.float().log_softmax(-1)  # (N, V)
        nll = -logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        nll = torch.where(labels != IGNORE, nll, torch.full_like(nll, float("nan")))
        top = logp.topk(5, dim=-1)
        rows = torch.cat([nll[:, None], (logp.argmax(-1) == labels).float()[:, None], top.indices.float(),
                          top.values.exp()], -1)  # (N, 12)
        out = torch.full((*selected.shape, 12), float("nan"), device=logits.device)
        out[selected] = rows
        return out

    def reduce_feature(self, output: np.ndarray, feature: dict[str, Any]) -> dict[str, Any]:
        """Masked positions' summed log-loss and hits (dev), or the top tokens at each mask (fill-mask)."""
        if feature["mask_seed"] is None:
            where = [i for i, t in enumerate(feature["input_ids"]) if t == self.mask_id]
            return {"fill": [list(zip(output[i, 2:7].astype(int).tolist(), output[i, 7:12].tolist()))
                             for i in where]}
        masked = ~np.isnan(output[:, 0])
        return {"nll": float(output[masked, 0].sum()), "tokens": int(masked.sum()),
                "hits": int(output[masked, 1].sum())}

    def combine(self, outputs, features, n_examples: int) -> list[list[dict[str, Any]]]:
        per_example: list[list[dict[str, Any]]] = [[] for _ in range(n_examples)]
        for out, feat in zip(outputs, features):
            per_example[feat["example_index"]].append(out)
        return per_example

    def postprocess(self, outputs, examples) -> list[dict[str, Any]]:
        results = []
        for windows in outputs:
            if windows and "fill" not in windows[0]:  # a text masked at random: how well it was restored
                tokens = sum(w["tokens"] for w in windows)
                results.append({"masked_tokens": tokens, "loss": sum(w["nll"] for w in windows) / max(tokens, 1),
                                "accuracy": sum(w["hits"] for w in windows) / max(tokens, 1)})
                continue
            masks = [cands for w in windows for cands in w["fill"]]
            results.append({"masks": [[{"token": self._decode(i), "score": round(p, 6)} for i, p in cands]
                                      for cands in masks]})
        return results

    def _decode(self, token_id: int) -> str:
        return self.tokenizer.convert_ids_to_tokens(token_id) if self.tokenizer is not None else str(token_id)

    def metrics(self, outputs, examples) -> dict[str, float]:
        windows = [w for per in outputs for w in per]
        tokens = sum(w["tokens"] for w in windows)
        loss = sum(w["nll"] for w in windows) / max(tokens, 1)
        return {"perplexity": math.exp(min(loss, 50.0)), "loss": loss,
                "accuracy": sum(w["hits"] for w in windows) / max(tokens, 1)}

    # --- persistence ----------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"task": self.name, "problem": "masked_lm", "mask_token_id": self.mask_id,
                "vocab_size": self.vocab_size, "whole_word_masking": self.cfg.whole_word_masking,
                "word_segmenter": self.cfg.word_segmenter,
                "mlm_probability": self.cfg.mlm_probability}

    def load_state(self, state: dict[str, Any]) -> None:
        self.mask_id, self.vocab_size = state.get("mask_token_id"), state.get("vocab_size")
