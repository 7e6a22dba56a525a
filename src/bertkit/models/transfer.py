"""Transfer learning as options of model building: head reuse, smaller students, LoRA, freezing.

Everything here acts on a built `transformers` model; `loading.build_model` decides which of it applies.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path
from typing import Any

import torch

from bertkit.errors import ConfigError
from bertkit.runtime import unwrap

__all__ = ["head_modules", "reset_modules", "permute_head", "keep_layers", "restore_pooler", "apply_lora",
           "layer_depth", "num_layers", "set_trainable", "describe_parameters", "configure_training"]

log = logging.getLogger(__name__)


def head_modules(model: torch.nn.Module) -> list[str]:
    """Names of the top-level modules outside the encoder that hold weights (the task head); none for a bare
    encoder (`AutoModel`, whose children are the encoder's own parts)."""
    if getattr(model, "base_model", None) is model:
        return []
    prefix = getattr(model, "base_model_prefix", "")
    return [name for name, module in model.named_children()
            if name != prefix and any(True for _ in module.parameters())]


@torch.no_grad()
def reset_modules(model: torch.nn.Module, names: list[str]) -> None:
    """Fresh weights for the named modules, drawn as the architecture initialises them (normal with the
    config's initializer_range, zero biases, unit LayerNorm), from the current torch seed."""
    std = getattr(model.config, "initializer_range", 0.02)
    for name in names:
        for module in model.get_submodule(name).modules():
            if isinstance(module, torch.nn.Linear):
                if module.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr():
                    continue  # a decoder tied to the word embeddings stays tied
                module.weight.normal_(0.0, std)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, torch.nn.LayerNorm):
                module.weight.fill_(1.0)
                if module.bias is not None:  # ModernBERT's norms have none
                    module.bias.zero_()
            elif isinstance(module, torch.nn.Embedding):
                module.weight.normal_(0.0, std)
        for pname, param in model.get_submodule(name).named_parameters(recurse=False):
            if pname == "bias":  # a bare bias parameter (BERT's LM head)
                param.zero_()


@torch.no_grad()
def permute_head(model: torch.nn.Module, names: list[str], mapping: list[int]) -> bool:
    """Re-order the output rows of the head's last linear layer: new row i = old row mapping[i].
    Returns whether anything moved."""
    if mapping == list(range(len(mapping))):
        return False
    linears = [m for name in names for m in model.get_submodule(name).modules() if isinstance(m, torch.nn.Linear)]
    last = linears[-1]
    index = torch.tensor(mapping, device=last.weight.device)
    last.weight.copy_(last.weight[index])
    if last.bias is not None:
        last.bias.copy_(last.bias[index])
    return True


def _layer_list(model: torch.nn.Module) -> torch.nn.ModuleList:
    n = model.config.num_hidden_layers
    for module in model.base_model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module
    raise ConfigError(f"{type(model).__name__}: cannot find its {n} encoder layers; model.num_layers works for "
                      "BERT-style encoders")


def compile_layers(model: torch.nn.Module) -> int:
    """Compile each encoder layer in place with `torch.compile` (shapes dynamic: batches vary in length).
    Layers, not the whole model, because the classifiers' fast path calls the layers itself; saving and
    PEFT see the same modules. Returns how many were compiled."""
    layers = _layer_list(unwrap(model, adapters=True))
    for layer in layers:
        layer.compile(dynamic=True)
    return len(layers)


def num_layers(model: torch.nn.Module) -> int:
    return int(model.config.num_hidden_layers)


