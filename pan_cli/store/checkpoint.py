"""One-file checkpoints: atomic save, safe load.

A checkpoint holds only tensors and plain Python values (weights, optimiser states, step,
the run's full config, RNG state, package version), so it loads with weights_only=True
and a file from a stranger cannot run code.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import re
from pathlib import Path
from typing import Any, Callable

import torch

from pan_cli import __version__
from pan_cli.config import RunConfig
from pan_cli.errors import PanError
from pan_cli.files import atomic_write
from pan_cli.models.networks import GENERATORS
from pan_cli.store.model import CONFIG_NAME, FORMAT, WEIGHTS_NAME, SavedModel, require_extra
from pan_cli.tasks import TASKS

REQUIRED = ("format", "config", "step", "T")
# Inference weights that ship inside the package (`make weights` rebuilds them).
WEIGHTS = Path(__file__).parents[1] / "weights"
PRETRAINED = {task: WEIGHTS / f"{task}.pt" for task in TASKS if (WEIGHTS / f"{task}.pt").is_file()}


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write `state` atomically: an interruption leaves the previous file intact."""
    state = {"format": FORMAT, "pan_version": __version__, **state}
    try:
        atomic_write(Path(path), lambda handle: torch.save(state, handle))
    except RuntimeError as exc:  # torch's zip writer reports a failed write (a full disk) so
        raise OSError(errno.EIO, f"the write failed ({str(exc).splitlines()[0]})", str(path)) from None


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
    state = validate_state(path, _load_safetensors(path)) if _is_safetensors(path) else _load_torch_file(path)
    if task is not None and state["config"].task != task:
        raise PanError(f"{path} is a {state['config'].task!r} checkpoint, not {task!r}")
    best = state.get("best")
    step = best.get("step") if isinstance(best, dict) else None
    state["best"] = best if isinstance(step, int) and step > 0 else None
    return state


def read_model(path: Path, task: str | None = None) -> SavedModel:
    """load_checkpoint, as the typed model every user of a saved model takes."""
    return SavedModel.of(load_checkpoint(path, task), Path(path))


def _is_safetensors(path: Path) -> bool:
    return path.suffix == ".safetensors" or (path.is_dir() and (path / WEIGHTS_NAME).is_file())


def _load_safetensors(path: Path) -> dict[str, Any]:
    """A safetensors export as a checkpoint state that `pan infer` runs (weights already folded)."""
    require_extra("safetensors", "safetensors", "reading a safetensors export")
    from safetensors.torch import load_file

    folder = path if path.is_dir() else path.parent
    weights_path = path if not path.is_dir() else path / WEIGHTS_NAME
    try:
        card = json.loads((folder / CONFIG_NAME).read_text())
        weights = load_file(str(weights_path))
    except Exception as exc:  # noqa: BLE001 - OSError, JSON or safetensors' own error on untrusted bytes
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PanError(f"{path}: not a pan safetensors export ({first:.120})") from None
    if not isinstance(card, dict):
        raise PanError(f"{folder / CONFIG_NAME}: not a pan model card (a {type(card).__name__}, not a table)")
    return {"format": FORMAT, "config": card.get("config"), "step": card.get("step"), "T": weights, "T_ema": None,
            "exported": True, "best": card.get("validation"), "data": card.get("data"), "path": path}


def _load_torch_file(path: Path) -> dict[str, Any]:
    if path.is_dir():
        inside = "latest.pt" if (path / "latest.pt").is_file() else "FILE.pt"
        raise PanError(f"checkpoint {path} is a folder; give the checkpoint file in it (e.g. {path / inside})")
    if str(path) == "shipped" and not path.exists():  # as --finetune takes it: here the file is wanted
        raise PanError("`shipped` is a name --finetune takes (it knows the task); here give the file: "
                       + " or ".join(str(p) for p in PRETRAINED.values()))
    if not path.is_file():
        raise PanError(f"checkpoint {path} does not exist" if not path.exists() else
                       f"checkpoint {path} is not a regular file (a pipe or device)")
    if (kind := other_kind(path)) is not None:
        raise PanError(f"{path} is {kind}, not a pan checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = str(exc).splitlines()[0] if "weights_only" not in str(exc) else (
            "it holds Python objects other than tensors and plain values, refused for safety")
        raise PanError(f"{path} is not a loadable pan checkpoint: {reason}") from None
    except Exception as exc:  # noqa: BLE001 - any parser failure on an untrusted file
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PanError(f"{path} is not a pan checkpoint (truncated or another file type: {first:.120})") from None
    return validate_state(path, state)


