"""Mean pooling inside a plain sequence classifier, by one appended encoder layer.

A sentence-transformers model (the embedded MiniLM among them) was trained so that the *mean* of its token
states is the sentence embedding, while `BertForSequenceClassification` and its relatives classify the
first token's state. The few-shot recipe trains and classifies on the mean; to keep the result an ordinary
model that plain transformers loads, ONNX exports and every bertkit command takes, the mean is computed by
an encoder layer of the usual kind appended on top, with weights set so that it does exactly that:

- query and key projections are zero, so every attention score is 0 and each position attends uniformly to
  the real (unmasked) tokens of its input; the value projection is the identity, so the attention output is
  the mean of the token states (padding excluded by the attention mask, as sentence-transformers excludes it);
- the attention's output projection scales that mean by `SCALE`, so the residual input beside it is
  negligible and the layer norm returns the standardised mean; the feed-forward block outputs zero;
- the layer's dropout is off; the dense layer between the encoder and the output layer is the identity
  divided by sqrt(hidden size), which keeps its tanh (or GELU) in its near-linear range.

The layer and that dense layer never train. The config records the layer's index (`MEAN_POOLING_KEY`), so
a later run started from this model does not append a second one.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from bertkit.runtime import unwrap

__all__ = ["MEAN_POOLING_KEY", "SCALE", "append_mean_pooling", "below_mean_pooling", "has_mean_pooling",
           "mean_pooling_unsupported", "pre_head_dense"]

MEAN_POOLING_KEY = "bertkit_mean_pooling_layer"
SCALE = 1000.0
#: Model types whose encoder layers have the BERT layout (self-attention query/key/value, output dense and
#: layer norm, a two-layer feed-forward block with its own layer norm).
BERT_LAYOUT = ("bert", "roberta", "xlm-roberta", "camembert", "electra")


def _layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    net = unwrap(model, adapters=True)
    return getattr(net, net.base_model_prefix).encoder.layer


def mean_pooling_unsupported(config: Any) -> str | None:
    """Why a model of this config cannot take the mean-pooling layer, or None when it can."""
    kind = getattr(config, "model_type", None)
    if kind not in BERT_LAYOUT:
        return f"its architecture ({kind}) is not one of {', '.join(BERT_LAYOUT)}"
    if getattr(config, "position_embedding_type", "absolute") not in (None, "absolute"):
        return f"it uses {config.position_embedding_type} position embeddings in its attention"
    return None


def has_mean_pooling(model: torch.nn.Module) -> bool:
    return getattr(unwrap(model, adapters=True).config, MEAN_POOLING_KEY, None) is not None


def pre_head_dense(model: torch.nn.Module) -> torch.nn.Linear:
    """The hidden-size dense layer between the encoder and the output layer (BERT's pooler, the first layer
    of the RoBERTa and ELECTRA classification heads)."""
    net = unwrap(model, adapters=True)
    pooler = getattr(getattr(net, net.base_model_prefix), "pooler", None)
    if pooler is not None:
        return pooler.dense
    return net.classifier.dense


def append_mean_pooling(model: torch.nn.Module) -> int:
    """Append the mean-pooling layer to `model` (a sequence classifier of a BERT-layout architecture) and
    freeze it with the dense layer above it; returns the new layer's index. A model that has one keeps it."""
    net = unwrap(model, adapters=True)
    config = net.config
    layers = _layers(model)
    if has_mean_pooling(model):
        return int(getattr(config, MEAN_POOLING_KEY))
    layer = copy.deepcopy(layers[-1])
    hidden = config.hidden_size
    eye = torch.eye(hidden)
    attention = layer.attention
    with torch.no_grad():
        for linear, weight in ((attention.self.query, 0.0), (attention.self.key, 0.0),
                               (attention.self.value, eye), (attention.output.dense, SCALE * eye),
                               (layer.intermediate.dense, 0.0), (layer.output.dense, 0.0)):
            linear.weight.copy_(weight if isinstance(weight, torch.Tensor) else torch.zeros_like(linear.weight))
            linear.bias.zero_()
        for norm in (attention.output.LayerNorm, layer.output.LayerNorm):
            norm.weight.fill_(1.0)
            norm.bias.zero_()
        dense = pre_head_dense(model)
        dense.weight.copy_(eye / math.sqrt(hidden))
        dense.bias.zero_()
    for module in layer.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    for param in (*layer.parameters(), *pre_head_dense(model).parameters()):
        param.requires_grad_(False)
    layers.append(layer)
    config.num_hidden_layers = len(layers)
    index = len(layers) - 1
    if hasattr(attention.self, "layer_idx"):
        attention.self.layer_idx = index
    setattr(config, MEAN_POOLING_KEY, index)
    return index


@contextmanager
def below_mean_pooling(model: torch.nn.Module) -> Iterator[None]:
    """Run `model` with its mean-pooling layer passing its input through for the duration: the layer's
    output (the encoder's last hidden state) is then the token states it would average. The few-shot
    recipe's contrastive phase takes their mean itself, so the layer's forward and backward passes (a
    seventh of the embedded MiniLM's encoder) would be work for nothing. The layer stays in place, so the
    hooks transformers keeps on the layers (to collect hidden states) see the same modules."""
    if not has_mean_pooling(model):
        yield
        return
    layer = _layers(model)[int(getattr(unwrap(model, adapters=True).config, MEAN_POOLING_KEY))]
    layer.forward = _pass_through  # an instance attribute over the class's forward
    try:
        yield
    finally:
        del layer.forward


def _pass_through(hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    return hidden_states


def freeze_mean_pooling(model: torch.nn.Module) -> None:
    """Keep a model's mean-pooling layer and the dense layer above it fixed (a model loaded with them)."""
    if not has_mean_pooling(model):
        return
    layer = _layers(model)[int(getattr(unwrap(model, adapters=True).config, MEAN_POOLING_KEY))]
    for module in layer.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    for param in (*layer.parameters(), *pre_head_dense(model).parameters()):
        param.requires_grad_(False)
