"""The `pan` command line: parses and validates arguments, calls the library, and turns
errors into one line on stderr. stdout carries data only."""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

import click
import torch
from click.core import ParameterSource

from pan_cli import __version__
from pan_cli.checkpoint import PRETRAINED, default_checkpoint, export_weights, is_run_checkpoint_name, load_checkpoint
from pan_cli.compare import compare
from pan_cli.config import OBJECTIVES, RunConfig
from pan_cli.data_commands import data_group
from pan_cli.datasets.images import WRITE_FORMATS
from pan_cli.datasets.layout import detect_layout, find_pairs, find_photos
from pan_cli.datasets.photos import HELD_OUT_PHOTOS, TRAIN_PHOTOS, write_rain_pairs
from pan_cli.distributed import setup
from pan_cli.errors import PanError
from pan_cli.evaluation import best_split, matching_files, render, score_files, score_model
from pan_cli.exports import FORMATS, WEIGHTS_NAME, export_onnx, export_safetensors, format_for
from pan_cli.inference import Predictor, check_output_folder, collect_jobs, mark_output, run_inference, stdin_paths
from pan_cli.memory import max_pixels as memory_max_pixels
from pan_cli.metrics import Settings
from pan_cli.networks import GENERATORS, build_discriminator, build_generator, count_parameters
from pan_cli.options import MAX_SIDE, Finite, finite_floats, rain_options, settle_rain
from pan_cli.output import emit
from pan_cli.progress import progress_bar, stderr_console
from pan_cli.report import write_report
from pan_cli.sizes import batchnorm_problem
from pan_cli.tasks import TASKS, make_config
from pan_cli.training import EXIT_INTERRUPTED, Interrupted, TrainOptions, pick_device, resolve_precision, train

PILLOW_LIMIT = 178_956_970  # Pillow's own decompression-bomb error threshold
EXIT_PARTIAL = 3  # some inputs failed, the rest were written
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a Unix tool killed by it: the reader closed the pipe


class Failure(click.ClickException):
    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:
        click.echo(f"pan: error: {self.message}", err=True)


class PanGroup(click.Group):
    """Every PanError from any command becomes one line on stderr and a non-zero exit."""

    def invoke(self, ctx: click.Context):
        if sys.stdout is None:  # started with stdout closed (`>&-`): the data it prints would be lost
            raise Failure("stdout is closed, so the output paths and scores would be lost; redirect it to a "
                          "file or to /dev/null")
        try:
            return super().invoke(ctx)
        except BrokenPipeError:  # `pan infer ... | head`: the reader has what it wanted; end quietly
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # so the flush at exit cannot fail again
            raise click.exceptions.Exit(EXIT_BROKEN_PIPE) from None
        except Interrupted as exc:
            raise Failure(str(exc), EXIT_INTERRUPTED) from None
        except KeyboardInterrupt:  # a second Ctrl-C: stop now; every file write is atomic
            raise Failure("interrupted", EXIT_INTERRUPTED) from None
        except PanError as exc:
            raise Failure(str(exc)) from None
        except OSError as exc:  # a file system refusal (permissions, disk, ...) is the user's to fix
            where = f"{exc.filename}: " if exc.filename else ""
            raise Failure(f"{where}{exc.strerror or exc}") from None


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


def _lambdas(ctx, param, value: str | None):
    if value is None:
        return None
    weights = finite_floats(value, 4, "5,1.5,1.5,1 (D layers 1,4,6,8)")
    if min(weights) < 0:
        raise click.BadParameter(f"{value!r}: weights cannot be negative")
    return weights


