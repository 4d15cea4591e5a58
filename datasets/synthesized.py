"""Training pairs made on the fly from clean photos: the input is synthesized from each
augmented crop (rain streaks, or an inpainting hole), the crop itself is the target.

As in PairedImages, every draw is a pure function of (seed, position in the sample stream),
so a resumed run sees the same rain and holes as one that never stopped, and a photo never
gives the same input twice in different epochs.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from pan_cli.datasets.cache import DecodesOnce
from pan_cli.datasets.holes import context_encoder_pair, random_mask, with_mask_channel
from pan_cli.datasets.images import image_size, read_image, to_float
from pan_cli.datasets.paired import Crops, require_crop
from pan_cli.datasets.rain import Rain
from pan_cli.errors import PanError

Synthesizer = Callable[[torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


def rainy(rain: Rain, clean: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return to_float(rain(clean, generator)), to_float(clean)


def centre_hole(clean: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return context_encoder_pair(clean)


def random_holes(clean: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return with_mask_channel(clean, random_mask(*clean.shape[1:], generator)), to_float(clean)


class SynthesizedPairs(Dataset, DecodesOnce):
    """Clean photos, decoded once (use_cache) or at every crop; item (index, seed) is one
    augmented crop and its input."""

    def __init__(self, photos: Sequence, crops: Crops, make: Synthesizer):
        """`make`: (clean uint8 crop, generator) -> (input, target) in [-1, 1]; a module-level
        function or a functools.partial of one (DataLoader workers started by spawn pickle it)."""
        if not photos:
            raise PanError("no photos to synthesize training pairs from")
        self.photos = list(photos)
        self.crop, self.load_size, self.zoom = crops.size, crops.load_size, crops.zoom
        self.transform = crops.transform()
        self.make = make

    def __len__(self) -> int:
        return len(self.photos)

    def check_sizes(self) -> None:
        if self.load_size < self.crop and not self.zoom:
            for photo in self.photos:
                require_crop(photo, self.crop)

    def decode(self, index: int) -> tuple[torch.Tensor, ...]:
        return (read_image(self.photos[index], 3),)

    def source_files(self) -> list:
        return self.photos

    def decoded_bytes(self) -> int:
        return sum(3 * height * width for height, width in map(image_size, self.photos))

    def decoding(self) -> str:
        return "rgb"

    # Set by the trainer to synthesize on the training device: an item is then the clean uint8
    # crop and its seed, and synthesize() makes a batch's inputs where the batch already is.
    defer = False

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, seed = key
        (photo,) = self.decoded(index)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            crop = self.transform(tv_tensors.Image(photo)).as_subclass(torch.Tensor)
        if self.defer:
            return crop, torch.tensor(seed)
        return self.make(crop, torch.Generator().manual_seed(seed))

    def synthesize(self, crops: torch.Tensor, seeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch's (input, target) from its clean uint8 crops, on whatever device the crops are:
        each crop with the generator of its seed (kept on the CPU), so the draws are those the
        loader would have made."""
        pairs = [self.make(crop, torch.Generator().manual_seed(int(seed))) for crop, seed in zip(crops, seeds)]
        return torch.stack([x for x, _ in pairs]), torch.stack([y for _, y in pairs])
