"""Shared fixtures: tiny real-photo datasets made on the fly (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from pan_cli.cli import cli
from pan_cli.commands.train import default_workers as REAL_DEFAULT_WORKERS
from pan_cli.datasets.images import write_image
from pan_cli.datasets.photos import builtin_photo
from pan_cli.datasets.rain import RainModel

PHOTOS = ("astronaut", "rocket", "coffee", "chelsea")


@pytest.fixture(autouse=True, scope="session")
def loading_in_the_training_process():
    """`pan train` loads in worker processes by default (tests/test_cli.py checks how many);
    the suite's hundreds of tiny runs load in the training process instead, saving a process
    start each (runs with `--workers N` still start N)."""
    assert REAL_DEFAULT_WORKERS() >= 1  # the real default, kept for tests/test_cli.py
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("pan_cli.commands.train.default_workers", lambda: 0)
        yield


@pytest.fixture(autouse=True, scope="session")
def decoded_image_cache(tmp_path_factory):
    """`pan train` decodes its images once into a cache folder: the tests', never ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        folder = tmp_path_factory.mktemp("decoded")
        patch.setenv("PAN_CACHE", str(folder))
        yield folder


def crop(name: str, height: int = 48, width: int = 64, top: int = 100, left: int = 100) -> torch.Tensor:
    return builtin_photo(name)[:, top: top + height, left: left + width].contiguous()


def make_rain_pairs(folder: Path, names=PHOTOS, height: int = 48, width: int = 64, seed: int = 0) -> Path:
    generator = torch.Generator().manual_seed(seed)
    for name in names:
        clean = crop(name, height, width)
        write_image(folder / "A" / f"{name}.png", RainModel()(clean, generator))
        write_image(folder / "B" / f"{name}.png", clean)
    return folder


def small_run(rain_pairs: Path, run: Path, steps: int = 4, resume: str | None = None, keep: int = 0,
              on_step=None) -> tuple[Path, list[str]]:
    """A tiny derain run (checkpoints every 2 steps) through the library; (last checkpoint,
    the warnings it gave)."""
    from pan_cli.datasets.layout import detect_layout, find_pairs
    from pan_cli.tasks import make_config
    from pan_cli.train.loop import TrainOptions, train

    config = make_config("derain", image_size=24, batch_size=2, steps=steps)
    options = TrainOptions(run_dir=run, checkpoint_every=2, sample_every=0, keep=keep)
    messages: list[str] = []
    path = train(config, find_pairs(detect_layout(rain_pairs)), options, resume=resume, steps=steps,
                 warn=messages.append, on_step=on_step)
    return path, messages


@pytest.fixture
def rain_pairs(tmp_path: Path) -> Path:
    return make_rain_pairs(tmp_path / "pairs")


@pytest.fixture
def run_pan():
    """Run the `pan` CLI in-process; returns click's Result (separate .stdout and .stderr)."""

    def run(*args: str, input: str | None = None):
        return CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)

    return run


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory) -> Path:
    """A tiny derain run trained once, through the CLI, for the inference tests: the paper's
    `idcgan` and full D (the tiling and export tests are sized to its 12 px reach)."""
    root = tmp_path_factory.mktemp("trained")
    data = make_rain_pairs(root / "pairs")
    result = CliRunner().invoke(cli, [
        "train", "derain", "--data", str(data), "--steps", "2", "--image-size", "24", "--batch-size", "2",
        "--generator", "idcgan", "--d-width", "1",
        "--run-dir", str(root / "run"), "--sample-every", "0",
    ])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(root / "run" / "step-2.pt")  # stdout: the checkpoint, nothing else
    assert "paired folders A/ + B/; 4 training pairs" in result.stderr  # the layout it found
    return root / "run" / "latest.pt"


def train_inpaint(root: Path, size: tuple[int, int], *args: str) -> Path:
    """`pan train inpaint` for 2 steps on two clean photos (holes are made on the fly)."""
    for name in ("astronaut", "rocket"):
        write_image(root / "photos" / f"{name}.png", crop(name, *size))
    result = CliRunner().invoke(cli, [
        "train", "inpaint", "--data", str(root / "photos"), "--steps", "2", "--batch-size", "2",
        "--run-dir", str(root / "run"), "--sample-every", "0", *args,
    ])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(root / "run" / "step-2.pt")
    return root / "run" / "latest.pt"


@pytest.fixture(scope="session")
def trained_inpaint_unet(tmp_path_factory) -> Path:
    """A tiny fully convolutional inpainting run (mask as a fourth channel, random holes)."""
    return train_inpaint(tmp_path_factory.mktemp("inpaint-unet"), (70, 80), "--generator", "unet",
                         "--image-size", "64", "--load-size", "0")


@pytest.fixture(scope="session")
def trained_context_encoder(tmp_path_factory) -> Path:
    """The paper's inpainting setting (context encoder, 128 context, centre hole), trained once."""
    return train_inpaint(tmp_path_factory.mktemp("inpaint-ce"), (140, 150), "--generator", "context-encoder")
