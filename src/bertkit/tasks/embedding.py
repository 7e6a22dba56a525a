"""Sentence embeddings (a bi-encoder): the encoder's pooled token states as one vector per text, trained so that
related texts lie close together, for semantic search, retrieval-augmented generation, deduplication and
clustering.

Training data come in the two shapes sentence-transformers takes, from any table file bertkit reads:

- **pairs** (`anchor`, `positive`, optional `negative` columns; `query`/`passage` and the like are found too):
  trained with in-batch negatives (multiple-negatives ranking: each anchor against every positive and negative
  of its batch, cross-entropy on the scaled cosine similarities). A text equal to the anchor's own positive
  never counts as one of its negatives (the same passage answers several questions). Scored on dev as search:
  the anchors are the queries, the dev positives and negatives the corpus (Recall@k, MRR@10, nDCG@10);
- **scored pairs** (two texts and a `score` column): trained with CoSENT (every pair ordered against every
  other of the batch by cosine similarity), scored by Spearman's rank correlation.

A feature holds one token sequence per column (anchor, positive, negative), so each is padded on its own (short
queries are not padded to the length of long passages). The model is the bare encoder (`AutoModel`); the
pooling (mean, first token or max over the token states) and whether vectors are unit length are read from the
starting model's sentence-transformers files when it has them, and written back beside the trained weights, so
the run's model folder is a sentence-transformers model (`Task.model_files`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bertkit.config import DataConfig, TaskConfig, option
from bertkit.data.batching import length_chunks
from bertkit.data.mining import bm25_available, bm25_rankings, negatives_from_rankings
from bertkit.data.readers import Table
from bertkit.errors import ConfigError, DataError
from bertkit.tasks.base import Task, register_task, takes_token_types
from bertkit.tasks.metrics import pearson, spearman
from bertkit.tasks.retrieval_metrics import retrieval_metrics

__all__ = ["EmbeddingTask", "EmbeddingConfig", "POOLINGS", "pool", "sentence_transformers_files",
           "sentence_transformers_settings", "pick_column", "ANCHOR_NAMES", "POSITIVE_NAMES", "NEGATIVE_NAMES"]

POOLINGS = ("mean", "cls", "max")
#: What one more call of the encoder costs, in padded tokens: a column's texts run in sub-batches by length where
#: that saves more than this per sub-batch (as the few-shot recipe's contrastive phase does).
CALL_COST_TOKENS = 64
#: Column names tried, in order, when the option is left unset (sentence-transformers and BEIR-style names).
ANCHOR_NAMES = ("anchor", "query", "question", "sentence1", "text1", "text")
POSITIVE_NAMES = ("positive", "passage", "document", "answer", "sentence2", "text2", "text_pair")
NEGATIVE_NAMES = ("negative", "hard_negative")


@dataclass
class EmbeddingConfig(TaskConfig):
    anchor_column: str | None = option(None, "embedding: column of the anchor (query) texts (default: the first of "
                                       + "/".join(ANCHOR_NAMES) + " the file has)")
    positive_column: str | None = option(None, "embedding: column of the texts that match the anchor (default: the "
                                         "first of " + "/".join(POSITIVE_NAMES) + ")")
    negative_column: str | None = option(None, "embedding: column of a text that does not match the anchor "
                                         "(default: negative or hard_negative when the file has one)")
    score_column: str = option("score", "embedding: column of a similarity score; when the file has it, the pairs "
                               "are scored pairs, trained with CoSENT and scored by Spearman's correlation")
    pooling: str | None = option(None, "embedding: how token states become one vector: mean, cls or max (default: "
                                 "the starting model's sentence-transformers pooling, else mean)")
    normalize: bool | None = option(None, "embedding: unit-length vectors (default: as the starting model's "
                                    "sentence-transformers modules say, else on)")
    symmetric: bool = option(False, "embedding: pairs also train positive -> anchor (symmetric in-batch loss)")
    scale: float = option(20.0, "embedding: the inverse temperature of the in-batch and CoSENT losses")
    mine_negatives: bool = option(False, "embedding: give each training pair without a negative the BM25 best-"
                                  "ranked training passage that is not its own (nor a near copy) as a hard negative "
                                  "(needs bertkit[search]; off by default: on SQuAD it cost 2.5x the time and did "
                                  "not help on dev)")
    mini_batch: int | None = option(None, "embedding: embed each batch in mini-batches of this many rows and cache "
                                    "their gradients (GradCache), so a large batch of in-batch negatives fits in "
                                    "memory; the loss is that of the whole batch")

    def __post_init__(self) -> None:
        if self.pooling is not None and self.pooling not in POOLINGS:
            raise ConfigError(f"task.pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        if self.scale <= 0:
            raise ConfigError(f"task.scale must be positive, got {self.scale}")
        if self.mini_batch is not None and self.mini_batch < 1:
            raise ConfigError(f"task.mini_batch must be at least 1, got {self.mini_batch}")


def pool(states: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """(B, T, H) token states and their (B, T) attention mask -> (B, H), as sentence-transformers' Pooling."""
    if mode == "cls":
        return states[:, 0]
    keep = mask.unsqueeze(-1).to(states.dtype)
    if mode == "max":
        return states.masked_fill(keep == 0, torch.finfo(states.dtype).min).max(dim=1).values
    return (states * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1e-9)


