"""The batches of a run's steps, in their fixed order, read on the device."""

from __future__ import annotations

from typing import Protocol

import torch
from torch.utils.data import DataLoader

from pan_cli.config import RunConfig
from pan_cli.datasets.paired import StepBatches
from pan_cli.train.distributed import Group


class Where(Protocol):
    """What reading needs of a run's options (pan_cli.train.loop.TrainOptions is one)."""

    device: torch.device
    synthesis: str
    workers: int
    group: Group


class StepData:
    """The batches of each step in the run's fixed order (resumed at any step), on the device."""

    def __init__(self, dataset, config: RunConfig, options: Where, start: int, seed: int | None = None):
        """Batches from step `start` on; `seed` (default: the run's) picks another order of the
        same crops, for reading beside the run's own stream (D's warm-up)."""
        group, per_step = options.group, config.loss.batches_per_step
        self.device, self.per_step = options.device, per_step
        on_device = options.synthesis == "device" or (options.synthesis == "auto" and options.device.type != "cpu")
        self.synthesize = dataset.synthesize if on_device and hasattr(dataset, "synthesize") else None
        dataset.defer = self.synthesize is not None
        loader = DataLoader(
            dataset,
            batch_sampler=StepBatches(len(dataset), config.batch_size * group.world,
                                      config.seed if seed is None else seed,
                                      start * per_step, shard=(group.rank, group.world)),
            num_workers=options.workers,
            pin_memory=options.device.type == "cuda",
        )
        self.batches = iter(loader)

    def read(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every batch of one step, read before any update: a data error leaves the weights at
        the end of the previous step."""
        out = []
        for _ in range(self.per_step):
            x, y = next(self.batches)
            if self.synthesize is not None:  # x: clean uint8 crops, y: their seeds (kept on the CPU)
                out.append(self.synthesize(x.to(self.device, non_blocking=True), y))
            else:
                out.append((x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)))
        return out
