"""Inpainting holes: the paper's centre hole and random rectangles/strokes, and how a photo
with a hole becomes T's input.

A mask is a bool HxW tensor, True where pixels are missing (white in a mask file). Missing
pixels are filled with Context-Encoder's mean colour before T sees them, so nothing of what
was there leaks in.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F

from pan_cli.datasets.images import ImageReadError, decode_image, read_image, to_float

MEAN_FILL = (117, 104, 123)  # Context-Encoder's dataset mean colour (0-255)
CONTEXT, PATCH, INNER = 128, 64, 56  # context window, predicted centre patch, blanked inner square


def fill(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """uint8 CHW with the masked pixels set to the mean colour."""
    colour = torch.tensor(MEAN_FILL, dtype=torch.uint8, device=image.device).view(3, 1, 1).expand_as(image)
    return torch.where(mask.to(image.device), colour, image)


def read_mask(path: Path, max_pixels: int | None = None) -> torch.Tensor:
    """A mask file as a bool HxW tensor: True (to fill) where the grey value is over 127 and,
    in a file with transparency, the pixel is opaque (a stroke painted on a transparent layer
    marks the hole; the transparent rest is not one, whatever colour it holds)."""
    return _hole(read_image(path, 2, max_pixels))


def check_mask(mask: torch.Tensor, image: torch.Tensor, mask_name: str, image_name: str) -> None:
    """A mask (bool HxW) fits its image (CHW) and marks something to fill, or one
    ImageReadError naming the mask: an empty mask would give an unchanged copy as if filled."""
    if mask.shape != image.shape[1:]:
        raise ImageReadError(f"{mask_name} is {mask.shape[1]}x{mask.shape[0]} but {image_name} is "
                             f"{image.shape[2]}x{image.shape[1]}")
    if not mask.any():
        raise ImageReadError(f"{mask_name}: the mask marks no pixel (white, opaque = fill), so there is no hole")


def decode_mask(source: BinaryIO, name: str, max_pixels: int | None = None) -> torch.Tensor:
    """read_mask for an upload in memory (`pan serve`)."""
    return _hole(decode_image(source, name, 2, max_pixels))


def _hole(grey_alpha: torch.Tensor) -> torch.Tensor:
    grey, alpha = grey_alpha
    return (grey > 127) & (alpha > 127)


def centre_mask(height: int, width: int, fraction: float = INNER / CONTEXT) -> torch.Tensor:
    """A centred square hole with a side of `fraction` of the shorter side: for a 128x128
    image, the paper's inner 56x56 (rows and columns 36-91)."""
    side = max(1, round(min(height, width) * fraction))
    top, left = (height - side) // 2, (width - side) // 2
    mask = torch.zeros(height, width, dtype=torch.bool)
    mask[top: top + side, left: left + side] = True
    return mask


COVERAGE = (0.05, 0.5)  # the share of a training crop that a drawn hole covers
HOLE_KINDS = ("centre", "rectangles", "strokes", "blob")  # drawn with equal chance


def random_mask(height: int, width: int, generator: torch.Generator, coverage: tuple[float, float] = COVERAGE,
                kinds: tuple[str, ...] = HOLE_KINDS) -> torch.Tensor:
    """A hole the way users make them, covering about `coverage` of the image: the paper's
    centre square, random rectangles, free-form brush strokes, or an object-sized blob (one
    of `kinds`, drawn with equal chance)."""
    target = coverage[0] + (coverage[1] - coverage[0]) * torch.rand((), generator=generator).item()
    kind = kinds[int(torch.randint(0, len(kinds), (), generator=generator))]
    if kind == "centre":
        return centre_mask(height, width, min(1.0, math.sqrt(target * height * width) / min(height, width)))
    if kind == "blob":
        return _blob(height, width, target, generator)
    mask = torch.zeros(height, width, dtype=torch.bool)
    for _ in range(40):
        if mask.float().mean() >= target:
            break
        if kind == "rectangles":  # a rectangle of 1/8 to 1/2 of each side
            h = int(height * (0.125 + 0.375 * torch.rand((), generator=generator)))
            w = int(width * (0.125 + 0.375 * torch.rand((), generator=generator)))
            top = int(torch.randint(0, height - h + 1, (), generator=generator))
            left = int(torch.randint(0, width - w + 1, (), generator=generator))
            mask[top: top + h, left: left + w] = True
        else:
            mask |= _stroke(height, width, generator)
    return mask


