"""Semantic label maps: Cityscapes class ids and their colours.

A network sees label maps as colour images (the form pix2pix ships Cityscapes in), so a
`*_labelIds.png` class-id image is turned into those colours when it is read: a model trained
on pix2pix's colour files runs on Cityscapes' own id files and the other way round.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from skimage.segmentation import slic

from pan_cli.datasets.images import read_image

LABEL_IDS_SUFFIX = "_labelIds"

# Cityscapes labelIds 0-33 -> colour (cityscapesScripts' labels.py); other ids are black.
CITYSCAPES_COLOURS = (
    (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0),  # unlabeled, ego vehicle, border, out of roi, static
    (111, 74, 0), (81, 0, 81),  # dynamic, ground
    (128, 64, 128), (244, 35, 232), (250, 170, 160), (230, 150, 140),  # road, sidewalk, parking, rail track
    (70, 70, 70), (102, 102, 156), (190, 153, 153),  # building, wall, fence
    (180, 165, 180), (150, 100, 100), (150, 120, 90),  # guard rail, bridge, tunnel
    (153, 153, 153), (153, 153, 153), (250, 170, 30), (220, 220, 0),  # pole, polegroup, traffic light, sign
    (107, 142, 35), (152, 251, 152), (70, 130, 180),  # vegetation, terrain, sky
    (220, 20, 60), (255, 0, 0),  # person, rider
    (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 0, 90), (0, 0, 110), (0, 80, 100),  # car .. train
    (0, 0, 230), (119, 11, 32),  # motorcycle, bicycle
)


def is_label_ids(path: Path) -> bool:
    return Path(path).stem.endswith(LABEL_IDS_SUFFIX)


def colourize(ids: torch.Tensor) -> torch.Tensor:
    """HxW (or 1xHxW) class ids -> uint8 3xHxW Cityscapes colours."""
    table = torch.zeros(256, 3, dtype=torch.uint8)
    table[: len(CITYSCAPES_COLOURS)] = torch.tensor(CITYSCAPES_COLOURS, dtype=torch.uint8)
    return table[ids.reshape(ids.shape[-2:]).long()].permute(2, 0, 1).contiguous()


def read_input(path: Path, channels: int = 3, max_pixels: int | None = None) -> torch.Tensor:
    """read_image, except that a Cityscapes `*_labelIds.png` becomes its colour label map."""
    if is_label_ids(path):
        return colourize(read_image(path, 1, max_pixels, ids=True))
    return read_image(path, channels, max_pixels)


# Stand-in classes for photos without labels: an appearance prototype -> a Cityscapes class.
PROTOTYPES = (
    ((35, 35, 35), (0, 0, 142)),  # dark -> car
    ((125, 125, 125), (128, 64, 128)),  # grey -> road
    ((225, 225, 225), (70, 130, 180)),  # bright -> sky
    ((140, 90, 50), (70, 70, 70)),  # brown -> building
    ((70, 120, 45), (107, 142, 35)),  # green -> vegetation
    ((60, 100, 180), (244, 35, 232)),  # blue -> sidewalk
    ((190, 50, 45), (220, 20, 60)),  # red -> person
    ((225, 175, 140), (220, 220, 0)),  # skin/beige -> traffic sign
)


def pseudo_labels(photo: torch.Tensor, segments: int = 60) -> torch.Tensor:
    """A stand-in label map for a photo: SLIC superpixels, each painted the Cityscapes class
    colour of the appearance prototype nearest its mean colour. Only for benchmarks and tests
    without Cityscapes. Like a real label map it gives regions and classes, not the photo's
    colours: a network has to learn what each class looks like."""
    image = photo.permute(1, 2, 0).numpy()
    regions = slic(image, n_segments=segments, compactness=10, start_label=0)
    prototypes = np.array([p for p, _ in PROTOTYPES], dtype=np.float64)
    classes = np.array([c for _, c in PROTOTYPES], dtype=np.uint8)
    out = np.zeros_like(image)
    for region in np.unique(regions):
        inside = regions == region
        mean = image[inside].mean(axis=0)
        out[inside] = classes[np.argmin(((prototypes - mean) ** 2).sum(axis=1))]
    return torch.from_numpy(out).permute(2, 0, 1).contiguous()
