"""The alternating D/T training loop, with logging, samples, checkpoints and exact resume.

One step is one D update on a mini-batch, then one T update on the next mini-batch (the
authors' alternation); the `l1` objective has no D and takes one batch a step.
"""

from __future__ import annotations

import shutil
import signal
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn

from pan_cli.config import RunConfig
from pan_cli.datasets.layout import Pair
from pan_cli.errors import PanError, RunFailure
from pan_cli.store.exports import data_fingerprint
from pan_cli.tasks import training_set
from pan_cli.train.batches import StepData
from pan_cli.train.distributed import Group
from pan_cli.train.lock import LOCK_NAME, run_dir_lock
from pan_cli.train.log import TrainLog, tensorboard_writer
from pan_cli.train.profile import NoProfile, Profile
from pan_cli.train.run_dir import RunDir, starting_point
from pan_cli.train.step import Models, d_step, t_step, warm_up_d

EXIT_INTERRUPTED = 130
# The fine-tuning notice's end, by what D took from the source (Models.start_from)
FRESH_D = {"all": "", "nothing": "; the discriminator starts fresh",
           "convolutions": "; the discriminator's last layer starts fresh (it is sized from --image-size)"}


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
    profile: bool = False  # time each phase of the steps; RUN_DIR/profile.json at the end
    cache: Path | None = None  # decode the training images once into this folder (None: at every crop)
    # Where synthesized inputs (rain, holes) are made: "loader" (in the DataLoader's processes),
    # "device" (in the loop, on the training device), "auto": the device unless it is the CPU
    # (there the loader's worker processes run beside the step).
    synthesis: str = "auto"
    group: Group = Group()  # the data-parallel process group (torchrun); one process by default

    def __post_init__(self) -> None:
        if self.synthesis not in ("auto", "loader", "device"):
            raise ValueError(f"synthesis must be auto, loader or device, not {self.synthesis!r}")


# Scores T's inference weights (config, net, device) -> mean scores with at least "psnr"; the
# caller builds it (pan_cli.score.evaluation.validator), so training never imports the inference stack.
Validate = Callable[[RunConfig, nn.Module, torch.device], dict[str, float]]


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


def train(config: RunConfig, pairs: list[Pair] | list[Path], options: TrainOptions, **kwargs) -> Path:
    """Train (see _train) holding an exclusive lock on the run directory for the whole run:
    a second `pan train` on the same directory is refused, naming the holder's PID."""
    run_dir = options.run_dir
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunFailure(f"cannot write to run directory {run_dir}: {exc.strerror or exc}") from None
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
    note: Callable[[str], None] = lambda message: None,
    validate: Validate | None = None,
    asked: frozenset[str] = frozenset(),
    finetune: dict | None = None,
) -> Path:
    """Train, writing checkpoints, samples and metrics.jsonl under options.run_dir.

    `pairs` are image pairs, or clean photos when config.synthesize makes the inputs.
    `resume` "latest" continues from run_dir/latest.pt, "auto" from the newest checkpoint that
    loads (or starts fresh if there is none); the checkpoint's config wins, and `steps`, when
    given, sets the new total. A resumed run ends with the same weights as one that never
    stopped. A fresh run refuses a run_dir that already holds checkpoints. With `validate`,
    every options.val_every steps the inference weights are scored and best.pt links to the
    best checkpoint by PSNR. `finetune`, a loaded checkpoint, gives a fresh run its starting
    weights (`config` comes from finetune.finetune_start); a resumed run ignores it. Returns
    the last checkpoint's path."""
    run = RunDir(options.run_dir, options.keep, options.group.main, warn)
    config, state = starting_point(config, run.path, resume, steps, warn, asked)
    if finetune is not None and state is not None:
        warn("warning: --finetune is ignored: the run resumes from its own checkpoint")
    dataset = training_set(config, pairs)
    dataset.check_sizes()
    if options.cache is not None:  # the main process decodes; the other ranks then open its cache
        if options.group.main:
            dataset.use_cache(options.cache, note, warn)
        options.group.barrier()
        if not options.group.main:
            dataset.use_cache(options.cache, note, warn, build=False)
    run.prepare(options.group.rank)
    models = _build(config, options)
    start, best = 0, None  # no validation yet
    if state is not None:
        models.load_state(state)
        start, best = state["step"], state["best"]
        if start >= config.steps:
            warn(f"warning: the run is already at step {start} of {config.steps}; give a larger --steps to go on")
    elif finetune is not None:
        taken = models.start_from(finetune)
        warn(f"fine-tuning from {config.finetuned_from}{FRESH_D[taken] if models.D is not None else ''}")
    if state is None and config.d_warmup:
        warn(f"{config.d_warmup} discriminator updates against the starting generator first (--d-warmup)")
        warm_up_d(config, models, StepData(dataset, config, options, 0, seed=(config.seed + 1) % 2**63))
    run.begin(config, start if resume else None)
    loop = _Loop(config, options, run, models, validate, best, data_fingerprint(pairs), warn)
    return loop.run(StepData(dataset, config, options, start), start, on_step)


