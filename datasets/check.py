"""`pan data check`: every problem in a dataset folder, found in one pass, not the first one.

It decodes every file (a truncated image fails only when its pixels are read), pairs files
the way training does, and reports: files with no partner, pairs whose sizes differ,
unreadable files, side-by-side files of odd width, names that appear in more than one split
(a leak from training into test), and images smaller than a task's training crop.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from pan_cli.datasets.images import ImageReadError, is_image_path
from pan_cli.datasets.labels import read_input
from pan_cli.datasets.layout import Layout, detect_layout, missing_partners, pair_files
from pan_cli.errors import PanError


@dataclass
class SplitReport:
    name: str  # "" when the pairs sit in the root
    pairs: int = 0
    sizes: set[tuple[int, int]] = field(default_factory=set)  # (width, height) of usable pairs


@dataclass
class Report:
    layout: Layout
    splits: list[SplitReport] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"layout: {self.layout.describe()}"]
        for split in self.splits:
            sizes = sorted(split.sizes)
            shown = ", ".join(f"{w}x{h}" for w, h in sizes[:4]) + (f" and {len(sizes) - 4} more" if len(sizes) > 4
                                                                     else "")
            out.append(f"{split.name or 'pairs'}: {split.pairs} usable pairs; sizes {shown or 'none'}")
        out += [f"problem: {p}" for p in self.problems]
        out.append(f"{len(self.problems)} problem{'s' if len(self.problems) != 1 else ''}")
        return out


def _decode(path: Path, problems: list[str]):
    try:
        return read_input(path)
    except ImageReadError as exc:
        problems.append(str(exc))
        return None


def _check_split(layout: Layout, split: str, report: Report, min_size: int) -> set[str]:
    """Check one split; returns the pair names in it."""
    entry = SplitReport(split)
    report.splits.append(entry)
    if layout.kind == "aligned":
        folder = layout.split_dir(split) if split else layout.root
        files = sorted(p for p in folder.iterdir() if p.is_file() and is_image_path(p))
        for path in files:
            image = _decode(path, report.problems)
            if image is None:
                continue
            height, width = image.shape[1:]
            if width % 2:
                report.problems.append(f"{path}: width {width} is odd, so it cannot hold A|B side by side")
                continue
            _count(entry, report, path, width // 2, height, min_size)
        return {p.stem for p in files}
    try:
        a_files, b_files = pair_files(layout, split)
    except PanError as exc:  # e.g. two files with one name
        report.problems.append(str(exc))
        return set()
    for have, lack, _ in missing_partners(layout, split, a_files, b_files):
        report.problems.append(f"{have}: no partner in {lack}/")
    for name in sorted(set(a_files) & set(b_files)):
        a, b = _decode(a_files[name], report.problems), _decode(b_files[name], report.problems)
        if a is None or b is None:
            continue
        if a.shape[1:] != b.shape[1:]:
            report.problems.append(f"{a_files[name]} is {a.shape[2]}x{a.shape[1]} but its partner "
                                   f"{b_files[name]} is {b.shape[2]}x{b.shape[1]}")
            continue
        _count(entry, report, a_files[name], a.shape[2], a.shape[1], min_size)
    return set(a_files) | set(b_files)


def _count(entry: SplitReport, report: Report, path: Path, width: int, height: int, min_size: int) -> None:
    if min(width, height) < min_size:
        report.problems.append(f"{path} is {width}x{height}, smaller than the {min_size}x{min_size} training crop")
        return
    entry.pairs += 1
    entry.sizes.add((width, height))


def check_dataset(root: Path, min_size: int = 0) -> Report:
    """Check every split of the dataset at `root`; `min_size` is the smallest usable side."""
    layout = detect_layout(root)
    report = Report(layout)
    seen: dict[str, list[str]] = defaultdict(list)
    for split in layout.splits or ("",):
        for name in _check_split(layout, split, report, min_size):
            seen[name].append(split)
    for name, splits in sorted(seen.items()):
        if len(splits) > 1:
            report.problems.append(f"{name!r} is in more than one split ({', '.join(splits)})")
    if not any(s.pairs for s in report.splits) and not report.problems:
        report.problems.append(f"{root}: no usable pairs")
    return report

