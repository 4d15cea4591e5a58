"""`pan tasks` and `pan train`: parse the options, build the config, call the trainer."""

from __future__ import annotations

import os
from pathlib import Path

import click
from click.core import ParameterSource

from pan_cli.commands.options import MAX_SIDE, Finite, finite_floats, rain_options, set_threads, settle_rain
from pan_cli.commands.output import emit
from pan_cli.commands.progress import progress_bar, stderr_console
from pan_cli.config import RunConfig
from pan_cli.datasets.cache import default_root
from pan_cli.devices import pick_device, resolve_precision
from pan_cli.errors import PanError
from pan_cli.losses.objectives import OBJECTIVES
from pan_cli.losses.terms import PIXEL_LOSSES
from pan_cli.models.discriminator import build_discriminator
from pan_cli.models.networks import GENERATORS, build_generator, count_parameters
from pan_cli.score.evaluation import validator
from pan_cli.score.metrics import Settings
from pan_cli.tasks import TASKS, make_config
from pan_cli.train.data import find_training_data, steps_for_epochs
from pan_cli.train.distributed import setup
from pan_cli.train.finetune import finetune_source, finetune_start
from pan_cli.train.loop import TrainOptions, train
from pan_cli.train.sizes import batchnorm_problem


def _lambdas(ctx, param, value: str | None):
    """Parsed here; how many and their signs are RunConfig's to check."""
    return None if value is None else finite_floats(value, None, "5,1.5,1.5,1 (D layers 1,4,6,8)")


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
                                  f"margin {config.margin:g}, lambda-pix {config.lambda_pix:g} ({config.pixel_loss})"),
                    ("residual, ema", f"{config.residual}, {config.ema:g}"),
                    ("synthesizer", (task.synthesizer + (" (always)" if task.always_synthesize else
                                                         " (with --synthesize)")) if task.synthesizer else "none"),
                    *([("recipe", _recipe(task))] if task.recipe else []),
                    ("--paper", f"the authors' settings: {make_config(name, paper=True).generator}"),
                ])


def _recipe(task) -> str:
    """The shipped model's settings over the task's defaults, as a user would type them."""
    def flag(key: str, value) -> str:
        name = "--" + key.replace("_", "-")
        return name if value is True else f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}"
    return "the shipped model's: " + " ".join(flag(k, v) for k, v in task.recipe)


@click.command("tasks")
@click.option("-v", "--verbose", is_flag=True, help="Also show the networks' parameter counts.")
def tasks_command(verbose: bool) -> None:
    """List the tasks and their defaults (a table on stdout)."""
    for name in TASKS:
        task, config = TASKS[name], make_config(name)
        line = (f"{name:<14} {task.summary:<38} generator={config.generator} size={config.image_size} "
                f"objective={config.objective} lambdas={','.join(f'{v:g}' for v in config.lambdas)} "
                f"margin={config.margin:g} lambda_pix={config.lambda_pix:g} residual={config.residual}")
        if verbose:
            line += (f" zoom={config.zoom} d_width={config.d_width:g} paper={make_config(name, paper=True).generator}"
                     f" T_params={count_parameters(build_generator(config))}"
                     f" D_params={count_parameters(build_discriminator(config))}")
        emit(line)


def default_workers() -> int:
    """Loader processes beside the training process: the cores less one, 1 to 8."""
    return max(1, min(8, (os.cpu_count() or 2) - 1))


@click.command("train", cls=TaskCommand)
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
@click.option("--load-size", type=click.IntRange(0, MAX_SIDE),
              help="Resize the shorter side first (0: no; --zoom crops the photo as it is).")
@click.option("--zoom/--no-zoom", default=None,
              help="Crops of random size (15-100% of a photo's area) resized to --image-size: whole scenes "
                   "and close-ups alike.")
@click.option("--lr", type=Finite(min=0, min_open=True))
@click.option("--lr-decay", type=click.IntRange(min=0),
              help="Let both learning rates fall linearly to 0 over the last N steps (may change on --resume).")
@click.option("--lambdas", callback=_lambdas, help="Perceptual weights for D layers 1,4,6,8.")
@click.option("--margin", type=Finite(min=0), help="Margin m of D's hinge.")
@click.option("--d-width", type=Finite(0, 4, min_open=True),
              help="D's channel multiplier (1: the paper's D; 0.5: a quarter of its cost).")
@click.option("--lambda-pix", type=Finite(min=0), help="Weight of the pixel term.")
@click.option("--pixel-loss", type=click.Choice(list(PIXEL_LOSSES)),
              help="The pixel term: mean absolute (l1, the default) or squared error (l2, as Context Encoders), "
                   "l1-low: mean absolute error of 4x4 block means (texture left to the adversarial terms), "
                   "or ssim: 1 - SSIM (PReNet's de-raining term).")
