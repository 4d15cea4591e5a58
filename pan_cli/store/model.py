"""The one owner of a saved model's state, whatever the file: which weights infer (the EMA of
T when the run kept one), the generator they build, the model card every file carries, the
format number, and reading a safetensors export back (pan's torch files: store.checkpoint;
writing ONNX and safetensors: store.exports). Training, inference, export and serve all take a
model's weights from here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pan_cli import __version__
from pan_cli.errors import PanError, RunFailure
from pan_cli.models.networks import build_generator, load_weights

FORMAT = 1  # of pan's own files and of what a safetensors export reads back as
WEIGHTS_NAME, CONFIG_NAME = "model.safetensors", "config.json"  # a safetensors export's folder


def inference_weights(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """T's weights that inference uses: its EMA when the run kept one, else T itself."""
    return state["T_ema"] if state.get("T_ema") is not None else state["T"]


def inference_generator(state: dict[str, Any], what: str = "the weights") -> nn.Module:
    """T built from the state's config with its inference weights (as trained: BatchNorm unfolded)."""
    net = build_generator(state["config"])
    load_weights(net, inference_weights(state), what)
    return net


def model_card(state: dict[str, Any]) -> dict[str, Any]:
    config = state["config"]
    return {"task": config.task, "generator": config.generator, "step": state["step"],
            "pan_version": state.get("pan_version", __version__), "data": state.get("data") or "unknown",
            "validation": state.get("best") or "none"}


def require_extra(module: str, extra: str, purpose: str = "this export"):
    try:
        return __import__(module)
    except ImportError:
        raise RunFailure(f"{purpose} needs {module}: pip install 'pan[{extra}]'") from None


def is_safetensors(path: Path) -> bool:
    return path.suffix == ".safetensors" or (path.is_dir() and (path / WEIGHTS_NAME).is_file())


def load_safetensors(path: Path) -> dict[str, Any]:
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