class _Loop:
    """The steps of one run, each in phases: batch, step, log, sample, validate, checkpoint, stop."""

    def __init__(self, config: RunConfig, options: TrainOptions, run: RunDir, models: Models,
                 validate: Validate | None, best: dict | None, data: dict, warn: Callable[[str], None]):
        self.config, self.options, self.run_dir, self.models = config, options, run, models
        self.validate, self.best, self.data, self.warn = validate, best, data, warn
        self.group = options.group
        self.board = tensorboard_writer(run.path) if options.tensorboard and self.group.main else None

    def checkpoint(self, step: int) -> Path:
        return self.run_dir.save({**self.models.state(self.config, step), "best": self.best, "data": self.data}, step)

    def run(self, batches: StepData, start: int, on_step: Callable | None) -> Path:
        config, options, group, models, run = self.config, self.options, self.group, self.models, self.run_dir
        models.T.train()
        if models.D is not None:
            models.D.train()
        log = TrainLog(run, self.board, group)
        profile = Profile(options.device) if options.profile else NoProfile()
        with stop_on_signal() as stop_requested, torch.autograd.set_detect_anomaly(options.detect_anomaly):
            for step in range(start + 1, config.steps + 1):
                with profile.phase("data"):
                    *d_batch, (x, y) = self.read(batches, step, start)
                models.set_lr(config.lr * config.lr_factor(step))
                with profile.phase("d_step"):
                    terms = {f"d_{k}": v for k, v in d_step(config, models, *d_batch[0]).items()} if d_batch else {}
                with profile.phase("t_step"):
                    t_terms, output = t_step(config, models, x, y)
                profile.steps += 1
                terms.update({f"t_{k}": v for k, v in t_terms.items()})
                timed_out = options.time_limit is not None and log.seconds() >= options.time_limit
                (out_of_time,) = group.any(timed_out, device=options.device)  # all processes stop together
                last = step == config.steps or out_of_time
                scalars = log.add(step, terms, flush=step % options.log_every == 0 or last, last_good=run.last_good)
                if options.sample_every and step % options.sample_every == 0:
                    log.image(step, run.sample(step, x, output, y))
                improved = self.validated(step, last)
                if improved or step % options.checkpoint_every == 0 or last:
                    self.checkpoint(step)
                if improved:
                    run.mark_best()
                if on_step is not None:
                    on_step(step, scalars)
                if out_of_time:
                    self.warn(f"time limit of {options.time_limit:g}s reached at step {step}")
                    break
                (stop,) = group.any(stop_requested(), device=options.device)  # a signal stops after this step
                if stop:
                    saved = run.last_saved if run.saved_at(step) else self.checkpoint(step)
                    raise Interrupted(f"interrupted at step {step}; checkpoint {saved}; "
                                      f"continue with the same command and --resume")
        if self.board is not None:
            self.board.close()
        if options.profile and group.main:
            crops = config.batch_size * config.loss.batches_per_step * group.world
            self.warn(profile.write(run.path / "profile.json", crops))
        return run.last_saved if run.last_saved is not None else run.latest

    def read(self, batches: StepData, step: int, start: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The step's batches; on a data error the finished step is saved first, then reported."""
        try:
            return batches.read()
        except PanError as exc:
            if step - 1 > start and self.group.main:
                saved = self.run_dir.last_saved if self.run_dir.saved_at(step - 1) else self.checkpoint(step - 1)
                raise PanError(f"{exc} (at step {step}; checkpoint {saved} saved first: fix the data and "
                               "continue with --resume)") from None
            raise

    def validated(self, step: int, last: bool) -> bool:
        """Score the inference weights when it is time; True when they beat the best so far."""
        if self.validate is None or not self.group.main or not (step % self.options.val_every == 0 or last):
            return False
        means = self.validate(self.config, self.models.inference_net(), self.options.device)
        self.run_dir.log({"step": step, **{f"val_{k}": v for k, v in means.items()}})
        if self.best is not None and means["psnr"] <= self.best["psnr"]:
            return False
        self.best = {"step": step, "psnr": means["psnr"]}
        return True


def _build(config: RunConfig, options: TrainOptions) -> Models:
    """T, D and their optimisers on the device, compiled if asked, with disk room checked."""
    models = Models.build(config, options.device, options.precision, options.group)
    if options.compile:
        for net in (models.T, models.D):
            if net is not None:
                net.compile()
    needed = 2 * models.checkpoint_bytes()
    free = shutil.disk_usage(options.run_dir).free
    if free < needed:
        raise RunFailure(f"{options.run_dir}: {free / 2**20:.0f} MiB free, but a checkpoint needs about "
                       f"{needed / 2**20:.0f} MiB to be written safely")
    return models
