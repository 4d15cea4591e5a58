"""`pan train --profile`: where a run's time goes, per step: waiting for data (reading,
decoding, synthesizing inputs), the D step, the T step and the rest (logging, samples,
validation, checkpoints); written to RUN_DIR/profile.json with a one-line summary."""

from __future__ import annotations

import json
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Iterator

import torch

from pan_cli.files import atomic_write

PHASES = ("data", "d_step", "t_step")


class Profile:
    """Seconds spent in each phase of the steps. On CUDA each phase waits for the device to
    finish (so the split is true, at the cost of the overlap a run without --profile has)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.steps = 0
        self.began = time.perf_counter()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self._sync()
        began = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.seconds[name] += time.perf_counter() - began

    def report(self, crops_per_step: int) -> dict:
        wall = time.perf_counter() - self.began
        steps = max(self.steps, 1)
        per_step = {name: self.seconds[name] / steps for name in PHASES}
        per_step["other"] = max(0.0, wall / steps - sum(per_step.values()))
        return {"steps": self.steps, "wall_s": wall, "seconds_per_step": per_step,
                "steps_per_s": self.steps / wall if wall else 0.0,
                "crops_per_s": self.steps * crops_per_step / wall if wall else 0.0,
                "data_fraction": self.seconds["data"] / wall if wall else 0.0, "device": str(self.device)}

    def write(self, path: Path, crops_per_step: int) -> str:
        """profile.json at `path`; returns the one-line summary."""
        report = self.report(crops_per_step)
        atomic_write(path, lambda handle: handle.write(json.dumps(report, indent=2).encode()))
        per = report["seconds_per_step"]
        return (f"profile: {report['steps_per_s']:.2f} steps/s, {report['crops_per_s']:.1f} crops/s; per step "
                f"data {per['data']:.4f} s, D {per['d_step']:.4f} s, T {per['t_step']:.4f} s, other "
                f"{per['other']:.4f} s; data_fraction {report['data_fraction']:.3f} ({path})")


class NoProfile:
    """The same calls, timing nothing (a run without --profile)."""

    steps = 0

    def phase(self, name: str):
        return nullcontext()