def sentence_transformers_settings(raw: dict[str, Any] | None) -> dict[str, Any]:
    """What a sentence-transformers folder's modules.json (`raw["modules"]`) and Pooling config (`raw["pooling"]`)
    say of its pooling and normalisation ({} when the folder is not one); "unsupported" says why a pooling
    cannot be taken."""
    if not raw or not isinstance(raw.get("modules"), list):
        return {}
    modules = raw["modules"]
    found: dict[str, Any] = {"normalize": any(str(m.get("type", "")).endswith(".Normalize") for m in modules
                                              if isinstance(m, dict))}
    config = raw.get("pooling")
    if isinstance(config, dict):
        modes = [mode for mode, key in (("cls", "pooling_mode_cls_token"), ("mean", "pooling_mode_mean_tokens"),
                                        ("max", "pooling_mode_max_tokens")) if config.get(key)]
        if len(modes) == 1 and not config.get("pooling_mode_mean_sqrt_len_tokens"):
            found["pooling"] = modes[0]
        else:
            found["unsupported"] = f"its pooling ({', '.join(modes) or 'other'}) is not one of {', '.join(POOLINGS)}"
    return found


def sentence_transformers_files(pooling: str, normalize: bool, hidden_size: int, max_length: int
                                ) -> dict[str, str]:
    """The files that make a model folder a sentence-transformers model: the transformer (the folder itself), the
    pooling, and unit length when `normalize`."""
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    pooling_config = {"word_embedding_dimension": hidden_size, "pooling_mode_cls_token": pooling == "cls",
                      "pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_max_tokens": pooling == "max",
                      "pooling_mode_mean_sqrt_len_tokens": False}
    dump = lambda value: json.dumps(value, indent=2) + "\n"  # noqa: E731
    return {"modules.json": dump(modules), "1_Pooling/config.json": dump(pooling_config),
            "sentence_bert_config.json": dump({"max_seq_length": max_length, "do_lower_case": False}),
            "config_sentence_transformers.json": dump({"model_type": "SentenceTransformer", "prompts": {},
                                                      "default_prompt_name": None, "similarity_fn_name": "cosine"})}


def pick_column(table: Table, given: str | None, names: Sequence[str], key: str, required: bool = True) -> str | None:
    if given is not None:
        table.require(given, key)
        return given
    found = next((n for n in names if n in table.columns), None)
    if found is None and required:
        raise DataError(f"{table.path}: no column for {key} (looked for {', '.join(names)}; the file has "
                        f"{', '.join(table.columns) or 'none'}); name it with --{key.split('.')[1].replace('_', '-')}")
    return found


