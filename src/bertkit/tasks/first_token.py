"""Sequence classification through a BERT encoder without the work nobody reads.

A classifier reads one vector per example: the final state of its first token ([CLS]). The last encoder
layer therefore needs its keys and values for every token but its query, attention output and feed-forward
block for the first tokens only; computing them for every token (what the stock forward does) spends about
a seventh of a 6-layer model's matrix work on states that are thrown away. `first_token_logits` runs the
embeddings and all but the last layer as usual, then the last layer for the first tokens alone, then the
pooler and classifier: the same function of the inputs, in both training and evaluation.

It also reads packed batches (`bertkit.data.packing`): several examples per row, a block-diagonal mask, and
`cls_index` pointing at each example's first token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bertkit.data.packing import block_diagonal_mask
from bertkit.runtime import unwrap

__all__ = ["first_token_logits", "is_bert_classifier", "packed_logits_through_forward",
           "supports_first_token_path"]


def is_bert_classifier(model: torch.nn.Module) -> bool:
    """A BERT sequence classifier: pooler on [CLS], positions from 0, dropout and classifier on top."""
    net = unwrap(model, adapters=True)
    config = getattr(net, "config", None)
    encoder = getattr(net, getattr(net, "base_model_prefix", ""), None)
    return (config is not None and config.model_type == "bert" and getattr(encoder, "pooler", None) is not None
            and all(hasattr(net, name) for name in ("dropout", "classifier")))


def supports_first_token_path(model: torch.nn.Module) -> bool:
    """True for a BERT classifier with sdpa or eager attention that is not wrapped for data parallelism
    (whose forward must be called for gradient sync)."""
    if isinstance(model, torch.nn.parallel.DistributedDataParallel) or not is_bert_classifier(model):
        return False
    config = unwrap(model, adapters=True).config
    return (not config.is_decoder and config._attn_implementation in ("sdpa", "eager")
            and not config.chunk_size_feed_forward)


def packed_logits_through_forward(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, L) logits of a packed batch with the model's own forward called (a data-parallel wrapper needs it):
    block-diagonal mask and per-example positions in, each example's [CLS] state through pooler and head."""
    net = unwrap(model, adapters=True)
    inputs = {k: batch[k] for k in ("input_ids", "token_type_ids", "position_ids") if k in batch}
    mask = _layer_mask(block_diagonal_mask(batch["segment_ids"]), net.config._attn_implementation == "eager")
    hidden = model(**inputs, attention_mask=mask, output_hidden_states=True).hidden_states[-1]  # (R, T, H)
    first = hidden.flatten(0, 1)[batch["cls_index"]]  # (B, H)
    return net.classifier(net.dropout(getattr(net, net.base_model_prefix).pooler(first[:, None, :])))


def _layer_mask(keep: torch.Tensor, eager: bool) -> torch.Tensor:
    """A boolean "may attend" mask as the attention implementation wants it (additive for eager)."""
    if not eager:
        return keep
    return torch.zeros(keep.shape, device=keep.device).masked_fill(~keep, torch.finfo(torch.float).min)


def first_token_logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, L) classification logits of a padded batch (one example per row) or a packed one."""
    net = unwrap(model, adapters=True)
    encoder = getattr(net, net.base_model_prefix)
    eager = net.config._attn_implementation == "eager"
    packed = "cls_index" in batch
    hidden = encoder.embeddings(input_ids=batch["input_ids"], token_type_ids=batch.get("token_type_ids"),
                                position_ids=batch.get("position_ids"))  # (R, T, H)
    rows, width = hidden.shape[:2]
    if packed:
        keep = block_diagonal_mask(batch["segment_ids"])  # (R, 1, T, T)
        cls_index = batch["cls_index"]
    else:
        keep = batch["attention_mask"].bool()[:, None, None, :]  # (R, 1, 1, T)
        cls_index = torch.arange(rows, device=hidden.device) * width
    mask = _layer_mask(keep, eager)
    *lower, last = encoder.encoder.layer
    for layer in lower:
        hidden = layer(hidden, mask)

    # The last layer, for the first tokens only: each query attends to the keys of its own example.
    row_of = torch.div(cls_index, width, rounding_mode="floor")  # (B,)
    first = hidden.flatten(0, 1)[cls_index]  # (B, H)
    if packed:
        segment = batch["segment_ids"].flatten()[cls_index]  # (B,)
        key_keep = (batch["segment_ids"][row_of] == segment[:, None])[:, None, None, :]  # (B, 1, 1, T)
    else:
        key_keep = keep
    attention = last.attention.self
    heads, size = attention.num_attention_heads, attention.attention_head_size
    b = first.shape[0]
    query = attention.query(first).view(b, heads, 1, size)
    key = attention.key(hidden).view(rows, width, heads, size).transpose(1, 2)
    value = attention.value(hidden).view(rows, width, heads, size).transpose(1, 2)
    if packed:
        key, value = key[row_of], value[row_of]  # (B, heads, T, size)
    context = F.scaled_dot_product_attention(
        query, key, value, attn_mask=key_keep if not eager else _layer_mask(key_keep, True).to(query.dtype),
        dropout_p=attention.dropout.p if attention.training else 0.0, scale=attention.scaling)
    attended = last.attention.output(context.reshape(b, heads * size), first)  # dense, dropout, residual LN
    out = last.output(last.intermediate(attended), attended)  # (B, H)
    return net.classifier(net.dropout(encoder.pooler(out[:, None, :])))
