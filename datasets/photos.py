"""The real photos that ship inside scikit-image's wheel: built-in data for demos and tests,
with no download. Training and held-out sets are disjoint."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import skimage.data
import torch

from pan_cli.datasets.images import write_image
from pan_cli.datasets.rain import RainModel
from pan_cli.errors import PanError
from pan_cli.files import check_replaceable

TRAIN_PHOTOS = ("astronaut", "rocket", "stereo_motorcycle", "hubble_deep_field", "immunohistochemistry")
HELD_OUT_PHOTOS = ("chelsea", "coffee")
# More photos that ship in the wheel, for longer training (the pretrained model): textures,
# grey scenes and a fundus image widen what the rain is laid over.
MORE_PHOTOS = ("camera", "coins", "grass", "gravel", "brick", "retina", "moon", "clock")


def builtin_photo(name: str) -> torch.Tensor:
    """A scikit-image sample photo as a uint8 3xHxW tensor."""
    image = getattr(skimage.data, name)()
    if isinstance(image, tuple):  # stereo_motorcycle: (left, right, disparity)
        image = image[0]
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(image[..., :3])).permute(2, 0, 1).contiguous()


def write_photos(folder: Path, photos: Sequence[str], overwrite: bool = False) -> list[Path]:
    """The named built-in photos as PNG files in `folder`; returns their paths. Without
    `overwrite`, a file of the same name is refused before anything is written."""
    paths = [Path(folder) / f"{name}.png" for name in photos]
    for path in paths if not overwrite else ():
        if check_replaceable(path):
            raise PanError(f"{path} exists; give --overwrite to replace it")
    for name, path in zip(photos, paths):
        write_image(path, builtin_photo(name), overwrite=overwrite)
    return paths


def write_rain_pairs(folder: Path, photos: Sequence[str], draws: int, seed: int) -> list[str]:
    """Each photo under `draws` rain draws, as A/ (rainy) + B/ (clean) pairs; returns the names."""
    rain = RainModel()
    generator = torch.Generator().manual_seed(seed)
    names = []
    for photo in photos:
        clean = builtin_photo(photo)
        for k in range(draws):
            name = f"{photo}-{k}"
            write_image(folder / "A" / f"{name}.png", rain(clean, generator))
            write_image(folder / "B" / f"{name}.png", clean)
            names.append(name)
    return names
