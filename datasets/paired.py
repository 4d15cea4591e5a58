"""Paired training samples: (input, target) float tensors in [-1, 1], CHW, augmented together.

Randomness is a pure function of (seed, position in the sample stream): batch k of a run
is the same whether the run went straight through or was stopped and resumed, and
whatever the number of DataLoader workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch
from torch.utils.data import Dataset, Sampler
from torchvision import tv_tensors
from torchvision.transforms import v2

from pan_cli.datasets.cache import DecodesOnce
from pan_cli.datasets.images import ImageReadError, image_size, read_image, to_float
from pan_cli.datasets.labels import read_input
from pan_cli.datasets.layout import Pair
from pan_cli.errors import PanError

ZOOM = (0.15, 1.0)  # --zoom: crops of 15% to all of a photo's area, resized to the crop size


@dataclass(frozen=True)
class Crops:
    """How training samples are cut from images: what a dataset needs of a run's settings."""

    size: int  # the square crop
    load_size: int = 0  # resize the shorter side to this first (0: crop at the image's own scale)
    flip: bool = True
    zoom: bool = False  # crops of random size and place, resized to `size`
    direction: str = "AtoB"  # which side of a pair is the input
    channels: tuple[int, int] = (3, 3)  # of the input and the target
    label_input: bool = False  # the input is a label map: resized nearest-neighbour

    def transform(self) -> v2.Compose:
        return paired_transform(self.size, self.load_size, self.flip, self.zoom)


def paired_transform(crop: int, load_size: int = 0, flip: bool = True, zoom: bool = False) -> v2.Compose:
    """Resize (shorter side to load_size), then one random crop and flip shared by both images:
    torchvision v2 draws one set of parameters per call for every tv_tensors.Image in it.
    With `zoom`, the crop has a random size and place and is resized to `crop`
    (RandomResizedCrop), so T sees whole scenes and close-ups alike."""
    steps: list[v2.Transform] = []
    if zoom:
        steps.append(v2.RandomResizedCrop(crop, scale=ZOOM, antialias=True))
    elif load_size:
        steps.append(v2.Resize(load_size, antialias=True))
    if not zoom:
        steps.append(v2.RandomCrop(crop))
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps)


def load_pair(pair: Pair, direction: str, channels: tuple[int, int] = (3, 3)) -> tuple[torch.Tensor, torch.Tensor]:
    """(input, target) uint8 images of one pair, in the run's direction."""
    a_channels, b_channels = channels if direction == "AtoB" else channels[::-1]
    if pair.b is None:
        both = read_image(pair.a, max(channels))
        width = both.shape[2]
        if width % 2:
            raise ImageReadError(f"{pair.a}: width {width} is odd, so it cannot hold A|B side by side")
        a, b = both[:, :, : width // 2], both[:, :, width // 2:]
        a, b = a[:a_channels], b[:b_channels]
    else:
        a, b = read_input(pair.a, a_channels), read_input(pair.b, b_channels)
        if a.shape[1:] != b.shape[1:]:
            raise ImageReadError(
                f"{pair.a} is {a.shape[2]}x{a.shape[1]} but its partner {pair.b} is {b.shape[2]}x{b.shape[1]}"
            )
    return (a, b) if direction == "AtoB" else (b, a)


def crop_problem(path: Path, width: int, height: int, crop: int) -> str | None:
    """What is wrong with an image of this size for a crop x crop training crop, if anything."""
    if min(height, width) < crop:
        return (f"{path} is {width}x{height}, smaller than the {crop}x{crop} training crop "
                "(train with a smaller --image-size)")
    return None


def require_crop(path: Path, crop: int, halves: bool = False) -> None:
    """Raise if the image at `path` (each half of it, for side-by-side files) is smaller than
    the crop; reads the header only."""
    height, width = image_size(path)
    problem = crop_problem(path, width // 2 if halves else width, height, crop)
    if problem:
        raise ImageReadError(problem)


class PairedImages(Dataset, DecodesOnce):
    """Pairs decoded once (use_cache), or read from disk whenever an item is asked for."""

    def __init__(self, pairs: Sequence[Pair], crops: Crops):
        if not pairs:
            raise PanError("no image pairs to train on")
        self.pairs = list(pairs)
        self.direction = crops.direction
        self.channels = crops.channels
        self.crop, self.load_size = crops.size, crops.load_size
        self.transform = crops.transform()
        # A label map is a tv_tensors.Mask: v2.Resize then picks nearest-neighbour for it, so a
        # resized map holds only colours (classes) that were in it.
        self.input_kind = tv_tensors.Mask if crops.label_input else tv_tensors.Image

    def __len__(self) -> int:
        return len(self.pairs)

    def check_sizes(self) -> None:
        """Read every header once (no pixels) so a too-small image, or a pair whose halves differ
        in size, fails before training rather than at the step that meets it."""
        for pair in self.pairs:
            if pair.b is not None:
                (ha, wa), (hb, wb) = image_size(pair.a), image_size(pair.b)
                if (ha, wa) != (hb, wb):
                    raise ImageReadError(f"{pair.a} is {wa}x{ha} but its partner {pair.b} is {wb}x{hb}")
            if self.load_size < self.crop:
                require_crop(pair.a, self.crop, halves=pair.b is None)

    def decode(self, index: int) -> tuple[torch.Tensor, ...]:
        return load_pair(self.pairs[index], self.direction, self.channels)

    def source_files(self) -> list[Path]:
        return [path for pair in self.pairs for path in (pair.a, pair.b) if path is not None]

    def decoded_bytes(self) -> int:
        return sum(sum(self.channels) * height * width // (1 if pair.b is not None else 2)
                   for pair in self.pairs for height, width in [image_size(pair.a)])

    def decoding(self) -> str:
        return f"{self.direction}/{self.channels}"

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, seed = key
        x, y = self.decoded(index)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            x, y = self.transform(self.input_kind(x), tv_tensors.Image(y))
        return to_float(x.as_subclass(torch.Tensor)), to_float(y.as_subclass(torch.Tensor))


class StepBatches(Sampler[list[tuple[int, int]]]):
    """An endless stream of (global) batches of (dataset index, augmentation seed).

    Position p of the stream takes epoch p // n's shuffled order; batch k is a pure function
    of (seed, k), so starting at batch `start` continues a stopped run exactly."""

    def __init__(self, size: int, batch_size: int, seed: int, start: int = 0, shard: tuple[int, int] = (0, 1)):
        self.size, self.batch_size, self.seed, self.start = size, batch_size, seed, start
        self.rank, self.world = shard  # data-parallel: this process takes keys[rank::world] of each batch

    def _order(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return torch.randperm(self.size, generator=generator).tolist()

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        batch, epoch, order = self.start, -1, []
        while True:
            keys = []
            for position in range(batch * self.batch_size, (batch + 1) * self.batch_size):
                if position // self.size != epoch:
                    epoch = position // self.size
                    order = self._order(epoch)
                keys.append((order[position % self.size], (self.seed << 32) + position))
            yield keys[self.rank:: self.world]
            batch += 1
