"""Every precision path on any CPU: --precision auto's choice, and bf16 autocast training each
generator and task as fp32 does (bf16 is what auto picks on CPUs with AMX and on CUDA)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from pan_cli.datasets.images import write_image
from pan_cli.devices import resolve_precision
from pan_cli.models.discriminator import Discriminator
from pan_cli.models.networks import GENERATORS, output_size
from pan_cli.tasks import make_config
from pan_cli.train.step import Models, d_step, t_step
from tests.conftest import crop


def test_auto_is_bf16_only_with_amx_on_the_cpu(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert resolve_precision("auto", cpu)[0] == "bf16"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    precision, why = resolve_precision("auto", cpu)
    assert precision == "fp32" and "slower" in why
    assert resolve_precision("bf16", cpu) == ("bf16", "as asked")  # an explicit choice stands
    assert resolve_precision("auto", torch.device("mps"))[0] == "fp32"


def test_auto_is_bf16_on_a_cuda_device_with_bf16(monkeypatch):
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", cuda)[0] == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("auto", cuda)[0] == "fp32"


def test_train_says_which_precision_it_chose(run_pan, rain_pairs, tmp_path):
    result = run_pan("train", "derain", "--data", rain_pairs, "--steps", "1", "--image-size", "32",
                     "--batch-size", "2", "--run-dir", tmp_path / "run", "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    assert "device: cpu, " in result.stderr and "(auto: " in result.stderr


# (task, generator, crop): every generator with the task it serves, every task's default
COMBINATIONS = [
    ("derain", "idcgan", 24), ("derain", "dilated", 24), ("derain", "prenet", 24), ("derain", "unet-slim", 64),
    ("inpaint", "context-encoder", 128), ("inpaint", "unet", 64), ("inpaint", "unet-slim", 64),
    ("inpaint", "unet-fill", 64), ("inpaint", "unet-fill-wide", 64),
    ("labels2street", "unet", 64), ("sketch2photo", "unet", 64),
]


def test_every_generator_is_covered():
    assert {g for _, g, _ in COMBINATIONS} == set(GENERATORS)


def _batch(config, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    size, out = config.image_size, output_size(config)
    photo = torch.stack([crop(name, size, size).float() / 127.5 - 1 for name in ("astronaut", "coffee")])
    x = photo[:, :1].expand(-1, config.in_channels, -1, -1).clone()
    x[:, :3] = photo
    if config.in_channels == 4:  # an inpainting mask: a square hole
        x[:, 3] = 0
        x[:, 3, size // 4: size // 2, size // 4: size // 2] = 1
        x[:, :3] *= 1 - x[:, 3:]
    y = photo[:, :, (size - out) // 2:(size + out) // 2, (size - out) // 2:(size + out) // 2]
    return x + 0.01 * torch.randn(x.shape, generator=generator), y


@pytest.mark.parametrize("task,generator,size", COMBINATIONS, ids=[f"{t}-{g}" for t, g, _ in COMBINATIONS])
def test_bf16_trains_every_generator_as_fp32_does(task, generator, size):
    """Two D and T steps from the same weights and batches: every loss term finite in bf16, and
    the first step's near its fp32 value (bf16 keeps 8 bits of mantissa: a percent or so a term;
    after an Adam step, whose first update is about lr * sign(gradient), they may part)."""
    config = make_config(task, generator=generator, image_size=size, load_size=0, batch_size=2, d_width=0.25)
    terms = {}
    for precision in ("fp32", "bf16"):
        models = Models.build(config, torch.device("cpu"), precision)
        data = torch.Generator().manual_seed(0)
        for step in range(2):
            x, y = _batch(config, data)
            d = d_step(config, models, x, y)
            t, output = t_step(config, models, x, y)
            values = {**{f"d_{k}": v.item() for k, v in d.items()}, **{f"t_{k}": v.item() for k, v in t.items()}}
            assert all(math.isfinite(v) for v in values.values()), (precision, step, values)
            terms.setdefault(precision, values)
        assert output.dtype == torch.float32
    for name, value in terms["fp32"].items():
        assert terms["bf16"][name] == pytest.approx(value, rel=0.1, abs=0.02), name


def test_bf16_training_of_a_tiny_crop_stays_finite():
    """8 px crops: D's last layers see 1-px-wide maps, where oneDNN's bf16 weight gradient is
    garbage on AMX CPUs (NaN at step 3 in half the seeds before those layers ran in fp32)."""
    for seed in range(4):
        config = make_config("derain", image_size=8, batch_size=2, seed=seed)
        models = Models.build(config, torch.device("cpu"), "bf16")
        data = torch.Generator().manual_seed(seed)
        for _ in range(4):
            x, y = (torch.rand(2, 3, 8, 8, generator=data) * 2 - 1 for _ in range(2))
            terms = {**d_step(config, models, x, y), **t_step(config, models, x, y)[0]}
            assert all(torch.isfinite(v) for v in terms.values()), (seed, terms)
        assert all(torch.isfinite(p).all() for p in models.D.parameters())


def test_d_runs_its_one_pixel_wide_layers_and_its_logit_in_fp32_under_autocast():
    net = Discriminator(16)
    seen = []
    for layer in net.layers:
        layer.register_forward_hook(lambda mod, inp, out: seen.append((inp[0].shape[-1], out.dtype)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = net(torch.rand(2, 3, 16, 16)).logits
    assert logits.dtype == torch.float32
    assert [dtype for width, dtype in seen if width == 1] == [torch.float32]  # the last layer, 1 px wide
    assert all(dtype == torch.bfloat16 for width, dtype in seen if width > 1)


def _finite_metrics(run_dir) -> dict:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = {k: v for k, v in lines[-1].items() if k.startswith(("d_", "t_"))}
    assert losses and all(math.isfinite(v) for v in losses.values()), losses
    return losses


@pytest.mark.parametrize("args", [
    ("derain", "--synthesize", "--image-size", "32", "--generator", "dilated"),
    ("inpaint", "--generator", "unet", "--image-size", "64"),
    ("inpaint", "--generator", "unet-fill", "--image-size", "64", "--zoom"),
], ids=["derain-dilated", "inpaint-unet", "inpaint-unet-fill"])
def test_pan_train_runs_in_bf16(run_pan, tmp_path, args):
    """The command line path in bf16 (a unet inpainting run crashed in its blend before)."""
    for name in ("astronaut", "rocket"):
        write_image(tmp_path / "photos" / f"{name}.png", crop(name, 80, 90))
    result = run_pan("train", *args, "--data", tmp_path / "photos", "--steps", "2", "--batch-size", "2",
                     "--precision", "bf16", "--log-every", "1", "--sample-every", "0", "--run-dir", tmp_path / "run",
                     "-q")
    assert result.exit_code == 0, result.stderr
    _finite_metrics(tmp_path / "run")
