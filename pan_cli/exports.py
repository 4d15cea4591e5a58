"""Exports that leave pan's own file format: ONNX (any height and width, BatchNorm folded)
and safetensors weights with a config.json beside them (the layout model hubs use).

Every export records what it is: task, generator, step, pan version, the fingerprint of the
data it was trained on and the validation figures of its run (the model card figures).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from pan_cli import __version__
from pan_cli.config import RunConfig
from pan_cli.errors import PanError, RunFailure
from pan_cli.files import atomic_write
from pan_cli.geometry import Geometry
from pan_cli.networks import build_generator, fold_batchnorm, geometry, load_weights

FORMATS = ("torch", "onnx", "safetensors")
WEIGHTS_NAME, CONFIG_NAME = "model.safetensors", "config.json"


def data_fingerprint(sources: Sequence) -> dict[str, Any]:
    """What a run trained on, in a few bytes: the count and a SHA-256 of each file's name and
    size (pairs or photos), in order. Two runs on the same files share it."""
    digest = hashlib.sha256()
    count = 0
    for item in sources:
        for path in (item.a, item.b) if hasattr(item, "a") else (item,):
            if path is not None:
                digest.update(f"{Path(path).name}\0{os.path.getsize(path)}\n".encode())
        count += 1
    return {"items": count, "sha256": digest.hexdigest()}


def model_card(state: dict[str, Any]) -> dict[str, Any]:
    config = state["config"]
    return {"task": config.task, "generator": config.generator, "step": state["step"],
            "pan_version": state.get("pan_version", __version__), "data": state.get("data") or "unknown",
            "validation": state.get("best") or "none"}


def format_for(out: Path, fmt: str | None) -> str:
    """--format, else from -o's suffix: .onnx or .safetensors, anything else torch."""
    if fmt:
        return fmt
    return {".onnx": "onnx", ".safetensors": "safetensors"}.get(out.suffix.lower(), "torch")


def inference_net(state: dict[str, Any]) -> nn.Module:
    """T with the weights inference uses (EMA when kept), BatchNorm folded, in eval mode."""
    net = build_generator(state["config"])
    load_weights(net, state["T_ema"] if state.get("T_ema") is not None else state["T"], "the weights")
    return fold_batchnorm(net).eval()


class AnySize(nn.Module):
    """Pads the input up to the generator's multiple and crops the output back (as `pan infer`
    does, through the same Geometry.pad), so the exported graph takes any height and width."""

    def __init__(self, net: nn.Module, geometry: Geometry):
        super().__init__()
        self.net, self.geometry = net, geometry

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2], image.shape[-1]
        return self.net(self.geometry.pad(image))[..., :height, :width]


def _require(module: str, extra: str):
    try:
        return __import__(module)
    except ImportError:
        raise RunFailure(f"this export needs {module}: pip install 'pan[{extra}]'") from None


def export_onnx(state: dict[str, Any], path: Path) -> None:
    onnx = _require("onnx", "onnx")
    config: RunConfig = state["config"]
    shape = geometry(config.generator)
    net = AnySize(inference_net(state), shape) if shape.any_size else inference_net(state)
    side = max(shape.multiple, 64) if shape.any_size else config.image_size
    example = torch.zeros(1, config.in_channels, side, side)
    axes = {0: "batch", 2: "height", 3: "width"} if shape.any_size else {0: "batch"}
    tmp = path.with_name(f".pan-{uuid.uuid4().hex[:12]}.export")  # short: any -o name fits beside it
    try:
        torch.onnx.export(net, (example,), str(tmp), input_names=["image"], output_names=["output"],
                          dynamic_axes={"image": axes, "output": axes}, opset_version=17, dynamo=False)
        model = onnx.load(str(tmp))
    finally:
        tmp.unlink(missing_ok=True)
    card = {**model_card(state), "config": config.to_dict(),
            "io": "image: N x C x H x W in [-1, 1]" + (" (C = 3 + mask: 1 = hole)" if config.in_channels == 4 else "")}
    for key, value in card.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    atomic_write(path, lambda handle: handle.write(model.SerializeToString()))


def export_safetensors(state: dict[str, Any], folder: Path) -> None:
    _require("safetensors", "safetensors")
    from safetensors.torch import save

    raw = state["T_ema"] if state.get("T_ema") is not None else state["T"]
    weights = {k: v.contiguous() for k, v in raw.items()}  # as trained: pan folds BatchNorm when it loads them
    card = {**model_card(state), "config": state["config"].to_dict()}
    atomic_write(folder / WEIGHTS_NAME, lambda handle: handle.write(save(weights, {"pan": json.dumps(card)})))
    atomic_write(folder / CONFIG_NAME, lambda handle: handle.write(json.dumps(card, indent=2).encode()))


def is_safetensors(path: Path) -> bool:
    return path.suffix == ".safetensors" or (path.is_dir() and (path / WEIGHTS_NAME).is_file())


def load_safetensors(path: Path) -> dict[str, Any]:
    """A safetensors export as a checkpoint state that `pan infer` runs (weights already folded)."""
    _require("safetensors", "safetensors")
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
    return {"format": 1, "config": card.get("config"), "step": card.get("step"), "T": weights, "T_ema": None,
            "exported": True, "best": card.get("validation"), "data": card.get("data"), "path": path}
