"""sparse-distill: distil a transformer text classifier into a sparse n-gram Deep Averaging Network.

The Python API mirrors the `sdistill` commands; each stage function takes a `Config` (or the path
of a YAML config) and returns what it did.
"""

__version__ = "0.1.0"

from .errors import ConfigError, DataError, FetchError, SDistillError, StageError
from .featurize import Bag, Featurizer, Unseen, Vocabulary

# Everything else is imported on first use: the CLI starts fast, and the inference path
# (featurize, model) imports no config, data, training or teacher code.
_LAZY = {"fetch": "assets", "Config": "config", "load_config": "config",
         "LabeledData": "data", "load_labeled": "data",
         "build_vocab": "vocab", "teach": "teacher", "read_targets": "teacher",
         "train_student": "student", "Student": "model", "evaluate": "evaluation",
         "run_all": "pipeline", "predict_file": "predict"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'sparse_distill' has no attribute {name!r}")


__all__ = [
    "Bag",
    "Config",
    "ConfigError",
    "DataError",
    "Featurizer",
    "FetchError",
    "LabeledData",
    "SDistillError",
    "StageError",
    "Student",
    "Unseen",
    "Vocabulary",
    "__version__",
    "build_vocab",
    "evaluate",
    "fetch",
    "load_config",
    "load_labeled",
    "predict_file",
    "read_targets",
    "run_all",
    "teach",
    "train_student",
]
