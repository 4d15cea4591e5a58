"""`pan infer` and `pan export`: running a trained model over files, and writing it out for
other runtimes."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from pan_cli.checkpoint import PRETRAINED, default_checkpoint, export_weights, is_run_checkpoint_name, load_checkpoint
from pan_cli.datasets.images import WRITE_FORMATS
from pan_cli.devices import pick_device
from pan_cli.errors import PanError
from pan_cli.exports import FORMATS, WEIGHTS_NAME, export_onnx, export_safetensors, format_for
from pan_cli.inference import run_inference
from pan_cli.jobs import check_output_folder, collect_jobs, mark_output, stdin_paths
from pan_cli.options import set_threads, tile_options
from pan_cli.output import emit
from pan_cli.predictor import Predictor
from pan_cli.progress import progress_bar, stderr_console
from pan_cli.tasks import TASKS

EXIT_PARTIAL = 3  # some inputs failed, the rest were written


@click.command("infer")
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
              help="Refuse larger images (decompression bombs). Default: what the memory free now allows "
                   "(with --tile 0: for the model's whole-image pass), at most 89478485 (Pillow's limit).")
@tile_options
@click.option("--workers", type=click.IntRange(min=0), default=1, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads (default: torch's choice).")
@click.option("-0", "--null", is_flag=True,
              help="Paths on stdin ('-') and on stdout end with NUL, not a newline (find -print0, xargs -0).")
@click.option("-q", "--quiet", is_flag=True, help="Only data on stdout and errors on stderr.")
def infer_command(inputs, task, checkpoint, out_dir, mask, batch_size, device, fmt, on_error, overwrite,
                  max_pixels, tile, tile_overlap, workers, threads, null, quiet) -> None:
    """Run a trained model over image files, folders, or '-' (paths on stdin).

    Each written path is printed on stdout; outputs keep the inputs' relative paths."""
    set_threads(threads)
    console = stderr_console(quiet)
    if checkpoint is None:
        checkpoint = default_checkpoint(task, lambda m: console.print(f"pan: {m}", highlight=False))
        if checkpoint != PRETRAINED.get(task):  # the shipped model is announced by default_checkpoint
            console.print(f"pan: using {checkpoint}", highlight=False)
    predictor = Predictor.from_checkpoint(checkpoint, task, pick_device(device), tile, tile_overlap)
    if mask is not None and not predictor.inpaints:
        raise PanError("--mask is for inpaint models")
    if max_pixels is None:
        max_pixels = predictor.max_pixels()
    stdin = stdin_paths(sys.stdin.buffer, null) if "-" in inputs else ()
    jobs = collect_jobs(inputs, out_dir, fmt, stdin, mask,
                        on_skipped=lambda m: console.print(f"pan: {m}", highlight=False))
    check_output_folder(out_dir)
    mark_once = functools.cache(lambda: mark_output(out_dir))  # on the first output that lands
    with progress_bar(console) as bar:
        job = bar.add_task(f"infer {task}", total=len(jobs), info="")

        def written(path: Path) -> None:
            mark_once()
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


@click.command("export")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS),
              help="torch (pan's own file), onnx (any height and width; pip install 'pan[onnx]') or safetensors "
                   "(-o is a folder: model.safetensors + config.json; pip install 'pan[safetensors]'). "
                   "Default: from -o's suffix, else torch.")
@click.option("--overwrite", is_flag=True, help="Replace an existing -o file (never a run's own checkpoint).")
@click.option("--half", is_flag=True, help="torch format: store the weights as float16 (half the file); "
                                           "inference still runs in float32 on the stored values.")
def export_command(checkpoint: Path, out: Path, fmt: str | None, overwrite: bool, half: bool) -> None:
    """Write a checkpoint's inference weights only (EMA if kept; no D, no optimizer state):
    small enough to share; `pan infer --checkpoint` takes the torch and safetensors exports.
    CHECKPOINT is a training checkpoint or an export (the shipped models included). Every
    export records the task, generator, step, training-data fingerprint and validation
    figures. Prints its path."""
    fmt = format_for(out, fmt)
    if half and fmt != "torch":
        raise PanError(f"--half writes pan's own torch file; {fmt} exports keep float32")
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
        export_weights(checkpoint, out, half=half)
    emit(str(out))
