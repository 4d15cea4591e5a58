"""The alternating D/T training loop, with logging, samples, checkpoints and exact resume.

One step is one D update on a mini-batch, then one T update on the next mini-batch (the
authors' alternation); the `l1` objective has no D and takes one batch a step.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import time
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch.utils.data import DataLoader

from pan_cli.checkpoint import (
    link_latest,
    save_checkpoint,
    step_of,
)
from pan_cli.config import RunConfig
from pan_cli.datasets.images import atomic_write
from pan_cli.datasets.layout import Pair
from pan_cli.datasets.paired import StepBatches
from pan_cli.datasets.synthesized import training_set
from pan_cli.distributed import Group
from pan_cli.errors import PanError
from pan_cli.evaluation import mean_row, score_model
from pan_cli.exports import data_fingerprint
from pan_cli.inference import Predictor
from pan_cli.metrics import Settings
from pan_cli.run_dir import prune, starting_point, trim_metrics, write_samples
from pan_cli.runlock import LOCK_NAME, run_dir_lock
from pan_cli.train_step import Models, d_step, t_step

EXIT_INTERRUPTED = 130


class Interrupted(PanError):
    """Training stopped on SIGINT/SIGTERM after writing a checkpoint."""


@dataclass(frozen=True)
class TrainOptions:
    """Where and how often a run writes: nothing here changes the trained weights."""

    run_dir: Path
    device: torch.device = torch.device("cpu")
    log_every: int = 10
    sample_every: int = 200
    checkpoint_every: int = 500
    keep: int = 3  # step-N.pt files kept besides latest.pt; 0 keeps all
    workers: int = 0
    detect_anomaly: bool = False
    val_every: int = 500  # with validation pairs: score them, keep best.pt by PSNR
    time_limit: float | None = None  # seconds of training; stops (with a checkpoint) at the first step past it
    tensorboard: bool = False  # also log scalars and samples to run_dir/tensorboard
    precision: str = "fp32"  # "bf16" (CPU and recent GPUs) or "fp16" (CUDA, with loss scaling) autocast
    compile: bool = False  # torch.compile T and D (in place: checkpoint keys stay plain)
    group: Group = Group()  # the data-parallel process group (torchrun); one process by default
    val_settings: Settings = Settings()  # how validation scores (derain: Y channel, as papers do)


@contextmanager
def stop_on_signal() -> Iterator[Callable[[], bool]]:
    """SIGINT/SIGTERM set a flag that the loop checks between steps, so a step is never cut
    in half; a second SIGINT interrupts at once."""
    requested = {"stop": False}

    def handler(signum: int, frame: object) -> None:
        if requested["stop"] and signum == signal.SIGINT:
            raise KeyboardInterrupt
        requested["stop"] = True

    try:
        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: no signal handling
        yield lambda: False
        return
    try:
        yield lambda: requested["stop"]
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def tensorboard_writer(run_dir: Path):
    """A SummaryWriter under run_dir/tensorboard; TensorBoard is an optional extra."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise PanError("--tensorboard needs the tensorboard package: pip install 'pan[tensorboard]'") from None
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"))


def train(config: RunConfig, pairs: list[Pair] | list[Path], options: TrainOptions, **kwargs) -> Path:
    """Train (see _train) holding an exclusive lock on the run directory for the whole run:
    a second `pan train` on the same directory is refused, naming the holder's PID."""
    run_dir = options.run_dir
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PanError(f"cannot write to run directory {run_dir}: {exc.strerror or exc}") from None
    try:
        with run_dir_lock(run_dir) if options.group.main else nullcontext():
            return _train(config, pairs, options, **kwargs)
    except BaseException:
        if created:  # a run refused before it wrote anything leaves no empty folder behind
            (run_dir / LOCK_NAME).unlink(missing_ok=True)
            with suppress(OSError):
                run_dir.rmdir()
        raise


