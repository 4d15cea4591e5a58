"""A run directory and everything in it besides the lock: where a run starts (fresh, latest,
or the newest checkpoint that loads), and the RunDir that owns step files and their pruning,
latest.pt and best.pt, metrics.jsonl (trimmed on resume), config.json and the sample grids."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch

from pan_cli.config import RunConfig
from pan_cli.datasets.images import to_uint8, write_grid
from pan_cli.errors import PanError, RunFailure
from pan_cli.files import atomic_write
from pan_cli.store.checkpoint import (
    link_latest,
    load_training_checkpoint,
    newest_valid,
    run_checkpoints,
    save_checkpoint,
    step_files,
    step_of,
)


def trim_metrics(path: Path, last_step: int) -> None:
    """On resume, drop log lines written after the checkpoint we resume from."""
    if not path.exists():
        return
    kept = [line for line in path.read_text(errors="replace").splitlines() if _step(line) <= last_step]
    atomic_write(path, lambda handle: handle.write(("\n".join(kept) + "\n" if kept else "").encode()))


def _step(line: str) -> float:
    """A metrics line's step; a line that is not a record (cut short by a crash, or damaged)
    counts as after every step, so trimming drops it."""
    try:
        record = json.loads(line)
    except ValueError:
        return float("inf")
    step = record.get("step", 0) if isinstance(record, dict) else None
    return step if isinstance(step, (int, float)) and not isinstance(step, bool) else float("inf")


def prune(run_dir: Path, keep: int, written: set[Path], warn: Callable[[str], None]) -> None:
    """Keep the newest `keep` step files that load; older ones go. A damaged file does not count
    as kept (nor is it deleted while newer than the cut: it may be wanted for inspection)."""
    kept = 0
    for path in step_files(run_dir):
        if kept >= keep:
            path.unlink(missing_ok=True)
        elif path in written:
            kept += 1
        else:
            try:
                load_training_checkpoint(path)
            except PanError as exc:
                warn(f"warning: not counting {path.name} as kept: {exc}")
                continue
            written.add(path)
            kept += 1


SCHEDULE = ("steps", "lr_decay")  # settings a resumed run may change: how long it goes on, not what it is


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
        if name not in SCHEDULE and kept is not None and kept != getattr(config, name):
            warn(f"warning: --{name.replace('_', '-')} {_shown(getattr(config, name))} is ignored: the run continues "
                 f"with its checkpoint's {_shown(kept)} (start another --run-dir to change it)")
    schedule = {name: getattr(config, name) for name in SCHEDULE if name in asked and name != "steps"}
    return state["config"].replace(steps=steps or state["config"].steps, **schedule), state




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


class RunDir:
    """The files of one run. Only the main process writes (`main`); the others get the same
    answers so every process of a torchrun job walks the same path."""

    def __init__(self, path: Path, keep: int = 3, main: bool = True,
                 warn: Callable[[str], None] = lambda message: None):
        self.path, self.keep, self.main, self.warn = path, keep, main, warn
        self.latest, self.best_link = path / "latest.pt", path / "best.pt"
        self.metrics = path / "metrics.jsonl"
        self.last_saved: Path | None = None
        self.written: set[Path] = set()  # checkpoints this process wrote: known good

    def prepare(self, rank: int = 0) -> None:
        """Check that the folder is writable and remove temporary files a crash left behind."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / f".write-test-{rank}"
            probe.write_bytes(b"")
            probe.unlink()
            for stale in self.path.glob(".*.tmp") if self.main else ():  # left by a write a crash cut short
                stale.unlink()
        except OSError as exc:
            raise RunFailure(f"cannot write to run directory {self.path}: {exc.strerror or exc}") from None

    def begin(self, config: RunConfig, resumed_at: int | None) -> None:
        """config.json for this run; metrics.jsonl trimmed to the step resumed from, or emptied."""
        if not self.main:
            return
        if resumed_at is not None:
            trim_metrics(self.metrics, resumed_at)
        else:
            self.metrics.unlink(missing_ok=True)
        atomic_write(self.path / "config.json", lambda h: h.write(json.dumps(config.to_dict(), indent=2).encode()))

    def log(self, record: dict) -> None:
        if self.main:
            with self.metrics.open("a") as handle:
                handle.write(json.dumps(record) + "\n")

    def last_good(self) -> str:
        """For error messages: where the run can be continued from."""
        previous = self.last_saved or (self.latest if self.latest.exists() else None)
        return f"; the last good checkpoint is {previous}" if previous else ""

    def save(self, state: dict, step: int) -> Path:
        """step-N.pt, then latest.pt pointing at it, then old step files pruned."""
        path = self.path / f"step-{step}.pt"
        if self.main:
            try:
                save_checkpoint(path, state)
                link_latest(path, self.latest)
            except (OSError, RunFailure) as exc:
                why = getattr(exc, "strerror", None) or exc
                raise RunFailure(f"could not write {path}: {why}{self.last_good()}") from None
            self.written.add(path)
            if self.keep:
                prune(self.path, self.keep, self.written, self.warn)
        self.last_saved = path
        return path

    def saved_at(self, step: int) -> bool:
        return self.last_saved is not None and step_of(self.last_saved) == step

    def mark_best(self) -> None:
        if self.main and self.last_saved is not None:
            link_latest(self.last_saved, self.best_link)

    def sample(self, step: int, x: torch.Tensor, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
        if not self.main:
            return None
        return write_samples(self.path / "samples" / f"step-{step}.png", x, output, y)

