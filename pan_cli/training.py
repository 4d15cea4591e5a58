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
from torch import nn
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader

from pan_cli.checkpoint import (
    link_latest,
    load_training_checkpoint,
    newest_valid,
    run_checkpoints,
    save_checkpoint,
    step_of,
)
from pan_cli.config import RunConfig
from pan_cli.datasets.images import atomic_write, to_uint8, write_grid
from pan_cli.datasets.layout import Pair
from pan_cli.datasets.paired import StepBatches
from pan_cli.datasets.synthesized import training_set
from pan_cli.distributed import Group
from pan_cli.errors import PanError
from pan_cli.evaluation import mean_row, score_model
from pan_cli.exports import data_fingerprint
from pan_cli.inference import Predictor
from pan_cli.losses import discriminator_loss, transformer_loss
from pan_cli.metrics import Settings
from pan_cli.networks import Discriminator, build_discriminator, build_generator
from pan_cli.runlock import LOCK_NAME, run_dir_lock

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


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise PanError("--device cuda: no CUDA device is available here")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise PanError("--device mps: no MPS device is available here")
    if name.startswith("cuda:") and torch.cuda.is_available():
        return torch.device(name)
    if name not in ("cpu", "cuda", "mps"):
        raise PanError(f"unknown device {name!r}; use auto, cpu, cuda or mps")
    return torch.device(name)


