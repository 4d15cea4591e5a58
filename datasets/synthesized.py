"""Training pairs made on the fly from clean photos: the input is synthesized from each
augmented crop (rain streaks, or an inpainting hole), the crop itself is the target.

As in PairedImages, every draw is a pure function of (seed, position in the sample stream),
so a resumed run sees the same rain and holes as one that never stopped, and a photo never
gives the same input twice in different epochs.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Sequence

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from pan_cli.config import RunConfig
from pan_cli.datasets.holes import context_encoder_pair, random_mask, with_mask_channel
from pan_cli.datasets.images import read_image, to_float
from pan_cli.datasets.paired import PairedImages, paired_transform, require_crop
from pan_cli.datasets.rain import Rain, RainModel, rain_preset
from pan_cli.errors import PanError

Synthesizer = Callable[[torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


def rain_model(config: RunConfig) -> Rain:
    """The rain of config.rain; the --rain-* ranges shape its light streaks."""
    light = RainModel(density=config.rain_density, length=config.rain_length, angle=config.rain_angle,
                      intensity=config.rain_intensity)
    return rain_preset(config.rain, light)


def _rainy(rain: Rain, clean: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return to_float(rain(clean, generator)), to_float(clean)


def _centre_hole(clean: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return context_encoder_pair(clean)


def _random_holes(clean: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return with_mask_channel(clean, random_mask(*clean.shape[1:], generator)), to_float(clean)


def synthesizer(config: RunConfig) -> Synthesizer:
    """(clean uint8 crop, generator) -> (input, target) in [-1, 1] for config.synthesize.
    Module-level functions, not lambdas: DataLoader workers started by spawn (macOS,
    Windows) must pickle them."""
    if config.synthesize == "rain":
        return partial(_rainy, rain_model(config))
    if config.synthesize == "holes":  # the context encoder: the paper's centre hole
        # a mask channel in the input (a fully convolutional T): holes of every kind, anywhere;
        # without one (the context encoder): the paper's centre hole
        return _random_holes if config.in_channels == config.out_channels + 1 else _centre_hole
    raise PanError(f"task {config.task!r} has no synthesizer for {config.synthesize!r}")


class SynthesizedPairs(Dataset):
    """Clean photos, read lazily; item (index, seed) is one augmented crop and its input."""

    def __init__(self, photos: Sequence, config: RunConfig):
        if not photos:
            raise PanError("no photos to synthesize training pairs from")
        self.photos = list(photos)
        self.crop, self.load_size = config.image_size, config.load_size
        self.zoom = config.zoom
        self.transform = paired_transform(config.image_size, config.load_size, config.flip, config.zoom)
        self.make = synthesizer(config)

    def __len__(self) -> int:
        return len(self.photos)

    def check_sizes(self) -> None:
        if self.load_size < self.crop and not self.zoom:
            for photo in self.photos:
                require_crop(photo, self.crop)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, seed = key
        photo = read_image(self.photos[index], 3)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            crop = self.transform(tv_tensors.Image(photo)).as_subclass(torch.Tensor)
        return self.make(crop, torch.Generator().manual_seed(seed))


def training_set(config: RunConfig, sources: Sequence) -> PairedImages | SynthesizedPairs:
    """The training samples: pairs from disk, or (config.synthesize) inputs made from photos."""
    return SynthesizedPairs(sources, config) if config.synthesize else PairedImages(sources, config)
