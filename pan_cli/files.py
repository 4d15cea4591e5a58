"""Writing files so that an interruption never leaves a half-written one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

from pan_cli.errors import PanError

_UMASK = os.umask(0)  # read once (it can only be read by setting it)
os.umask(_UMASK)


def _first_file(folder: Path) -> Path:
    """The first ancestor of `folder` (itself included) that exists and is not a folder."""
    for parent in [folder, *folder.parents]:
        if parent.exists():
            return parent if not parent.is_dir() else folder
    return folder


def atomic_write(path: Path, write: Callable) -> None:
    """Call write(file) on a temporary file beside `path`, then rename it over `path`.

    An interrupted write leaves `path` as it was (absent or the previous complete file)."""
    path = Path(path)
    if path.is_dir():
        raise PanError(f"{path} is a folder; give a file name to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except FileExistsError:
        raise PanError(f"cannot write {path}: {_first_file(path.parent)} is a file, not a folder") from None
    except OSError as exc:  # name the file asked for, not the temporary one beside it
        raise PanError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