class TaskCommand(click.Command):
    """`pan train TASK --help` ends with TASK's registry defaults (every task's without TASK)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["help_tasks"] = [a for a in args if a in TASKS] or list(TASKS)
        return super().parse_args(ctx, args)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        for name in ctx.meta.get("help_tasks", TASKS):
            task, config = TASKS[name], make_config(name)
            with formatter.section(f"Defaults for {name} ({task.summary})"):
                formatter.write_dl([
                    ("data", task.data),
                    ("generator", f"{config.generator}, image size {config.image_size}"
                                  + (f", load size {config.load_size}" if config.load_size else "")),
                    ("direction", config.direction + (" (input is a label map)" if config.label_input else "")),
                    ("objective", f"{config.objective}, lambdas {','.join(f'{v:g}' for v in config.lambdas)}, "
                                  f"margin {config.margin:g}, lambda-pix {config.lambda_pix:g}"),
                    ("residual, ema", f"{config.residual}, {config.ema:g}"),
                    ("synthesizer", (task.synthesizer + (" (always)" if task.always_synthesize else
                                                         " (with --synthesize)")) if task.synthesizer else "none"),
                ])


@click.group(cls=PanGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pan")
def cli() -> None:
    """Perceptual Adversarial Networks for paired image-to-image work."""


@cli.command("tasks")
@click.option("-v", "--verbose", is_flag=True, help="Also show the networks' parameter counts.")
def tasks_command(verbose: bool) -> None:
    """List the tasks and their defaults (a table on stdout)."""
    for name in TASKS:
        task, config = TASKS[name], make_config(name)
        line = (f"{name:<14} {task.summary:<38} generator={config.generator} size={config.image_size} "
                f"objective={config.objective} lambdas={','.join(f'{v:g}' for v in config.lambdas)} "
                f"margin={config.margin:g} lambda_pix={config.lambda_pix:g} residual={config.residual}")
        if verbose:
            line += (f" T_params={count_parameters(build_generator(config))}"
                     f" D_params={count_parameters(build_discriminator(config))}")
        emit(line)


@cli.command("train", cls=TaskCommand)
@click.argument("task", type=click.Choice(list(TASKS)))
@click.option("--data", type=click.Path(path_type=Path),
              help="Dataset folder: pairs, or clean photos for a task that synthesizes its inputs.")
@click.option("--synthesize", is_flag=True,
              help="Make the inputs on the fly from the clean photos in --data (derain: rain streaks).")
@rain_options
@click.option("--steps", type=click.IntRange(min=1), help="T updates in all (each after one D update).")
@click.option("--epochs", type=Finite(min=0, min_open=True),
              help="Instead of --steps: passes over the training pairs (a step uses two batches).")
@click.option("--batch-size", type=click.IntRange(min=1))
@click.option("--image-size", type=click.IntRange(8, MAX_SIDE), help="Training crop size.")
@click.option("--load-size", type=click.IntRange(0, MAX_SIDE), help="Resize the shorter side first (0: no).")
@click.option("--zoom/--no-zoom", default=None,
              help="Crops of random size (15-100%% of a photo's area) resized to --image-size: whole scenes "
                   "and close-ups alike.")
@click.option("--lr", type=Finite(min=0, min_open=True))
@click.option("--lambdas", callback=_lambdas, help="Perceptual weights for D layers 1,4,6,8.")
@click.option("--margin", type=Finite(min=0), help="Margin m of D's hinge.")
@click.option("--d-width", type=Finite(0, 4, min_open=True),
              help="D's channel multiplier (1: the paper's D; 0.5: a quarter of its cost).")
@click.option("--lambda-pix", type=Finite(min=0), help="Pixel L1 weight.")
@click.option("--objective", type=click.Choice(OBJECTIVES))
@click.option("--gan-form", type=click.Choice(["saturating", "non-saturating"]))
@click.option("--generator", type=click.Choice(list(GENERATORS)))
@click.option("--residual/--no-residual", default=None, help="Predict a correction: clamp(x + T(x)).")
@click.option("--ema", type=Finite(0, 1, max_open=True), help="Weight-average decay (0: off).")
@click.option("--direction", type=click.Choice(["AtoB", "BtoA"]))
@click.option("--paper", is_flag=True, help="The authors' exact settings.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda", "mps"]))
@click.option("--run-dir", type=click.Path(path_type=Path), help="Default: runs/TASK.")
@click.option("--resume", type=click.Choice(["latest", "auto"]), is_flag=False, flag_value="latest",
              help="Continue the run in --run-dir: from latest.pt, or (auto) from the newest checkpoint "
                   "that loads, starting fresh if there is none.")
@click.option("--detect-anomaly", is_flag=True, help="Debug: find the operation that made a NaN/inf.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto", show_default=True,
              help="Autocast precision. auto: bf16 where it is faster (CUDA with bf16, CPUs with AMX), "
                   "else fp32. fp16: CUDA only, with loss scaling.")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads (default: torch's choice).")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile T and D (slow start, faster steps).")
@click.option("--tensorboard", is_flag=True, help="Also log to RUN_DIR/tensorboard (pip install 'pan[tensorboard]').")
@click.option("--time-limit", type=Finite(min=0, min_open=True),
              help="Stop (with a checkpoint) at the first step after this many seconds of training.")
@click.option("--log-every", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--sample-every", type=click.IntRange(min=0), default=200, show_default=True)
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--val-every", type=click.IntRange(min=1), default=500, show_default=True,
              help="With validation pairs: score them and keep best.pt.")
@click.option("--val", "val_data", type=click.Path(path_type=Path),
              help="Pairs to validate on (real rainy/clean pairs, say, while training on synthesized ones). "
                   "Default: the val/ split of --data.")
@click.option("--keep", type=click.IntRange(min=0), default=3, show_default=True,
              help="step-N.pt files to keep (0: all).")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="DataLoader worker processes.")
@click.option("-q", "--quiet", is_flag=True, help="No progress or summary on stderr.")
def train_command(task: str, data: Path | None, synthesize: bool, steps: int | None, epochs: float | None,
                  paper: bool, device: str, run_dir: Path | None, resume: str | None, quiet: bool,
                  val_data: Path | None, **settings) -> None:
    """Train TASK on the pairs in --data; prints the final checkpoint's path on stdout."""
    runtime = {k: settings.pop(k) for k in ("log_every", "sample_every", "checkpoint_every", "val_every", "keep",
                                            "workers", "detect_anomaly", "time_limit", "tensorboard", "precision")}
    runtime["compile"] = settings.pop("compile_")
    set_threads(settings.pop("threads"))
    if data is None:
        raise PanError(TASKS[task].no_data)
    if synthesize and not TASKS[task].synthesizer:
        raise PanError(f"{task} has no input synthesizer; `pan data make` builds pairs for it")
    if synthesize:
        settings["synthesize"] = TASKS[task].synthesizer
    settle_rain(settings)
    context = click.get_current_context()
    asked = frozenset(name for name in settings if name in RunConfig.__dataclass_fields__
                      and context.get_parameter_source(name) == ParameterSource.COMMANDLINE)
    config = make_config(task, paper=paper, **settings)  # the rest are RunConfig settings; None = default
    problem = batchnorm_problem(config)
    if problem:
        raise click.UsageError(problem)
    group, process_device = setup()  # torchrun: join the data-parallel group
    console = stderr_console(quiet or not group.main)
    if config.synthesize:
        pairs, val_pairs = find_photos(data, "train", config.direction), None
        console.print(f"data: {len(pairs)} clean photos in {data}; inputs synthesized ({config.synthesize})",
                      highlight=False)
    else:
        layout = detect_layout(data)
        pairs = find_pairs(layout, "train")
        val_pairs = find_pairs(layout, "val") if "val" in layout.splits else None
        console.print(f"data: {layout.describe()}; {len(pairs)} training pairs", highlight=False)
        if layout.kind == "aligned" and TASKS[task].synthesizer:
            console.print(f"pan: warning: each image in {data} is read as an input|target pair side by side; if "
                          "they are plain photos, add --synthesize to make the inputs from them", highlight=False)
    if val_data is not None:
        val_layout = detect_layout(val_data)
        val_pairs = find_pairs(val_layout, best_split(val_layout.splits))
    val_settings = Settings(channel=TASKS[task].val_channel)
    if val_pairs:
        console.print(f"validation: {len(val_pairs)} pairs, {val_settings.channel.upper()} PSNR picks best.pt",
                      highlight=False)
    if epochs is not None:
        if steps is not None:
            raise click.UsageError("give --steps or --epochs, not both")
        batches_per_step = 1 if config.objective == "l1" else 2
        steps = max(1, math.ceil(epochs * len(pairs) / (config.batch_size * batches_per_step)))
    train_device = pick_device(process_device or device)
    runtime["precision"], why = resolve_precision(runtime["precision"], train_device)
    console.print(f"device: {train_device.type}, {runtime['precision']} ({why})", highlight=False)
    options = TrainOptions(run_dir=run_dir or Path("runs") / task, device=train_device,
                           group=group, val_settings=val_settings, **runtime)
    if group.world > 1:
        console.print(f"data-parallel: {group.world} processes x batch {config.batch_size} = effective batch "
                      f"{group.world * config.batch_size}", highlight=False)
    total = steps or config.steps
    with progress_bar(console) as bar:
        job = bar.add_task(f"train {task}", total=total, info="")

        def on_step(step: int, scalars: dict[str, float] | None) -> None:
            info = None
            if scalars:
                shown = ("d_total", "t_gan", "t_perceptual", "t_pixel")
                info = " ".join(f"{k[2:]}={scalars[k]:.3f}" for k in shown if k in scalars)
            bar.update(job, completed=step, **({"info": info} if info else {}))

        final = train(config, pairs, options, resume=resume, steps=steps, on_step=on_step, val_pairs=val_pairs,
                      warn=lambda message: console.print(f"pan: {message}", highlight=False), asked=asked)
    console.print(f"done: checkpoint {final}", highlight=False)
    if group.main:
        emit(str(final))


