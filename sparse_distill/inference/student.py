"""A trained student directory loaded to predict: `Student.load(dir).predict(texts)`.

Text -> ids is `featurize.py`, ids -> logits `network.py`; this module puts them together on
threads (CPU) or a GPU. Like everything in `sparse_distill.inference`, it imports no training,
teacher, transformers, scikit-learn or run-directory code: a service that only predicts imports
torch, numpy and safetensors and nothing else of the pipeline.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from ..errors import DataError
from .artifact import fitted_temperature, read_student
from .featurize import (
    MIN_TEXTS_PER_THREAD,
    NO_BUCKETS,
    Featurizer,
    Unseen,
    Vocabulary,
    thread_pool,
    usable_cpus,
)
from .network import SparseDAN
from .portable import Predictions

_torch_threads_lock = threading.Lock()
_torch_threads_users = 0
_torch_threads_saved = 1


@contextlib.contextmanager
def torch_single_threaded() -> Iterator[None]:
    """torch on one intra-op thread while this package's own threads each run a model call.

    Each thread's call would otherwise start an OpenMP team as wide as the machine, and two
    teams on two cores fight over them. Re-entrant and thread-safe: torch's setting comes back
    when the last user leaves (changing it costs ~0.5 ms, so only calls that split their work
    across threads take this)."""
    global _torch_threads_users, _torch_threads_saved
    with _torch_threads_lock:
        if _torch_threads_users == 0:
            _torch_threads_saved = torch.get_num_threads()
            torch.set_num_threads(1)
        _torch_threads_users += 1
    try:
        yield
    finally:
        with _torch_threads_lock:
            _torch_threads_users -= 1
            if _torch_threads_users == 0:
                torch.set_num_threads(_torch_threads_saved)


def inference_device(device: str | torch.device) -> torch.device:
    """`device` as torch's, "auto" resolved; a CUDA device this machine lacks is a clear error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except RuntimeError:
        raise DataError(f"device {device!r}: expected cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (
            device.index is not None and device.index >= torch.cuda.device_count())):
        raise DataError(f"device {device}: this machine has {torch.cuda.device_count()} CUDA "
                        "device(s); use cpu or auto")
    return device


class Student(Predictions):
    """A trained student directory: `Student.load(dir).predict(["some text", ...])`.

    A call of many texts is cut into chunks that `threads` threads (default: every usable CPU)
    each featurise and classify whole, torch running on one thread meanwhile: the featuriser
    and the model both wait on memory, and side by side they keep both cores busy where one
    after the other, each split across the cores, does not. A call of fewer than 2 x 256 texts
    runs in the calling thread.
    """

    def __init__(self, model: SparseDAN, vocab: Vocabulary, labels: list[str], pooling: str,
                 threads: int | None = None, unseen: Unseen = NO_BUCKETS,
                 temperature: float = 1.0):
        self.model = model.eval()
        self.device = model.mlp[-1].weight.device
        self.labels = labels
        self.temperature = temperature
        self.pooling = pooling
        self.threads = max(1, threads or usable_cpus())
        # On the CPU the chunks are the parallel work (threads=1 here). On a GPU the featuriser's
        # threads split each batch and the model runs once a batch: threads that each featurise
        # a chunk, send it to the GPU and wait for it leave the GPU idle most of the time (an
        # H100 ran 42,000 documents/s that way, where the model alone runs 245,000).
        self.featurizer = Featurizer(vocab, threads=1 if self.device.type == "cpu" else
                                     self.threads, unseen=unseen)

    @classmethod
    def load(cls, directory: str | Path, weights: str = "model.safetensors",
             threads: int | None = None, device: str | torch.device = "cpu") -> Student:
        """The student of `directory` on `device` ("cpu", "cuda", "cuda:1", "auto": CUDA where
        there is one): its model runs there, its featuriser on the CPU."""
        directory = Path(directory)
        device = inference_device(device)
        meta = read_student(directory)
        arch = meta["architecture"]
        table_dtype = arch.get("table_dtype", "float32")
        if table_dtype == "int8" and device.type != "cpu":
            raise DataError(f"{directory}: its int8 table runs on the CPU only (torch's "
                            "quantized EmbeddingBag); load it with device='cpu'")
        model = SparseDAN(arch["vocab_size"], len(meta["labels"]), arch["embedding_dim"],
                          arch["hidden_dims"], arch["pooling"], arch["activation"], 0.0,
                          initialise=False, table_dtype=table_dtype,
                          wide=arch.get("wide", False))
        model.load_state_dict(load_file(str(directory / weights), device=str(device)),
                              assign=True)
        return cls(model, Vocabulary.load(directory / "vocab"), meta["labels"], arch["pooling"],
                   threads, Unseen.from_json(arch.get("unseen")), fitted_temperature(meta))

    def tensors(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The model's inputs for `texts`: ids (nnz,) int32, offsets (n + 1,) int64 and weights
        (nnz,) float32, straight from the featuriser's buffers (no copy, no per-text Python)."""
        bag = self.featurizer.bag(texts, mean=self.pooling == "mean")
        return (torch.from_numpy(bag.ids), torch.from_numpy(bag.offsets),
                torch.from_numpy(bag.weights))

    @torch.inference_mode()
    def forward(self, inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> np.ndarray:
        """(n_texts, n_classes) logits of inputs made by `tensors`, on the model's device."""
        if self.device.type == "cpu":
            return self.model(*inputs).numpy()
        return self.model(*(x.to(self.device) for x in inputs)).cpu().numpy()

    def map(self, fn: Callable[[Any], np.ndarray], items: list[Any]) -> list[np.ndarray]:
        """`fn` over `items` on the student's threads (torch single-threaded meanwhile), in
        order; one item, one thread, or a model on a GPU, runs in the calling thread."""
        if len(items) <= 1 or self.threads == 1 or self.device.type != "cpu":
            return [fn(item) for item in items]
        with torch_single_threaded():
            return list(thread_pool(self.threads, "student").map(fn, items))

    def chunks(self, texts: list[str], batch_size: int = 1024) -> list[list[str]]:
        """`texts` cut as `logits` cuts them: at most batch_size texts a chunk, and on the CPU
        at least MIN_TEXTS_PER_THREAD (a chunk costs a thread handover)."""
        size = batch_size if self.device.type != "cpu" else \
            min(batch_size, max(MIN_TEXTS_PER_THREAD, -(-len(texts) // self.threads)))
        return [texts[i:i + size] for i in range(0, len(texts), size)]

    def logits(self, texts: list[str], batch_size: int = 1024) -> np.ndarray:
        if not texts:
            return np.zeros((0, len(self.labels)), np.float32)
        # each (chunk, n_classes)
        return np.concatenate(self.map(lambda chunk: self.forward(self.tensors(chunk)),
                                       self.chunks(texts, batch_size)))
