"""Data-parallel training across processes (torchrun), with nothing to change in a 1-process run.

Each process takes its slice of every global batch, and gradients are averaged across processes
before every optimiser step, so all processes hold identical weights. BatchNorm is the known
trap (D runs two forward passes, real then output, before one backward; DDP's buffer
broadcast breaks that, and SyncBatchNorm is CUDA-only). Here each process normalises with its
own batch's statistics, as it would with a smaller batch, and the running statistics are
averaged across processes after each step, so every process (and the checkpoint) holds the same.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Group:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """Only the main process writes files, logs and stdout."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every rank (nothing to wait for with one process)."""
        if self.world > 1:
            dist.barrier()

    def average_gradients(self, parameters: Iterable[nn.Parameter]) -> None:
        if self.world == 1:
            return
        grads = [p.grad for p in parameters if p.grad is not None]
        if grads:
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat)
            flat /= self.world
            offset = 0
            for g in grads:
                g.copy_(flat[offset: offset + g.numel()].view_as(g))
                offset += g.numel()

    def average_buffers(self, module: nn.Module | None) -> None:
        """Average BatchNorm running statistics (float buffers) across processes."""
        if self.world == 1 or module is None:
            return
        for buffer in module.buffers():
            if buffer.is_floating_point():
                dist.all_reduce(buffer)
                buffer /= self.world

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            values = values.clone()
            dist.all_reduce(values)
            values /= self.world
        return values

    def any(self, *flags: bool, device: torch.device) -> tuple[bool, ...]:
        """Each flag true on every process if it is true on any: all stop at the same step."""
        if self.world == 1:
            return flags
        values = torch.tensor([1.0 if f else 0.0 for f in flags], device=device)
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
        return tuple(bool(v) for v in values.tolist())


def setup() -> tuple[Group, str | None]:
    """Join the process group that torchrun describes in the environment (RANK, WORLD_SIZE,
    MASTER_ADDR, ...): nccl on CUDA, gloo on CPU. Returns the group and, on CUDA, the device
    for this process (cuda:LOCAL_RANK)."""
    if not dist.is_initialized():
        if int(os.environ.get("WORLD_SIZE", "1")) == 1:
            return Group(), None
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    group = Group(dist.get_rank(), dist.get_world_size())
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", group.rank % torch.cuda.device_count()))
        torch.cuda.set_device(local)
        return group, f"cuda:{local}"
    return group, None
