"""Where training and labelling run: the device, the processes of a `torchrun` job, precision.

Under `torchrun` (WORLD_SIZE > 1) each process joins the process group here; rank 0 is the one
that evaluates and writes a stage's outputs.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import SDistillError


@dataclass
class Runtime:
    device: torch.device
    rank: int
    world: int

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def runtime(device: str) -> Runtime:
    """The device and process layout; joins the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SDistillError("run.device: cuda was asked for but no CUDA device is available; "
                            "set run.device: cpu (or auto)")
    if device == "cuda" and world > 1:
        device = f"cuda:{local_rank}"
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise SDistillError(
            f"run.device: process {rank} of {world} would use {dev}, but this machine has "
            f"{torch.cuda.device_count()} CUDA device(s); launch at most that many processes "
            "(torchrun --nproc_per_node N) or set run.device: cpu")
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(
            backend="nccl" if dev.type == "cuda" else "gloo",
            timeout=dt.timedelta(hours=12))  # rank 0 evaluates while the others wait
    return Runtime(dev, rank, world)


def bf16_native(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return False


def resolve_precision(precision: str, device: torch.device, training: bool = False) -> str:
    """auto -> bf16 where the hardware computes it natively; fp32 training on CPU."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if bf16_native(device) else "fp16"
    if training:
        return "fp32"
    return "bf16" if bf16_native(device) else "fp32"


def autocast(device: torch.device, precision: str) -> Any:
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)
