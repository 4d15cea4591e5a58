"""Writing a SavedModel out for sharing: pan's own torch file with T's inference weights only
(optionally float16), ONNX (any height and width, BatchNorm folded) and safetensors weights
with a config.json beside them (the layout model hubs use).

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

from pan_cli.config import RunConfig
from pan_cli.files import atomic_write
from pan_cli.models.geometry import Geometry
from pan_cli.models.networks import fold_batchnorm, geometry
from pan_cli.store.checkpoint import save_checkpoint
from pan_cli.store.model import CONFIG_NAME, WEIGHTS_NAME, SavedModel, require_extra

FORMATS = ("torch", "onnx", "safetensors")


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


def format_for(out: Path, fmt: str | None) -> str:
    """--format, else from -o's suffix: .onnx or .safetensors, anything else torch."""
    if fmt:
        return fmt
    return {".onnx": "onnx", ".safetensors": "safetensors"}.get(out.suffix.lower(), "torch")


class AnySize(nn.Module):
    """Pads the input up to the generator's multiple and crops the output back (as `pan infer`
    does, through the same Geometry.pad), so the exported graph takes any height and width."""

    def __init__(self, net: nn.Module, geometry: Geometry):
        super().__init__()
        self.net, self.geometry = net, geometry

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2], image.shape[-1]
        return self.net(self.geometry.pad(image))[..., :height, :width]


def export(model: SavedModel, out: Path, fmt: str, half: bool = False) -> None:
    """`model` as `fmt` at `out` (a folder for safetensors); the caller has checked `out`."""
    if fmt == "safetensors":
        export_safetensors(model, out)
    elif fmt == "onnx":
        export_onnx(model, out)
    else:
        export_torch(model, out, half)


def export_torch(model: SavedModel, target: Path, half: bool = False) -> None:
    """Only what inference needs: the config and T's inference weights. About 1/60 of a PAN
    checkpoint (no D, no Adam moments); resuming training from it is not possible, `pan infer`
    takes it like any checkpoint. `half` stores the floating-point weights as float16, half the
    file; loading copies them into the float32 network, so inference runs in float32 on exactly
    the stored values. Without it they are stored as float32 (a half export exported again
    keeps its values, not its dtype)."""
    dtype = torch.float16 if half else torch.float32
    weights = {k: v.to(dtype) if v.is_floating_point() else v for k, v in model.weights.items()}
    save_checkpoint(target, {"config": model.config.to_dict(), "step": model.step, "T": weights, "T_ema": None,
                             "exported": True, "data": model.state.get("data"), "best": model.state.get("best")})


def export_onnx(model: SavedModel, path: Path) -> None:
    onnx = require_extra("onnx", "onnx")
    config: RunConfig = model.config
    shape = geometry(config.generator)
    net = fold_batchnorm(model.generator()).eval()
    net = AnySize(net, shape) if shape.any_size else net
    side = max(shape.multiple, 64) if shape.any_size else config.image_size
    example = torch.zeros(1, config.in_channels, side, side)
    axes = {0: "batch", 2: "height", 3: "width"} if shape.any_size else {0: "batch"}
    tmp = path.with_name(f".pan-{uuid.uuid4().hex[:12]}.export")  # short: any -o name fits beside it
    try:
        torch.onnx.export(net, (example,), str(tmp), input_names=["image"], output_names=["output"],
                          dynamic_axes={"image": axes, "output": axes}, opset_version=17, dynamo=False)
        graph = onnx.load(str(tmp))
    finally:
        tmp.unlink(missing_ok=True)
    card = {**model.card(), "config": config.to_dict(),
            "io": "image: N x C x H x W in [-1, 1]" + (" (C = 3 + mask: 1 = hole)" if config.takes_mask else "")}
    for key, value in card.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    atomic_write(path, lambda handle: handle.write(graph.SerializeToString()))


def export_safetensors(model: SavedModel, folder: Path) -> None:
    require_extra("safetensors", "safetensors")
    from safetensors.torch import save

    # as trained: pan folds BatchNorm when it loads them
    weights = {k: v.contiguous() for k, v in model.weights.items()}
    card = {**model.card(), "config": model.config.to_dict()}
    atomic_write(folder / WEIGHTS_NAME, lambda handle: handle.write(save(weights, {"pan": json.dumps(card)})))
    atomic_write(folder / CONFIG_NAME, lambda handle: handle.write(json.dumps(card, indent=2).encode()))