@register_task("embedding")
class EmbeddingTask(Task):
    config_class = EmbeddingConfig
    auto_model_class = "AutoModel"
    pipeline_tag = "sentence-similarity"
    intended_use = ("Turns a text into one vector; related texts get close vectors (semantic search, retrieval, "
                    "deduplication, clustering).")
    output_names = ("last_hidden_state",)
    example_keys = ("where", "anchor", "positive", "negative", "score")
    default_max_length = 256  # sentence-transformers' max_seq_length of the embedded MiniLM
    target_keys = ("keys", "scores")
    lora_trains_head = False  # no head: the adapters are what trains
    train_defaults = {"length_grouping": False, "batch_size": 32, "epochs": 1.0, "lr": 5e-5}
    train_defaults_reason = ("in-batch negatives: batches of 32 drawn at random (batches grouped by length hold "
                             "texts of one kind), one pass, lr 5e-5")
    input_examples = ("a short text", "how do I reset my password?")

    def __init__(self, cfg: EmbeddingConfig) -> None:
        super().__init__(cfg)
        self.problem = "pairs"
        self.columns: dict[str, str | None] = {}
        self.pooling = cfg.pooling or "mean"
        self.normalize = True if cfg.normalize is None else cfg.normalize

    # --- reading --------------------------------------------------------------------------------------
    def read_examples(self, table: Table, data_cfg: DataConfig, with_labels: bool = True, tokenizer: Any = None
                      ) -> list[dict[str, Any]]:
        c = self.cfg
        anchor = pick_column(table, c.anchor_column, ANCHOR_NAMES, "task.anchor_column")
        if not with_labels and c.positive_column is None and not any(n in table.columns for n in POSITIVE_NAMES):
            return [{"where": table.where(i), "anchor": self._text(row.get(anchor), table.where(i), anchor)}
                    for i, row in enumerate(table.rows)]
        positive = pick_column(table, c.positive_column, POSITIVE_NAMES, "task.positive_column")
        negative = pick_column(table, c.negative_column, NEGATIVE_NAMES, "task.negative_column", required=False)
        scored = c.score_column in table.columns
        if anchor == positive:
            raise DataError(f"{table.path}: the anchor and positive columns are both '{anchor}'; name the second "
                            "text's column with --positive-column")
        examples = []
        for i, row in enumerate(table.rows):
            where = table.where(i)
            ex = {"where": where, "anchor": self._text(row.get(anchor), where, anchor),
                  "positive": self._text(row.get(positive), where, positive)}
            if negative is not None:
                ex["negative"] = self._text(row.get(negative), where, negative)
            if scored:
                ex["score"] = self._score(row.get(c.score_column), where)
            examples.append(ex)
        return examples

    @staticmethod
    def _text(value: Any, where: str, column: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"{where}: column '{column}' is empty; fill it in or remove the row")
        return value

    def _score(self, value: Any, where: str) -> float:
        try:
            score = float(value)
        except (TypeError, ValueError):
            score = float("nan")
        if isinstance(value, bool) or not np.isfinite(score):
            raise DataError(f"{where}: {self.cfg.score_column} {value!r:.40} is not a number; scored pairs need a "
                            "similarity score (e.g. 0 to 1, or 0 to 5)")
        return score

    def make_examples(self, inputs: Sequence[Any], tokenizer: Any) -> list[dict[str, Any]]:
        examples = []
        for i, item in enumerate(inputs):
            if not isinstance(item, str) or not item:
                raise DataError(f"input {i}: expected a non-empty text, got {item!r:.60}")
            examples.append({"where": f"input {i}", "anchor": item})
        return examples

    def fit(self, train: Sequence[dict[str, Any]]) -> None:
        if not train:
            raise DataError("no training pairs")
        source = train[0]["where"].rsplit(":", 1)[0]
        if "positive" not in train[0]:
            raise DataError(f"{source}: the embedding task trains on pairs; give a positive (or second text) column")
        self.problem = "scored" if "score" in train[0] else "pairs"
        if self.problem == "scored" and len({ex["score"] for ex in train}) < 2:
            raise DataError(f"{source}: every pair has the same score; scored pairs need different scores to order")
        self.columns = {"negative": "negative" if "negative" in train[0] else None}

    def complete_training(self, examples: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str | None]:
        if self.problem == "scored" or not self.cfg.mine_negatives or not examples or "negative" in examples[0]:
            return examples, None
        if not bm25_available():
            raise ConfigError("task.mine_negatives needs bm25s and PyStemmer; install bertkit[search]")
        queries, positives = [ex["anchor"] for ex in examples], [ex["positive"] for ex in examples]
        docs = list(dict.fromkeys(positives))
        found = negatives_from_rankings(queries, positives, docs,
                                        bm25_rankings(list(dict.fromkeys(queries)), docs, depth=20), count=1)
        out = [{**ex, "negative": neg[0]} for ex, neg in zip(examples, found) if neg]
        self.columns = {"negative": "negative (mined)"}
        return out, (f"embedding: a hard negative mined with BM25 for each of {len(out):,} training pairs (the best-"
                     "ranked training passage that is not the pair's own nor a near copy)"
                     + (f"; {len(examples) - len(out)} pairs without one left out" if len(out) < len(examples) else ""))

    def check_examples(self, examples: Sequence[dict[str, Any]], source: str) -> None:
        for ex in examples:
            if ("score" in ex) != (self.problem == "scored"):
                want = "scored pairs (a score column)" if self.problem == "scored" else "pairs without scores"
                raise DataError(f"{ex['where']}: this model was trained on {want}; give the same kind of file")

    # --- features -------------------------------------------------------------------------------------
    def _slots(self, ex: dict[str, Any]) -> list[str]:
        return [ex[key] for key in ("anchor", "positive", "negative") if key in ex]

    def preprocess(self, examples, tokenizer, data_cfg: DataConfig, with_labels: bool = True):
        texts = [text for ex in examples for text in self._slots(ex)]
        limit = self.max_length(data_cfg)
        enc = tokenizer(texts, truncation=True, max_length=limit)
        cut = [bool(e.overflowing) for e in enc.encodings]  # a fast tokenizer keeps what truncation removed
        features, k = [], 0
        for ex in examples:
            n = len(self._slots(ex))
            ids = enc["input_ids"][k:k + n]
            feature = {"input_ids": ids, "keys": [hash(tuple(seq)) for seq in ids],
                       "cut": sum(cut[k:k + n])}
            if "token_type_ids" in enc:
                feature["token_type_ids"] = enc["token_type_ids"][k:k + n]
            if "score" in ex:
                feature["scores"] = ex["score"]
            features.append(feature)
            k += n
        return features

    def feature_lengths(self, features: Sequence[dict[str, Any]]) -> Sequence[int]:
        return [sum(len(ids) for ids in f["input_ids"]) for f in features]

    def collate(self, features: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
        """One padded block per column: `input_ids`, `attention_mask` (and `token_type_ids`) for the anchors,
        the same names with `_1` and `_2` for the positives and negatives."""
        batch: dict[str, torch.Tensor] = {}
        for j in range(len(features[0]["input_ids"])):
            suffix = f"_{j}" if j else ""
            seqs = [f["input_ids"][j] for f in features]
            longest = max(len(s) for s in seqs)
            ids = torch.full((len(seqs), longest), pad_id, dtype=torch.long)
            mask = torch.zeros((len(seqs), longest), dtype=torch.long)
            for i, s in enumerate(seqs):
                ids[i, : len(s)] = torch.tensor(s)
                mask[i, : len(s)] = 1
            batch["input_ids" + suffix], batch["attention_mask" + suffix] = ids, mask
            if "token_type_ids" in features[0]:
                batch["token_type_ids" + suffix] = torch.zeros_like(ids)
        batch["keys"] = torch.tensor([f["keys"] for f in features], dtype=torch.long)
        if "scores" in features[0]:
            batch["scores"] = torch.tensor([f["scores"] for f in features], dtype=torch.float)
        return batch

    # --- model ----------------------------------------------------------------------------------------
    def model_config(self) -> dict[str, Any]:
        return {}

    def use_model_settings(self, raw: dict[str, Any] | None) -> str | None:
        said = sentence_transformers_settings(raw)
        if "unsupported" in said and self.cfg.pooling is None:
            raise ConfigError(f"the model's sentence-transformers files: {said['unsupported']}; set task.pooling to "
                              "mean, cls or max")
        self.pooling = self.cfg.pooling or said.get("pooling", "mean")
        self.normalize = self.cfg.normalize if self.cfg.normalize is not None else said.get("normalize", True)
        how = "as its sentence-transformers files say" if said else "the default: it has no sentence-transformers files"
        return f"embedding: {self.pooling} pooling, {'unit-length' if self.normalize else 'raw'} vectors ({how})"

    def embed(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], slot: int = 0) -> torch.Tensor:
        """(B, H) vectors of one column of a batch. Texts of unlike length (passages of a batch drawn at random)
        run in sub-batches of similar length, each padded only to its own longest (`length_chunks`), unless the
        model is wrapped for data-parallel training (one call per step there)."""
        suffix = f"_{slot}" if slot else ""
        inputs = {"input_ids": batch["input_ids" + suffix], "attention_mask": batch["attention_mask" + suffix]}
        if "token_type_ids" + suffix in batch and takes_token_types(model):
            inputs["token_type_ids"] = batch["token_type_ids" + suffix]
        lengths = inputs["attention_mask"].sum(dim=1).tolist()
        if isinstance(model, torch.nn.parallel.DistributedDataParallel) or len(lengths) < 2:
            chunks = [list(range(len(lengths)))]
        else:
            chunks = length_chunks(lengths, CALL_COST_TOKENS)
        parts, rows = [], []
        for chunk in chunks:
            index = torch.tensor(chunk, device=inputs["input_ids"].device)
            width = max(lengths[i] for i in chunk)
            part = {k: v.index_select(0, index)[:, :width] for k, v in inputs.items()}  # padding is on the right
            parts.append(pool(model(**part).last_hidden_state, part["attention_mask"], self.pooling))
            rows += chunk
        vectors = torch.cat(parts) if len(parts) > 1 else parts[0]
        if rows != sorted(rows):  # back to the batch's order
            vectors = vectors[torch.argsort(torch.tensor(rows, device=vectors.device))]
        return F.normalize(vectors, dim=-1) if self.normalize else vectors

    def forward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, columns, H): the vectors of every column of the batch."""
        slots = sum(1 for key in batch if key.startswith("input_ids"))
        return torch.stack([self.embed(model, batch, j) for j in range(slots)], dim=1)

    def export_inputs(self, tokenizer: Any) -> tuple[dict[str, torch.Tensor], dict[int, str]]:
        sample = tokenizer(["a short example", "and a second, longer example to pad the first"], padding=True,
                           return_tensors="pt")
        return {k: sample[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in sample}, \
            {0: "batch", 1: "sequence"}

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        vectors = F.normalize(logits, dim=-1)
        if "scores" in batch:
            return cosent_loss(vectors[:, 0], vectors[:, 1], batch["scores"], self.cfg.scale)
        return in_batch_loss(vectors, batch["keys"], self.cfg.scale, symmetric=self.cfg.symmetric)

    def model_files(self, model_config: Any, data_cfg: DataConfig) -> dict[str, str]:
        return sentence_transformers_files(self.pooling, self.normalize, int(model_config.hidden_size),
                                           self.max_length(data_cfg))

    # --- outputs --------------------------------------------------------------------------------------
    def combine(self, outputs: list[Any], features: Sequence[dict[str, Any]], n_examples: int) -> Any:
        return np.stack(outputs) if outputs else np.zeros((0, 1, 1), dtype=np.float32)

    def input_notes(self, features: Sequence[dict[str, Any]], n_examples: int) -> list[dict[str, Any]]:
        return [{"cut_tokens": True} if f.get("cut") else {} for f in features]

    def postprocess(self, outputs: np.ndarray, examples) -> list[dict[str, Any]]:
        return [{"embedding": [round(float(x), 6) for x in row[0]]} for row in outputs]

    def metrics(self, outputs: np.ndarray, examples) -> dict[str, float]:
        if not len(examples):
            return {}
        if self.problem == "scored":
            return similarity_metrics(outputs[:, 0], outputs[:, 1], np.array([ex["score"] for ex in examples]))
        queries, corpus, relevant = search_layout(examples, outputs)
        return retrieval_metrics(_cosine(queries, corpus), relevant)

    @property
    def primary_metric(self) -> str:
        return "spearman" if self.problem == "scored" else "ndcg@10"

    # --- persistence ----------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"task": self.name, "problem": self.problem, "pooling": self.pooling, "normalize": self.normalize,
                "negatives": bool(self.columns.get("negative"))}

    def load_state(self, state: dict[str, Any]) -> None:
        self.problem, self.pooling = state["problem"], state["pooling"]
        self.normalize = bool(state["normalize"])
        self.columns = {"negative": "negative" if state.get("negatives") else None}

    @classmethod
    def head_state_from_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        return {"task": cls.name}


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return a @ b.T


def search_layout(examples: Sequence[dict[str, Any]], outputs: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, list[set[int]]]:
    """Dev pairs as a search problem: one query per distinct anchor text, a corpus of the distinct positive and
    negative texts, and for each query the corpus rows of its positives."""
    doc_index: dict[str, int] = {}
    doc_rows: list[tuple[int, int]] = []
    query_index: dict[str, int] = {}
    query_rows: list[int] = []
    relevant: list[set[int]] = []
    for i, ex in enumerate(examples):
        for slot, key in ((1, "positive"), (2, "negative")):
            if key in ex and ex[key] not in doc_index:
                doc_index[ex[key]] = len(doc_rows)
                doc_rows.append((i, slot))
        if ex["anchor"] not in query_index:
            query_index[ex["anchor"]] = len(query_rows)
            query_rows.append(i)
            relevant.append(set())
        relevant[query_index[ex["anchor"]]].add(doc_index[ex["positive"]])
    queries = outputs[query_rows, 0]
    corpus = outputs[[r for r, _ in doc_rows], [s for _, s in doc_rows]]
    return queries, corpus, relevant


def in_batch_loss(vectors: torch.Tensor, keys: torch.Tensor, scale: float, symmetric: bool = False) -> torch.Tensor:
    """Multiple-negatives ranking loss on unit vectors (B, columns, H): anchor i against the positives of every row
    and the negatives of every row, its own positive the target. A candidate with the same text as anchor i's
    positive (another row's copy of it) is no negative of i and is left out. `symmetric` adds positive -> anchors."""
    anchors, candidates = vectors[:, 0], vectors[:, 1:].transpose(0, 1).reshape(-1, vectors.shape[-1])
    cand_keys = keys[:, 1:].transpose(0, 1).reshape(-1)
    rows = torch.arange(len(anchors), device=vectors.device)
    scores = scale * anchors @ candidates.T  # (B, B * (columns - 1)); column i is row i's positive
    columns = torch.arange(len(cand_keys), device=vectors.device)
    same = (cand_keys.unsqueeze(0) == keys[:, 1:2]) & (columns != rows[:, None])
    loss = F.cross_entropy(scores.masked_fill(same, float("-inf")), rows)
    if symmetric:
        back = scale * vectors[:, 1] @ anchors.T
        twin = (keys[:, 0].unsqueeze(0) == keys[:, 0:1]) & (rows[None, :] != rows[:, None])
        loss = (loss + F.cross_entropy(back.masked_fill(twin, float("-inf")), rows)) / 2
    return loss


def cosent_loss(a: torch.Tensor, b: torch.Tensor, scores: torch.Tensor, scale: float) -> torch.Tensor:
    """CoSENT (Su 2022): for every two pairs of the batch whose scores differ, the one scored higher should have
    the higher cosine; log(1 + sum exp(scale * (cos_low - cos_high)))."""
    cos = scale * F.cosine_similarity(a, b, dim=-1)
    diff = cos[:, None] - cos[None, :]  # (i, j): cos_i - cos_j, counted where score_i < score_j
    diff = diff.masked_fill(~(scores[:, None] < scores[None, :]), float("-inf")).flatten()
    return torch.logsumexp(torch.cat([diff.new_zeros(1), diff]), dim=0)


def similarity_metrics(a: np.ndarray, b: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Spearman's and Pearson's correlation of the pairs' cosine similarity with their gold scores."""
    cos = np.sum(a * b, axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return {"spearman": spearman(scores, cos), "pearson": pearson(scores, cos)}
