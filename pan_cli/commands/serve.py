"""`pan serve`: the local web page (pan_cli/serve.py) behind uvicorn."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import click

from pan_cli.devices import pick_device
from pan_cli.errors import PanError
from pan_cli.options import TileSize, set_threads


def _require_extra() -> None:
    for module in ("starlette", "uvicorn", "multipart"):
        try:
            __import__(module)
        except ImportError:
            raise PanError(f"pan serve needs {module if module != 'multipart' else 'python-multipart'}: "
                           "pip install 'pan[serve]'") from None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but localhost lets other machines run models here.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--checkpoint", "checkpoints", multiple=True,
              type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="A model to offer (repeatable), besides runs/TASK/latest.pt and the shipped models.")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda", "mps"]))
@click.option("--max-upload", type=click.IntRange(1, 2048), default=50, show_default=True,
              help="Largest upload, in MB.")
@click.option("--tile", type=TileSize(), default="auto", show_default=True, help="As pan infer --tile.")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads (default: torch's choice).")
def serve_command(host: str, port: int, checkpoints: tuple[Path, ...], device: str, max_upload: int,
                  tile: int | None, threads: int | None) -> None:
    """A local web page: open an image, paint a mask (inpaint), run a model, compare before and
    after with a slider, download the PNG. Also a JSON API (README: pan serve)."""
    _require_extra()
    import uvicorn

    from pan_cli.serve import create_app, find_models

    set_threads(threads)
    if not is_loopback(host):
        click.echo(f"pan: warning: listening on {host}: anyone who can reach this machine can upload images and "
                   "run models here (there is no login)", err=True)
    models = find_models(list(checkpoints))
    app = create_app(models, pick_device(device), max_upload * 2**20, tile)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning")
    server = uvicorn.Server(config)
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"pan: serving {len(models)} models on http://{shown}:{port}/ (Ctrl-C stops)", err=True)
    server.run()