MAKE_HOLES = ("centre", "half", "random", *HOLE_KINDS[1:])  # `pan data make inpaint --holes`


def make_hole(kind: str, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """A hole for `pan data make`: "centre" is the paper's (56/128 of the shorter side), "half"
    a centre square of half the shorter side (Context Encoders' test setting), "random" any
    kind, or one kind of drawn hole."""
    if kind == "centre":
        return centre_mask(height, width)
    if kind == "half":
        return centre_mask(height, width, 0.5)
    return random_mask(height, width, generator, kinds=HOLE_KINDS if kind == "random" else (kind,))


def _blob(height: int, width: int, area: float, generator: torch.Generator) -> torch.Tensor:
    """An object-sized blob of about `area` of the image: a disc whose radius wobbles with
    the angle (a few random harmonics), placed at random but inside the image."""
    radius = math.sqrt(area * height * width / math.pi)
    cy = radius + torch.rand((), generator=generator).item() * max(0.0, height - 2 * radius)
    cx = radius + torch.rand((), generator=generator).item() * max(0.0, width - 2 * radius)
    ys, xs = torch.meshgrid(torch.arange(height) - cy, torch.arange(width) - cx, indexing="ij")
    angle, distance = torch.atan2(ys, xs), torch.hypot(ys, xs)
    edge = torch.ones_like(angle)
    for k in range(2, 6):
        amplitude = 0.25 / k * torch.rand((), generator=generator).item()
        phase = 2 * math.pi * torch.rand((), generator=generator).item()
        edge = edge + amplitude * torch.sin(k * angle + phase)
    return distance <= radius * edge


def _stroke(height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """A thick random polyline: points stepped along a wandering direction, then dilated."""
    line = torch.zeros(1, 1, height, width)
    y = torch.rand((), generator=generator).item() * (height - 1)
    x = torch.rand((), generator=generator).item() * (width - 1)
    angle = torch.rand((), generator=generator).item() * 2 * math.pi
    for _ in range(int(torch.randint(2, 6, (), generator=generator))):
        angle += (torch.rand((), generator=generator).item() - 0.5) * math.pi
        length = (0.1 + 0.3 * torch.rand((), generator=generator).item()) * min(height, width)
        # the segment's points, in float64 as Python's floats, rounded half to even as round()
        t = np.array(torch.linspace(0, 1, max(2, int(length))).tolist())
        py = np.clip(y + t * length * math.sin(angle), 0, height - 1)
        px = np.clip(x + t * length * math.cos(angle), 0, width - 1)
        rows, cols = (torch.from_numpy(np.round(v).astype(np.int64)) for v in (py, px))
        line[0, 0, rows, cols] = 1.0
        y = min(max(y + length * math.sin(angle), 0), height - 1)
        x = min(max(x + length * math.cos(angle), 0), width - 1)
    radius = max(1, round(min(height, width) * (0.02 + 0.04 * torch.rand((), generator=generator).item())))
    # a square brush, as two 1-D maxima (the same pixels as one (2r+1)^2 max pool, far fewer comparisons)
    wide = F.max_pool2d(line, (1, 2 * radius + 1), stride=1, padding=(0, radius))
    return F.max_pool2d(wide, (2 * radius + 1, 1), stride=1, padding=(radius, 0))[0, 0] > 0


def with_mask_channel(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A fully convolutional T's input: the filled image in [-1, 1] and the mask (1 = hole) as
    a fourth channel."""
    return torch.cat([to_float(fill(image, mask)), mask[None].to(image.device).float()])


def context_encoder_pair(clean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's training pair from a 128x128 uint8 crop: the context with its inner 56x56
    filled, and the 64x64 centre patch T predicts (the loss covers the whole patch)."""
    offset = (CONTEXT - PATCH) // 2
    x = to_float(fill(clean, centre_mask(CONTEXT, CONTEXT)))
    y = to_float(clean[:, offset: offset + PATCH, offset: offset + PATCH])
    return x, y
