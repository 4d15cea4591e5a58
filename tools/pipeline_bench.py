"""`make bench`, part 3: does the input pipeline keep the device busy?

For each task's default recipe (what `pan train TASK --data D` trains) on built-in data, in one
run: `pan train --profile` for a few steps with the decode-once cache and without it (steps/s,
crops/s, data_fraction), and the same model step on one batch already on the device (no
loading at all). The pipeline's overhead is the ratio of the two step rates, measured in one
run on one machine; on a CPU the networks set the pace, on a GPU the loader can.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import click
import torch

from pan_cli.commands.train import default_workers
from pan_cli.datasets.images import write_image
from pan_cli.datasets.labels import pseudo_labels
from pan_cli.datasets.layout import detect_layout, find_pairs, find_photos
from pan_cli.datasets.make import make_dataset, photo_sources
from pan_cli.datasets.photos import MORE_PHOTOS, TRAIN_PHOTOS, builtin_photo, write_photos
from pan_cli.devices import pick_device, resolve_precision
from pan_cli.tasks import TASKS, make_config
from pan_cli.train.loop import TrainOptions, train
from pan_cli.train.step import Models, d_step, t_step

PHOTOS = TRAIN_PHOTOS + MORE_PHOTOS


def _data(task: str, root: Path) -> tuple[list, bool]:
    """(training items, synthesize?) for a task's default recipe, from the built-in photos."""
    if task in ("derain", "inpaint"):
        return find_photos(write_photos(root / task, PHOTOS)[0].parent, "train", "AtoB"), True
    if task == "sketch2photo":
        make_dataset("sketch2photo", photo_sources("builtin"), root / task)
    else:  # labels2street: each photo beside a label map drawn from its own regions
        for name in PHOTOS:
            photo = builtin_photo(name)
            write_image(root / task / "A" / f"{name}.png", photo)
            write_image(root / task / "B" / f"{name}.png", pseudo_labels(photo))
    return find_pairs(detect_layout(root / task), "train"), False


def _resident_steps_per_s(config, device: torch.device, precision: str, steps: int) -> float:
    """The model step alone: one batch, made once, already on the device."""
    models = Models.build(config, device, precision)
    x = torch.rand(config.batch_size, config.in_channels, config.image_size, config.image_size, device=device) * 2 - 1
    y = torch.rand(config.batch_size, config.out_channels, config.image_size, config.image_size, device=device) * 2 - 1
    with_d = models.D is not None
    for _ in range(2):  # warm-up
        if with_d:
            d_step(config, models, x, y)
        t_step(config, models, x, y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    began = time.perf_counter()
    for _ in range(steps):
        if with_d:
            d_step(config, models, x, y)
        t_step(config, models, x, y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - began)


@click.command()
@click.option("--tasks", default=",".join(TASKS), show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--image-size", type=click.IntRange(min=8), help="Instead of each recipe's crop (a quick check).")
@click.option("--batch-size", type=click.IntRange(min=1), help="Instead of each recipe's batch.")
@click.option("--workers", type=click.IntRange(min=0), help="Loader processes (default: pan train's).")
@click.option("--device", default="auto", show_default=True)
def main(tasks: str, steps: int, image_size: int | None, batch_size: int | None, workers: int | None,
         device: str) -> None:
    workers = default_workers() if workers is None else workers
    torch_device = pick_device(device)
    precision, _ = resolve_precision("auto", torch_device)
    print(f"\n## Input pipeline against the model step ({torch_device.type}, {precision}, {steps} steps, "
          f"{workers} loader workers)\n")
    print("| task (recipe) | cache | steps/s | crops/s | data s/step | data_fraction | model step alone, steps/s "
          "| pipeline/alone |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for task in tasks.split(","):
            items, synthesize = _data(task, root / "data")
            sizes = {k: v for k, v in (("image_size", image_size), ("batch_size", batch_size)) if v}
            config = make_config(task, synthesize=TASKS[task].synthesizer if synthesize else "", **sizes)
            alone = _resident_steps_per_s(config, torch_device, precision, steps)
            for cache in (root / "cache", None):
                run = root / "runs" / f"{task}-{'cache' if cache else 'files'}"
                options = TrainOptions(run_dir=run, device=torch_device, precision=precision, workers=workers,
                                       sample_every=0, checkpoint_every=10**9, profile=True, cache=cache)
                train(config.replace(steps=steps), items, options)
                report = json.loads((run / "profile.json").read_text())
                print(f"| {task} ({config.generator}, {config.image_size}, batch {config.batch_size}) | "
                      f"{'decoded once' if cache else 'from files'} | {report['steps_per_s']:.3f} | "
                      f"{report['crops_per_s']:.1f} | {report['seconds_per_step']['data']:.4f} | "
                      f"{report['data_fraction']:.3f} | {alone:.3f} | {report['steps_per_s'] / alone:.2f} |",
                      flush=True)


if __name__ == "__main__":
    main()
