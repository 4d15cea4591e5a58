"""The one exception type that reaches the user as a single line instead of a traceback."""

from __future__ import annotations


class PanError(Exception):
    """A user error (bad path, unreadable image, wrong checkpoint): shown as one line.

    DataLoader workers re-raise an exception as ``type(exc)(text_with_traceback)``; such a
    message is cut back to the original line so the user still sees one clear line.
    """

    def __init__(self, message: str) -> None:
        if message.startswith("Caught ") and "Original Traceback" in message:
            message = message.rstrip().splitlines()[-1].split(": ", 1)[-1]
        super().__init__(message)


class RunFailure(PanError):
    """A run that failed for a reason outside its input (a full disk, a busy port, a loss that
    went non-finite): exit 1, where a refused input exits 2."""
