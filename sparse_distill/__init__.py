"""sparse-distill: distil a transformer text classifier into a sparse n-gram Deep Averaging Network.

The Python API mirrors the `sdistill` commands; each stage function takes a `Config` (or the path
of a YAML config) and returns what it did.
"""

__version__ = "0.1.0"

from .assets import fetch
from .config import Config, load_config
from .data import LabeledData, load_labeled
from .errors import ConfigError, DataError, FetchError, SDistillError, StageError
from .vocab import Bag, Featurizer, Vocabulary, build_vocab


def __getattr__(name: str) -> object:
    # The teacher needs torch and transformers: imported on first use, so that the CLI and the
    # light stages start fast.
    if name in ("teach", "read_targets"):
        from . import teacher

        return getattr(teacher, name)
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
    "Vocabulary",
    "__version__",
    "build_vocab",
    "fetch",
    "load_config",
    "load_labeled",
    "read_targets",
    "teach",
]
