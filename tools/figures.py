"""The model cards' pictures (docs/models), made with the shipped models (`make figures`).

derain: three Rain100H validation pairs, rainy | pan | clean. inpaint: held-out photos with a
half-side centre hole and free-form strokes, hole | biharmonic | pan | original, at full size
(256 px: shrinking them would hide the texture the fills are judged by).
Usage: python tools/figures.py RAIN_VAL_DIR HELD_OUT_PHOTO_DIR   ("-" for either skips that model)
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torchvision.transforms.v2 import functional as TF

from pan_cli.datasets.holes import make_hole
from pan_cli.datasets.images import read_image, write_grid
from pan_cli.infer.predictor import Predictor
from pan_cli.score.baselines import biharmonic_fill
from pan_cli.store.checkpoint import PRETRAINED

DOCS = Path(__file__).resolve().parent.parent / "docs"
RAIN_PAIRS = ("31.png", "56.png", "81.png")  # every 25th validation pair, none picked by result
HELD_OUT = ("kodak24_kodim03.png", "kodak24_kodim15.png", "kodak24_kodim23.png")


def shrink(image: torch.Tensor, width: int = 240) -> torch.Tensor:
    height = round(image.shape[1] * width / image.shape[2])
    return TF.resize(image, [height, width], antialias=True)


def derain(val: Path) -> None:
    predictor = Predictor.from_checkpoint(PRETRAINED["derain"], "derain", torch.device("cpu"))
    tiles = []
    for name in RAIN_PAIRS:
        rainy, clean = read_image(val / "input" / name), read_image(val / "target" / name)
        derained = predictor.predict(rainy)
        tiles += [shrink(t) for t in (rainy, derained, clean)]
    write_grid(DOCS / "derain-rain100h.jpg", tiles, 3)


def inpainting(photos: Path) -> None:
    predictor = Predictor.from_checkpoint(PRETRAINED["inpaint"], "inpaint", torch.device("cpu"))
    tiles = []
    for name, kind in zip(HELD_OUT + HELD_OUT[:1], ("half", "half", "strokes", "strokes")):
        photo = TF.center_crop(TF.resize(read_image(photos / name), 256, antialias=True), [256, 256])
        mask = make_hole(kind, 256, 256, torch.Generator().manual_seed(1))
        shown = torch.where(mask, torch.full_like(photo, 255), photo)
        tiles += [shown, biharmonic_fill(photo, mask), predictor.predict(photo, mask), photo]
    write_grid(DOCS / "inpaint-heldout.jpg", tiles, 4)


if __name__ == "__main__":
    if sys.argv[1] != "-":
        derain(Path(sys.argv[1]))
    if sys.argv[2] != "-":
        inpainting(Path(sys.argv[2]))
