"""The `pan` command line: parses and validates arguments, calls the library, and turns
errors into one line on stderr. stdout carries data only."""

from __future__ import annotations

import os
import sys

import click

from pan_cli import __version__
from pan_cli.commands.data import data_group
from pan_cli.commands.model import export_command, infer_command
from pan_cli.commands.score import compare_command, eval_command, report_command
from pan_cli.commands.serve import serve_command
from pan_cli.commands.train import tasks_command, train_command
from pan_cli.errors import PanError, RunFailure
from pan_cli.train.loop import EXIT_INTERRUPTED, Interrupted

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
        except RunFailure as exc:  # the run failed for a reason outside its input
            raise Failure(str(exc), 1) from None
        except PanError as exc:  # a refused input or setting
            raise Failure(str(exc), 2) from None
        except OSError as exc:  # a file system refusal (permissions, disk, ...) is the user's to fix
            where = f"{exc.filename}: " if exc.filename else ""
            raise Failure(f"{where}{exc.strerror or exc}") from None


@click.group(cls=PanGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pan")
def cli() -> None:
    """Perceptual Adversarial Networks for paired image-to-image work."""


for command in (tasks_command, train_command, data_group, infer_command, export_command, eval_command,
                compare_command, report_command, serve_command):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="pan")
