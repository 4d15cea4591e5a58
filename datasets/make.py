"""`pan data make`: a paired dataset (A/ input, B/ target, same names) from clean photos.

Splits are drawn over photos, not over pairs: every rain draw of a photo lands in the same
split, so no photo is seen in training and scored in test. Each photo's draws come from a
generator seeded by (seed, photo name), so a pair does not change when other photos are
added or the split fractions change.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from torchvision.transforms.v2.functional import center_crop, resize

from pan_cli.datasets.edges import sketch
from pan_cli.datasets.holes import fill, make_hole
from pan_cli.datasets.images import list_images, read_image, write_image
from pan_cli.datasets.layout import SPLITS
from pan_cli.datasets.photos import HELD_OUT_PHOTOS, MORE_PHOTOS, TRAIN_PHOTOS, builtin_photo
from pan_cli.datasets.rain import Rain, RainModel
from pan_cli.errors import PanError
from pan_cli.files import OUTPUT_MARK

BUILTIN = "builtin"  # --from builtin: the photos in scikit-image's wheel
# One made input (and its hole mask, for inpainting) from a clean photo and a seeded generator.
Maker = Callable[[torch.Tensor, torch.Generator], "tuple[torch.Tensor, torch.Tensor | None]"]


def _with_holes(kind: str) -> Maker:
    def make(clean: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        mask = make_hole(kind, *clean.shape[1:], generator)
        return fill(clean, mask), mask

    return make


# `pan data make TASK`: (the rain model, the hole kind) -> how TASK's inputs are made
MAKERS: dict[str, Callable[[Rain, str], Maker]] = {
    "derain": lambda rain, holes: lambda clean, generator: (rain(clean, generator), None),
    "inpaint": lambda rain, holes: _with_holes(holes),
    "sketch2photo": lambda rain, holes: lambda clean, generator: (sketch(clean), None),
}


@dataclass(frozen=True)
class Source:
    name: str  # output stem (relative path without suffix for nested folders)
    load: Callable[[], torch.Tensor]  # uint8 3xHxW


@dataclass
class Made:
    counts: dict[str, int] = field(default_factory=dict)  # split ("" = none) -> pairs written
    photos: dict[str, int] = field(default_factory=dict)  # split -> source photos


def photo_sources(origin: str | Path, avoid: Path | None = None) -> list[Source]:
    """The photos in a folder (recursively), or the built-in ones for `builtin`. The search never
    enters `avoid` (the dataset being made) nor a folder pan made (marked with OUTPUT_MARK)."""
    if str(origin) == BUILTIN:
        names = TRAIN_PHOTOS + MORE_PHOTOS + HELD_OUT_PHOTOS
        return [Source(n, lambda n=n: builtin_photo(n)) for n in sorted(names)]
    folder = Path(origin)
    if not folder.is_dir():
        raise PanError(f"--from {folder}: not a folder (give a folder of photos, or `{BUILTIN}`)")
    skip = (lambda d: d.resolve() == Path(avoid).resolve() or (d / OUTPUT_MARK).exists()) if avoid else None
    paths = list_images(folder, skip_dir=skip or (lambda d: (d / OUTPUT_MARK).exists()))
    if not paths:
        raise PanError(f"--from {folder}: no images in it")
    return [Source(p.relative_to(folder).with_suffix("").as_posix(), lambda p=p: read_image(p, 3)) for p in paths]


def parse_split(text: str) -> tuple[float, ...]:
    """'0.8,0.1,0.1' -> fractions for train, val, test ('0.9,0.1': train and val)."""
    try:
        fractions = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise PanError(f"--split {text!r}: give fractions for train,val,test such as 0.8,0.1,0.1") from None
    if not 1 <= len(fractions) <= 3 or not all(math.isfinite(f) and f >= 0 for f in fractions) \
            or not abs(sum(fractions) - 1) <= 1e-6:
        raise PanError(f"--split {text!r}: one to three non-negative fractions (train,val,test) adding up to 1")
    return fractions


def assign(names: Sequence[str], fractions: Sequence[float], seed: int) -> dict[str, list[str]]:
    """Disjoint splits of `names`, shuffled by `seed`; every split with a non-zero fraction gets
    at least one name when there are enough."""
    order = [names[i] for i in torch.randperm(len(names), generator=torch.Generator().manual_seed(seed))]
    wanted = [split for split, f in zip(SPLITS, fractions) if f > 0]
    if len(order) < len(wanted):
        raise PanError(f"{len(order)} photos cannot fill {len(wanted)} splits")
    counts = [round(f * len(order)) for f in fractions if f > 0]
    counts = [max(1, c) for c in counts]
    counts[0] = len(order) - sum(counts[1:])  # train takes the rounding
    if counts[0] < 1:
        raise PanError(f"{len(order)} photos leave none for train with these fractions")
    out, start = {}, 0
    for split, count in zip(wanted, counts):
        out[split] = sorted(order[start: start + count])
        start += count
    return out


def working_size(photo: torch.Tensor, size: int) -> torch.Tensor:
    """Shorter side resized to `size` and centre-cropped square (size 0: unchanged)."""
    if not size:
        return photo
    return center_crop(resize(photo, size, antialias=True), [size, size])


def _generator(seed: int, name: str, draw: int) -> torch.Generator:
    digest = hashlib.sha256(f"{seed}/{name}/{draw}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


def make_dataset(task: str, sources: Sequence[Source], out: Path, fractions: Sequence[float] = (1.0,),
                 seed: int = 0, size: int = 0, draws: int = 1, rain: Rain | None = None,
                 holes: str = "centre", on_written: Callable[[Path], None] = lambda path: None) -> Made:
    """Write A/ (input) + B/ (target) (under train/ val/ test/ when `fractions` has more than one
    part); inpaint also writes masks/ (white = hole). Refuses an `out` that holds files."""
    if task not in MAKERS:
        raise PanError(f"`pan data make` makes {', '.join(MAKERS)} pairs; {task} needs its own data")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise PanError(f"{out} is not empty; choose a new folder for the dataset")
    out.mkdir(parents=True, exist_ok=True)
    (out / OUTPUT_MARK).touch()  # never read back as photos by a later `pan data make --from`
    by_name = {s.name: s for s in sources}
    splits = assign(sorted(by_name), fractions, seed) if len(fractions) > 1 else {"": sorted(by_name)}
    make = MAKERS[task](rain or RainModel(), holes)
    made = Made()
    for split, names in splits.items():
        folder = out / split if split else out
        made.photos[split], made.counts[split] = len(names), 0
        for name in names:
            clean = working_size(by_name[name].load(), size)
            for draw in range(draws):
                stem = f"{name}-{draw}" if draws > 1 else name
                generator = _generator(seed, name, draw)
                made_input, mask = make(clean, generator)
                if mask is not None:
                    write_image(folder / "masks" / f"{stem}.png", mask[None].to(torch.uint8) * 255)
                write_image(folder / "A" / f"{stem}.png", made_input)
                write_image(folder / "B" / f"{stem}.png", clean)
                made.counts[split] += 1
                on_written(folder / "A" / f"{stem}.png")
    return made