def keep_layers(model: torch.nn.Module, k: int) -> list[int]:
    """Keep `k` evenly spaced encoder layers (every other one for half), starting with the lowest;
    returns the indices kept."""
    layers = _layer_list(model)
    n = len(layers)
    if k > n:
        raise ConfigError(f"model.num_layers={k} but the model has only {n} layers")
    keep = [i * n // k for i in range(k)]
    parent_name = next(name for name, m in model.named_modules() if m is layers)
    model.get_submodule(parent_name.rsplit(".", 1)[0]).__setattr__(
        parent_name.rsplit(".", 1)[1], torch.nn.ModuleList([layers[i] for i in keep]))
    model.config.num_hidden_layers = k
    return keep


def restore_pooler(model: torch.nn.Module, source: str, unexpected: set[str]) -> bool:
    """Masked-LM classes drop the encoder's pooler; put it back (with the source's weights) so that a
    classifier started from this model later gets the pretrained pooler, not a random one."""
    base = model.base_model
    if getattr(base, "pooler", "absent") is not None or not any(".pooler." in f".{k}" for k in unexpected):
        return False
    module = sys.modules[type(base).__module__]
    pooler_cls = getattr(module, type(base).__name__.replace("Model", "Pooler"), None)
    weights = Path(source) / "model.safetensors"
    if pooler_cls is None or not weights.is_file():
        return False
    from safetensors import safe_open

    pooler = pooler_cls(model.config)
    state = {}
    with safe_open(str(weights), "pt") as fh:
        for key in fh.keys():
            if ".pooler." in f".{key}":
                state[key.split("pooler.", 1)[1]] = fh.get_tensor(key)
    if set(state) != set(pooler.state_dict()):
        return False
    pooler.load_state_dict(state)
    base.pooler = pooler
    return True


#: LoRA's default targets per model type: the attention's query and value projections by their real names
#: (PEFT's own table misses several encoder families).
LORA_TARGETS = {"bert": ["query", "value"], "roberta": ["query", "value"], "xlm-roberta": ["query", "value"],
                "camembert": ["query", "value"], "electra": ["query", "value"], "albert": ["query", "value"],
                "distilbert": ["q_lin", "v_lin"], "deberta": ["in_proj"], "deberta-v2": ["query_proj", "value_proj"],
                "mpnet": ["q", "v"], "modernbert": ["Wqkv"], "xlm": ["q_lin", "v_lin"]}


def lora_targets(model: torch.nn.Module) -> list[str]:
    """The module names LoRA adapts by default for this model, or a ConfigError listing its linear layers."""
    model_type = getattr(model.config, "model_type", "")
    names = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    targets = [t for t in LORA_TARGETS.get(model_type, []) if t in names]
    if not targets:
        raise ConfigError(f"model.lora_targets=auto: bertkit has no default LoRA targets for model type "
                          f"'{model_type}'; set model.lora_targets to some of its linear layers: "
                          f"{', '.join(sorted(names))[:400]}")
    return targets


def apply_lora(model: torch.nn.Module, *, r: int, alpha: float | None, dropout: float, targets: str,
               train_head: bool) -> torch.nn.Module:
    """Wrap `model` with LoRA adapters (PEFT); the task head (and pooler) train in full and are saved with
    the adapter."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ConfigError("LoRA needs the peft package: pip install 'bertkit[lora]' (or pip install peft)") from None
    heads = head_modules(model) if train_head else []
    if train_head and getattr(model.base_model, "pooler", None) is not None:
        heads.append("pooler")
    chosen = lora_targets(model) if targets == "auto" else [t.strip() for t in targets.split(",") if t.strip()]
    cfg = LoraConfig(r=r, lora_alpha=alpha if alpha is not None else 2 * r, lora_dropout=dropout,
                     target_modules=chosen, modules_to_save=heads or None)
    try:
        return get_peft_model(model, cfg)
    except ValueError as exc:
        raise ConfigError(f"model.lora_targets={targets!r}: {exc}") from None


_LAYER = re.compile(r"\.layers?\.(\d+)\.")


def layer_depth(name: str, n_layers: int, base_prefix: str) -> int:
    """Depth of a parameter: 0 embeddings, 1..n encoder layers, n+1 everything above (pooler, head)."""
    if "embeddings" in name.split(".") or ".embeddings." in f".{name}":
        return 0
    match = _LAYER.search(f".{name}")
    if match and (base_prefix in name.split(".") or not base_prefix):
        return int(match.group(1)) + 1
    return n_layers + 1


def set_trainable(named: list[tuple[str, torch.nn.Parameter]], depths: list[int], n_layers: int, *,
                  step: int, unfreeze_every: int | None, frozen_below: int) -> int:
    """Gradual unfreezing: the head trains from the start and one more encoder layer, top down, every
    `unfreeze_every` steps (the embeddings last); parameters at depth < `frozen_below` never train.
    Returns the lowest trainable depth."""
    lowest = n_layers + 1 - (step // unfreeze_every if unfreeze_every else n_layers + 1)
    lowest = max(lowest, frozen_below, 0)
    for (_, param), depth in zip(named, depths):
        param.requires_grad_(depth >= lowest)
    return lowest


def describe_parameters(model: torch.nn.Module) -> dict[str, Any]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"parameters": total, "trainable": trainable}


def configure_training(model: torch.nn.Module, mc: Any, tc: Any, *, train_head: bool = True
                       ) -> tuple[torch.nn.Module, dict[str, int], int, Any]:
    """Apply LoRA (`mc`, a ModelConfig) and the frozen parts (`tc`, a TrainConfig) to a built model.

    Returns the (possibly wrapped) model, each parameter's depth (0 embeddings, 1..n layers, n+1 head;
    for layer-wise learning rates), the layer count n, and the per-step hook of gradual unfreezing (None
    without it). Parameters frozen here for good are left out of the optimiser by `build_optimizer`;
    those that gradual unfreezing thaws later are in it from the start.
    """
    if mc.lora_r:
        if tc.freeze_layers or tc.unfreeze_every or tc.freeze_embeddings:
            raise ConfigError("model.lora_r trains adapters on a frozen encoder; drop train.freeze_layers, "
                              "train.unfreeze_every and train.freeze_embeddings")
        model = apply_lora(model, r=mc.lora_r, alpha=mc.lora_alpha, dropout=mc.lora_dropout, targets=mc.lora_targets,
                           train_head=train_head)
    n_layers = int(model.config.num_hidden_layers)
    if tc.freeze_layers > n_layers:
        raise ConfigError(f"train.freeze_layers is {tc.freeze_layers}, but the model has {n_layers} encoder layers; "
                          f"set it to {n_layers} or less (all {n_layers} leaves only the head training)")
    named = list(model.named_parameters())
    depths = {name: layer_depth(name, n_layers, getattr(model, "base_model_prefix", "")) for name, _ in named}
    if tc.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    for name, param in named:
        if tc.freeze_layers and depths[name] <= tc.freeze_layers:
            param.requires_grad_(False)  # the embeddings (depth 0) and the lowest layers
    before_step = None
    if tc.unfreeze_every:
        trainable = [(name, p) for name, p in named if p.requires_grad]
        trainable_depths = [depths[name] for name, _ in trainable]

        def before_step(step: int) -> None:
            set_trainable(trainable, trainable_depths, n_layers, step=step, unfreeze_every=tc.unfreeze_every,
                          frozen_below=0)

    return model, depths, n_layers, before_step
