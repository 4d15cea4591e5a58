"""`pan eval`, `pan compare` and `pan report`: scoring models and runs."""

from __future__ import annotations

import time
from pathlib import Path

import click

from pan_cli.commands.options import tile_options
from pan_cli.commands.output import emit
from pan_cli.commands.progress import stderr_console
from pan_cli.datasets.cache import default_root
from pan_cli.datasets.layout import detect_layout, find_pairs
from pan_cli.devices import pick_device
from pan_cli.infer.predictor import Predictor
from pan_cli.losses.objectives import OBJECTIVES, PAN
from pan_cli.score.compare import compare, comparison_data, write_compare_report
from pan_cli.score.evaluation import best_split, check_save_folder, matching_files, render, score_files, score_model
from pan_cli.score.metrics import Settings
from pan_cli.score.report import write_report
from pan_cli.store.checkpoint import default_checkpoint
from pan_cli.tasks import TASKS, make_config


@click.command("eval")
@click.option("--pred", type=click.Path(path_type=Path), help="Folder of outputs to score (with --ref).")
@click.option("--ref", type=click.Path(path_type=Path), help="Folder of targets with the same file names.")
@click.option("--mask", type=click.Path(path_type=Path),
              help="With --pred/--ref: masks with the same names (white = hole); adds scores inside the hole.")
@click.option("--task", type=click.Choice(list(TASKS)), help="Score a model instead (with --data).")
@click.option("--checkpoint", type=click.Path(path_type=Path),
              help="Default: runs/TASK/latest.pt, else (derain) the pretrained model that ships with pan.")
@click.option("--data", type=click.Path(path_type=Path), help="Dataset whose pairs the model is scored on.")
@click.option("--split", help="Split of --data (default: test, else val, else the pairs in --data).")
@click.option("--save", type=click.Path(path_type=Path), help="Also write the model's outputs here.")
@click.option("--overwrite", is_flag=True, help="--save may replace files that exist.")
@click.option("--channel", type=click.Choice(["rgb", "y"]), default="rgb", show_default=True,
              help="Score RGB or BT.601 luma (as de-raining papers report).")
@click.option("--crop-border", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--no-baselines", is_flag=True,
              help="inpaint: skip the classical fills (mean colour, biharmonic) scored beside the model.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image, then the mean.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header row.")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda", "mps"]))
@tile_options
def eval_command(pred, ref, mask, task, checkpoint, data, split, save, overwrite, channel, crop_border, no_baselines,
                 as_json, as_csv, device, tile, tile_overlap) -> None:
    """PSNR, SSIM, UQI and VIF per image and their mean, on 8-bit images.

    Either score existing images (--pred DIR --ref DIR) or a model on a dataset
    (--task TASK --data DIR [--checkpoint FILE])."""
    if as_json and as_csv:
        raise click.UsageError("give --json or --csv, not both")
    settings = Settings(channel=channel, crop_border=crop_border)
    if pred is not None or ref is not None:
        if pred is None or ref is None or task or data:
            raise click.UsageError("--pred and --ref go together, without --task/--data")
        rows = list(score_files(matching_files(pred, ref), settings, mask))
    elif task and data:
        layout = detect_layout(data)
        pairs = find_pairs(layout, split or best_split(layout.splits))
        if save is not None:
            check_save_folder(save, pairs, overwrite)
        checkpoint = checkpoint or default_checkpoint(task, lambda m: click.echo(f"pan: {m}", err=True))
        predictor = Predictor.from_checkpoint(checkpoint, task, pick_device(device), tile, tile_overlap)
        rows = list(score_model(predictor, pairs, settings, save, baselines=not no_baselines, overwrite=overwrite))
    else:
        raise click.UsageError("give --pred and --ref, or --task and --data")
    emit(render(rows, settings, "json" if as_json else "csv" if as_csv else "table"), end="")


@click.command("compare")
@click.option("--task", required=True, type=click.Choice(list(TASKS)))
@click.option("--data", type=click.Path(path_type=Path),
              help="Dataset (train/ for training, test/ or val/ to score). derain: default built-in photos + rain.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("compare-output"), show_default=True)
@click.option("--objectives", default="pan,pix2pix,l1", show_default=True)
@click.option("--seeds", default="0,1", show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=150, show_default=True, help="PAN's steps per run.")
@click.option("--image-size", type=click.IntRange(min=8),
              help="Training crop. Default: the task's own (pan tasks -v).")
@click.option("--batch-size", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("-q", "--quiet", is_flag=True)
def compare_command(task, data, out, objectives, seeds, steps, image_size, batch_size, quiet) -> None:
    """Train pan, pix2pix and l1 on the same data and seeds; report both the equal-step and the
    equal-wall-clock view (report.md and grid.png under --out; the table on stdout)."""
    console = stderr_console(quiet)
    task_config = make_config(task)
    image_size = image_size or task_config.image_size
    names = [o.strip() for o in objectives.split(",") if o.strip()]
    if not names or names[0] != PAN or any(o not in OBJECTIVES for o in names):
        raise click.BadParameter("a comma-separated list starting with pan, from " + ", ".join(OBJECTIVES),
                                 param_hint="--objectives")
    try:
        seed_list = [int(s) for s in seeds.split(",")]
    except ValueError:
        raise click.BadParameter("comma-separated integers", param_hint="--seeds") from None
    found = comparison_data(task, data, out, image_size)
    console.print(f"data: {found.description}", highlight=False)

    def configs(objective: str, seed: int):
        return make_config(task, objective=objective, seed=seed, image_size=image_size, batch_size=batch_size)

    began = time.perf_counter()
    result = compare(configs, names, seed_list, steps, found.train, found.scored, out,
                     warn=lambda message: console.print(f"pan: {message}", highlight=False), cache=default_root())
    minutes = (time.perf_counter() - began) / 60
    emit(write_compare_report(out / "report.md", task, found, result, names, seed_list, steps, image_size,
                              batch_size, minutes))


@click.command("report")
@click.argument("run_dir", type=click.Path(path_type=Path))
def report_command(run_dir: Path) -> None:
    """Plot a run's losses and validation scores (report.png) and write report.html with the
    sample grids; prints both paths."""
    for path in write_report(run_dir):
        emit(str(path))
