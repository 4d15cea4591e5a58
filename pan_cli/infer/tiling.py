"""Running a fully convolutional T on an image of any size in bounded memory.

The (padded) image is cut into overlapping square tiles, read from the source one batch of
tiles at a time, and the outputs are blended with a window that is zero within `margin`
pixels of a tile's inner edge and ramps linearly to one across the rest of the overlap.
With the margin at the generator's reach (Geometry.reach), every pixel that gets any weight
was computed from exactly the context the whole-image pass would have seen, so the result
equals the whole-image output up to float rounding; the ramp keeps any residual difference
(a margin chosen smaller than the reach) from showing as a seam. Tiles start at multiples of
the generator's multiple so strided layers see the same grid as on the whole image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

BLEND = 16  # px of linear ramp between neighbouring tiles beyond the two margins
TILE_BUDGET = 768 * 2**20  # bytes of activations one tile batch may use (memory.py traces them)

Source = Callable[[int, int, int, int], torch.Tensor]  # (top, bottom, left, right) -> float NCHW


@dataclass(frozen=True)
class TilePlan:
    size: int  # tile side (a multiple of the generator's multiple)
    overlap: int  # pixels shared by neighbouring tiles
    margin: int  # pixels at a tile's inner edge whose output is not used
    batch: int = 1  # tiles per forward pass

    def __post_init__(self) -> None:
        if self.size <= self.overlap:
            raise ValueError(f"a tile of {self.size} px cannot overlap its neighbour by {self.overlap} px")


def default_overlap(reach: int, multiple: int) -> int:
    """Twice the reach plus the blend ramp, rounded up to the multiple (tiles stay on the grid)."""
    return math.ceil((2 * reach + BLEND) / multiple) * multiple


def smallest_tile(overlap: int, multiple: int) -> int:
    """The least tile side: tiles step by size - overlap, so a tile of twice the overlap computes
    each pixel at most (size / step)^2 = 4 times; smaller ones would grow without bound (a tile 1
    px over the overlap keeps 1 px of every tile)."""
    return max(2 * overlap, overlap + multiple, multiple)


def tile_budget(free: int) -> float:
    """Bytes of activations one pass over part of an image may use: TILE_BUDGET or half the free memory."""
    return min(TILE_BUDGET, free / 2)


def plan(reach: int, multiple: int, bytes_per_pixel: float, free: int, tile: int | None = None,
         overlap: int | None = None) -> TilePlan:
    """The tiles for a generator: `tile` px (None: the largest square whose activations fit
    TILE_BUDGET or half the free memory), `overlap` px (None: default_overlap); the margin is
    the reach, or less when a given overlap leaves no room for it and the ramp. Smaller tiles
    than the budget allows run several to a batch (up to 8)."""
    overlap = default_overlap(reach, multiple) if overlap is None else math.ceil(overlap / multiple) * multiple
    budget = tile_budget(free)
    smallest = smallest_tile(overlap, multiple)
    if tile is None:
        tile = max(int(math.sqrt(budget / bytes_per_pixel)) // multiple * multiple, smallest)
    elif tile < smallest:
        raise ValueError(f"--tile {tile} is too small: tiles overlap by {overlap} px here, so a tile under {smallest} "
                         "px would compute each pixel more than 4 times (give at least that, --tile 0 for whole "
                         "images, or a smaller --tile-overlap)")
    else:
        tile = tile // multiple * multiple
    margin = max(0, min(reach, (overlap - BLEND // 2) // 2))
    batch = max(1, min(8, int(budget // (tile**2 * bytes_per_pixel))))
    return TilePlan(tile, overlap, margin, batch)


def starts(length: int, size: int, overlap: int) -> list[int]:
    """Tile starts along one axis: a step of size - overlap, the last tile flush with the end."""
    if length <= size:
        return [0]
    step = size - overlap
    count = math.ceil((length - size) / step) + 1
    return sorted({*(i * step for i in range(count - 1)), length - size})


def _ramp(size: int, first: bool, last: bool, plan: TilePlan) -> torch.Tensor:
    """One axis of a tile's window: 1 inside, 0 within the margin of an inner edge, a linear
    ramp between (neighbouring ramps sum to one); an image edge keeps full weight."""
    distance = torch.arange(size, dtype=torch.float32)
    blend = plan.overlap - 2 * plan.margin
    weight = torch.ones(size)
    if not first:
        weight = torch.minimum(weight, ((distance - plan.margin + 1) / (blend + 1)).clamp(0, 1))
    if not last:
        weight = torch.minimum(weight, ((size - distance - plan.margin) / (blend + 1)).clamp(0, 1))
    return weight


def _tiles(height: int, width: int, plan: TilePlan) -> Iterator[tuple[int, int, int, int, torch.Tensor]]:
    rows, cols = starts(height, plan.size, plan.overlap), starts(width, plan.size, plan.overlap)
    tile_h, tile_w = min(plan.size, height), min(plan.size, width)
    for top in rows:
        row_weight = _ramp(tile_h, top == rows[0], top == rows[-1], plan)
        for left in cols:
            col_weight = _ramp(tile_w, left == cols[0], left == cols[-1], plan)
            yield top, top + tile_h, left, left + tile_w, row_weight[:, None] * col_weight[None, :]


def run_tiled(forward: Callable[[torch.Tensor], torch.Tensor], source: Source, shape: tuple[int, int, int],
              out_channels: int, plan: TilePlan) -> torch.Tensor:
    """forward() over the tiles of a (count, height, width) image read through `source`,
    blended: float (count, out_channels, height, width) on the CPU. Peak memory is one batch
    of tiles plus the output and its weight sum, whatever the image size."""
    count, height, width = shape
    out = torch.zeros(count, out_channels, height, width)
    total = torch.zeros(height, width)
    tiles = list(_tiles(height, width, plan))
    for first in range(0, len(tiles), plan.batch):
        chunk = tiles[first: first + plan.batch]
        results = forward(torch.cat([source(*box) for *box, _ in chunk])).float().cpu()
        for i, (top, bottom, left, right, weight) in enumerate(chunk):
            out[:, :, top:bottom, left:right].addcmul_(results[i * count: (i + 1) * count], weight)
            total[top:bottom, left:right] += weight
    return out.div_(total)
