"""Export a run's final model for use outside bertkit."""

from bertkit.export.model_dir import export_model

__all__ = ["export_model"]
