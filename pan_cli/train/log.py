"""What a run logs: running means of the loss terms into metrics.jsonl (and TensorBoard), with
the non-finite check, and the sample grids."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import torch

from pan_cli.errors import RunFailure
from pan_cli.train.distributed import Group
from pan_cli.train.run_dir import RunDir


def tensorboard_writer(run_dir: Path):
    """A SummaryWriter under run_dir/tensorboard; TensorBoard is an optional extra."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise RunFailure("--tensorboard needs the tensorboard package: pip install 'pan[tensorboard]'") from None
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"))



class TrainLog:
    """Running means of the loss terms, written every log_every steps (one sync per write)."""

    def __init__(self, run: RunDir, board, group: Group):
        self.run, self.board, self.group = run, board, group
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0
        self.began = time.perf_counter()

    def seconds(self) -> float:
        return time.perf_counter() - self.began

    def add(self, step: int, terms: dict[str, torch.Tensor], flush: bool,
            last_good: Callable[[], str]) -> dict[str, float] | None:
        for k, v in terms.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count += 1
        if not flush:
            return None
        means = self.group.mean(torch.stack(list(self.sums.values())) / self.count)
        scalars = dict(zip(self.sums, means.tolist()))
        if not all(math.isfinite(v) for v in scalars.values()):
            bad = ", ".join(f"{k}={v:.4g}" for k, v in scalars.items())
            raise RunFailure(f"non-finite loss at step {step} ({bad}){last_good()}")
        self.run.log({"step": step, "elapsed_s": round(self.seconds(), 3), **scalars})
        if self.board is not None:
            for key, value in scalars.items():
                self.board.add_scalar(key, value, step)
        self.sums, self.count = {}, 0
        return scalars

    def image(self, step: int, grid: torch.Tensor | None) -> None:
        if self.board is not None and grid is not None:
            self.board.add_image("samples", grid, step)
