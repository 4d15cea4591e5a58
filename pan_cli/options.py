"""Command-line options shared by more than one command."""

from __future__ import annotations

import click

from pan_cli.config import RunConfig


def _range(ctx, param, value: str | None):
    if value is None:
        return None
    try:
        low, high = (float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter("give LOW,HIGH, e.g. 0.001,0.012") from None
    if low > high:
        raise click.BadParameter(f"LOW {low:g} is above HIGH {high:g}")
    return low, high


def rain_options(command):
    """The rain synthesizer's ranges, for `pan train --synthesize` and `pan data make derain`."""
    defaults = RunConfig.__dataclass_fields__
    for name, meaning in reversed((("density", "fraction of pixels starting a streak"),
                                   ("length", "streak length in pixels"),
                                   ("angle", "degrees from vertical"),
                                   ("intensity", "brightness a streak adds, 0-1"))):
        low, high = defaults[f"rain_{name}"].default
        command = click.option(f"--rain-{name}", callback=_range, metavar="LOW,HIGH",
                               help=f"Rain: {meaning} (default {low:g},{high:g}).")(command)
    return command
