"""Vocabulary adaptation: give a model tokens for the text its tokenizer cannot represent.

    new_tokens(texts, tokenizer, min_count)   what the tokenizer maps to its unknown token, as vocabulary entries
    read_token_list(path)                      an explicit list instead (one token per line)
    extend_tokenizer(tokenizer, tokens)        the tokenizer with those tokens added (a new object)
    init_new_embeddings(model, old, tokens)    resize the model (tied output embeddings included) and give
                                               each new row a starting point

A WordPiece tokenizer (BERT's) gets the new entries in its own vocabulary, so they take part in ordinary
word splitting: an unknown character c becomes the entry "c" where it starts a word and "##c" where it
continues one (a Chinese character is always a word of its own: BERT's normaliser puts spaces around
CJK characters). Other tokenizers (SentencePiece, BPE) get added tokens. Either way the saved tokenizer and
model load with plain transformers.

A new token's embedding starts as the mean of the embeddings of the pieces the old tokenizer split it into,
where it knew them (an explicit-list word such as "covid19"); a token the old tokenizer could not read at all
(an unknown character) is drawn from a normal with the mean and covariance of the existing embeddings, so
new tokens are as distinct from each other as known ones from the start (see `SPREAD`).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from bertkit.errors import DataError
from bertkit.io import split_lines

__all__ = ["new_tokens", "read_token_list", "extend_tokenizer", "init_new_embeddings", "ADDED_TOKENS_FILE"]

log = logging.getLogger("bertkit")

#: New rows with nothing known to start from are drawn around the mean embedding with this share of the
#: embeddings' covariance: 1.0 makes each new token as distinct from the others as known tokens are from each
#: other (fine-tuning can tell them apart at once); transformers' own resizing uses 1e-5 (nearly identical rows,
#: which keeps a language model's outputs unchanged but leaves the new tokens indistinguishable until trained).
SPREAD = 1.0

#: Written into a run's model folder: the tokens this run added, one per line, in id order.
ADDED_TOKENS_FILE = "added_tokens.txt"


def _is_wordpiece(tokenizer: Any) -> bool:
    return json.loads(tokenizer.backend_tokenizer.to_str())["model"]["type"] == "WordPiece"


def new_tokens(texts: list[str], tokenizer: Any, min_count: int = 3) -> list[str]:
    """The vocabulary entries that would let `tokenizer` represent `texts`: for each span it maps to its
    unknown token, the characters it does not know ("c" at the start of a word, "##c" inside one, for a
    WordPiece tokenizer; "c" for others, as an added token), those seen at least `min_count` times, most frequent
    first (ties in text order)."""
    unk = tokenizer.unk_token_id
    if unk is None or not texts:
        return []
    wordpiece = _is_wordpiece(tokenizer)
    normalizer = tokenizer.backend_tokenizer.normalizer
    known: dict[str, bool] = {}

    def unknown_char(ch: str) -> bool:
        if ch not in known:
            known[ch] = unk in tokenizer(ch, add_special_tokens=False)["input_ids"]
        return known[ch]

    tokenizer.deprecation_warnings["sequence-length-is-longer-than-the-specified-maximum"] = True  # only counted
    counts: Counter[str] = Counter()
    for start in range(0, len(texts), 1000):
        chunk = texts[start:start + 1000]
        enc = tokenizer(chunk, add_special_tokens=False, return_offsets_mapping=True)
        for text, ids, offsets in zip(chunk, enc["input_ids"], enc["offset_mapping"]):
            for i, (s, e) in zip(ids, offsets):
                if i != unk or e <= s:
                    continue
                for k, ch in enumerate(text[s:e]):
                    if ch.isspace() or not unknown_char(ch):
                        continue
                    if not wordpiece:  # an added token, matched wherever it occurs
                        counts[ch] += 1
                        continue
                    entry = normalizer.normalize_str(ch).strip() if normalizer is not None else ch
                    if entry:
                        counts[entry if k == 0 else "##" + entry] += 1
    return [t for t, n in counts.most_common() if n >= min_count]


def read_token_list(path: str | Path) -> list[str]:
    """Tokens to add, one per line (UTF-8; blank lines and duplicates skipped)."""
    path = Path(path)
    try:
        lines = split_lines(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: no such file (model.extend_vocab_list: a text file, one token per line)") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 (byte {exc.start}); save the token list as UTF-8") from None
    tokens: list[str] = []
    for n, line in enumerate(lines, 1):
        token = line.strip()
        if not token:
            continue
        if any(ch.isspace() for ch in token):
            raise DataError(f"{path}, line {n}: {token!r} holds a space; one token per line, no spaces")
        if token not in tokens:
            tokens.append(token)
    if not tokens:
        raise DataError(f"{path}: no tokens (one token per line)")
    return tokens


def extend_tokenizer(tokenizer: Any, tokens: list[str]) -> tuple[Any, list[str]]:
    """A copy of `tokenizer` that knows `tokens`, and the tokens it did not know before (in id order:
    they take the ids from len(tokenizer) on). A WordPiece tokenizer gets them in its vocabulary when each
    is one word to its pre-tokenizer (or a "##" continuation); anything else becomes an added token."""
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        state = json.loads((Path(tmp) / "tokenizer.json").read_text(encoding="utf-8"))
        model = state["model"]
        vocab = model.get("vocab") if model["type"] == "WordPiece" else None
        existing = tokenizer.get_vocab()
        pre = tokenizer.backend_tokenizer.pre_tokenizer
        normalizer = tokenizer.backend_tokenizer.normalizer
        in_vocab, added, next_id = [], [], len(tokenizer)
        for token in tokens:
            if token in existing or token in in_vocab or token in added:
                continue
            body = token[2:] if token.startswith("##") and len(token) > 2 else token
            norm = normalizer.normalize_str(body).strip() if normalizer is not None else body
            one_word = norm == body and (pre is None or len(pre.pre_tokenize_str(norm)) == 1)
            if vocab is not None and one_word:
                vocab[token] = next_id
                next_id += 1
                in_vocab.append(token)
            elif not token.startswith("##"):
                added.append(token)
            else:
                log.warning("extend_vocab: %r left out: a '##' continuation needs a WordPiece tokenizer", token)
        (Path(tmp) / "tokenizer.json").write_text(json.dumps(state, ensure_ascii=False), encoding="utf-8")
        extended = AutoTokenizer.from_pretrained(tmp)
    if added:
        extended.add_tokens(added)
    fresh = in_vocab + added
    for token in fresh[:50]:  # what was added reads back as itself
        ids = extended.convert_tokens_to_ids(token)
        if ids is None or ids == extended.unk_token_id:
            raise DataError(f"extend_vocab: the tokenizer does not take {token!r} as a token; leave it out")
    return extended, fresh


@torch.no_grad()
def init_new_embeddings(model: torch.nn.Module, old_tokenizer: Any, new_tokenizer: Any, tokens: list[str], *,
                        spread: float = SPREAD, seed: int = 0) -> dict[str, int]:
    """Resize `model` to `new_tokenizer` (tied output embeddings and the masked-LM bias included) and give each
    of `tokens` (new entries) a starting embedding: the mean of its known pieces under `old_tokenizer`, else a
    draw from a normal with the existing embeddings' mean and `spread` times their covariance. Returns how
    many started from pieces and how many from the draw."""
    size = len(new_tokenizer)
    old_rows = model.get_input_embeddings().weight.shape[0]
    if size > old_rows:
        from bertkit.models.loading import quiet_transformers

        with quiet_transformers():  # its note on mean resizing; the run's log says what was done
            model.resize_token_embeddings(size, mean_resizing=True)
    weight = model.get_input_embeddings().weight
    known = weight[: len(old_tokenizer)].float()
    mean = known.mean(0)
    cov = torch.cov(known.T) + 1e-6 * torch.eye(known.shape[1])
    factor = torch.linalg.cholesky(cov)
    draws = torch.randn(len(tokens), known.shape[1], generator=torch.Generator().manual_seed(seed))
    unk = old_tokenizer.unk_token_id
    from_pieces = 0
    for k, token in enumerate(tokens):
        new_id = new_tokenizer.convert_tokens_to_ids(token)
        text = token[2:] if token.startswith("##") and len(token) > 2 else token
        ids = old_tokenizer(text, add_special_tokens=False)["input_ids"]
        pieces = [i for i, piece in zip(ids, old_tokenizer.convert_ids_to_tokens(ids))
                  if i != unk and piece.strip("▁Ġ# ")]  # not a bare word-boundary marker
        if pieces:
            weight[new_id] = weight[pieces].mean(0)
            from_pieces += 1
        else:
            weight[new_id] = (mean + spread**0.5 * draws[k] @ factor.T).to(weight.dtype)
    return {"from_pieces": from_pieces, "drawn": len(tokens) - from_pieces}
