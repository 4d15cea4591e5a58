"""Progress on stderr, only on a terminal: stdout stays data-only in pipes."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


def stderr_console(quiet: bool = False) -> Console:
    return Console(stderr=True, quiet=quiet, soft_wrap=True)  # one message, one line, even in logs


def progress_bar(console: Console) -> Progress:
    """A transient bar that never touches stdout and is off when stderr is not a terminal
    (rich honours NO_COLOR and TTY_COMPATIBLE)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=True,
        redirect_stdout=False,
        redirect_stderr=False,
        disable=console.quiet or not console.is_terminal,
    )
