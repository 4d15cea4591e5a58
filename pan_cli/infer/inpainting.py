"""Filling holes at inference, for images of any size and holes anywhere.

A fully convolutional T (a `unet` with a mask channel) takes the whole image at once, at the
scale it was trained for: it learned to fill holes whose thickest part (the radius of the
largest disc inside the hole) is a fraction of its training crop (FILL_RADIUS), so an image
whose hole is thicker is filled at a smaller scale where it is not, and the fill is resized back
(a thin stroke on a large photo is filled at full resolution), in one pass: the mean of
several passes (nearby scales, mirror images) washes out the texture a fill is kept for. The
Context-Encoder T takes exactly a 128x128 context and predicts its 64x64 centre, so each
connected hole region gets its own context window: a square around the region, scaled so
the region fits the 56x56 inner square the network was trained to fill, resized to 128,
and the prediction is resized back. Either way only masked pixels change.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F
from scipy.ndimage import distance_transform_edt
from skimage.measure import label, regionprops
from torchvision.transforms.v2.functional import resize

from pan_cli.config import RunConfig
from pan_cli.datasets.holes import CONTEXT, INNER, PATCH, centre_mask, fill, with_mask_channel
from pan_cli.datasets.images import to_float, to_uint8
from pan_cli.models.geometry import Geometry


class Generator(Protocol):
    """What filling needs of a model (pan_cli.infer.predictor.Predictor is one)."""

    config: RunConfig
    geometry: Geometry

    def __call__(self, batch: torch.Tensor) -> torch.Tensor: ...

MIN_HOLE = 16  # a smaller region still gets a window this size, so it has context around it
BATCH = 16  # windows per forward pass


def default_mask(image: torch.Tensor) -> torch.Tensor:
    """Without a mask file: the paper's centre hole (the inner 56/128 of the shorter side)."""
    return centre_mask(*image.shape[1:])


def inpaint(model: Generator, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """uint8 CHW image and bool HxW mask (True = fill) -> uint8 CHW with the masked pixels filled
    and every other pixel exactly as it was."""
    if not mask.any():
        return image.clone()
    filled = fill(image, mask)
    if model.geometry.any_size:
        predicted = to_uint8(_fill_at_scale(model, filled, mask, fill_scale(mask, model.config.image_size)))
    else:
        predicted = _fill_by_windows(model, filled, mask)
    return torch.where(mask, predicted, image)


# The thickest hole part filled at full resolution, as a fraction of the training crop; a larger
# hole is filled at the scale that brings it to this. Swept on the held-out Kodak photos with
# half-side centre holes (hole PSNR in dB, detail): a smaller or larger fraction, or filling at
# full resolution, is worse on both. The mean of fills at 0.28-0.32 and of the mirror image's
# fills (what pan did until the texture recipe) gained 0.1-0.25 dB and halved the detail (0.31
# -> 0.12 on half holes, 0.54 -> 0.39 on strokes: docs/models/inpaint.md): a single pass.
FILL_RADIUS = 0.3


def fill_scale(mask: torch.Tensor, crop: int) -> float:
    """The scale (at most 1) at which the hole's thickest part, the radius of the largest disc
    inside it, is FILL_RADIUS of the training crop: 1.0 for a thin hole."""
    radius = float(distance_transform_edt(mask.numpy()).max())
    return min(1.0, crop * FILL_RADIUS / radius)


def _fill_at_scale(model: Generator, filled: torch.Tensor, mask: torch.Tensor, scale: float) -> torch.Tensor:
    """T's prediction (float [-1, 1] CHW, the image's size) with the image shrunk by `scale`."""
    if scale == 1.0:
        return model(with_mask_channel(filled, mask)[None])[0]
    height, width = mask.shape
    size = [max(1, round(height * scale)), max(1, round(width * scale))]
    small = resize(filled, size, antialias=True)
    # every small pixel that any hole pixel falls in is a hole pixel
    small_mask = F.adaptive_max_pool2d(mask[None, None].float(), size)[0, 0] > 0
    predicted = model(with_mask_channel(small, small_mask)[None])
    # bicubic, not bilinear: the clean photo shrunk to 0.6 and enlarged back keeps 0.68 of its
    # detail (grey high-pass, metrics.detail) bicubic, 0.58 bilinear, on the Kodak half holes;
    # the shipped model's fills 0.155 against 0.130, for -0.01 dB (values past [-1, 1] are clamped)
    return F.interpolate(predicted, size=(height, width), mode="bicubic", align_corners=False)[0]


def _fill_by_windows(model: Generator, filled: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    height, width = mask.shape
    regions = label(mask.numpy(), connectivity=2)
    boxes = []  # (region, top, left, side) of each region's context window, in image coordinates
    for region in regionprops(regions):
        r0, c0, r1, c1 = region.bbox
        side = math.ceil(max(r1 - r0, c1 - c0, MIN_HOLE) * CONTEXT / INNER)
        boxes.append((region.label, (r0 + r1 - side) // 2, (c0 + c1 - side) // 2, side))
    regions = torch.from_numpy(regions)
    out = filled.clone()
    for start in range(0, len(boxes), BATCH):
        chunk = boxes[start: start + BATCH]
        windows = []
        for _, top, left, side in chunk:
            window = resize(_window(filled, top, left, side), [CONTEXT, CONTEXT], antialias=True)
            windows.append(fill(window, centre_mask(CONTEXT, CONTEXT)))  # as in training
        patches = model(torch.stack([to_float(w) for w in windows]))
        for (region, top, left, side), patch in zip(chunk, patches):
            size = round(side * PATCH / CONTEXT)
            p_top, p_left = top + (side - size) // 2, left + (side - size) // 2
            patch = to_uint8(resize(patch, [size, size], antialias=True))
            y0, x0 = max(p_top, 0), max(p_left, 0)
            y1, x1 = min(p_top + size, height), min(p_left + size, width)
            if y1 > y0 and x1 > x0:  # write this region's own pixels only: windows may overlap
                own = regions[y0:y1, x0:x1] == region
                target = out[:, y0:y1, x0:x1]
                target[:, own] = patch[:, y0 - p_top: y1 - p_top, x0 - p_left: x1 - p_left][:, own]
    return out


def _window(image: torch.Tensor, top: int, left: int, side: int) -> torch.Tensor:
    """The side x side square of `image` at (top, left); where it reaches past the border, the
    edge pixels are repeated (replicate padding of the part inside, not of the whole image)."""
    height, width = image.shape[1:]
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + side, height), min(left + side, width)
    inside = image[None, :, y0:y1, x0:x1].float()
    padding = (x0 - left, left + side - x1, y0 - top, top + side - y1)
    return F.pad(inside, padding, mode="replicate")[0].to(torch.uint8)
