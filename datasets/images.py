"""Image files in and out: the one module that touches image formats.

Pillow decodes (torchvision.io's decoders are deprecated from 0.29 and reject 16-bit PNG);
grey, palette, RGBA and 16-bit files become the 8-bit channels the network takes. Writes are
atomic: a temporary file in the same folder, then a rename.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.utils import make_grid

from pan_cli.errors import PanError
from pan_cli.files import atomic_write

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
WRITE_FORMATS = {"png": "PNG", "jpg": "JPEG"}


class ImageReadError(PanError):
    """An image file that cannot be used, with its path and the reason."""


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def list_files(folder: Path, skip_dir: Callable[[Path], bool] | None = None) -> list[Path]:
    """Every file below `folder`, recursively, following symlinked folders (each real folder
    once, so a link cycle ends) and not entering folders `skip_dir` rejects, in a stable order."""
    found, seen = [], set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if skip_dir is None or not skip_dir(Path(root) / d))
        found += [Path(root) / name for name in files if os.path.isfile(os.path.join(root, name))]
    return sorted(found)


def list_images(folder: Path, on_skipped: Callable[[str], None] | None = None,
                skip_dir: Callable[[Path], bool] | None = None) -> list[Path]:
    """Every image below `folder` (see list_files); `on_skipped` hears, once per kind, what
    other files were passed over and why."""
    images, others = [], {}
    for path in list_files(folder, skip_dir):
        if is_image_path(path):
            images.append(path)
        elif not path.name.startswith("."):
            others.setdefault(path.suffix.lower() or "(no extension)", []).append(path)
    if on_skipped is not None:
        for suffix, paths in sorted(others.items()):
            kind = "GIF (animation) is not read" if suffix == ".gif" else "not an image format pan reads"
            on_skipped(f"skipping {len(paths)} {suffix} file{'s' if len(paths) > 1 else ''} in {folder} "
                       f"({kind}), e.g. {paths[0]}")
    return images


def _to_uint8(image: Image.Image) -> np.ndarray:
    """16-bit and 32-bit integer modes are scaled (Pillow's own convert would clip them)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        return np.clip(np.rint(array * (255.0 / top)), 0, 255).astype(np.uint8)
    if image.mode == "F":
        return np.clip(np.rint(np.asarray(image) * 255.0), 0, 255).astype(np.uint8)
    return np.asarray(image.convert("L"))


def _ids(image: Image.Image, name: str) -> np.ndarray:
    """Class ids as stored, 8- or 16-bit: scaling 16-bit ids to 8 bits would make them all 0."""
    if image.mode not in ("L", "P", "I;16", "I;16B", "I;16L", "I"):
        raise ImageReadError(f"{name}: a label id map must be one channel of whole numbers, not mode {image.mode}")
    array = np.asarray(image, dtype=np.int64)
    if array.size and (array.min() < 0 or array.max() > 255):
        raise ImageReadError(f"{name}: class id {int(array.max())} is over 255")
    return array.astype(np.uint8)


def read_image(path: Path, channels: int = 3, max_pixels: int | None = None, ids: bool = False) -> torch.Tensor:
    """Read `path` as a uint8 CHW tensor with `channels` (1, 2: grey and alpha, or 3) channels.
    `ids`: the values are class ids, kept as they are (a 16-bit file is not scaled to 8 bits).

    Raises ImageReadError naming the file for a missing, empty, non-image, truncated or
    too-large file."""
    path = Path(path)
    try:
        if path.is_dir():
            raise ImageReadError(f"{path}: a folder, not an image file")
        if not path.exists():
            raise ImageReadError(f"{path}: no such file")
        if not path.is_file():
            raise ImageReadError(f"{path}: not a regular file (a pipe or device); pan reads image files")
        if path.stat().st_size == 0:
            raise ImageReadError(f"{path}: empty file (0 bytes)")
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    return decode_image(path, str(path), channels, max_pixels, ids)


def decode_image(source: Path | BinaryIO, name: str, channels: int = 3,
                 max_pixels: int | None = None, ids: bool = False) -> torch.Tensor:
    """Decode a file or an in-memory upload (`pan serve`) as read_image does; errors name `name`."""
    if channels not in (1, 2, 3):
        raise ValueError(f"channels must be 1, 2 or 3, not {channels}")
    try:
        with warnings.catch_warnings():  # entered before open(): Pillow warns while opening
            # with our own limit the caller has decided what is too large; without one, Pillow's
            # warning threshold refuses the file
            warnings.simplefilter("ignore" if max_pixels is not None else "error", Image.DecompressionBombWarning)
            image = Image.open(source)
        with image:
            if max_pixels is not None and image.width * image.height > max_pixels:
                raise ImageReadError(
                    f"{name}: {image.width}x{image.height} is over the limit of {max_pixels} pixels"
                )
            image.load()
            image = ImageOps.exif_transpose(image)
            high_bit = image.mode in ("I;16", "I;16B", "I;16L", "I", "F")
            if ids:
                array = _ids(image, name)[..., None]
            elif channels == 2:  # grey and alpha (a mask painted on a transparent layer)
                grey = _to_uint8(image) if high_bit else np.asarray(image.convert("L"))
                alpha = np.asarray(image.getchannel("A")) if "A" in image.getbands() else np.full_like(grey, 255)
                array = np.stack([grey, alpha], axis=2)
            elif channels == 1:
                array = _to_uint8(image)[..., None]
            elif channels == 3 and high_bit:
                array = np.repeat(_to_uint8(image)[..., None], 3, axis=2)
            else:
                array = np.asarray(image.convert("RGB"))  # palette, grey, RGBA (alpha dropped)
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError(f"{name}: no such file") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{name}: not an image file (or a format Pillow cannot read)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageReadError(f"{name}: too many pixels (a decompression bomb?)") from None
    except Exception as exc:  # noqa: BLE001 - hostile bytes make decoders raise zlib, struct, index... errors
        raise ImageReadError(f"{name}: cannot decode image ({type(exc).__name__}: {exc})") from None
    return torch.from_numpy(np.array(array, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def frame_count(path: Path) -> int:
    """Pages (TIFF) or frames (GIF, animated PNG or WebP), whatever the file's name says, from its
    headers; 1 when unreadable or not a regular file (opening a FIFO would wait for a writer)."""
    if not Path(path).is_file():
        return 1
    try:
        with Image.open(path) as image:
            return int(getattr(image, "n_frames", 1))
    except Exception:  # noqa: BLE001 - the decoder reports a bad file properly later
        return 1


def several_frames(paths: Iterable[Path]) -> str | None:
    """A note for files among `paths` that hold several pages or frames (only the first is
    read), or None: a 3-page TIFF trained on as one image should not pass silently."""
    found = [(path, pages) for path in paths if (pages := frame_count(path)) > 1]
    if not found:
        return None
    path, pages = found[0]
    more = f" and {len(found) - 1} more such files" if len(found) > 1 else ""
    return f"{path} holds {pages} pages or frames{more}; only the first of each is read"


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the file's header, without decoding the pixels."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF orientations that swap W and H
                width, height = height, width
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not an image file (or a format Pillow cannot read)") from None
    except Exception as exc:  # noqa: BLE001 - any parser failure on untrusted bytes
        raise ImageReadError(f"{path}: cannot read image header ({type(exc).__name__}: {exc})") from None
    return height, width


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float CHW -> uint8 CHW, rounded as pix2pix-style tools save their outputs."""
    return ((image.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def to_float(image: torch.Tensor) -> torch.Tensor:
    """uint8 CHW -> float32 CHW in [-1, 1]."""
    return image.float().div(127.5).sub(1.0)


def write_image(path: Path, image: torch.Tensor, fmt: str | None = None, overwrite: bool = True) -> None:
    """Write a uint8 CHW tensor (1 or 3 channels) atomically; format from `fmt` or the suffix.
    overwrite=False: a PanError if `path` exists, even if another process wrote it meanwhile."""
    path = Path(path)
    fmt = fmt or path.suffix.lower().lstrip(".").replace("jpeg", "jpg")
    if fmt not in WRITE_FORMATS:
        raise PanError(f"{path}: cannot write format {fmt!r}; use one of {sorted(WRITE_FORMATS)}")
    array = image.permute(1, 2, 0).cpu().numpy()
    pil = Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)
    options = {"quality": 95} if fmt == "jpg" else {}
    atomic_write(path, lambda handle: pil.save(handle, format=WRITE_FORMATS[fmt], **options), overwrite)


def write_grid(path: Path, tiles: Sequence[torch.Tensor], columns: int) -> torch.Tensor:
    """uint8 CHW tiles (cropped to the smallest one's size; grey tiles shown as RGB) in rows of
    `columns`, with white gaps, written atomically; returns the grid."""
    height, width = min(t.shape[1] for t in tiles), min(t.shape[2] for t in tiles)
    tiles = [t[:3, :height, :width].expand(3, -1, -1).float() / 255 for t in tiles]
    grid = (make_grid(tiles, nrow=columns, padding=4, pad_value=1.0) * 255).round().to(torch.uint8)
    write_image(path, grid)
    return grid
