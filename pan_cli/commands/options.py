"""Command-line options shared by more than one command."""

from __future__ import annotations

import math

import click
import torch

from pan_cli.config import MAX_SIDE, RAIN_PRESETS, RunConfig


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


class Finite(click.FloatRange):
    """click.FloatRange that also refuses nan and +-inf (which pass every range test)."""

    name = "finite number"

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def finite_floats(text: str, count: int | None, example: str) -> tuple[float, ...]:
    """Comma-separated finite numbers, `count` of them when given; click.BadParameter otherwise."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise click.BadParameter(f"give comma-separated numbers, e.g. {example}") from None
    if count is not None and len(values) != count:
        raise click.BadParameter(f"needs {count} numbers, e.g. {example}; got {len(values)}")
    if not all(math.isfinite(v) for v in values):
        raise click.BadParameter(f"{text!r}: every number must be finite")
    return values


def _range(ctx, param, value: str | None):
    if value is None:
        return None
    return finite_floats(value, 2, "0.001,0.012")  # LOW <= HIGH is the config's to check


RANGE_KEYS = ("rain_density", "rain_length", "rain_angle", "rain_intensity")


def settle_rain(values: dict) -> None:
    """Range flags shape the light streak model only: given without --rain they pick `light`
    (so `--rain-density 0,0` means no streaks, as it reads); beside heavy or photoshop rain
    they would be silently ignored, so that is refused."""
    given = [key for key in RANGE_KEYS if values.get(key) is not None]
    if given and values.get("rain") is None:
        values["rain"] = "light"
    elif given and values["rain"] not in ("light", "mixed"):
        flag = "--" + given[0].replace("_", "-")
        raise click.UsageError(f"{flag} shapes light rain only; it has no effect on --rain {values['rain']}")


def rain_options(command):
    """The rain synthesizer's ranges, for `pan train --synthesize` and `pan data make derain`."""
    defaults = RunConfig.__dataclass_fields__
    for name, meaning in reversed((("density", "fraction of pixels starting a streak"),
                                   ("length", "streak length in pixels"),
                                   ("angle", "degrees from vertical"),
                                   ("intensity", "brightness a streak adds, 0-1"))):
        low, high = defaults[f"rain_{name}"].default
        command = click.option(f"--rain-{name}", callback=_range, metavar="LOW,HIGH",
                               help=f"Light rain: {meaning} (default {low:g},{high:g}).")(command)
    return click.option("--rain", type=click.Choice(RAIN_PRESETS),
                        help="Rain model: light streaks (shaped by --rain-*), heavy (Yang et al.: streak layers "
                             "in several directions plus a veil), photoshop (Fu et al.), or mixed, each draw "
                             f"picking one (default {RunConfig.rain}).")(command)


class TileSize(click.ParamType):
    """--tile: "auto" (None), 0 (whole images) or a side in pixels."""

    name = "auto|N"

    def convert(self, value, param, ctx):
        if value is None or value == "auto":
            return None
        try:
            side = int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not auto or a whole number of pixels", param, ctx)
        if not 0 <= side <= MAX_SIDE:
            self.fail(f"{side} is not in 0..{MAX_SIDE} (0: whole images)", param, ctx)
        return side


def tile_options(command):
    """--tile and --tile-overlap, for every command that runs a model over images."""
    command = click.option("--tile-overlap", type=click.IntRange(0, MAX_SIDE),
                           help="Pixels shared by neighbouring tiles. Default: enough that tiled output "
                                "equals whole-image output (twice the model's reach, plus a blend).")(command)
    return click.option("--tile", type=TileSize(), default="auto", show_default=True,
                        help="Run large images in N x N tiles, blended without seams (bounded memory). "
                             "auto: bands of rows for models that stream, else tiles sized from the memory "
                             "free on the device; 0: whole images.")(command)
