"""`make bench` (second part): every task trained for the same CPU budget on built-in or
synthesized data, then scored on held-out photos it never saw.

- derain: rain synthesized on the fly over the built-in training photos; held out: chelsea
  and coffee under rain drawn from other seeds, at full size. Baseline: the rainy input.
- inpaint: the paper's setting (context encoder, centre hole, 128x128) from the training
  photos; held out: 128x128 crops of the held-out photos. Scored inside the hole only,
  against the input's mean-colour fill.
- labels2street: Cityscapes cannot ship, so label maps are stand-ins: SLIC superpixels of
  each photo painted the nearest Cityscapes colour (datasets/labels.py). Baselines: the
  label map itself, and the training photos' mean colour.
- sketch2photo: Canny sketches of the photos (as `pan data make sketch2photo` makes them).
  Baselines as for labels2street.

Everything goes through the library calls `pan train` / `pan infer` make. Prints a
Markdown table on stdout and writes one picture per task (input | output | target).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import click
import torch
from torchvision.transforms.v2.functional import center_crop, resize

from pan_cli.commands.progress import stderr_console
from pan_cli.datasets.edges import sketch
from pan_cli.datasets.holes import centre_mask, fill
from pan_cli.datasets.images import read_image, write_grid, write_image
from pan_cli.datasets.labels import pseudo_labels
from pan_cli.datasets.layout import detect_layout, find_pairs
from pan_cli.datasets.paired import load_pair
from pan_cli.datasets.photos import HELD_OUT_PHOTOS, MORE_PHOTOS, TRAIN_PHOTOS, builtin_photo, write_photos
from pan_cli.datasets.rain import RainModel
from pan_cli.infer.files import run_inference
from pan_cli.infer.jobs import Job
from pan_cli.infer.predictor import Predictor
from pan_cli.score.metrics import hole_scores, psnr
from pan_cli.store.checkpoint import step_of
from pan_cli.tasks import make_config
from pan_cli.train.loop import TrainOptions, train

TASK_NAMES = ("derain", "inpaint", "labels2street", "sketch2photo")


def _crops(photo: torch.Tensor, size: int, count: int) -> list[torch.Tensor]:
    """`count` square crops spread along the longer side of the photo scaled to `size`*1.17."""
    scaled = resize(photo, round(size * 1.17), antialias=True)
    height, width = scaled.shape[1:]
    tops = [round(i * (height - size) / max(1, count - 1)) for i in range(count)]
    lefts = [round(i * (width - size) / max(1, count - 1)) for i in range(count)]
    return [scaled[:, t: t + size, left: left + size] for t, left in zip(tops, lefts)]


def _write_pairs(folder: Path, pairs: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    for name, (a, b) in pairs.items():
        write_image(folder / "A" / f"{name}.png", a)
        write_image(folder / "B" / f"{name}.png", b)


def prepare(task: str, root: Path) -> tuple[dict, list, dict]:
    """(config overrides, training sources, held-out {name: (input, target)}) for one task."""
    photos = TRAIN_PHOTOS + MORE_PHOTOS
    if task == "derain":
        rain, generator = RainModel(), torch.Generator().manual_seed(10_000)
        held = {f"{p}-{k}": (rain(builtin_photo(p), generator), builtin_photo(p))
                for p in HELD_OUT_PHOTOS for k in range(3)}
        return ({"synthesize": "rain", "image_size": 96}, write_photos(root / "photos", photos), held)
    if task == "inpaint":
        hole = centre_mask(128, 128)
        held = {f"{p}-{i}": (fill(c, hole), c) for p in HELD_OUT_PHOTOS
                for i, c in enumerate(_crops(builtin_photo(p), 128, 4))}
        return ({}, write_photos(root / "photos", photos), held)
    make_input = pseudo_labels if task == "labels2street" else sketch
    train_pairs = {}
    for p in photos:
        photo = center_crop(resize(builtin_photo(p), 150, antialias=True), [150, 150])
        train_pairs[p] = (make_input(photo), photo)
    if task == "labels2street":  # pix2pix's cityscapes convention: A = photo, B = label map, BtoA
        train_pairs = {k: (b, a) for k, (a, b) in train_pairs.items()}
    _write_pairs(root / "pairs", train_pairs)
    held = {f"{p}-{i}": (make_input(c), c) for p in HELD_OUT_PHOTOS
            for i, c in enumerate(_crops(builtin_photo(p), 128, 4))}
    return ({"image_size": 128, "load_size": 0}, find_pairs(detect_layout(root / "pairs")), held)


def run_task(task: str, root: Path, budget: float, seed: int, **settings) -> dict:
    overrides, sources, held = prepare(task, root)
    config = make_config(task, seed=seed, steps=1_000_000, **overrides, **settings)
    options = TrainOptions(run_dir=root / "run", sample_every=0, checkpoint_every=1_000_000, time_limit=budget)
    began = time.perf_counter()
    checkpoint = train(config, sources, options)
    seconds = time.perf_counter() - began
    step = step_of(checkpoint)

    for name, (x, y) in held.items():
        write_image(root / "held-out" / "A" / f"{name}.png", x)
        write_image(root / "held-out" / "B" / f"{name}.png", y)
    predictor = Predictor.from_checkpoint(checkpoint, task, torch.device("cpu"))
    jobs = [Job(root / "held-out" / "A" / f"{n}.png", root / "out" / f"{n}.png") for n in held]
    run_inference(predictor, jobs, batch_size=1, workers=0, overwrite=True)

    targets = ([read_image(p) for p in sources] if config.synthesize
               else [load_pair(pair, config.direction)[1] for pair in sources])
    mean_colour = torch.stack([t.float().mean((1, 2)) for t in targets]).mean(0)
    scores = {"input": [], "output": [], "mean colour": []}
    for name, (x, y) in held.items():
        out = read_image(root / "out" / f"{name}.png")
        if task == "inpaint":
            hole = centre_mask(*y.shape[1:])
            scores["input"].append(hole_scores(y, x, hole[None])["psnr_hole"])
            scores["output"].append(hole_scores(y, out, hole[None])["psnr_hole"])
        else:
            flat = mean_colour.round().to(torch.uint8).view(3, 1, 1).expand_as(y)
            scores["input"].append(psnr(y, x))
            scores["output"].append(psnr(y, out))
            scores["mean colour"].append(psnr(y, flat))
    first = next(iter(held))
    write_grid(root / "picture.png", [held[first][0], read_image(root / "out" / f"{first}.png"), held[first][1]],
               columns=3)
    better = sum(o > i for o, i in zip(scores["output"], scores["input"]))
    return {"task": task, "generator": config.generator, "steps": step, "seconds": seconds, "images": len(held),
            "better": better, **{k: sum(v) / len(v) for k, v in scores.items() if v}}


@click.command()
@click.option("--tasks", default=",".join(TASK_NAMES), show_default=True)
@click.option("--budget", type=float, default=240.0, show_default=True, help="Training seconds per task.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--lambda-pix", type=float, help="Override every task's pixel L1 weight.")
@click.option("--ema", type=float, help="Override every task's EMA decay.")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads (default: torch's choice).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("bench-output/tasks"), show_default=True)
def main(tasks: str, budget: float, seed: int, lambda_pix: float | None, ema: float | None, threads: int | None,
         out: Path) -> None:
    if threads:
        torch.set_num_threads(threads)
    console = stderr_console()
    console.print(f"{torch.get_num_threads()} CPU threads, {budget:g}s of training per task", highlight=False)
    shown = ", ".join(f"{k} {v:g}" for k, v in (("lambda-pix", lambda_pix), ("ema", ema)) if v is not None)
    rows = []
    for task in [t.strip() for t in tasks.split(",") if t.strip()]:
        root = out / task
        shutil.rmtree(root, ignore_errors=True)  # this benchmark's own previous output
        console.print(f"{task}: training for {budget:g}s ...", highlight=False)
        rows.append(run_task(task, root, budget, seed, lambda_pix=lambda_pix, ema=ema))
        console.print(f"{task}: {rows[-1]}; picture {root / 'picture.png'}", highlight=False)
    lines = [f"{torch.get_num_threads()} CPU threads, {budget:g} s of training per task, seed {seed}"
             + (f"; for every task: {shown}" if shown else "; task defaults"), "",
             f"| task | T | steps in {budget:g}s | held-out images | PSNR input | PSNR output | better | "
             "PSNR mean colour |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        flat = f"{r['mean colour']:.2f}" if "mean colour" in r else "n/a"
        lines.append(f"| {r['task']} | {r['generator']} | {r['steps']} | {r['images']} | {r['input']:.2f} | "
                     f"{r['output']:.2f} | {r['better']}/{r['images']} | {flat} |")
    (out / "tasks.md").write_text("\n".join(lines) + "\n")
    click.echo("\n".join(lines))

if __name__ == "__main__":
    main()
