"""Writing files so that an interruption never leaves a half-written one."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Callable

from pan_cli.errors import PanError, RunFailure

# Left in every folder pan writes outputs or made datasets to: a folder search for inputs or
# photos never enters one (outputs are never taken for inputs).
OUTPUT_MARK = ".pan-output"

_UMASK = os.umask(0)  # read once (it can only be read by setting it)
os.umask(_UMASK)


def _first_file(folder: Path) -> Path:
    """The first ancestor of `folder` (itself included) that exists and is not a folder."""
    for parent in [folder, *folder.parents]:
        if parent.exists():
            return parent if not parent.is_dir() else folder
    return folder


def check_replaceable(path: Path) -> bool:
    """Whether `path` exists; a PanError when it is something a file must never replace: a
    folder, a device, a FIFO or a socket (a rename would put a regular file in its place). A
    symbolic link is replaced as a link: what it points to is never touched."""
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):  # (a file where a folder should be: said on writing)
        return False
    except OSError as exc:
        raise RunFailure(f"cannot write {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        raise PanError(f"{path} is a folder; give a file name to write")
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        raise PanError(f"{path} is not a regular file (a device, pipe or socket); pan never writes over one")
    return True


def atomic_write(path: Path, write: Callable, overwrite: bool = True) -> None:
    """Call write(file) on a temporary file beside `path`, then rename it over `path`.

    An interrupted write leaves `path` as it was (absent or the previous complete file). With
    overwrite=False the file is linked into place only if nothing is there by then (two writers
    racing for one name: the second gets a PanError, never the first's file replaced)."""
    path = Path(path)
    if check_replaceable(path) and not overwrite:
        raise PanError(f"{path} exists; give --overwrite to replace it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # a short fixed-size name: a 255-byte file name must still have a temporary beside it
        fd, tmp = tempfile.mkstemp(prefix=".pan-", suffix=".tmp", dir=path.parent)
    except FileExistsError:
        raise PanError(f"cannot write {path}: {_first_file(path.parent)} is a file, not a folder") from None
    except OSError as exc:  # name the file asked for, not the temporary one beside it
        raise RunFailure(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            check_replaceable(path)  # again: something may have been put there meanwhile
            os.replace(tmp, path)
        else:
            _link_new(Path(tmp), path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _link_new(tmp: Path, path: Path) -> None:
    """Give `tmp`'s file the name `path` only if that name is free (atomic: a hard link fails
    on an existing name); the caller removes `tmp`."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise PanError(f"{path} exists (written by someone else meanwhile?); give --overwrite to replace it") from None
    except OSError:  # a file system without hard links: check, then rename (a race left open)
        if check_replaceable(path):
            raise PanError(f"{path} exists; give --overwrite to replace it") from None
        os.replace(tmp, path)
