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

from pan_cli.datasets.images import ImageReadError, several_frames
from pan_cli.datasets.layout import Layout, Pair, detect_layout, find_pairs, missing_partners, pair_files
from pan_cli.datasets.paired import crop_problem, load_pair
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
    notes: list[str] = field(default_factory=list)  # read, but not all of it (pages of a TIFF)

    def lines(self) -> list[str]:
        out = [f"layout: {self.layout.describe()}"]
        for split in self.splits:
            sizes = sorted(split.sizes)
            shown = ", ".join(f"{w}x{h}" for w, h in sizes[:4]) + (f" and {len(sizes) - 4} more" if len(sizes) > 4
                                                                     else "")
            out.append(f"{split.name or 'pairs'}: {split.pairs} usable pairs; sizes {shown or 'none'}")
        out += [f"note: {n}" for n in self.notes] + [f"problem: {p}" for p in self.problems]
        out.append(f"{len(self.problems)} problem{'s' if len(self.problems) != 1 else ''}")
        return out


def _check_split(layout: Layout, split: str, report: Report, min_size: int) -> set[str]:
    """Check one split; returns the pair names in it. Each pair is read the way training reads
    it (load_pair), so what fails here is what would fail there."""
    entry = SplitReport(split)
    report.splits.append(entry)
    try:
        if layout.kind == "aligned":
            pairs = find_pairs(layout, split)
            names = {pair.name for pair in pairs}
        else:
            a_files, b_files = pair_files(layout, split)
            for have, lack, _ in missing_partners(layout, split, a_files, b_files):
                report.problems.append(f"{have}: no partner in {lack}/")
            pairs = [Pair(a_files[n], b_files[n], n) for n in sorted(set(a_files) & set(b_files))]
            names = set(a_files) | set(b_files)
    except PanError as exc:  # an empty split, two files with one name
        report.problems.append(str(exc))
        return set()
    if note := several_frames(p for pair in pairs for p in (pair.a, pair.b) if p is not None):
        report.notes.append(note)
    for pair in pairs:
        try:
            a, _ = load_pair(pair, "AtoB")
        except ImageReadError as exc:  # unreadable, sizes differ, odd-width side-by-side file
            report.problems.append(str(exc))
            continue
        too_small = crop_problem(pair.a, a.shape[2], a.shape[1], min_size)
        if too_small:
            report.problems.append(too_small)
            continue
        entry.pairs += 1
        entry.sizes.add((a.shape[2], a.shape[1]))
    return names


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

