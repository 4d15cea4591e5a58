"""Streaming, batched inference over image files.

Files are decoded lazily by DataLoader workers, consecutive images of equal size are run as
one batch, and each result is written (atomically) as soon as it is ready: memory stays flat
however many inputs there are. The checkpoint alone decides the architecture.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from pan_cli.datasets.holes import check_mask, read_mask
from pan_cli.datasets.images import is_image_path, write_image
from pan_cli.datasets.labels import read_input
from pan_cli.errors import PanError
from pan_cli.infer.jobs import Job
from pan_cli.infer.predictor import Predictor


class _Decode(Dataset):
    """Job i -> (i, (uint8 image, bool mask or None)), or (i, error message). Images stay uint8
    here: the predictor converts them tile by tile."""

    def __init__(self, jobs: Sequence[Job], channels: int, max_pixels: int | None):
        self.jobs, self.channels, self.max_pixels = jobs, channels, max_pixels

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, index: int) -> tuple[int, object]:
        job = self.jobs[index]
        if not is_image_path(job.source):
            return index, f"{job.source}: not an image file name (known: png, jpg, ...)"
        try:
            image = read_input(job.source, self.channels, self.max_pixels)
            if job.mask is None:
                return index, (image, None)
            mask = read_mask(job.mask, self.max_pixels)
            check_mask(mask, image, str(job.mask), f"its image {job.source}")
        except PanError as exc:
            return index, str(exc)
        return index, (image, mask)


@dataclass
class Summary:
    written: list[Path] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _decoded(loader: Iterable, summary: Summary, on_error: str,
             on_failed: Callable[[str], None]) -> Iterator[tuple[int, object]]:
    """The decoded items; a failure is reported and skipped (or, with on_error="fail", ends it)."""
    for index, item in loader:
        if isinstance(item, str):
            summary.failed.append(item)
            on_failed(item)
            if on_error == "fail":
                return
            continue
        yield index, item


def _batches(decoded: Iterable[tuple[int, tuple]], batch_size: int) -> Iterator[tuple[list[int], list]]:
    """Group consecutive decoded items whose images are of equal size, up to batch_size."""
    indices: list[int] = []
    items: list = []
    for index, item in decoded:
        if items and (item[0].shape != items[0][0].shape or len(items) == batch_size):
            yield indices, items
            indices, items = [], []
        indices.append(index)
        items.append(item)
    if items:
        yield indices, items


def run_inference(
    predictor: Predictor,
    jobs: Sequence[Job],
    batch_size: int = 4,
    workers: int = 1,
    on_error: str = "skip",
    overwrite: bool = False,
    max_pixels: int | None = None,
    on_written: Callable[[Path], None] = lambda path: None,
    on_failed: Callable[[str], None] = lambda message: None,
    summary: Summary | None = None,
) -> Summary:
    """Run every job; call on_written(path) for each output as it lands. Adds to `summary` when
    given (one summary over several calls)."""
    if not overwrite:
        for job in jobs:
            if job.output.exists():
                raise PanError(f"output {job.output} already exists (use --overwrite to replace it)")
    summary, began = summary or Summary(), time.perf_counter()
    loader = DataLoader(
        _Decode(jobs, min(predictor.config.in_channels, 3), max_pixels),
        batch_size=None,
        num_workers=workers,
        prefetch_factor=2 if workers else None,
    )

    def write(index: int, image: torch.Tensor) -> None:
        try:  # without --overwrite an output that appeared meanwhile (another pan infer) is kept
            write_image(jobs[index].output, image, overwrite=overwrite)
        except PanError as exc:
            if on_error == "fail":
                raise
            summary.failed.append(str(exc))
            on_failed(str(exc))
            return
        summary.written.append(jobs[index].output)
        on_written(jobs[index].output)

    def out_of_memory(indices: list[int], shape: torch.Size, exc: RuntimeError) -> bool:
        """Report each image of a batch that ran out of memory (and go on, unless on_error says
        stop); False for any other error."""
        if "memory" not in str(exc) and "alloc" not in str(exc):
            return False
        for index in indices:
            message = (f"{jobs[index].source}: {shape[-1]}x{shape[-2]} needs more memory than is free "
                       "(give a smaller image, or --batch-size 1)")
            summary.failed.append(message)
            on_failed(message)
        return True

    for indices, items in _batches(_decoded(loader, summary, on_error, on_failed), batch_size):
        try:  # the predictor batches what its model allows (an inpainting model: each its own holes)
            results = predictor.predict_many([image for image, _ in items], [mask for _, mask in items])
        except RuntimeError as exc:
            if not out_of_memory(indices, items[0][0].shape, exc):
                raise
            if on_error == "fail":
                break
            continue
        for index, image in zip(indices, results):
            write(index, image)
    summary.seconds += time.perf_counter() - began
    return summary
