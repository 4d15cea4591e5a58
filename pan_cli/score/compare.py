"""`pan compare`: PAN against the objectives it was proposed against, on the same data.

Each seed trains `pan` first for a fixed number of steps and measures its wall time; every
other objective then trains, with the same networks, data order and seed, until it has
done at least those steps *and* used that wall time. The checkpoint at PAN's step count gives
the equal-step view, the last one the equal-wall-clock view (a PAN step costs several L1
steps). Both are scored on the same held-out pairs; single GAN runs swing between nearby
checkpoints, so the report gives the mean and spread over seeds.
"""

from __future__ import annotations

import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from pan_cli.config import RunConfig
from pan_cli.datasets.images import read_image, write_grid
from pan_cli.datasets.layout import Pair, detect_layout, find_pairs, find_photos
from pan_cli.datasets.make import Source, make_dataset
from pan_cli.datasets.paired import load_pair
from pan_cli.datasets.photos import (
    HELD_OUT_PHOTOS,
    TRAIN_PHOTOS,
    builtin_photo,
    write_rain_pairs,
)
from pan_cli.errors import PanError
from pan_cli.infer.predictor import Predictor
from pan_cli.losses.objectives import PAN
from pan_cli.score.evaluation import best_split, mean_row, score_model
from pan_cli.score.metrics import METRICS, Settings
from pan_cli.store.checkpoint import step_of
from pan_cli.tasks import TASKS, make_config
from pan_cli.train.loop import TrainOptions, train

VIEWS = ("equal steps", "equal wall-clock")
HOLE_METRICS = ("psnr_hole", "detail")  # inpainting: fidelity and texture inside the hole
HEADINGS = {"psnr_hole": "PSNR in hole", "detail": "detail"}


@dataclass
class Result:
    objective: str
    seed: int
    view: str
    steps: int
    seconds: float
    scores: dict[str, float]


@dataclass
class Comparison:
    results: list[Result] = field(default_factory=list)

    def table(self, objectives: Sequence[str]) -> str:
        """Markdown: one row per objective and view, mean ± sd over seeds."""
        metrics = [*METRICS, *(m for m in HOLE_METRICS if self.results and m in self.results[0].scores)]
        lines = ["| objective | view | steps | train s | " + " | ".join(HEADINGS.get(m, m.upper()) for m in metrics)
                 + " |", "|---|---|---|---|" + "---|" * len(metrics)]
        for view in VIEWS:
            for objective in objectives:
                rows = [r for r in self.results if r.objective == objective and r.view == view]
                if not rows:
                    continue

                def cell(values: list[float], digits: int) -> str:
                    sd = statistics.stdev(values) if len(values) > 1 else 0.0
                    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"

                scores = [cell([r.scores[m] for r in rows], 2 if m.startswith("psnr") else 4) for m in metrics]
                steps = "/".join(sorted({str(r.steps) for r in rows}))
                seconds = statistics.mean(r.seconds for r in rows)
                lines.append(f"| {objective} | {view} | {steps} | {seconds:.0f} | " + " | ".join(scores) + " |")
        return "\n".join(lines)


