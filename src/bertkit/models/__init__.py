"""Models layer: find and load encoders, tokenizers and trained models."""

from bertkit.models.loading import (
    build_model,
    embedded_model_dir,
    load_tokenizer,
    load_trained_model,
    resolve_model_name,
)

__all__ = ["build_model", "embedded_model_dir", "load_tokenizer", "load_trained_model", "resolve_model_name"]
