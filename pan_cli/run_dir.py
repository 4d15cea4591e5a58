"""What a run directory holds besides the lock: where a run starts (fresh, latest, or the
newest checkpoint that loads), pruning of step files, metrics.jsonl trimming on resume, and
the sample grids."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch

from pan_cli.checkpoint import (
    load_training_checkpoint,
    newest_valid,
    run_checkpoints,
    step_of,
)
from pan_cli.config import RunConfig
from pan_cli.datasets.images import atomic_write, to_uint8, write_grid
from pan_cli.errors import PanError


def trim_metrics(path: Path, last_step: int) -> None:
    """On resume, drop log lines written after the checkpoint we resume from."""
    if not path.exists():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [line for line in lines if json.loads(line).get("step", 0) <= last_step]
    atomic_write(path, lambda handle: handle.write(("\n".join(kept) + "\n" if kept else "").encode()))


def prune(run_dir: Path, keep: int, written: set[Path], warn: Callable[[str], None]) -> None:
    """Keep the newest `keep` step files that load; older ones go. A damaged file does not count
    as kept (nor is it deleted while newer than the cut: it may be wanted for inspection)."""
    kept = 0
    for path in sorted(run_dir.glob("step-*.pt"), key=step_of, reverse=True):
        if kept >= keep:
            path.unlink(missing_ok=True)
        elif path in written:
            kept += 1
        else:
            try:
                load_training_checkpoint(path)
            except PanError as exc:
                warn(f"not counting {path.name} as kept: {exc}")
                continue
            written.add(path)
            kept += 1


def _shown(value: object) -> str:
    return ",".join(f"{v:g}" for v in value) if isinstance(value, tuple) else str(value)


def starting_point(config: RunConfig, run_dir: Path, resume: str | None, steps: int | None,
                    warn: Callable[[str], None], asked: frozenset[str] = frozenset()) -> tuple[RunConfig, dict | None]:
    """The config to run and the checkpoint state to start from (None: from scratch). A resumed
    run keeps its checkpoint's settings; each setting in `asked` (given on the command line)
    that differs is named in a warning."""
    latest = run_dir / "latest.pt"
    state = None
    if resume == "auto":
        state = newest_valid(run_dir, config.task, warn)
    elif resume:
        if not latest.exists():
            raise PanError(f"--resume: no checkpoint at {latest} to resume from (--resume auto starts "
                           "fresh when there is none)")
        state = load_training_checkpoint(latest, task=config.task)
    elif run_checkpoints(run_dir):
        raise PanError(f"{run_dir} already holds a run ({run_checkpoints(run_dir)[0].name}); continue it with "
                       "--resume, or choose another --run-dir")
    if state is None:
        return (config.replace(steps=steps) if steps else config), None
    warn(f"resuming from {state.get('path', latest)} at step {state['step']}")
    for name in sorted(asked):
        kept = getattr(state["config"], name, None)
        if name != "steps" and kept is not None and kept != getattr(config, name):
            warn(f"--{name.replace('_', '-')} {_shown(getattr(config, name))} is ignored: the run continues with "
                 f"its checkpoint's {_shown(kept)} (start another --run-dir to change it)")
    return state["config"].replace(steps=steps or state["config"].steps), state




def compose(x: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """An output the size of the input: a centre patch (context encoder) is pasted back."""
    x = x[:, : output.shape[1]]
    if output.shape[-2:] == x.shape[-2:]:
        return output
    top = (x.shape[-2] - output.shape[-2]) // 2
    left = (x.shape[-1] - output.shape[-1]) // 2
    full = x.clone()
    full[..., top: top + output.shape[-2], left: left + output.shape[-1]] = output
    return full


def write_samples(path: Path, x: torch.Tensor, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A grid with one row per image: input | output | target; returns it (uint8 CHW)."""
    tiles = []
    for i in range(min(4, x.shape[0])):
        tiles += [x[i], compose(x[i: i + 1], output[i: i + 1])[0], compose(x[i: i + 1], y[i: i + 1])[0]]
    return write_grid(path, [to_uint8(t.cpu()) for t in tiles], columns=3)