@click.option("--objective", type=click.Choice(list(OBJECTIVES)))
@click.option("--gan-form", type=click.Choice(["saturating", "non-saturating"]))
@click.option("--d-warmup", type=click.IntRange(min=0),
              help="D updates against the starting T before T's first (fine-tuning with a fresh D).")
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
@click.option("--finetune", metavar="CHECKPOINT|shipped",
              help="Start from a model's weights (a run's checkpoint, an export, or `shipped`: the pretrained "
                   "model of TASK) with its settings, except those given here; steps and optimisers start afresh.")
@click.option("--detect-anomaly", is_flag=True, help="Debug: find the operation that made a NaN/inf.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto", show_default=True,
              help="Autocast precision. auto: bf16 where it is faster (CUDA with bf16, CPUs with AMX), "
                   "else fp32. fp16: CUDA only, with loss scaling.")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads (default: torch's choice).")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile T and D (slow start, faster steps).")
@click.option("--tensorboard", is_flag=True, help="Also log to RUN_DIR/tensorboard (pip install 'pan[tensorboard]').")
@click.option("--profile", is_flag=True,
              help="Time each step's phases (waiting for data, the D step, the T step): RUN_DIR/profile.json "
                   "and a summary line (steps/s, crops/s, data_fraction).")
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
@click.option("--workers", type=click.IntRange(min=0),
              help="DataLoader processes that cut (and on a CPU synthesize) the batches beside the step "
                   "(default: the CPU cores less one, 1 to 8; 0: in the training process).")
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path),
              help="Folder the training images are decoded into once, for every crop and later run on the same "
                   "files (default: $PAN_CACHE, else ~/.cache/pan; safe to delete).")
@click.option("--no-cache", is_flag=True, help="Decode each image from its file at every crop instead.")
@click.option("-q", "--quiet", is_flag=True, help="No progress or summary on stderr.")
def train_command(task: str, data: Path | None, synthesize: bool, steps: int | None, epochs: float | None,
                  paper: bool, device: str, run_dir: Path | None, resume: str | None, quiet: bool,
                  val_data: Path | None, finetune: str | None, cache: Path | None, no_cache: bool,
                  **settings) -> None:
    """Train TASK on the pairs in --data; prints the final checkpoint's path on stdout."""
    if cache and no_cache:
        raise click.UsageError("give --cache or --no-cache, not both")
    runtime = {k: settings.pop(k) for k in ("log_every", "sample_every", "checkpoint_every", "val_every", "keep",
                                            "workers", "detect_anomaly", "time_limit", "tensorboard", "precision",
                                            "profile")}
    runtime["compile"] = settings.pop("compile_")
    if runtime["workers"] is None:
        runtime["workers"] = default_workers()
    set_threads(settings.pop("threads"))
    if synthesize and not TASKS[task].synthesizer:
        raise PanError(f"{task} has no input synthesizer; `pan data make` builds pairs for it")
    if synthesize:
        settings["synthesize"] = TASKS[task].synthesizer
    settle_rain(settings)
    context = click.get_current_context()
    asked = frozenset(name for name in settings if name in RunConfig.__dataclass_fields__
                      and context.get_parameter_source(name) == ParameterSource.COMMANDLINE)
    start = None
    if finetune:
        settings, start = finetune_start(task, finetune_source(task, finetune), settings, asked)
    config = make_config(task, paper=paper, **settings)  # the rest are RunConfig settings; None = default
    problem = batchnorm_problem(config)
    if problem:
        raise click.UsageError(problem)
    group, process_device = setup()  # torchrun: join the data-parallel group
    console = stderr_console(quiet or not group.main)

    def say(message: str) -> None:
        """A message on stderr; a warning shows even with -q (it may mean a setting was not used)."""
        if message.startswith("warning: ") and quiet and group.main:
            click.echo(f"pan: {message}", err=True)
        else:
            console.print(f"pan: {message}", highlight=False)

    found = find_training_data(config, data, val_data)
    console.print(f"data: {found.description}", highlight=False)
    for warning in found.warnings:
        say(f"warning: {warning}")
    val_settings = Settings(channel=TASKS[task].val_channel)
    if found.val_pairs:
        console.print(f"validation: {len(found.val_pairs)} pairs, {val_settings.channel.upper()} PSNR picks best.pt",
                      highlight=False)
    if epochs is not None:
        if steps is not None:
            raise click.UsageError("give --steps or --epochs, not both")
        steps = steps_for_epochs(epochs, len(found.pairs), config)
    train_device = pick_device(process_device or device)
    runtime["precision"], why = resolve_precision(runtime["precision"], train_device)
    console.print(f"device: {train_device.type}, {runtime['precision']} ({why})", highlight=False)
    options = TrainOptions(run_dir=run_dir or Path("runs") / task, device=train_device, group=group,
                           cache=None if no_cache else cache or default_root(), **runtime)
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

        final = train(config, found.pairs, options, resume=resume, steps=steps, on_step=on_step,
                      finetune=start,
                      validate=validator(found.val_pairs, val_settings) if found.val_pairs else None,
                      warn=say, note=lambda message: console.print(f"data: {message}", highlight=False),
                      asked=asked)
    console.print(f"done: checkpoint {final}", highlight=False)
    if group.main:
        emit(str(final))
