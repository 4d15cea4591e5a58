"""T ready to run: from a checkpoint, on one image of any size (tiled when it would not fit),
with inpainting's masks handled inside `predict`, so callers never branch on the task."""

from __future__ import annotations

from functools import cached_property, partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pan_cli.config import RunConfig
from pan_cli.datasets.images import to_float, to_uint8
from pan_cli.errors import PanError
from pan_cli.infer.inpainting import default_mask, inpaint
from pan_cli.infer.memory import (
    BOMB_LIMIT,
    FILL_BYTES_PER_PIXEL,
    IMAGE_BYTES_PER_PIXEL,
    activation_bytes_per_pixel,
    free_bytes,
)
from pan_cli.infer.memory import max_pixels as memory_max_pixels
from pan_cli.infer.tiling import TilePlan, plan, run_tiled, tile_budget
from pan_cli.models.networks import fold_batchnorm, geometry
from pan_cli.models.streaming import Stream, band_rows, run_streamed
from pan_cli.store.checkpoint import read_model
from pan_cli.tasks import TASKS


def _region(image: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """float NCHW rows top:bottom, columns left:right of `image` (uint8 or float); rows and
    columns past the bottom or right edge repeat the edge, as Geometry.pad does."""
    height, width = image.shape[-2:]
    inside = image[..., top:min(bottom, height), left:min(right, width)]
    inside = to_float(inside) if inside.dtype == torch.uint8 else inside.float()
    pad_h, pad_w = bottom - min(bottom, height), right - min(right, width)
    return F.pad(inside, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else inside


class Predictor:
    """T from a checkpoint (its EMA weights when the run kept them), in eval mode: BatchNorm
    uses its running statistics, folded into the convolutions. `net` itself is not changed.

    `tile`: None runs an image whole when it fits in one tile (its side from the memory free on
    the device), else streams it by bands of rows when the generator can (pan_cli.models.streaming),
    else tiles it; 0 always runs whole images, N uses N x N tiles; `overlap` defaults to what
    makes tiled output equal whole-image output (tiling.default_overlap)."""

    def __init__(self, config: RunConfig, net: nn.Module, device: torch.device, tile: int | None = None,
                 overlap: int | None = None, step: int = 0):
        self.config, self.device = config, device
        self.step = step  # the training step of the weights
        self.geometry = geometry(config.generator)
        self.tile, self.overlap = tile, overlap
        # channels_last measured 14% faster for CPU inference here (make bench); exact either way
        self.memory_format = torch.channels_last if device.type == "cpu" else torch.contiguous_format
        self.net = fold_batchnorm(net).to(device, memory_format=self.memory_format)
        if tile and self.geometry.any_size:  # a tile size that cannot work is refused now, not per image
            try:
                _ = self.plan  # computed now so that a bad --tile fails before any image is read
            except ValueError as exc:
                raise PanError(str(exc)) from None

    @classmethod
    def from_checkpoint(cls, path: Path, task: str | None, device: torch.device, tile: int | None = None,
                        overlap: int | None = None) -> Predictor:
        model = read_model(path, task)
        return cls(model.config, model.generator(), device, tile, overlap, model.step)

    @property
    def inpaints(self) -> bool:
        """Takes a mask beside each image (the task fills holes)."""
        return TASKS[self.config.task].fills_holes

    @cached_property
    def activation_bytes_per_pixel(self) -> float:
        return activation_bytes_per_pixel(self.net, self.config.in_channels)

    def bytes_per_pixel(self) -> float:
        """Memory an image costs per pixel: its own copies when it is tiled (or cut into
        windows, for the context encoder), else every activation of a whole-image pass; and
        a fully convolutional inpainting model's fill buffers on top."""
        if not self.geometry.any_size:
            return IMAGE_BYTES_PER_PIXEL
        fill = FILL_BYTES_PER_PIXEL if self.inpaints else 0
        return fill + (IMAGE_BYTES_PER_PIXEL if self.tile != 0 else self.activation_bytes_per_pixel)

    def max_pixels(self) -> int:
        """The default --max-pixels: what the memory free now allows this model, at most
        Pillow's decompression-bomb limit."""
        return min(BOMB_LIMIT, memory_max_pixels(self.bytes_per_pixel(), self.device))

    @cached_property
    def plan(self) -> TilePlan:
        shape = self.geometry
        return plan(shape.reach, shape.multiple, self.activation_bytes_per_pixel, free_bytes(self.device),
                    self.tile or None, self.overlap)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.to(self.device).contiguous(memory_format=self.memory_format)).float().cpu()

    def _run(self, image: torch.Tensor) -> torch.Tensor:
        """float [-1, 1] NCHW at the input's own size: whole, in bands of rows or in tiles."""
        count, height, width = image.shape[0], *image.shape[-2:]
        padded_h, padded_w = height + (-height) % self.geometry.multiple, width + (-width) % self.geometry.multiple
        shape = (count, padded_h, padded_w)
        if self.tile == 0 or count * padded_h * padded_w <= self.plan.size**2:
            out = self._forward(_region(image, 0, padded_h, 0, padded_w))
        elif (stream := self._stream(count, padded_w)) is not None:
            out = run_streamed(stream, partial(self._band, image), shape, self.config.out_channels)
        else:
            out = run_tiled(self._forward, partial(_region, image), shape, self.config.out_channels, self.plan)
        return out[..., :height, :width]

    def _stream(self, count: int, width: int) -> Stream | None:
        """With --tile auto, a fresh stream of the network (pan_cli.models.streaming: nothing computed
        twice) when it has one and a band with its held rows fits the tile budget; else None."""
        if self.tile is not None:
            return None
        rows = band_rows(width) + 2 * self.geometry.reach  # held rows: at most twice the reach
        if count * width * rows * self.activation_bytes_per_pixel > tile_budget(free_bytes(self.device)):
            return None
        return self.net.stream()

    def _band(self, image: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
        """Rows of `image` as the network takes them, in a tensor of their own (a stream may
        overwrite it)."""
        band = _region(image, top, bottom, left, right)
        return band.to(self.device, memory_format=self.memory_format, copy=True)

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """[-1, 1] NCHW in, [-1, 1] NCHW out at the input's own size: padded up to the network's
        multiple (edge pixels repeated), then cropped back; never resized. A generator of one
        fixed size (the context encoder) takes exactly that size and returns its patch."""
        if not self.geometry.any_size:
            return self._forward(batch)
        return self._run(batch)

    @torch.inference_mode()
    def predict_many(self, images: list[torch.Tensor], masks: list[torch.Tensor | None]) -> list[torch.Tensor]:
        """predict() of uint8 CHW images of one size (and their masks), in one batch where the
        model allows it: callers never ask which task the model does."""
        if self.inpaints:
            return [self.predict(image, mask) for image, mask in zip(images, masks)]
        return [to_uint8(out) for out in self(torch.stack(images))]

    @torch.inference_mode()
    def predict(self, image: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """uint8 CHW in, uint8 CHW out. An inpainting model fills `mask` (bool HxW, True = fill;
        default: the paper's centre hole) and leaves every other pixel as it was; other models
        ignore it. A large image is read tile by tile from the uint8 input."""
        if self.inpaints:
            return inpaint(self, image, default_mask(image) if mask is None else mask)
        out = self._run(image[None])[0]
        return to_uint8(out)
