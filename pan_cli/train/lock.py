"""An exclusive lock on a run directory for the life of one `pan train`.

Two trainers on one run directory would interleave metrics.jsonl and overwrite each other's
checkpoints. The lock is an advisory `flock` on RUN_DIR/.lock: the kernel releases it when
the process ends in any way (SIGKILL included), so a lock left by a killed run is never
stale; the file holds the holder's PID only to name it in the refusal.
"""

from __future__ import annotations

import errno
import os
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pan_cli.errors import PanError

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there are not guarded
    fcntl = None

LOCK_NAME = ".lock"


@contextmanager
def run_dir_lock(run_dir: Path) -> Iterator[None]:
    """Hold RUN_DIR/.lock exclusively, or raise PanError naming the process that holds it."""
    if fcntl is None:
        yield
        return
    path = Path(run_dir) / LOCK_NAME
    try:  # never through a link: truncating the lock would truncate whatever it points at
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENXIO):
            raise
        fd = None
    if fd is None or not stat.S_ISREG(os.fstat(fd).st_mode):
        if fd is not None:
            os.close(fd)
        raise PanError(f"{path} is not a regular file (a link, pipe or device); pan train will not truncate it: "
                       "remove it, or give another --run-dir")
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise PanError(f"{run_dir} is in use by another pan train (PID {holder}); wait for it to end, "
                           f"or give another --run-dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