@cli.command("infer")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--task", required=True, type=click.Choice(list(TASKS)))
@click.option("--checkpoint", type=click.Path(path_type=Path),
              help="Default: runs/TASK/latest.pt, else (derain) the pretrained model that ships with pan.")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(path_type=Path))
@click.option("--mask", type=click.Path(path_type=Path),
              help="inpaint: a folder with one mask per input (same name; white = fill), or one mask file for "
                   "all. Without it the centre hole is filled, as in the paper.")
@click.option("--batch-size", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda", "mps"]))
@click.option("--format", "fmt", type=click.Choice(sorted(WRITE_FORMATS)), default="png", show_default=True)
@click.option("--on-error", type=click.Choice(["skip", "fail"]), default="skip", show_default=True,
              help="A bad input: report it and go on, or stop.")
@click.option("--overwrite", is_flag=True, help="Replace outputs that already exist.")
@click.option("--max-pixels", type=click.IntRange(min=1),
              help="Refuse larger images (decompression bombs, photos too large to run whole). Default: what "
                   "the memory free now allows for the model, at most 178956970.")
@click.option("--workers", type=click.IntRange(min=0), default=1, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads (default: torch's choice).")
@click.option("-0", "--null", is_flag=True,
              help="Paths on stdin ('-') and on stdout end with NUL, not a newline (find -print0, xargs -0).")
@click.option("-q", "--quiet", is_flag=True, help="Only data on stdout and errors on stderr.")
def infer_command(inputs, task, checkpoint, out_dir, mask, batch_size, device, fmt, on_error, overwrite,
                  max_pixels, workers, threads, null, quiet) -> None:
    """Run a trained model over image files, folders, or '-' (paths on stdin).

    Each written path is printed on stdout; outputs keep the inputs' relative paths."""
    set_threads(threads)
    console = stderr_console(quiet)
    if checkpoint is None:
        checkpoint = default_checkpoint(task, lambda m: console.print(f"pan: {m}", highlight=False))
        if checkpoint != PRETRAINED.get(task):  # the shipped model is announced by default_checkpoint
            console.print(f"pan: using {checkpoint}", highlight=False)
    predictor = Predictor.from_checkpoint(checkpoint, task, pick_device(device))
    if mask is not None and predictor.config.synthesize != "holes":
        raise PanError("--mask is for inpaint models")
    if max_pixels is None:
        max_pixels = min(PILLOW_LIMIT, memory_max_pixels(predictor.net, predictor.config.in_channels,
                                                         predictor.device, not predictor.multiple))
    stdin = stdin_paths(sys.stdin.buffer, null) if "-" in inputs else ()
    jobs = collect_jobs(inputs, out_dir, fmt, stdin, mask,
                        on_skipped=lambda m: console.print(f"pan: {m}", highlight=False))
    check_output_folder(out_dir)
    marked: list[bool] = []
    with progress_bar(console) as bar:
        job = bar.add_task(f"infer {task}", total=len(jobs), info="")

        def written(path: Path) -> None:
            if not marked:
                mark_output(out_dir)
                marked.append(True)
            emit(str(path), "\0" if null else "\n")
            bar.advance(job)

        def failed(message: str) -> None:
            click.echo(f"pan: skipped {message}" if on_error == "skip" else f"pan: error: {message}", err=True)
            bar.advance(job)

        summary = run_inference(predictor, jobs, batch_size, workers, on_error, overwrite, max_pixels,
                                written, failed)
    rate = len(summary.written) / summary.seconds if summary.seconds else 0.0
    console.print(f"wrote {len(summary.written)} of {len(jobs)} images to {out_dir} in "
                  f"{summary.seconds:.1f}s ({rate:.2f} images/s); {len(summary.failed)} failed",
                  highlight=False)
    if summary.failed:
        sys.exit(EXIT_PARTIAL if summary.written and on_error == "skip" else 1)


@cli.command("eval")
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
@click.option("--channel", type=click.Choice(["rgb", "y"]), default="rgb", show_default=True,
              help="Score RGB or BT.601 luma (as de-raining papers report).")
@click.option("--crop-border", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--no-baselines", is_flag=True,
              help="inpaint: skip the classical fills (mean colour, biharmonic) scored beside the model.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image, then the mean.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header row.")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda", "mps"]))
def eval_command(pred, ref, mask, task, checkpoint, data, split, save, channel, crop_border, no_baselines, as_json,
                 as_csv, device) -> None:
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
        checkpoint = checkpoint or default_checkpoint(task, lambda m: click.echo(f"pan: {m}", err=True))
        predictor = Predictor.from_checkpoint(checkpoint, task, pick_device(device))
        rows = list(score_model(predictor, pairs, settings, save, baselines=not no_baselines))
    else:
        raise click.UsageError("give --pred and --ref, or --task and --data")
    emit(render(rows, settings, "json" if as_json else "csv" if as_csv else "table"), end="")


@cli.command("compare")
@click.option("--task", required=True, type=click.Choice(list(TASKS)))
@click.option("--data", type=click.Path(path_type=Path),
              help="Dataset (train/ for training, test/ or val/ to score). derain: default built-in photos + rain.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("compare-output"), show_default=True)
@click.option("--objectives", default="pan,pix2pix,l1", show_default=True)
@click.option("--seeds", default="0,1", show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=150, show_default=True, help="PAN's steps per run.")
@click.option("--image-size", type=click.IntRange(min=8),
              help="Training crop. Default: 96 for derain (CPU-sized), the task's own size otherwise.")
@click.option("--batch-size", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("-q", "--quiet", is_flag=True)
def compare_command(task, data, out, objectives, seeds, steps, image_size, batch_size, quiet) -> None:
    """Train pan, pix2pix and l1 on the same data and seeds; report both the equal-step and the
    equal-wall-clock view (report.md and grid.png under --out; the table on stdout)."""
    console = stderr_console(quiet)
    task_config = make_config(task)
    image_size = image_size or (96 if task == "derain" else task_config.image_size)
    names = [o.strip() for o in objectives.split(",") if o.strip()]
    if not names or names[0] != "pan" or any(o not in OBJECTIVES for o in names):
        raise click.BadParameter("a comma-separated list starting with pan, from " + ", ".join(OBJECTIVES),
                                 param_hint="--objectives")
    try:
        seed_list = [int(s) for s in seeds.split(",")]
    except ValueError:
        raise click.BadParameter("comma-separated integers", param_hint="--seeds") from None
    if data is None:
        if task != "derain":
            raise PanError(f"{task} needs --data (built-in data exists for derain only)")
        data = out / "data"
        write_rain_pairs(data / "train", TRAIN_PHOTOS, 6, 0)
        write_rain_pairs(data / "test", HELD_OUT_PHOTOS, 3, 10_000)
    layout = detect_layout(data)
    # inpaint trains on the clean photos (holes made on the fly) and is scored on the fixed holes
    train_pairs = (find_photos(data, "train", task_config.direction) if task_config.synthesize
                   else find_pairs(layout, "train"))
    eval_split = best_split(layout.splits)
    if eval_split == "train":
        raise PanError(f"{data} has no test/ or val/ split to score on")
    eval_pairs = find_pairs(layout, eval_split)
    console.print(f"data: {layout.describe()}; {len(train_pairs)} training, {len(eval_pairs)} {eval_split} pairs",
                  highlight=False)

    def configs(objective: str, seed: int):
        return make_config(task, objective=objective, seed=seed, image_size=image_size, batch_size=batch_size)

    began = time.perf_counter()
    result = compare(configs, names, seed_list, steps, train_pairs, eval_pairs, out,
                     warn=lambda message: console.print(f"pan: {message}", highlight=False))
    table = result.table(names)
    minutes = (time.perf_counter() - began) / 60
    report = (f"# pan compare --task {task}\n\n{len(train_pairs)} training pairs, {len(eval_pairs)} scored "
              f"({eval_split}); {image_size}px crops, batch {batch_size}; PAN {steps} steps; seeds "
              f"{', '.join(map(str, seed_list))}; mean ± sd over seeds; {minutes:.0f} minutes in all.\n\n"
              f"{table}\n\n![grid](grid.png)\n\ngrid.png: one row per scored image: input | "
              f"{' | '.join(names)} (equal wall-clock, seed {seed_list[0]}) | target\n")
    (out / "report.md").write_text(report)
    emit(table)


@cli.command("report")
@click.argument("run_dir", type=click.Path(path_type=Path))
def report_command(run_dir: Path) -> None:
    """Plot a run's losses and validation scores (report.png) and write report.html with the
    sample grids; prints both paths."""
    for path in write_report(run_dir):
        emit(str(path))


cli.add_command(data_group)


@cli.command("export")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS),
              help="torch (pan's own file), onnx (any height and width; pip install 'pan[onnx]') or safetensors "
                   "(-o is a folder: model.safetensors + config.json; pip install 'pan[safetensors]'). "
                   "Default: from -o's suffix, else torch.")
@click.option("--overwrite", is_flag=True, help="Replace an existing -o file (never a run's own checkpoint).")
def export_command(checkpoint: Path, out: Path, fmt: str | None, overwrite: bool) -> None:
    """Write a checkpoint's inference weights only (EMA if kept; no D, no optimizer state):
    small enough to share; `pan infer --checkpoint` takes the torch and safetensors exports.
    CHECKPOINT is a training checkpoint or an export (the shipped models included). Every
    export records the task, generator, step, training-data fingerprint and validation
    figures. Prints its path."""
    fmt = format_for(out, fmt)
    if fmt == "safetensors":
        target = out / WEIGHTS_NAME
        if target.exists() and not overwrite:
            raise PanError(f"-o {out} already holds {WEIGHTS_NAME}; give --overwrite to replace it")
        export_safetensors(load_checkpoint(checkpoint), out)
        emit(str(out))
        return
    if out.is_dir():
        raise PanError(f"-o {out} is a folder; give the file to write, e.g. {out / 'model.pt'}")
    if out.exists() and out.resolve() == checkpoint.resolve():
        raise PanError("the export would overwrite its source; choose another -o")
    if is_run_checkpoint_name(out):
        raise PanError(f"-o {out} is a name the training run in {out.parent} owns; an export there would "
                       "replace its checkpoint (choose another name or folder)")
    if out.exists() and not overwrite:
        raise PanError(f"-o {out} exists; give --overwrite to replace it")
    if fmt == "onnx":
        export_onnx(load_checkpoint(checkpoint), out)
    else:
        export_weights(checkpoint, out)
    emit(str(out))


def main() -> None:
    cli(prog_name="pan")
