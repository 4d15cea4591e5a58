"""`make demo`: de-raining end to end on the photos that ship with scikit-image.

1. writes training pairs (synthetic rain over five photos, several rain draws each) in the
   A/ + B/ layout any user's data can have;
2. trains `derain` with the PAN objective (the same `train` that `pan train` calls);
3. de-rains two held-out photos it never saw, at their full size, under rain drawn from
   other seeds, with the same `run_inference` that `pan infer` calls;
4. prints PSNR/SSIM of input and output against the clean photo on stdout and writes
   before-after.png (rainy | de-rained | clean). Exits 1 if the output does not beat the
   input on both means.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import click
import torch
from torchvision.utils import make_grid

from pan_cli.datasets.images import read_image, write_image
from pan_cli.datasets.layout import detect_layout, find_pairs
from pan_cli.datasets.photos import HELD_OUT_PHOTOS, TRAIN_PHOTOS, builtin_photo
from pan_cli.datasets.rain import RainModel
from pan_cli.inference import Job, Predictor, run_inference
from pan_cli.metrics import psnr, ssim
from pan_cli.progress import progress_bar, stderr_console
from pan_cli.tasks import make_config
from pan_cli.training import TrainOptions, train


def make_pairs(folder: Path, variants: int, seed: int) -> None:
    rain = RainModel()
    generator = torch.Generator().manual_seed(seed)
    for name in TRAIN_PHOTOS:
        clean = builtin_photo(name)
        for k in range(variants):
            write_image(folder / "A" / f"{name}-{k}.png", rain(clean, generator))
            write_image(folder / "B" / f"{name}-{k}.png", clean)


def make_held_out(folder: Path, seed: int, draws: int) -> list[str]:
    """Each held-out photo under `draws` rain draws from seeds the training never used."""
    rain = RainModel()
    generator = torch.Generator().manual_seed(10_000 + seed)
    names = []
    for photo in HELD_OUT_PHOTOS:
        clean = builtin_photo(photo)
        for k in range(draws):
            name = f"{photo}-{k}"
            write_image(folder / "rainy" / f"{name}.png", rain(clean, generator))
            write_image(folder / "clean" / f"{name}.png", clean)
            names.append(name)
    return names


@click.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("demo-output"), show_default=True)
@click.option("--steps", type=int, default=250, show_default=True)
@click.option("--image-size", type=int, default=96, show_default=True)
@click.option("--batch-size", type=int, default=4, show_default=True)
@click.option("--lr", type=float, default=2e-4, show_default=True)
@click.option("--ema", type=float, default=0.99, show_default=True)
@click.option("--lambda-pix", type=float, default=25.0, show_default=True)
@click.option("--variants", type=int, default=6, show_default=True, help="Rain draws per training photo.")
@click.option("--seed", type=int, default=0, show_default=True)
def main(out: Path, steps: int, image_size: int, batch_size: int, lr: float, ema: float,
         lambda_pix: float, variants: int, seed: int) -> None:
    console = stderr_console()
    began = time.perf_counter()
    shutil.rmtree(out / "run", ignore_errors=True)  # the demo's own previous run, if any
    make_pairs(out / "pairs", variants, seed)
    held_out = make_held_out(out / "held-out", seed, draws=3)
    console.print(f"data: {len(TRAIN_PHOTOS) * variants} training pairs in {out / 'pairs'}; held out: "
                  f"{', '.join(HELD_OUT_PHOTOS)}, 3 rain draws each", highlight=False)

    config = make_config("derain", image_size=image_size, batch_size=batch_size, lr=lr, ema=ema,
                         lambda_pix=lambda_pix, seed=seed, steps=steps)
    console.print(f"training: pan train derain --data {out / 'pairs'} --steps {steps} "
                  f"--image-size {image_size} --batch-size {batch_size} --lr {lr:g} --ema {ema:g} "
                  f"--lambda-pix {lambda_pix:g} --seed {seed} --run-dir {out / 'run'}", highlight=False)
    options = TrainOptions(run_dir=out / "run", sample_every=0, checkpoint_every=steps)
    with progress_bar(console) as bar:
        job = bar.add_task("train derain", total=steps, info="")
        checkpoint = train(config, find_pairs(detect_layout(out / "pairs")), options,
                           on_step=lambda step, _: bar.update(job, completed=step))
    trained = time.perf_counter()

    predictor = Predictor.from_checkpoint(checkpoint, "derain", torch.device("cpu"))
    jobs = [Job(out / "held-out" / "rainy" / f"{n}.png", out / "derained" / f"{n}.png") for n in held_out]
    run_inference(predictor, jobs, batch_size=1, workers=0, overwrite=True)

    rows, tiles = [], []
    for name in held_out:
        clean = read_image(out / "held-out" / "clean" / f"{name}.png")
        rainy = read_image(out / "held-out" / "rainy" / f"{name}.png")
        derained = read_image(out / "derained" / f"{name}.png")
        rows.append((name, psnr(clean, rainy), psnr(clean, derained), ssim(clean, rainy), ssim(clean, derained)))
        if name.endswith("-0"):
            tiles += [rainy, derained, clean]
    height = min(t.shape[1] for t in tiles)
    tiles = [t[:, :height, : t.shape[2]] for t in tiles]
    width = min(t.shape[2] for t in tiles)
    grid = make_grid([t[:, :, :width].float() / 255 for t in tiles], nrow=3, padding=4, pad_value=1.0)
    write_image(out / "before-after.png", (grid * 255).round().to(torch.uint8))

    click.echo(f"{'photo':<10} {'PSNR in':>8} {'PSNR out':>9} {'SSIM in':>8} {'SSIM out':>9}")
    for name, p_in, p_out, s_in, s_out in rows:
        click.echo(f"{name:<10} {p_in:8.2f} {p_out:9.2f} {s_in:8.4f} {s_out:9.4f}")
    means = [sum(r[i] for r in rows) / len(rows) for i in range(1, 5)]
    click.echo(f"{'mean':<10} {means[0]:8.2f} {means[1]:9.2f} {means[2]:8.4f} {means[3]:9.4f}")
    better = sum(r[2] > r[1] and r[4] > r[3] for r in rows)
    console.print(f"{better} of {len(rows)} held-out images improved on both PSNR and SSIM", highlight=False)
    console.print(f"trained {steps} steps in {trained - began:.0f}s; total {time.perf_counter() - began:.0f}s; "
                  f"picture: {out / 'before-after.png'} (rainy | de-rained | clean)", highlight=False)
    if not (means[1] > means[0] and means[3] > means[2]):
        console.print("the de-rained output does not beat the rainy input on both PSNR and SSIM")
        sys.exit(1)


if __name__ == "__main__":
    main()
