"""One-file checkpoints: atomic save, safe load.

A checkpoint holds only tensors and plain Python values (weights, optimiser states, step,
the run's full config, RNG state, package version), so it loads with weights_only=True
and a file from a stranger cannot run code.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Callable

import torch

from pan_cli import __version__
from pan_cli.config import RunConfig
from pan_cli.errors import PanError
from pan_cli.exports import is_safetensors, load_safetensors
from pan_cli.files import atomic_write

FORMAT = 1
REQUIRED = ("format", "config", "step", "T")
# Inference weights that ship inside the package (`make weights` rebuilds them).
PRETRAINED = {task: Path(__file__).parent / "weights" / f"{task}.pt" for task in ("derain", "inpaint")}


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write `state` atomically: an interruption leaves the previous file intact."""
    state = {"format": FORMAT, "pan_version": __version__, **state}
    atomic_write(Path(path), lambda handle: torch.save(state, handle))


def link_latest(step_file: Path, latest: Path) -> None:
    """Point `latest` at `step_file` atomically (a hard link, else an atomic copy)."""
    tmp = latest.with_name(f".{latest.name}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(step_file, tmp)
    except OSError:
        atomic_write(latest, lambda handle: handle.write(step_file.read_bytes()))
        return
    os.replace(tmp, latest)


def load_checkpoint(path: Path, task: str | None = None) -> dict[str, Any]:
    """Load and validate a checkpoint (pan's torch file or a safetensors export); any problem is
    one PanError naming the file. `best` is the best validation, or None when none ran (files
    written before pan kept None there hold a step-0, -inf placeholder instead)."""
    path = Path(path)
    state = load_safetensors(path) if is_safetensors(path) else _load_torch_file(path)
    if task is not None and state["config"].task != task:
        raise PanError(f"{path} is a {state['config'].task!r} checkpoint, not {task!r}")
    best = state.get("best")
    state["best"] = best if isinstance(best, dict) and best.get("step", 0) > 0 else None
    return state


def _load_torch_file(path: Path) -> dict[str, Any]:
    if path.is_dir():
        inside = "latest.pt" if (path / "latest.pt").is_file() else "FILE.pt"
        raise PanError(f"checkpoint {path} is a folder; give the checkpoint file in it (e.g. {path / inside})")
    if not path.is_file():
        raise PanError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = str(exc).splitlines()[0] if "weights_only" not in str(exc) else (
            "it holds Python objects other than tensors and plain values, refused for safety")
        raise PanError(f"{path} is not a loadable pan checkpoint: {reason}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PanError(f"{path} is not a pan checkpoint (truncated or another file type: {first})") from None
    if not isinstance(state, dict) or any(key not in state for key in REQUIRED):
        raise PanError(f"{path} is a torch file but not a pan checkpoint (no config/weights)")
    if state["format"] != FORMAT:
        raise PanError(f"{path} has checkpoint format {state['format']}; this pan "
                       f"({__version__}) reads format {FORMAT}")
    state["config"] = RunConfig.from_dict(state["config"])
    return state


def step_of(path: Path) -> int:
    return int(path.stem.split("-", 1)[1])


def run_checkpoints(run_dir: Path) -> list[Path]:
    """latest.pt first, then step-N.pt files from newest to oldest."""
    steps = sorted(run_dir.glob("step-*.pt"), key=step_of, reverse=True)
    latest = run_dir / "latest.pt"
    return ([latest] if latest.exists() else []) + steps


RUN_MARKERS = ("config.json", "metrics.jsonl", "latest.pt")


def is_run_checkpoint_name(path: Path) -> bool:
    """Whether `path` is one of the names a run directory's trainer owns (latest.pt, best.pt,
    step-N.pt) inside a folder that holds a run."""
    owned = path.name in ("latest.pt", "best.pt") or (path.name.startswith("step-") and path.suffix == ".pt")
    return owned and any((path.parent / marker).exists() for marker in RUN_MARKERS)


def load_training_checkpoint(path: Path, task: str | None = None) -> dict[str, Any]:
    """load_checkpoint, refusing a file that cannot continue training (an export: no D, no
    optimiser state)."""
    state = load_checkpoint(path, task)
    if state.get("exported") or "opt_T" not in state:
        raise PanError(f"{path} is an exported model (weights only), not a training checkpoint to resume")
    return state


def newest_valid(run_dir: Path, task: str, warn: Callable[[str], None]) -> dict[str, Any] | None:
    """The newest checkpoint of `run_dir` that can continue training; damaged files and exports
    are reported and skipped. A checkpoint of another task is an error, not something to skip
    and then overwrite."""
    for path in run_checkpoints(run_dir):
        try:
            state = load_training_checkpoint(path)
        except PanError as exc:
            warn(f"skipping {exc}")
            continue
        if state["config"].task != task:
            raise PanError(f"{path} is a {state['config'].task!r} checkpoint, not {task!r}; "
                           "use another --run-dir")
        state["path"] = path
        return state
    return None


def default_checkpoint(task: str, warn: Callable[[str], None]) -> Path:
    """runs/TASK/latest.pt; when there is none, the pretrained model that ships with pan for
    TASK, if any (and `warn` says so)."""
    own = Path("runs") / task / "latest.pt"
    shipped = PRETRAINED.get(task)
    if own.exists() or shipped is None or not shipped.exists():
        return own
    warn(f"no run of your own at {own}; using the pretrained {task} model that ships with pan "
         f"({shipped.name}; see README: model card)")
    return shipped


def export_weights(source: Path, target: Path, half: bool = False) -> dict[str, Any]:
    """Write only what inference needs from a training checkpoint: the config and T's weights
    (its EMA when the run kept one). About 1/60 of a PAN checkpoint: no D, no Adam moments.
    Resuming training from it is not possible; `pan infer` takes it like any checkpoint.

    `half` stores the floating-point weights as float16, half the file; loading copies them into
    the float32 network, so inference runs in float32 on exactly the stored values. Without it
    they are stored as float32 (a half export exported again keeps its values, not its dtype)."""
    state = load_checkpoint(source)
    weights = state["T_ema"] if state.get("T_ema") is not None else state["T"]
    dtype = torch.float16 if half else torch.float32
    weights = {k: v.to(dtype) if v.is_floating_point() else v for k, v in weights.items()}
    exported = {"config": state["config"].to_dict(), "step": state["step"], "T": weights, "T_ema": None,
                "exported": True, "data": state.get("data"), "best": state.get("best")}
    save_checkpoint(target, exported)
    return exported
