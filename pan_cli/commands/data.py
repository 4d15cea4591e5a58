"""`pan data photos|make|check`: making and checking datasets from the command line."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pan_cli.commands.options import rain_options, settle_rain
from pan_cli.commands.output import emit
from pan_cli.commands.progress import stderr_console
from pan_cli.datasets.check import check_dataset
from pan_cli.datasets.holes import MAKE_HOLES
from pan_cli.datasets.make import BUILTIN, MAKERS, make_dataset, parse_split, photo_sources
from pan_cli.datasets.photos import HELD_OUT_PHOTOS, MORE_PHOTOS, TRAIN_PHOTOS, write_photos
from pan_cli.errors import PanError
from pan_cli.tasks import TASKS, make_config, rain_model

MIN_MAKE_SIZE = 8  # the least training crop (pan train --image-size)


@click.group("data")
def data_group() -> None:
    """Make, check and fetch datasets."""


@data_group.command("photos")
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path))
@click.option("--held-out", is_flag=True, help="The held-out photos (chelsea, coffee) instead of the training ones.")
@click.option("--overwrite", is_flag=True, help="Replace files of the same names in -o.")
def photos_command(out: Path, held_out: bool, overwrite: bool) -> None:
    """Write the photos that ship with scikit-image as PNG files (prints their paths)."""
    for path in write_photos(out, HELD_OUT_PHOTOS if held_out else TRAIN_PHOTOS + MORE_PHOTOS, overwrite):
        emit(str(path))


@data_group.command("make")
@click.argument("task", type=click.Choice(list(MAKERS)))
@click.option("--from", "origin", required=True,
              help=f"Folder of clean photos (searched recursively), or `{BUILTIN}` for scikit-image's photos.")
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path), help="New dataset folder.")
@click.option("--split", "split_text", help="Fractions for train,val,test, e.g. 0.8,0.1,0.1 (split by photo).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--size", type=click.IntRange(min=0, max=8192),
              help="Resize the shorter side and centre-crop square (0: keep). Default: derain 0, inpaint 128, "
                   "sketch2photo 256.")
@click.option("--draws", type=click.IntRange(min=1), default=1, show_default=True,
              help="Inputs per photo (derain: rain draws; inpaint --holes random: masks).")
@click.option("--holes", type=click.Choice(MAKE_HOLES), default="centre", show_default=True,
              help="inpaint: the paper's centre square (56/128 of the shorter side), half (a centre square of "
                   "half the shorter side), random (any of the drawn kinds), or only rectangles, free-form "
                   "strokes or blobs.")
@rain_options
@click.option("-q", "--quiet", is_flag=True)
def make_command(task, origin, out, split_text, seed, size, draws, holes, quiet, **rain) -> None:
    """Write TASK pairs made from clean photos: A/ input, B/ target (and masks/ for inpaint),
    under train/ val/ test/ with --split. Prints the input files written."""
    console = stderr_console(quiet)
    fractions = parse_split(split_text) if split_text else (1.0,)
    settle_rain(rain)
    ranges = {k: v for k, v in rain.items() if v is not None}
    if size is not None and 0 < size < MIN_MAKE_SIZE:
        raise PanError(f"--size {size}: too small to make pairs from; give 0 (keep) or at least {MIN_MAKE_SIZE}")
    if ranges and not TASKS[task].takes_rain:
        raise PanError("--rain options are for derain")
    rain_config = make_config("derain", **ranges)
    made = make_dataset(task, photo_sources(origin, avoid=out), out, fractions, seed,
                        TASKS[task].make_size if size is None else size, draws, rain_model(rain_config), holes,
                        on_written=lambda path: emit(str(path)))
    for split, count in made.counts.items():
        console.print(f"{split or 'pairs'}: {count} pairs from {made.photos[split]} photos", highlight=False)


@data_group.command("check")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--task", type=click.Choice(list(TASKS)), help="Also flag images smaller than TASK's training crop.")
def check_command(folder: Path, task: str | None) -> None:
    """Validate a dataset: its layout, counts, sizes, and every problem found (the report on
    stdout; exit 1 if there is any problem)."""
    min_size = 0
    if task:
        config = make_config(task)
        min_size = 0 if config.load_size >= config.image_size else config.image_size
    report = check_dataset(folder, min_size)
    for line in report.lines():
        emit(line)
    if report.problems:
        click.echo(f"pan: error: {folder}: {len(report.problems)} problems (listed on stdout)", err=True)
        sys.exit(1)