def make_ema(model: nn.Module, decay: float) -> AveragedModel:
    """An exponential moving average of T's weights (and BN statistics) for inference.

    The decay ramps up as min(decay, (1 + n) / (10 + n)) so a short run is not dominated by
    its initial weights."""

    def average(averaged: torch.Tensor, current: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        n = float(count)
        return averaged + (current - averaged) * (1.0 - min(decay, (1.0 + n) / (10.0 + n)))

    return AveragedModel(model, avg_fn=average, use_buffers=True)


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def fast_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast is faster than fp32 here. On the CPU only AMX makes it so: with
    AVX-512 BF16 alone a PAN step took 1.4x as long in bf16 (README, "Precision")."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
        return bool(amx and amx())
    return False


def resolve_precision(name: str, device: torch.device) -> tuple[str, str]:
    """(precision, why) for --precision; `auto` is bf16 only where it runs fast."""
    if name != "auto":
        return name, "as asked"
    if fast_bf16(device):
        return "bf16", "auto: this device runs bf16 faster than fp32"
    return "fp32", "auto: bf16 would be slower than fp32 on this device"


@dataclass
class Models:
    T: nn.Module
    D: Discriminator | None
    opt_T: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer | None
    ema: AveragedModel | None
    precision: str = "fp32"
    scaler_T: torch.amp.GradScaler | None = None
    scaler_D: torch.amp.GradScaler | None = None
    group: Group = Group()

    @classmethod
    def build(cls, config: RunConfig, device: torch.device, precision: str = "fp32", group: Group = Group()) -> Models:
        if precision not in PRECISIONS:
            raise PanError(f"--precision must be one of {', '.join(PRECISIONS)}")
        if precision == "fp16" and device.type != "cuda":
            raise PanError("--precision fp16 needs a CUDA device (use bf16 on CPU)")
        torch.manual_seed(config.seed)
        T = build_generator(config).to(device)
        D = build_discriminator(config).to(device) if config.objective != "l1" else None
        adam = dict(lr=config.lr, betas=config.betas)
        scaling = precision == "fp16"  # bf16 keeps fp32's range: no loss scaling
        return cls(
            T,
            D,
            torch.optim.Adam(T.parameters(), **adam),
            torch.optim.Adam(D.parameters(), **adam) if D is not None else None,
            make_ema(T, config.ema) if config.ema else None,
            precision,
            torch.amp.GradScaler(device.type, enabled=scaling),
            torch.amp.GradScaler(device.type, enabled=scaling),
            group,
        )

    def autocast(self):
        dtype = PRECISIONS[self.precision]
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    @property
    def device(self) -> torch.device:
        return next(self.T.parameters()).device

    def backward_and_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                          scaler: torch.amp.GradScaler) -> None:
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        self.group.average_gradients(p for g in optimizer.param_groups for p in g["params"])
        scaler.step(optimizer)
        scaler.update()

    def inference_net(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.T

    def checkpoint_bytes(self) -> int:
        """About what one checkpoint takes: weights, Adam's two moments, the EMA copy."""
        size = sum(p.numel() * p.element_size() for p in self.T.parameters()) * (4 if self.ema else 3)
        if self.D is not None:
            size += sum(p.numel() * p.element_size() for p in self.D.parameters()) * 3
        return size

    def state(self, config: RunConfig, step: int) -> dict:
        return {
            "config": config.to_dict(),
            "step": step,
            "T": self.T.state_dict(),
            "D": self.D.state_dict() if self.D is not None else None,
            "opt_T": self.opt_T.state_dict(),
            "opt_D": self.opt_D.state_dict() if self.opt_D is not None else None,
            "T_ema": self.ema.module.state_dict() if self.ema is not None else None,
            "ema_count": int(self.ema.n_averaged) if self.ema is not None else 0,
            "rng": {"torch": torch.get_rng_state()},
            "scalers": [self.scaler_T.state_dict(), self.scaler_D.state_dict()],
        }

    def load_state(self, state: dict) -> None:
        self.T.load_state_dict(state["T"])
        self.opt_T.load_state_dict(state["opt_T"])
        if self.D is not None:
            self.D.load_state_dict(state["D"])
            self.opt_D.load_state_dict(state["opt_D"])
        if self.ema is not None:
            self.ema.module.load_state_dict(state["T_ema"])
            self.ema.n_averaged.fill_(state["ema_count"])
        torch.set_rng_state(state["rng"]["torch"])
        for scaler, saved in zip((self.scaler_T, self.scaler_D), state.get("scalers") or ()):
            if saved and scaler.is_enabled():
                scaler.load_state_dict(saved)


def d_step(config: RunConfig, m: Models, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """One D update. T(x) is computed without a graph: no gradient reaches T."""
    m.D.requires_grad_(True)
    with m.autocast():
        with torch.no_grad():
            fake = m.T(x)
        terms = discriminator_loss(config, m.D(y), m.D(fake))
    m.backward_and_step(terms["total"], m.opt_D, m.scaler_D)
    return {k: v.detach().float() for k, v in terms.items()}


def t_step(config: RunConfig, m: Models, x: torch.Tensor, y: torch.Tensor) -> tuple[dict, torch.Tensor]:
    """One T update. D's weights get no gradient (requires_grad off saves their backward),
    and D's features of the target are a constant."""
    with m.autocast():
        output = m.T(x)
        fake = real_hidden = None
        if m.D is not None:
            m.D.requires_grad_(False)
            if config.objective == "pan":
                with torch.no_grad():
                    real_hidden = m.D(y).hidden
            fake = m.D(output)
        terms = transformer_loss(config, output.float(), y, fake, real_hidden)
    m.backward_and_step(terms["total"], m.opt_T, m.scaler_T)
    for net in (m.T, m.D):  # both ran in train mode in both steps: BatchNorm statistics agree again
        m.group.average_buffers(net)
    if m.ema is not None:
        m.ema.update_parameters(m.T)
    return {k: v.detach().float() for k, v in terms.items()}, output.detach().float()


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


def _trim_metrics(path: Path, last_step: int) -> None:
    """On resume, drop log lines written after the checkpoint we resume from."""
    if not path.exists():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [line for line in lines if json.loads(line).get("step", 0) <= last_step]
    atomic_write(path, lambda handle: handle.write(("\n".join(kept) + "\n" if kept else "").encode()))


def _prune(run_dir: Path, keep: int, written: set[Path], warn: Callable[[str], None]) -> None:
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


def _starting_point(config: RunConfig, run_dir: Path, resume: str | None, steps: int | None,
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
    config, state = _starting_point(config, run_dir, resume, steps, warn, asked)
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
        _trim_metrics(metrics_path, start)
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
            _prune(run_dir, options.keep, written, warn)
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
