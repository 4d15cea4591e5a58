"""`pan serve`: the local web page (pan_cli/serve/app.py) behind uvicorn."""

from __future__ import annotations

import socket
from pathlib import Path

import click

from pan_cli.commands.options import TileSize, set_threads
from pan_cli.devices import pick_device
from pan_cli.errors import RunFailure
from pan_cli.serve.app import MAX_PIXELS, QUEUE, is_loopback


def _require_extra() -> None:
    for module in ("starlette", "uvicorn", "multipart"):
        try:
            __import__(module)
        except ImportError:
            raise RunFailure(f"pan serve needs {module if module != 'multipart' else 'python-multipart'}: "
                           "pip install 'pan[serve]'") from None


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but localhost lets other machines run models here. Requests "
                   "must name this host (or, on a loopback address, localhost/127.0.0.1/::1).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--checkpoint", "checkpoints", multiple=True,
              type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="A model to offer (repeatable), besides runs/TASK/latest.pt and the shipped models.")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda", "mps"]))
@click.option("--max-upload", type=click.IntRange(1, 2048), default=50, show_default=True,
              help="Largest upload, in MB (counted as the body arrives).")
@click.option("--max-pixels", type=click.IntRange(min=1), default=MAX_PIXELS, show_default=True,
              help="Largest image, in pixels (and never more than the memory free allows).")
@click.option("--queue", type=click.IntRange(0, 1000), default=QUEUE, show_default=True,
              help="Requests that may wait for a model, per lane (small images, large ones); more get 503.")
@click.option("--tile", type=TileSize(), default="auto", show_default=True, help="As pan infer --tile.")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads (default: torch's choice).")
def serve_command(host: str, port: int, checkpoints: tuple[Path, ...], device: str, max_upload: int,
                  max_pixels: int, queue: int, tile: int | None, threads: int | None) -> None:
    """A local web page: open an image, paint a mask (inpaint), run a model, compare before and
    after with a slider, download the PNG. Also a JSON API (docs/guide.md: pan serve)."""
    _require_extra()
    import uvicorn

    from pan_cli.serve.app import allowed_hosts, create_app, find_models

    set_threads(threads)
    if not is_loopback(host):
        click.echo(f"pan: warning: listening on {host}: anyone who can reach this machine can upload images and "
                   "run models here (there is no login)", err=True)
    models = find_models(list(checkpoints), pick_device(device), tile,
                         warn=lambda message: click.echo(f"pan: {message}", err=True))
    app = create_app(models, max_upload * 2**20, max_pixels, queue, allowed_hosts(host))
    listening = _bind(host, port)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"pan: serving {len(models)} models on http://{shown}:{port}/ (Ctrl-C stops)", err=True)
    server.run(sockets=[listening])


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything says the server runs: a busy port or an
    address this machine does not have is one line, exit 1."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listening = socket.socket(family, socket.SOCK_STREAM)
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind((host.strip("[]"), port))
        listening.listen(128)
    except OSError as exc:
        raise RunFailure(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return listening
