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

from pan_cli.commands.progress import progress_bar, stderr_console
from pan_cli.datasets.images import read_image, write_grid
from pan_cli.datasets.layout import detect_layout, find_pairs
from pan_cli.datasets.photos import HELD_OUT_PHOTOS, TRAIN_PHOTOS, write_rain_pairs
from pan_cli.infer.files import run_inference
from pan_cli.infer.jobs import Job
from pan_cli.infer.predictor import Predictor
from pan_cli.score.metrics import psnr, ssim
from pan_cli.tasks import make_config
from pan_cli.train.loop import TrainOptions, train


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
    write_rain_pairs(out / "pairs", TRAIN_PHOTOS, variants, seed)
    held_out = write_rain_pairs(out / "held-out", HELD_OUT_PHOTOS, 3, 10_000 + seed)  # rain never trained on
    console.print(f"data: {len(TRAIN_PHOTOS) * variants} training pairs in {out / 'pairs'}; held out: "
                  f"{', '.join(HELD_OUT_PHOTOS)}, 3 rain draws each", highlight=False)

    # the demo's own settings (its figures in the README): the first generator, a full-width D
    config = make_config("derain", generator="idcgan", d_width=1.0, image_size=image_size, batch_size=batch_size,
                         lr=lr, ema=ema, lambda_pix=lambda_pix, seed=seed, steps=steps)
    console.print(f"training: pan train derain --data {out / 'pairs'} --generator idcgan --d-width 1 --steps {steps} "
                  f"--image-size {image_size} --batch-size {batch_size} --lr {lr:g} --ema {ema:g} "
                  f"--lambda-pix {lambda_pix:g} --seed {seed} --run-dir {out / 'run'}", highlight=False)
    options = TrainOptions(run_dir=out / "run", sample_every=0, checkpoint_every=steps)
    with progress_bar(console) as bar:
        job = bar.add_task("train derain", total=steps, info="")
        checkpoint = train(config, find_pairs(detect_layout(out / "pairs")), options,
                           on_step=lambda step, _: bar.update(job, completed=step))
    trained = time.perf_counter()

    predictor = Predictor.from_checkpoint(checkpoint, "derain", torch.device("cpu"))
    jobs = [Job(out / "held-out" / "A" / f"{n}.png", out / "derained" / f"{n}.png") for n in held_out]
    run_inference(predictor, jobs, batch_size=1, workers=0, overwrite=True)

    rows, tiles = [], []
    for name in held_out:
        clean = read_image(out / "held-out" / "B" / f"{name}.png")
        rainy = read_image(out / "held-out" / "A" / f"{name}.png")
        derained = read_image(out / "derained" / f"{name}.png")
        rows.append((name, psnr(clean, rainy), psnr(clean, derained), ssim(clean, rainy), ssim(clean, derained)))
        if name.endswith("-0"):
            tiles += [rainy, derained, clean]
    write_grid(out / "before-after.png", tiles, columns=3)

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
