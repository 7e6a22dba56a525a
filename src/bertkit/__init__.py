"""bertkit: fine-tune BERT-family encoders offline, evaluate them, and carry what they learned onward."""

__version__ = "0.1.0"

from bertkit.api import TrainResult, evaluate, lineage, predict, train  # noqa: E402
from bertkit.config import DataConfig, ModelConfig, RunConfig, TaskConfig, TrainConfig, load_config  # noqa: E402
from bertkit.errors import (  # noqa: E402
    BertkitError,
    CheckpointError,
    ConfigError,
    DataError,
    ModelLoadError,
    TrainingError,
)
from bertkit.evaluation.predictor import Predictor  # noqa: E402
from bertkit.export import export_model  # noqa: E402
from bertkit.pipeline import run_pipeline  # noqa: E402

__all__ = [
    "__version__", "train", "evaluate", "predict", "lineage", "run_pipeline", "export_model", "Predictor",
    "TrainResult",
    "RunConfig", "TaskConfig", "DataConfig", "ModelConfig", "TrainConfig", "load_config",
    "BertkitError", "ConfigError", "DataError", "ModelLoadError", "CheckpointError", "TrainingError",
]
