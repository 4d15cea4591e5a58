"""Synthetic rain: streak layers of varied density, length, angle, width and brightness, plus
a little haze, screen-blended onto a clean photo.

Every draw comes from the torch.Generator passed in, so a pair is reproducible from a seed.
The ranges span thin faint drizzle to heavy streaks, so a model trained on them meets
rain it has not seen rather than one fixed pattern.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from skimage.draw import line_aa
from torchvision.transforms.v2.functional import gaussian_blur


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * torch.rand((), generator=generator).item()


def streak_kernel(length: int, angle_degrees: float) -> torch.Tensor:
    """An anti-aliased line of `length` pixels, `angle_degrees` from vertical, summing to ~length."""
    half = length / 2.0
    angle = math.radians(angle_degrees)
    dy, dx = half * math.cos(angle), half * math.sin(angle)
    size = 2 * math.ceil(half) + 3
    c = size // 2
    canvas = np.zeros((size, size), dtype=np.float32)
    rr, cc, val = line_aa(round(c - dy), round(c - dx), round(c + dy), round(c + dx))
    canvas[rr, cc] = np.maximum(canvas[rr, cc], val)
    return torch.from_numpy(canvas)


@dataclass(frozen=True)
class RainModel:
    density: tuple[float, float] = (0.001, 0.012)  # fraction of pixels that start a streak
    length: tuple[float, float] = (6.0, 40.0)  # pixels
    angle: tuple[float, float] = (-35.0, 35.0)  # degrees from vertical, shared by a layer
    intensity: tuple[float, float] = (0.12, 0.7)  # peak brightness a streak adds
    blur: tuple[float, float] = (0.3, 1.3)  # Gaussian sigma: streak width
    layers: tuple[int, int] = (1, 3)  # streak layers, each with its own draws
    haze: tuple[float, float] = (0.0, 0.05)  # slight: a global veil a local window cannot measure

    def streaks(self, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
        """A 1xHxW streak brightness map in [0, 1]."""
        total = torch.zeros(1, 1, height, width)
        n_layers = int(torch.randint(self.layers[0], self.layers[1] + 1, (), generator=generator))
        for _ in range(n_layers):
            density = _uniform(generator, *self.density)
            seeds = (torch.rand(1, 1, height, width, generator=generator) < density).float()
            seeds *= 0.5 + 0.5 * torch.rand(1, 1, height, width, generator=generator)
            kernel = streak_kernel(round(_uniform(generator, *self.length)), _uniform(generator, *self.angle))
            layer = F.conv2d(seeds, kernel[None, None], padding=kernel.shape[-1] // 2)
            sigma = _uniform(generator, *self.blur)
            ksize = 2 * math.ceil(3 * sigma) + 1
            layer = gaussian_blur(layer, [ksize, ksize], [sigma, sigma])
            layer = layer / layer.amax().clamp_min(1e-6)  # brightest streak = 1 before scaling
            total = total + _uniform(generator, *self.intensity) * layer
        return total[0].clamp(0.0, 1.0)

    def __call__(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Rain over a uint8 CHW photo; returns uint8 CHW of the same size."""
        image = clean.float() / 255.0
        streaks = self.streaks(image.shape[1], image.shape[2], generator)
        rainy = 1.0 - (1.0 - image) * (1.0 - streaks)  # screen blend: streaks brighten
        haze = _uniform(generator, *self.haze)
        airlight = _uniform(generator, 0.75, 1.0)
        rainy = rainy * (1.0 - haze) + haze * airlight
        return (rainy.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
