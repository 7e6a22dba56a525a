"""bertkit: fine-tune BERT-family encoders offline, evaluate them, and carry what they learned onward."""

__version__ = "0.1.0"

from bertkit.api import TrainResult, evaluate, predict, train  # noqa: E402
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

__all__ = [
    "__version__", "train", "evaluate", "predict", "Predictor", "TrainResult",
    "RunConfig", "TaskConfig", "DataConfig", "ModelConfig", "TrainConfig", "load_config",
    "BertkitError", "ConfigError", "DataError", "ModelLoadError", "CheckpointError", "TrainingError",
]
