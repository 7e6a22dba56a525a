"""PyTorch dynamic int8 quantisation of a trained model, for CPU inference."""

from __future__ import annotations

from typing import Any

from bertkit.errors import ConfigError

__all__ = ["quantize_dynamic_int8"]


def quantize_dynamic_int8(model: Any, scheme: str) -> Any:
    """PyTorch dynamic quantisation: int8 weights for every linear layer (a scale per output channel:
    one per tensor loses accuracy to the few large columns, docs/results.md "Inference"), activations
    quantised on the fly."""
    import warnings

    import torch

    if scheme != "int8":
        raise ConfigError(f"quantize={scheme!r} is not supported; use int8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its move to torchao
        qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
        return torch.ao.quantization.quantize_dynamic(model.float().eval(), {torch.nn.Linear: qconfig})
