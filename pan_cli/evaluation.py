"""Scoring outputs against targets: per-image rows and their mean, as a table, JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from pan_cli.datasets.images import list_images, read_image, to_float, to_uint8, write_image
from pan_cli.datasets.layout import Pair
from pan_cli.datasets.paired import load_pair
from pan_cli.errors import PanError
from pan_cli.inference import Predictor
from pan_cli.metrics import METRICS, Settings, score


@dataclass(frozen=True)
class Row:
    name: str
    scores: dict[str, float]


def matching_files(pred_dir: Path, ref_dir: Path) -> list[tuple[str, Path, Path]]:
    """(name, prediction, reference) for files with the same relative name (any suffix)."""
    def by_name(folder: Path) -> dict[str, Path]:
        if not folder.is_dir():
            raise PanError(f"{folder} is not a folder")
        return {p.relative_to(folder).with_suffix("").as_posix(): p for p in list_images(folder)}

    pred, ref = by_name(pred_dir), by_name(ref_dir)
    missing = sorted(set(pred) ^ set(ref))
    if missing:
        where = ref_dir if missing[0] in pred else pred_dir
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise PanError(f"{missing[0]} has no match in {where}{more}: --pred and --ref must hold the same names")
    if not pred:
        raise PanError(f"no images in {pred_dir}")
    return [(name, pred[name], ref[name]) for name in sorted(pred)]


def score_files(items: Iterable[tuple[str, Path, Path]], settings: Settings) -> Iterator[Row]:
    for name, pred_path, ref_path in items:
        pred, ref = read_image(pred_path), read_image(ref_path)
        if pred.shape != ref.shape:
            raise PanError(f"{pred_path} is {pred.shape[2]}x{pred.shape[1]} but {ref_path} is "
                           f"{ref.shape[2]}x{ref.shape[1]}")
        yield Row(name, score(ref, pred, settings))


def score_model(predictor: Predictor, pairs: Sequence[Pair], settings: Settings,
                save: Path | None = None) -> Iterator[Row]:
    """Run the model on each pair's input and score the 8-bit output (what a saved PNG holds)."""
    config = predictor.config
    for pair in pairs:
        x, y = load_pair(pair, config.direction, (config.in_channels, config.out_channels))
        output = to_uint8(predictor(to_float(x)[None])[0])
        if save is not None:
            write_image(save / f"{pair.name}.png", output)
        yield Row(pair.name, score(y, output, settings))


def mean_row(rows: Sequence[Row]) -> Row:
    return Row("mean", {m: sum(r.scores[m] for r in rows) / len(rows) for m in METRICS})


def _plain(value: float) -> float | str:
    return value if math.isfinite(value) else ("inf" if value > 0 else "-inf")


def render(rows: Sequence[Row], settings: Settings, fmt: str) -> str:
    """All rows plus the mean, with the settings used, as 'table', 'json' (one object per line)
    or 'csv'. An infinite PSNR (identical images) is written as inf."""
    everything = [*rows, mean_row(rows)]
    if fmt == "json":
        return "".join(json.dumps({"name": r.name, **{m: _plain(v) for m, v in r.scores.items()},
                                   **settings.as_dict()}) + "\n" for r in everything)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["name", *METRICS, *settings.as_dict()])
        for r in everything:
            writer.writerow([r.name, *(_plain(r.scores[m]) for m in METRICS), *settings.as_dict().values()])
        return buffer.getvalue()
    width = max(12, *(len(r.name) for r in everything))
    lines = ["# " + " ".join(f"{k}={v}" for k, v in settings.as_dict().items()),
             f"{'image':<{width}} {'PSNR':>8} {'SSIM':>7} {'UQI':>7} {'VIF':>7}"]
    for r in everything:
        s = r.scores
        lines.append(f"{r.name:<{width}} {s['psnr']:8.3f} {s['ssim']:7.4f} {s['uqi']:7.4f} {s['vif']:7.4f}")
    return "\n".join(lines) + "\n"


def best_split(splits: Sequence[str]) -> str:
    """The split to evaluate on by default: test, else val, else the only data there is."""
    for split in ("test", "val"):
        if split in splits:
            return split
    return "train"

