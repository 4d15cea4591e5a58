"""Finding image pairs on disk, whatever layout a user's data folder has.

Understood layouts, each either directly in the data folder or under train/ val/ test/:
- folders: A/ + B/ (or input/ + target/) holding files with matching names (any suffix),
  matched by relative path, so nested subfolders work;
- aligned: pix2pix files with A and B side by side in one image;
- cityscapes: Cityscapes as it is downloaded, leftImg8bit/SPLIT/CITY/*_leftImg8bit.png photos
  (A) and gtFine/SPLIT/CITY/*_gtFine_labelIds.png class ids (B), the splits inside both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pan_cli.datasets.images import is_image_path, list_images
from pan_cli.errors import PanError

FOLDER_PAIRS = (("A", "B"), ("input", "target"))
CITYSCAPES = {"leftImg8bit": "_leftImg8bit", "gtFine": "_gtFine_labelIds"}  # folder: file-name suffix
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Pair:
    a: Path
    b: Path | None  # None: `a` holds A|B side by side
    name: str  # relative name without suffix, for reports and outputs


@dataclass(frozen=True)
class Layout:
    root: Path
    kind: str  # "folders", "aligned" or "cityscapes"
    splits: tuple[str, ...]  # () when the pairs sit directly in root
    folders: tuple[str, str] | None = None

    def describe(self) -> str:
        if self.kind == "folders":
            what = f"paired folders {self.folders[0]}/ + {self.folders[1]}/"
        elif self.kind == "cityscapes":
            what = "Cityscapes leftImg8bit/ photos (A) + gtFine/ *_labelIds (B)"
        else:
            what = "side-by-side A|B images"
        where = f" in splits {', '.join(self.splits)}" if self.splits else ""
        return f"{self.root}: {what}{where}"

    def split_dir(self, split: str) -> Path:
        if split not in self.splits and (self.splits or self.kind == "cityscapes"):
            raise PanError(f"{self.root} has no {split}/ split (it has {', '.join(self.splits) or 'none'})")
        return self.root / split if self.splits and self.kind != "cityscapes" else self.root

    def pair_dirs(self, split: str) -> tuple[Path, Path]:
        """The A and B folders of one split (folder and Cityscapes layouts)."""
        if self.kind == "cityscapes":
            return tuple(self.root / name / split for name in CITYSCAPES)
        folder = self.split_dir(split)
        return folder / self.folders[0], folder / self.folders[1]


def _kind_of(folder: Path) -> tuple[str, tuple[str, str] | None] | None:
    for a, b in FOLDER_PAIRS:
        if (folder / a).is_dir() and (folder / b).is_dir():
            return "folders", (a, b)
    if any(p.is_file() and is_image_path(p) for p in folder.iterdir()):
        return "aligned", None
    return None


def detect_layout(root: Path) -> Layout:
    root = Path(root)
    if not root.exists():
        raise PanError(f"data folder {root} does not exist")
    if not root.is_dir():
        raise PanError(f"{root} is not a folder")
    if all((root / name).is_dir() for name in CITYSCAPES):
        splits = tuple(s for s in SPLITS if (root / "leftImg8bit" / s).is_dir())
        return Layout(root, "cityscapes", splits, tuple(CITYSCAPES))
    splits = tuple(s for s in SPLITS if (root / s).is_dir())
    found = _kind_of(root / splits[0]) if splits else _kind_of(root)
    if found is None:
        where = root / splits[0] if splits else root
        raise PanError(
            f"no image pairs in {where}: expected A/ and B/ (or input/ and target/) folders, "
            "side-by-side A|B images, or train/ val/ test/ splits of either"
        )
    kind, folders = found
    return Layout(root, kind, splits, folders)


def images_by_name(folder: Path, ending: str = "") -> dict[str, Path]:
    """Every image below `folder` by its relative path without suffix ('sub/x' for sub/x.png).
    With `ending`, only files whose stem ends with it, and the name is without it."""
    if not folder.is_dir():
        raise PanError(f"{folder} is not a folder")
    out: dict[str, Path] = {}
    for path in list_images(folder):
        name = path.relative_to(folder).with_suffix("").as_posix()
        if not name.endswith(ending):
            continue
        name = name[: len(name) - len(ending)]
        if name in out:
            raise PanError(f"two files in {folder} share the name {name!r}: {out[name].name} and {path.name}")
        out[name] = path
    return out


def find_pairs(layout: Layout, split: str = "train") -> list[Pair]:
    """The pairs of one split, in a stable order. Raises on an empty split or a file with no
    partner, naming the file."""
    folder = layout.split_dir(split)
    if layout.kind == "aligned":
        pairs = [Pair(p, None, p.stem) for p in sorted(folder.iterdir())
                 if p.is_file() and is_image_path(p)]
    else:
        a_files, b_files = pair_files(layout, split)
        for have, lack, expected in missing_partners(layout, split, a_files, b_files):
            raise PanError(f"{have} has no partner in {lack}/ (expected a file named {expected})")
        pairs = [Pair(a_files[n], b_files[n], n) for n in sorted(a_files)]
    if not pairs:
        raise PanError(f"no images in {folder}")
    return pairs


def pair_files(layout: Layout, split: str) -> tuple[dict[str, Path], dict[str, Path]]:
    """A's and B's files of one split (folder and Cityscapes layouts), by pair name."""
    a_dir, b_dir = layout.pair_dirs(split)
    endings = (CITYSCAPES["leftImg8bit"], CITYSCAPES["gtFine"]) if layout.kind == "cityscapes" else ("", "")
    return images_by_name(a_dir, endings[0]), images_by_name(b_dir, endings[1])


def missing_partners(layout: Layout, split: str, a_files: dict[str, Path], b_files: dict[str, Path]):
    """(file, folder its partner should be in, the partner's expected name) for every file
    without a partner."""
    a_dir, b_dir = layout.pair_dirs(split)
    for name in sorted(set(a_files) ^ set(b_files)):
        have, lack = (a_files[name], b_dir) if name in a_files else (b_files[name], a_dir)
        if layout.kind != "cityscapes":
            yield have, lack, f"{name}.*"
        else:
            ending = CITYSCAPES["gtFine"] if lack == b_dir else CITYSCAPES["leftImg8bit"]
            yield have, lack, f"{name}{ending}.png"


def find_photos(root: Path, split: str = "train", direction: str = "AtoB") -> list[Path]:
    """Clean photos to synthesize inputs from: the target side of a paired layout (B/ for
    AtoB), else every image below the folder (or below its `split`/ folder)."""
    try:
        layout = detect_layout(root)
    except PanError:
        if not Path(root).is_dir():
            raise
        layout = None  # images in subfolders only: no pair layout, just photos
    if layout is not None and layout.kind != "aligned":
        folder = layout.pair_dirs(split)[1 if direction == "AtoB" else 0]
    else:
        folder = Path(root) / split if layout is not None and split in layout.splits else Path(root)
    photos = list_images(folder)
    if not photos:
        raise PanError(f"no photos in {folder}")
    return photos
