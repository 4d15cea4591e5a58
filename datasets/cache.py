"""Decode once: a data set's images, decoded, in one memory-mapped uint8 file.

Decoding a photo (a JPEG or PNG of a few megapixels) costs far more than cutting a crop from
it, and training cuts thousands of crops from each photo: on a GPU the loader, not the model,
set the pace. The first run over a set of files decodes every item once into
ROOT/decoded-KEY/ (images.u8, every item's arrays back to back, and index.json, where each one
starts and its shape); every later crop, and every later run over the same files, reads the
decoded pixels from there. KEY is a digest of each file's path, size and modification time and
of how the items are read, so a changed file gets a new cache. A folder that would not fit the
free disk is never written: the run then decodes from the files at every crop, as before, and
says so. The cache is safe to delete at any time (a run that finds it gone builds it again).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

VERSION = 1
RESERVE = 1 << 30  # free disk a cache never takes: the run's checkpoints need room too


def default_root() -> Path:
    """$PAN_CACHE, else $XDG_CACHE_HOME/pan, else ~/.cache/pan."""
    if os.environ.get("PAN_CACHE"):
        return Path(os.environ["PAN_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pan"


def cache_key(files: Sequence[Path], how: str) -> str:
    """A digest of the files (resolved path, size, mtime) and of `how` they are decoded."""
    digest = hashlib.sha256(f"pan-decoded/{VERSION}/{how}\n".encode())
    for path in files:
        stat = os.stat(path)
        digest.update(f"{os.path.realpath(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


class DecodedImages:
    """Item i -> the tuple of uint8 tensors it was decoded to, read from the memory map.

    Pickles as its folder only (DataLoader workers started by spawn reopen the map)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        index = json.loads((self.folder / "index.json").read_text())
        self.items: list[list[tuple[int, list[int]]]] = index["items"]
        self.nbytes: int = index["nbytes"]
        if os.path.getsize(self.folder / "images.u8") != self.nbytes:
            raise ValueError(f"{self.folder}: images.u8 is not the size its index says")
        self._map: np.memmap | None = None

    def __len__(self) -> int:
        return len(self.items)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_map": None}

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        if self._map is None:
            self._map = np.memmap(self.folder / "images.u8", dtype=np.uint8, mode="r")
        return tuple(torch.from_numpy(np.array(self._map[start: start + int(np.prod(shape))]).reshape(shape))
                     for start, shape in self.items[index])


def open_or_build(root: Path, key: str, count: int, decode: Callable[[int], tuple[torch.Tensor, ...]],
                  estimate: Callable[[], int], note: Callable[[str], None],
                  warn: Callable[[str], None]) -> DecodedImages | None:
    """The cache ROOT/decoded-KEY, built by decoding items 0..count-1 if it is not there yet;
    None (the caller decodes from the files, and `warn` says why) when estimate() bytes (asked
    only when there is no cache yet: it reads every file's header) would not fit the disk.
    `note` hears what was built or found."""
    folder = Path(root) / f"decoded-{key}"
    if (folder / "index.json").exists():
        try:
            cache = DecodedImages(folder)
            if len(cache) == count:
                note(f"decoded images from the cache {folder}")
                return cache
        except (OSError, ValueError, KeyError) as exc:
            warn(f"warning: the cache {folder} is damaged ({exc}): decoding again")
        shutil.rmtree(folder, ignore_errors=True)
    try:
        Path(root).mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(root).free
    except OSError as exc:
        warn(f"warning: no cache ({root}: {exc.strerror or exc}): decoding each image from its file at every crop")
        return None
    needed = estimate()
    if needed > free - RESERVE:
        warn(f"warning: the decoded images would take {needed / 2**30:.1f} GiB, more than {root} can spare "
             f"({free / 2**30:.1f} GiB free): decoding each image from its file at every crop (slower; "
             "give --cache a folder with room)")
        return None
    building = Path(root) / f".building-{key}-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir()
    try:
        items, offset = [], 0
        with open(building / "images.u8", "wb") as out:
            for i in range(count):
                arrays = []
                for tensor in decode(i):
                    data = tensor.contiguous().numpy()
                    out.write(data.tobytes())
                    arrays.append((offset, list(data.shape)))
                    offset += data.size
                items.append(arrays)
            out.flush()
            os.fsync(out.fileno())
        (building / "index.json").write_text(json.dumps({"version": VERSION, "nbytes": offset, "items": items}))
        try:
            os.rename(building, folder)  # another process may have finished first: its copy is the same
        except OSError:
            shutil.rmtree(building, ignore_errors=True)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    note(f"decoded {count} items once into {folder} ({offset / 2**20:.0f} MiB; later runs on the same "
         "files reuse it; delete the folder to free the space)")
    return DecodedImages(folder)


class DecodesOnce:
    """A data set whose items are tuples of decoded uint8 images: `decoded(i)` reads them from
    the cache once use_cache() has built or found it, else from the files."""

    cache: DecodedImages | None = None

    def decode(self, index: int) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def source_files(self) -> list[Path]:
        raise NotImplementedError

    def decoded_bytes(self) -> int:
        """About how many bytes the decoded items take (from the files' headers)."""
        raise NotImplementedError

    def decoding(self) -> str:
        """How items are decoded (channels, direction): part of the cache key."""
        raise NotImplementedError

    def decoded(self, index: int) -> tuple[torch.Tensor, ...]:
        return self.cache[index] if self.cache is not None else self.decode(index)

    def use_cache(self, root: Path, note: Callable[[str], None], warn: Callable[[str], None],
                  build: bool = True) -> None:
        """Decode every item into ROOT (or find it there) unless it would not fit; with `build`
        False (a torchrun rank whose main process built it) only open what is there."""
        key = cache_key(self.source_files(), f"{type(self).__name__}/{self.decoding()}")
        if build:
            self.cache = open_or_build(root, key, len(self), self.decode, self.decoded_bytes, note, warn)
        elif (Path(root) / f"decoded-{key}" / "index.json").exists():
            self.cache = DecodedImages(Path(root) / f"decoded-{key}")
