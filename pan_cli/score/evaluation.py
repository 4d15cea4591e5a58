"""Scoring outputs against targets: per-image rows and their mean, as a table, JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Iterator, Sequence

import torch
from torch import nn

from pan_cli.config import RunConfig
from pan_cli.datasets.holes import check_mask, read_mask
from pan_cli.datasets.images import read_image, write_image
from pan_cli.datasets.layout import Pair, images_by_name
from pan_cli.datasets.paired import load_pair
from pan_cli.errors import PanError
from pan_cli.files import check_replaceable
from pan_cli.infer.inpainting import default_mask
from pan_cli.infer.memory import BOMB_LIMIT, SCORE_BYTES_PER_PIXEL
from pan_cli.infer.memory import max_pixels as memory_max_pixels
from pan_cli.infer.predictor import Predictor
from pan_cli.score.baselines import BASELINES
from pan_cli.score.metrics import Settings, hole_scores, score

CAP_DB = 100.0  # an identical image's PSNR (inf) counts as this in a mean, which stays finite


@dataclass(frozen=True)
class Row:
    name: str
    scores: dict[str, float]
    method: str = "model"  # or a classical baseline scored on the same holes (baselines.BASELINES)


def matching_files(pred_dir: Path, ref_dir: Path) -> list[tuple[str, Path, Path]]:
    """(name, prediction, reference) for files with the same relative name (any suffix)."""
    pred, ref = images_by_name(pred_dir), images_by_name(ref_dir)
    missing = sorted(set(pred) ^ set(ref))
    if missing:
        where = ref_dir if missing[0] in pred else pred_dir
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise PanError(f"{missing[0]} has no match in {where}{more}: --pred and --ref must hold the same names")
    if not pred:
        raise PanError(f"no images in {pred_dir}")
    return [(name, pred[name], ref[name]) for name in sorted(pred)]


def _check_size(a: torch.Tensor, a_path: Path, b: torch.Tensor, b_path: Path) -> None:
    if a.shape[1:] != b.shape[1:]:
        raise PanError(f"{a_path} is {a.shape[2]}x{a.shape[1]} but {b_path} is {b.shape[2]}x{b.shape[1]}")


def score_files(items: Iterable[tuple[str, Path, Path]], settings: Settings,
                masks: Path | None = None, max_pixels: int | None = None) -> Iterator[Row]:
    """Score each prediction against its reference; with `masks` (a folder of images with the
    same names, white = hole) also inside the hole. An image over `max_pixels` (default: what the
    memory free now lets the metrics take) is refused before it is scored."""
    by_name = images_by_name(masks) if masks is not None else {}
    if max_pixels is None:
        max_pixels = min(BOMB_LIMIT, memory_max_pixels(SCORE_BYTES_PER_PIXEL, torch.device("cpu")))
    for name, pred_path, ref_path in items:
        pred, ref = read_image(pred_path, 3, max_pixels), read_image(ref_path, 3, max_pixels)
        _check_size(pred, pred_path, ref, ref_path)
        mask = None
        if masks is not None:
            if name not in by_name:
                raise PanError(f"no mask for {name} in {masks}")
            mask_path = by_name[name]
            mask = read_mask(mask_path)
            check_mask(mask, ref, str(mask_path), str(ref_path))
        yield Row(name, _scores(ref_path, ref, pred, settings, mask))


def _scores(ref_path: Path, reference: torch.Tensor, output: torch.Tensor, settings: Settings,
            mask: torch.Tensor | None = None) -> dict[str, float]:
    """score(), and hole_scores() with a mask; a problem is one PanError naming the file."""
    try:
        scores = score(reference, output, settings)
    except ValueError as exc:
        raise PanError(f"{ref_path}: {exc}") from None
    if mask is not None:
        scores.update(hole_scores(reference, output, mask[None]))
    return scores


def check_save_folder(save: Path, pairs: Sequence[Pair], overwrite: bool) -> None:
    """Before anything runs: --save never writes into a folder that holds the dataset's own
    files (its inputs, targets or masks), and never over an existing file without --overwrite."""
    save_resolved = save.resolve()
    for pair in pairs:
        for source in (pair.a, pair.b):
            if source is not None and source.resolve().parent == save_resolved:
                raise PanError(f"--save {save} holds the dataset's own files ({source}); outputs never go "
                               "there: choose another folder")
        output = save / f"{pair.name}.png"
        if check_replaceable(output) and not overwrite:
            raise PanError(f"--save: {output} exists; give --overwrite to replace it")
    masks = _masks_beside(pairs)
    if masks and next(iter(masks.values())).resolve().parent == save_resolved:
        raise PanError(f"--save {save} is the dataset's masks/ folder; choose another folder")


def score_model(predictor: Predictor, pairs: Sequence[Pair], settings: Settings,
                save: Path | None = None, baselines: bool = False, overwrite: bool = False) -> Iterator[Row]:
    """Run the model on each pair's input and score the 8-bit output (what a saved PNG holds).
    An inpainting model fills the holes in masks/ beside A/ (as `pan data make inpaint` writes
    them), else the centre hole, and is also scored inside the hole; with `baselines`, the
    classical fills of the same holes are scored too (rows with their method's name)."""
    config = predictor.config
    holes = predictor.inpaints
    masks = _masks_beside(pairs) if holes else {}
    for pair in pairs:
        x, y = load_pair(pair, config.direction, (3, 3) if holes else (config.in_channels, config.out_channels))
        mask = None
        if holes:
            if masks and pair.name not in masks:
                raise PanError(f"no mask for {pair.a} in the masks/ folder beside it")
            mask = read_mask(masks[pair.name]) if masks else default_mask(x)
            check_mask(mask, x, str(masks.get(pair.name, pair.a)), str(pair.a))
        output = predictor.predict(x, mask)
        if save is not None:
            write_image(save / f"{pair.name}.png", output, overwrite=overwrite)
        yield Row(pair.name, _scores(pair.b or pair.a, y, output, settings, mask))
        for method, fill_hole in (BASELINES.items() if holes and baselines else ()):
            yield Row(pair.name, _scores(pair.b or pair.a, y, fill_hole(x, mask), settings, mask), method)


def validator(pairs: Sequence[Pair], settings: Settings) -> Callable[[RunConfig, nn.Module, torch.device],
                                                                     dict[str, float]]:
    """For training: the mean scores of a net (its inference weights) on `pairs`."""

    def validate(config: RunConfig, net: nn.Module, device: torch.device) -> dict[str, float]:
        return mean_row(list(score_model(Predictor(config, net, device), pairs, settings))).scores

    return validate


def _masks_beside(pairs: Sequence[Pair]) -> dict[str, Path]:
    """The masks in the masks/ folder beside A/ (as `pan data make inpaint` writes them), by
    pair name; {} when there is none."""
    first = pairs[0]
    folder = first.a.parents[len(PurePosixPath(first.name).parts)] / "masks"
    return images_by_name(folder) if folder.is_dir() else {}


def mean_row(rows: Sequence[Row], method: str = "model") -> Row:
    """The mean of `rows` (of one method). An infinite PSNR (an image identical to its
    target) enters the mean at 100 dB, so one perfect image cannot make the mean infinite."""
    mine = [r for r in rows if r.method == method]

    def mean(values: list[float]) -> float:
        counted = [min(v, CAP_DB) for v in values if not math.isnan(v)]  # a NaN detail: nothing to measure
        return sum(counted) / len(counted) if counted else float("nan")

    return Row("mean" if method == "model" else f"mean {method}",
               {m: mean([r.scores[m] for r in mine]) for m in mine[0].scores}, method)


def _plain(value: float) -> float | str | None:
    if math.isnan(value):
        return None
    return value if math.isfinite(value) else ("inf" if value > 0 else "-inf")


def render(rows: Sequence[Row], settings: Settings, fmt: str) -> str:
    """The model's rows plus their mean, then the mean of each baseline scored beside it, with
    the settings used, as 'table', 'json' (one object per line) or 'csv'. An infinite PSNR
    (identical images) is written as inf; the mean caps it at 100 dB."""
    methods = list(dict.fromkeys(r.method for r in rows))
    everything = [r for r in rows if r.method == "model"] + [mean_row(rows, m) for m in methods]
    columns = list(rows[0].scores)
    extra = len(methods) > 1  # a method column only when baselines were scored
    if fmt == "json":
        return "".join(json.dumps({"name": r.name, **({"method": r.method} if extra else {}),
                                   **{m: _plain(v) for m, v in r.scores.items()},
                                   **settings.as_dict()}) + "\n" for r in everything)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["name", *(["method"] if extra else []), *columns, *settings.as_dict()])
        for r in everything:
            writer.writerow([r.name, *([r.method] if extra else []), *(_plain(r.scores[m]) for m in columns),
                             *settings.as_dict().values()])
        return buffer.getvalue()
    width = max(12, *(len(r.name) for r in everything))
    lines = ["# " + " ".join(f"{k}={v}" for k, v in settings.as_dict().items()),
             f"{'image':<{width}} " + " ".join(f"{m.upper():>9}" for m in columns)]
    for r in everything:
        cells = (f"{r.scores[m]:9.3f}" if m.startswith(("psnr", "mae")) else f"{r.scores[m]:9.4f}" for m in columns)
        lines.append(f"{r.name:<{width}} " + " ".join(cells))
    return "\n".join(lines) + "\n"


def best_split(splits: Sequence[str]) -> str:
    """The split to evaluate on by default: test, else val, else the only data there is."""
    for split in ("test", "val"):
        if split in splits:
            return split
    return "train"