def _train(
    config: RunConfig,
    pairs: list[Pair] | list[Path],
    options: TrainOptions,
    resume: str | None = None,
    steps: int | None = None,
    on_step: Callable[[int, dict[str, float] | None], None] | None = None,
    warn: Callable[[str], None] = lambda message: None,
    val_pairs: list[Pair] | None = None,
    asked: frozenset[str] = frozenset(),
) -> Path:
    """Train, writing checkpoints, samples and metrics.jsonl under options.run_dir.

    `pairs` are image pairs, or clean photos when config.synthesize makes the inputs.
    `resume` "latest" continues from run_dir/latest.pt, "auto" from the newest checkpoint that
    loads (or starts fresh if there is none); the checkpoint's config wins, and `steps`, when
    given, sets the new total. A resumed run ends with the same weights as one that never
    stopped. A fresh run refuses a run_dir that already holds checkpoints. With `val_pairs`,
    every options.val_every steps the inference weights are scored on them and best.pt links
    to the best checkpoint by PSNR. Returns the last checkpoint's path."""
    run_dir, device, group = options.run_dir, options.device, options.group
    main = group.main  # only the main process writes files
    latest = run_dir / "latest.pt"
    config, state = starting_point(config, run_dir, resume, steps, warn, asked)
    dataset = training_set(config, pairs)
    dataset.check_sizes()
    data = data_fingerprint(pairs)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{group.rank}"
        probe.write_bytes(b"")
        probe.unlink()
        for stale in run_dir.glob(".*.tmp") if main else ():  # left by a write a crash or SIGKILL cut short
            stale.unlink()
    except OSError as exc:
        raise PanError(f"cannot write to run directory {run_dir}: {exc.strerror or exc}") from None
    board = tensorboard_writer(run_dir) if options.tensorboard and main else None

    models = Models.build(config, device, options.precision, group)
    if options.compile:
        for net in (models.T, models.D):
            if net is not None:
                net.compile()
    needed = 2 * models.checkpoint_bytes()
    free = shutil.disk_usage(run_dir).free
    if free < needed:
        raise PanError(f"{run_dir}: {free / 2**20:.0f} MiB free, but a checkpoint needs about "
                       f"{needed / 2**20:.0f} MiB to be written safely")
    start, best = 0, {"step": 0, "psnr": float("-inf")}
    if state is not None:
        models.load_state(state)
        start = state["step"]
        best = state.get("best") or best
        if start >= config.steps:
            warn(f"the run is already at step {start} of {config.steps}; give a larger --steps to go on")
    metrics_path = run_dir / "metrics.jsonl"
    if main and resume:
        trim_metrics(metrics_path, start)
    elif main:
        metrics_path.unlink(missing_ok=True)
    if main:
        atomic_write(run_dir / "config.json", lambda h: h.write(json.dumps(config.to_dict(), indent=2).encode()))

    batches_per_step = 1 if models.D is None else 2
    loader = DataLoader(
        dataset,
        batch_sampler=StepBatches(len(dataset), config.batch_size * group.world, config.seed,
                                  start * batches_per_step, shard=(group.rank, group.world)),
        num_workers=options.workers,
        pin_memory=device.type == "cuda",
    )
    batches = iter(loader)

    def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
        x, y = next(batches)
        return x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    def step_batches(step: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Both batches of a step, read before any update: a data error leaves the weights at
        the end of the previous step, which is saved before the error is reported."""
        try:
            return [next_batch() for _ in range(batches_per_step)]
        except PanError as exc:
            if step - 1 > start and main:
                saved = last_saved if last_saved is not None and step_of(last_saved) == step - 1 else save(step - 1)
                raise PanError(f"{exc} (at step {step}; checkpoint {saved} saved first: fix the data and "
                               "continue with --resume)") from None
            raise

    def validate(step: int) -> bool:
        """Score the inference weights on the validation pairs; True when they beat the best."""
        nonlocal best
        net = models.inference_net()
        rows = list(score_model(Predictor(config, net, device), val_pairs, options.val_settings))
        means = mean_row(rows).scores
        with metrics_path.open("a") as handle:
            handle.write(json.dumps({"step": step, **{f"val_{k}": v for k, v in means.items()}}) + "\n")
        if means["psnr"] <= best["psnr"]:
            return False
        best = {"step": step, "psnr": means["psnr"]}
        return True

    def last_good() -> str:
        previous = last_saved or (latest if latest.exists() else None)
        return f"; the last good checkpoint is {previous}" if previous else ""

    def save(step: int) -> Path:
        path = run_dir / f"step-{step}.pt"
        if not main:
            return path
        try:
            save_checkpoint(path, {**models.state(config, step), "best": best, "data": data})
            link_latest(path, latest)
        except OSError as exc:
            raise PanError(f"could not write {path}: {exc.strerror or exc}{last_good()}") from None
        written.add(path)
        if options.keep:
            prune(run_dir, options.keep, written, warn)
        return path

    models.T.train()
    if models.D is not None:
        models.D.train()
    sums: dict[str, torch.Tensor] = {}
    count, began, last_saved, step = 0, time.perf_counter(), None, start
    written: set[Path] = set()  # checkpoints this process wrote: known good
    with stop_on_signal() as stop_requested, torch.autograd.set_detect_anomaly(options.detect_anomaly):
        for step in range(start + 1, config.steps + 1):
            terms = {}
            *d_batch, (x, y) = step_batches(step)
            if models.D is not None:
                terms.update({f"d_{k}": v for k, v in d_step(config, models, *d_batch[0]).items()})
            t_terms, output = t_step(config, models, x, y)
            terms.update({f"t_{k}": v for k, v in t_terms.items()})
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
            timed_out = options.time_limit is not None and time.perf_counter() - began >= options.time_limit
            (out_of_time,) = group.any(timed_out, device=device)  # every process stops at the same step
            last = step == config.steps or out_of_time
            scalars = None
            if step % options.log_every == 0 or last:
                means = group.mean(torch.stack(list(sums.values())) / count)  # the one sync per log
                scalars = dict(zip(sums, means.tolist()))
                if not all(math.isfinite(v) for v in scalars.values()):
                    bad = ", ".join(f"{k}={v:.4g}" for k, v in scalars.items())
                    raise PanError(f"non-finite loss at step {step} ({bad}){last_good()}")
                record = {"step": step, "elapsed_s": round(time.perf_counter() - began, 3), **scalars}
                if main:
                    with metrics_path.open("a") as handle:
                        handle.write(json.dumps(record) + "\n")
                if board is not None:
                    for key, value in scalars.items():
                        board.add_scalar(key, value, step)
                sums, count = {}, 0
            if main and options.sample_every and step % options.sample_every == 0:
                grid = write_samples(run_dir / "samples" / f"step-{step}.png", x, output, y)
                if board is not None:
                    board.add_image("samples", grid, step)
            improved = main and bool(val_pairs) and (step % options.val_every == 0 or last) and validate(step)
            if improved or step % options.checkpoint_every == 0 or last:
                last_saved = save(step)
            if improved:
                link_latest(last_saved, run_dir / "best.pt")
            if on_step is not None:
                on_step(step, scalars)
            if out_of_time:
                warn(f"time limit of {options.time_limit:g}s reached at step {step}")
                break
            (stop,) = group.any(stop_requested(), device=device)  # a signal during this step stops after it
            if stop:
                if last_saved is None or last_saved.name != f"step-{step}.pt":
                    last_saved = save(step)
                raise Interrupted(f"interrupted at step {step}; checkpoint {last_saved}; "
                                  f"continue with the same command and --resume")
    if board is not None:
        board.close()
    return last_saved if last_saved is not None else latest
