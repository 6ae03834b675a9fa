"""sparse-distill: distil a transformer text classifier into a sparse n-gram Deep Averaging Network.

The Python API mirrors the `sdistill` commands; each stage function takes a `Config` (or the path
of a YAML config) and returns what it did.
"""

__version__ = "0.1.0"

from .errors import ConfigError, DataError, FetchError, SDistillError, StageError
from .inference.featurize import Bag, Featurizer, Unseen, Vocabulary

# Everything else is imported on first use, from the layer that owns it (ARCHITECTURE.md): the CLI
# starts fast, and `import sparse_distill` loads nothing of training.
_LAZY = {"fetch": "stages.assets", "Config": "training.config", "load_config": "stages.config",
         "LabeledData": "training.data", "load_labeled": "training.data",
         "build_vocab": "stages.vocab", "teach": "stages.teach",
         "read_targets": "training.teacher", "train_student": "stages.train_student",
         "Student": "inference.student", "NumpyStudent": "inference.portable",
         "OnnxStudent": "inference.portable", "evaluate": "stages.evaluate",
         "run_all": "stages.pipeline", "predict_file": "inference.predict"}


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
    "NumpyStudent",
    "OnnxStudent",
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