# The first bytes of files people give as a checkpoint by mistake, for a message that says so.
MAGIC = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image",
         b"<": "a text or HTML file", b"{": "a JSON file"}


def other_kind(path: Path) -> str | None:
    """What `path` is, when it is plainly not a torch file: an image, text, HTML, an ONNX export."""
    if path.suffix.lower() == ".onnx":
        return "an ONNX export (run it with onnxruntime; pan runs its torch and safetensors files)"
    with open(path, "rb") as handle:
        head = handle.read(16).lstrip()
    return next((kind for magic, kind in MAGIC.items() if head.startswith(magic)), None)


def _field(path: Path, name: str, value: Any, ok: bool, want: str) -> None:
    if not ok:
        raise PanError(f"{path}: field {name!r} must be {want}, not {type(value).__name__} {value!r:.40}")


def _weights(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())


def validate_state(path: Path, state: Any) -> dict[str, Any]:
    """Every field a checkpoint (or export) holds, checked for type and range before anything is
    built from it: the file is untrusted input. One PanError naming the file and the field."""
    if not isinstance(state, dict) or any(key not in state for key in REQUIRED):
        missing = [key for key in REQUIRED if key not in state] if isinstance(state, dict) else list(REQUIRED)
        raise PanError(f"{path} is a torch file but not a pan checkpoint (no {', '.join(missing)})")
    if state["format"] != FORMAT:
        raise PanError(f"{path} has checkpoint format {state['format']!r:.20}; this pan "
                       f"({__version__}) reads format {FORMAT}")
    step = state["step"]
    _field(path, "step", step, isinstance(step, int) and not isinstance(step, bool) and 0 <= step < 10**12,
           "a whole number of steps")
    _field(path, "config", state["config"], isinstance(state["config"], (dict, RunConfig)), "a table of settings")
    for name in ("T", "T_ema", "D"):
        if name == "T" or state.get(name) is not None:
            _field(path, name, state.get(name), _weights(state.get(name)), "a table of weight tensors")
    for name in ("best", "data"):
        value = state.get(name)
        _field(path, name, value, value is None or isinstance(value, (dict, str)), "a table")
    try:
        config = state["config"] if isinstance(state["config"], RunConfig) else RunConfig.from_dict(state["config"])
    except PanError as exc:
        raise PanError(f"{path}: {exc}") from None
    if config.task not in TASKS:
        raise PanError(f"{path}: field 'task' is {config.task!r:.40}, not one of {', '.join(TASKS)}")
    if config.generator not in GENERATORS:
        raise PanError(f"{path}: field 'generator' is {config.generator!r:.40}, not one of {', '.join(GENERATORS)}")
    state["config"] = config
    return state


STEP_NAME = re.compile(r"step-(\d{1,18})(\.[a-z]+)")  # what a run writes; step-final.pt, step-3.bak.pt are not


def step_of(path: Path) -> int:
    return int(STEP_NAME.fullmatch(path.name).group(1))


def step_files(folder: Path, suffix: str = ".pt") -> list[Path]:
    """A run's step-N files (checkpoints, or sample grids), newest first; files that merely look
    alike (step-final.pt, step-3.bak.pt) are ignored."""
    found = [p for p in folder.glob(f"step-*{suffix}") if (m := STEP_NAME.fullmatch(p.name)) and m.group(2) == suffix]
    return sorted(found, key=step_of, reverse=True)


def run_checkpoints(run_dir: Path) -> list[Path]:
    """latest.pt first, then step-N.pt files from newest to oldest."""
    steps = step_files(run_dir)
    latest = run_dir / "latest.pt"
    return ([latest] if latest.exists() else []) + steps


RUN_MARKERS = ("metrics.jsonl", "latest.pt", ".lock")  # (config.json alone: a safetensors export has one too)


def in_run_dir(path: Path) -> bool:
    """Whether `path` is inside a folder that holds a run: every name there is the trainer's
    (its checkpoints, metrics.jsonl, config.json, samples), so nothing else writes there."""
    return any((path.parent / marker).exists() for marker in RUN_MARKERS)


def load_training_checkpoint(path: Path, task: str | None = None) -> dict[str, Any]:
    """load_checkpoint, refusing a file that cannot continue training (an export: no D, no
    optimiser state)."""
    state = load_checkpoint(path, task)
    if SavedModel.of(state).exported:
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
            warn(f"warning: skipping {exc}")
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
         f"({shipped.name}; see docs/models/{task}.md)")
    return shipped
