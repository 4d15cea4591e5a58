"""Data on stdout: every line flushed at once, so a full or failing stdout is reported as such
(not as a nameless "No space left on device" at exit, nor as if an output file had failed)."""

from __future__ import annotations

import sys

import click

from pan_cli.errors import RunFailure


def emit(text: str, end: str = "\n") -> None:
    """Write `text` + `end` to stdout now; a write error (other than a closed pipe, which ends
    pan quietly) is a PanError that says it was stdout."""
    try:
        click.echo(text + end, nl=False)
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise RunFailure(f"cannot write to stdout: {exc.strerror or exc}") from None
