"""Synthetic rain over clean photos: three rain models and their mixture.

- `RainModel` ("light"): streak layers of varied density, length, angle, width and
  brightness plus a slight haze, screen-blended. Drizzle to moderate streaks (Rain100L-like);
  the `--rain-*` range options shape it.
- `HeavyRain` ("heavy"): Yang et al.'s heavy-rain model (JORDER, CVPR 2017, the model behind
  Rain100H), O = a (B + sum_t S_t R) + (1 - a) A: several dense streak layers S_t, each with its
  own direction, length, width and density, added to the background, then rain accumulation,
  an atmospheric veil A seen through transmission a.
- `PhotoshopRain` ("photoshop"): Fu et al.'s Rain1400 recipe: noise -> blur -> threshold ->
  motion blur at an angle -> levels -> screen blend.
- `RainMix` ("mixed", the default): each draw picks one of the three.

Every draw comes from the torch.Generator passed in, so a pair is reproducible from a seed.
Each model maps a uint8 CHW photo to a uint8 CHW rainy photo of the same size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F
from skimage.draw import line_aa
from torchvision.transforms.v2.functional import gaussian_blur

PRESETS = ("mixed", "light", "heavy", "photoshop")  # --rain: rain_preset's names


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * torch.rand((), generator=generator).item()


def _rand(height: int, width: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """1x1xHxW uniform noise drawn from the (CPU) generator, on `device`: the same draws
    wherever the rain is rendered (the training device, or the CPU)."""
    return torch.rand(1, 1, height, width, generator=generator).to(device)


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


def _convolve(layer: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """F.conv2d(layer, kernel, padding=size // 2) for an odd square kernel, by FFT: streak
    kernels are up to ~65 pixels wide, where a direct convolution on the CPU is ~400x slower."""
    size = kernel.shape[-1]
    height, width = layer.shape[-2:]
    shape = (height + size - 1, width + size - 1)
    full = torch.fft.irfft2(torch.fft.rfft2(layer, shape) * torch.fft.rfft2(kernel.flip(0, 1), shape), shape)
    return full[..., size // 2: size // 2 + height, size // 2: size // 2 + width]


def _blur(layer: torch.Tensor, sigma: float) -> torch.Tensor:
    ksize = 2 * math.ceil(3 * sigma) + 1
    return gaussian_blur(layer, [ksize, ksize], [sigma, sigma])


def _screen(image: torch.Tensor, streaks: torch.Tensor) -> torch.Tensor:
    """Screen blend: streaks brighten, never darken, and saturate towards white."""
    return 1.0 - (1.0 - image) * (1.0 - streaks)


def _to_uint8(image: torch.Tensor) -> torch.Tensor:
    return (image.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)


@dataclass(frozen=True)
class RainModel:
    """Light to moderate streaks (today's `--rain-*` ranges apply here)."""

    density: tuple[float, float] = (0.001, 0.012)  # fraction of pixels that start a streak
    length: tuple[float, float] = (6.0, 40.0)  # pixels
    angle: tuple[float, float] = (-35.0, 35.0)  # degrees from vertical, shared by a layer
    intensity: tuple[float, float] = (0.12, 0.7)  # peak brightness a streak adds
    blur: tuple[float, float] = (0.3, 1.3)  # Gaussian sigma: streak width
    layers: tuple[int, int] = (1, 3)  # streak layers, each with its own draws
    haze: tuple[float, float] = (0.0, 0.05)  # slight: a global veil a local window cannot measure

    def streaks(self, height: int, width: int, generator: torch.Generator,
                device: torch.device = torch.device("cpu")) -> torch.Tensor:
        """A 1xHxW streak brightness map in [0, 1]."""
        total = torch.zeros(1, 1, height, width, device=device)
        n_layers = int(torch.randint(self.layers[0], self.layers[1] + 1, (), generator=generator))
        for _ in range(n_layers):
            density = _uniform(generator, *self.density)
            seeds = (_rand(height, width, generator, device) < density).float()
            seeds *= 0.5 + 0.5 * _rand(height, width, generator, device)
            kernel = streak_kernel(round(_uniform(generator, *self.length)),
                                   _uniform(generator, *self.angle)).to(device)
            layer = _convolve(seeds, kernel)
            layer = _blur(layer, _uniform(generator, *self.blur))
            layer = layer / layer.amax().clamp_min(1e-6)  # brightest streak = 1 before scaling
            total = total + _uniform(generator, *self.intensity) * layer
        return total[0].clamp(0.0, 1.0)

    def __call__(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        image = clean.float() / 255.0
        rainy = _screen(image, self.streaks(image.shape[1], image.shape[2], generator, image.device))
        haze = _uniform(generator, *self.haze)
        airlight = _uniform(generator, 0.75, 1.0)
        return _to_uint8(rainy * (1.0 - haze) + haze * airlight)


@dataclass(frozen=True)
class HeavyRain:
    """Yang et al.'s heavy rain: O = a (B + sum_t S_t R) + (1 - a) A."""

    layers: tuple[int, int] = (2, 5)  # streak layers S_t, up to five directions
    direction: tuple[float, float] = (-30.0, 30.0)  # the storm's main angle from vertical
    spread: float = 15.0  # each layer's angle within +-spread of the main one
    density: tuple[float, float] = (0.001, 0.006)  # per layer: fraction of pixels starting a streak
    length: tuple[float, float] = (20.0, 60.0)  # pixels, per layer
    width: tuple[float, float] = (0.3, 1.0)  # Gaussian sigma, per layer
    brightness: tuple[float, float] = (0.2, 0.6)  # R: what one streak adds, per layer
    transmission: tuple[float, float] = (0.7, 1.0)  # a: 1 - a is the rain-accumulation veil
    airlight: tuple[float, float] = (0.7, 1.0)  # A: the veil's grey level

    def streaks(self, height: int, width: int, generator: torch.Generator,
                device: torch.device = torch.device("cpu")) -> torch.Tensor:
        """sum_t S_t R as a 1xHxW map (not clamped: overlapping streaks add up)."""
        total = torch.zeros(1, 1, height, width, device=device)
        main = _uniform(generator, *self.direction)
        for _ in range(int(torch.randint(self.layers[0], self.layers[1] + 1, (), generator=generator))):
            density = _uniform(generator, *self.density)
            seeds = (_rand(height, width, generator, device) < density).float()
            seeds *= 0.6 + 0.4 * _rand(height, width, generator, device)
            angle = main + _uniform(generator, -self.spread, self.spread)
            kernel = streak_kernel(round(_uniform(generator, *self.length)), angle).to(device)
            sigma = _uniform(generator, *self.width)
            # one isolated streak peaks at 1 after the blur, whatever its width
            peak = _blur(F.pad(kernel, (4, 4, 4, 4))[None, None], sigma).amax().clamp_min(1e-6)
            layer = _convolve(seeds, kernel)
            layer = _blur(layer, sigma) / peak
            total = total + _uniform(generator, *self.brightness) * layer.clamp(0.0, 1.0)
        return total[0]

    def __call__(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        image = clean.float() / 255.0
        rain = self.streaks(image.shape[1], image.shape[2], generator, image.device)
        alpha = _uniform(generator, *self.transmission)
        airlight = _uniform(generator, *self.airlight)
        return _to_uint8(alpha * (image + rain).clamp(0.0, 1.0) + (1.0 - alpha) * airlight)


@dataclass(frozen=True)
class PhotoshopRain:
    """Fu et al.'s streaks (Rain1400): noise -> blur -> threshold -> motion blur -> screen."""

    density: tuple[float, float] = (0.02, 0.12)  # fraction of the noise kept by the threshold
    noise_blur: tuple[float, float] = (0.5, 1.5)  # Gaussian sigma before the threshold: drop size
    length: tuple[float, float] = (10.0, 50.0)  # motion-blur length in pixels
    angle: tuple[float, float] = (-40.0, 40.0)  # motion-blur angle from vertical
    intensity: tuple[float, float] = (0.4, 1.0)  # brightness after the levels stretch
    layers: tuple[int, int] = (1, 2)

    def __call__(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        image = clean.float() / 255.0
        height, width = image.shape[1:]
        total = torch.zeros(1, height, width, device=image.device)

        def sample(flat: torch.Tensor) -> torch.Tensor:
            picks = torch.randint(0, flat.numel(), (min(flat.numel(), 65536),), generator=generator)
            return flat[picks.to(flat.device)]

        for _ in range(int(torch.randint(self.layers[0], self.layers[1] + 1, (), generator=generator))):
            noise = _blur(_rand(height, width, generator, image.device), _uniform(generator, *self.noise_blur))
            threshold = torch.quantile(sample(noise.flatten()), 1.0 - _uniform(generator, *self.density))
            drops = ((noise - threshold) / (noise.amax() - threshold).clamp_min(1e-6)).clamp(0.0, 1.0)
            kernel = streak_kernel(round(_uniform(generator, *self.length)),
                                   _uniform(generator, *self.angle)).to(image.device)
            streaks = _convolve(drops, kernel / kernel.sum())
            # levels: the brightest 0.5% saturate
            top = torch.quantile(sample(streaks.flatten()), 0.995).clamp_min(1e-6)
            total = total + _uniform(generator, *self.intensity) * (streaks[0] / top).clamp(0.0, 1.0)
        return _to_uint8(_screen(image, total.clamp(0.0, 1.0)))


Rain = Union[RainModel, HeavyRain, PhotoshopRain, "RainMix"]


@dataclass(frozen=True)
class RainMix:
    """Each draw picks one rain model by weight: heavy rain most often, as benchmarks are."""

    models: tuple = field(default_factory=lambda: (RainModel(), HeavyRain(), PhotoshopRain()))
    weights: tuple[float, ...] = (0.25, 0.5, 0.25)

    def __call__(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        pick = int(torch.multinomial(torch.tensor(self.weights), 1, generator=generator))
        return self.models[pick](clean, generator)


def rain_preset(name: str, light: RainModel | None = None) -> Rain:
    """The rain model for a `--rain` preset; `light` is the streak model the range options shaped."""
    light = light or RainModel()
    presets = {"light": light, "heavy": HeavyRain(), "photoshop": PhotoshopRain(),
               "mixed": RainMix((light, HeavyRain(), PhotoshopRain()))}
    if name not in presets:
        raise ValueError(f"unknown rain preset {name!r}; choose one of {', '.join(PRESETS)}")
    return presets[name]