def compare(
    configs: Callable[[str, int], RunConfig],
    objectives: Sequence[str],
    seeds: Sequence[int],
    steps: int,
    train_pairs: list[Pair] | list[Path],
    eval_pairs: list[Pair],
    out: Path,
    warn: Callable[[str], None] = lambda message: None,
    cache: Path | None = None,
) -> Comparison:
    """Train every objective for every seed under out/runs and score both views (with `cache`,
    the images are decoded once there for every run)."""
    if objectives[0] != PAN:
        raise ValueError("the comparison's time budget is PAN's: list 'pan' first")
    if (out / "runs").exists():
        raise PanError(f"{out / 'runs'} already exists: choose another --out, or remove it")
    comparison = Comparison()
    for seed in seeds:
        budget = None
        for objective in objectives:
            config = configs(objective, seed)
            run_dir = out / "runs" / f"{objective}-seed{seed}"
            options = TrainOptions(run_dir=run_dir, checkpoint_every=steps, keep=0, sample_every=0,
                                   log_every=max(1, steps // 20), time_limit=budget, cache=cache)
            total = steps if budget is None else 1_000_000  # others: until PAN's wall time is used
            warn(f"training {objective}, seed {seed}"
                 + (f", {steps} steps" if budget is None else f", {budget:.0f}s (at least {steps} steps)"))
            began = time.perf_counter()
            last = train(config.replace(steps=total), train_pairs, options, warn=warn)
            seconds = time.perf_counter() - began
            if budget is None:
                budget = seconds
            final = step_of(last)
            views = {VIEWS[0]: (run_dir / f"step-{steps}.pt", steps, seconds * steps / final),
                     VIEWS[1]: (last, final, seconds)}
            for view, (checkpoint, done, spent) in views.items():
                if not checkpoint.exists():
                    warn(f"{objective} seed {seed}: no checkpoint at step {steps} within the time budget")
                    continue
                predictor = Predictor.from_checkpoint(checkpoint, config.task, torch.device("cpu"))
                save = out / "outputs" / objective if seed == seeds[0] and view == VIEWS[1] else None
                rows = list(score_model(predictor, eval_pairs, Settings(), save))
                comparison.results.append(Result(objective, seed, view, done, spent, mean_row(rows).scores))
    config = configs(objectives[0], seeds[0])
    tiles = []
    for pair in eval_pairs:  # input | each objective (equal wall-clock, first seed) | target
        x, y = load_pair(pair, config.direction, (min(config.in_channels, 3), config.out_channels))
        tiles += [x, *(read_image(out / "outputs" / o / f"{pair.name}.png") for o in objectives), y]
    write_grid(out / "grid.png", tiles, columns=len(objectives) + 2)
    return comparison


def _rainy_pairs(data: Path, size: int) -> None:
    write_rain_pairs(data / "train", TRAIN_PHOTOS, 6, 0)
    write_rain_pairs(data / "test", HELD_OUT_PHOTOS, 3, 10_000)


def _photos_and_holes(data: Path, size: int) -> None:
    """Clean photos to train on (the B/ side of train/, as `pan data make inpaint` writes it);
    the held-out ones at the crop size, each with a half-side centre hole and with free-form
    strokes, to score."""
    def sources(names: Sequence[str]) -> list[Source]:
        return [Source(name, lambda name=name: builtin_photo(name)) for name in names]

    make_dataset("inpaint", sources(TRAIN_PHOTOS), data / "train", holes="random")
    sources = sources(HELD_OUT_PHOTOS)
    make_dataset("inpaint", sources, data / "test", size=size, holes="half")
    strokes = data / "strokes"
    make_dataset("inpaint", sources, strokes, size=size, holes="strokes", seed=1)
    for kind in ("A", "B", "masks"):  # one test/ split: both hole kinds
        for path in (strokes / kind).iterdir():
            path.rename(data / "test" / kind / f"{path.stem}-strokes{path.suffix}")
    shutil.rmtree(strokes)


# a task's synthesizer -> the built-in data `pan compare` makes for it under out/data
BUILTIN_DATA: dict[str, Callable[[Path, int], None]] = {"rain": _rainy_pairs, "holes": _photos_and_holes}


@dataclass
class CompareData:
    train: list[Pair] | list[Path]  # pairs, or clean photos when the task synthesizes inputs
    scored: list[Pair]
    split: str
    description: str


def comparison_data(task: str, data: Path | None, out: Path, size: int) -> CompareData:
    """What to train and score on: `data`'s train/ and its test/ or val/; without `data`,
    built-in photos under out/data, with synthesized rain (derain) or holes in held-out photos
    of the training crop's `size` (inpaint)."""
    config = make_config(task)
    if data is None:
        if not TASKS[task].builtin_data:
            builtin = ", ".join(name for name, t in TASKS.items() if t.builtin_data)
            raise PanError(f"{task} needs --data (built-in data exists for {builtin} only)")
        data = out / "data"
        BUILTIN_DATA[TASKS[task].synthesizer](data, size)
    layout = detect_layout(data)
    split = best_split(layout.splits)
    if split == "train":
        raise PanError(f"{data} has no test/ or val/ split to score on")
    if config.synthesize:  # inpaint: clean photos (train/, any layout) to make holes in; fixed holes to score
        train_pairs = find_photos(data, "train", config.direction)
        scored_layout = detect_layout(data / split)
        scored = find_pairs(scored_layout, "train")
    else:
        train_pairs, scored_layout = find_pairs(layout, "train"), layout
        scored = find_pairs(layout, split)
    return CompareData(train_pairs, scored, split,
                       f"{scored_layout.describe()}; {len(train_pairs)} training, {len(scored)} {split} pairs")


def write_compare_report(path: Path, task: str, found: CompareData, comparison: Comparison, objectives: Sequence[str],
                         seeds: Sequence[int], steps: int, image_size: int, batch_size: int, minutes: float) -> str:
    """report.md: the settings, the table and the grid; returns the table."""
    table = comparison.table(objectives)
    path.write_text(
        f"# pan compare --task {task}\n\n{len(found.train)} training pairs, {len(found.scored)} scored "
        f"({found.split}); {image_size}px crops, batch {batch_size}; PAN {steps} steps; seeds "
        f"{', '.join(map(str, seeds))}; mean ± sd over seeds; {minutes:.0f} minutes in all.\n\n"
        f"{table}\n\n![grid](grid.png)\n\ngrid.png: one row per scored image: input | "
        f"{' | '.join(objectives)} (equal wall-clock, seed {seeds[0]}) | target\n")
    return table
