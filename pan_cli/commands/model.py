"""`pan infer` and `pan export`: running a trained model over files, and writing it out for
other runtimes."""

from __future__ import annotations

import functools
import io
import select
import sys
from pathlib import Path
from typing import Callable, Iterator

import click

from pan_cli.commands.options import set_threads, tile_options
from pan_cli.commands.output import emit
from pan_cli.commands.progress import progress_bar, stderr_console
from pan_cli.datasets.images import WRITE_FORMATS
from pan_cli.devices import pick_device
from pan_cli.errors import PanError
from pan_cli.files import check_replaceable
from pan_cli.infer.files import Summary, run_inference
from pan_cli.infer.jobs import check_output_folder, iter_jobs, mark_output, stdin_paths
from pan_cli.infer.predictor import Predictor
from pan_cli.store.checkpoint import PRETRAINED, default_checkpoint, in_run_dir, read_model
from pan_cli.store.exports import FORMATS, export, format_for
from pan_cli.store.model import CONFIG_NAME, WEIGHTS_NAME
from pan_cli.tasks import TASKS

EXIT_PARTIAL = 3  # some inputs failed, the rest were written
STDIN_CHUNK = 64  # paths from stdin taken at a time


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
    check_output_folder(out_dir)
    streamed = "-" in inputs  # paths on stdin run as they come: never all read first
    found = iter_jobs(inputs, out_dir, fmt, stdin_paths(sys.stdin.buffer, null) if streamed else (), mask,
                      on_skipped=lambda m: console.print(f"pan: {m}", highlight=False))
    chunks = _chunks(found, STDIN_CHUNK, _stdin_ready) if streamed else [list(found)]
    mark_once = functools.cache(lambda: mark_output(out_dir))  # on the first output that lands
    summary, count = Summary(), 0
    with progress_bar(console) as bar:
        job = bar.add_task(f"infer {task}", total=None if streamed else len(chunks[0]), info="")

        def written(path: Path) -> None:
            mark_once()
            emit(str(path), "\0" if null else "\n")
            bar.advance(job)

        def failed(message: str) -> None:
            click.echo(f"pan: skipped {message}" if on_error == "skip" else f"pan: error: {message}", err=True)
            bar.advance(job)

        for jobs in chunks:
            count += len(jobs)
            run_inference(predictor, jobs, batch_size, workers, on_error, overwrite, max_pixels, written, failed,
                          summary)
            if summary.failed and on_error == "fail":
                break
    rate = len(summary.written) / summary.seconds if summary.seconds else 0.0
    console.print(f"wrote {len(summary.written)} of {count} images to {out_dir} in "
                  f"{summary.seconds:.1f}s ({rate:.2f} images/s); {len(summary.failed)} failed",
                  highlight=False)
    if summary.failed:  # some written: partial (3); none: every input was refused (2)
        sys.exit(EXIT_PARTIAL if summary.written and on_error == "skip" else 2)


def _chunks(items: Iterator, size: int, more_ready: Callable[[], bool]) -> Iterator[list]:
    """Lists of up to `size` items; a list ends early when no more input is ready now, so a slow
    producer (`find` on a network drive) sees its first paths run at once."""
    while True:
        chunk = []
        for item in items:
            chunk.append(item)
            if len(chunk) >= size or not more_ready():
                break
        if not chunk:
            return
        yield chunk


def _stdin_ready() -> bool:
    """Whether stdin has bytes ready to read now (True where that cannot be asked)."""
    try:
        return bool(select.select([sys.stdin], [], [], 0)[0])
    except (OSError, ValueError, io.UnsupportedOperation):
        return True


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
    targets = [out / WEIGHTS_NAME, out / CONFIG_NAME] if fmt == "safetensors" else [out]
    if fmt != "safetensors" and out.is_dir():
        raise PanError(f"-o {out} is a folder; give the file to write, e.g. {out / 'model.pt'}")
    for target in targets:
        if in_run_dir(target):
            raise PanError(f"-o {out} is in {target.parent}, the folder of the training run: every name there is "
                           "the run's own (an export could replace a checkpoint or break --resume); choose another "
                           "folder")
        if target.exists() and target.resolve() == checkpoint.resolve():
            raise PanError("the export would overwrite its source; choose another -o")
        if check_replaceable(target) and not overwrite:
            raise PanError(f"-o {out}: {target} exists; give --overwrite to replace it")
    export(read_model(checkpoint), out, fmt, half)
    emit(str(out))
