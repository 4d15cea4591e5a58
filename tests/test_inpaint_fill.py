"""Holes the way users draw them, the scale a mask-channel T fills them at, and the classical
fills `pan eval --task inpaint` scores beside the model."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.restoration import inpaint_biharmonic
from torchvision.transforms.v2.functional import resize

from pan_cli.datasets.holes import HOLE_KINDS, centre_mask, fill, make_hole, random_mask
from pan_cli.datasets.images import to_float, to_uint8
from pan_cli.infer.inpainting import _fill_at_scale, fill_scale, inpaint
from pan_cli.infer.predictor import Predictor
from pan_cli.models.geometry import Geometry
from pan_cli.score.baselines import biharmonic_fill, mean_colour_fill
from pan_cli.score.metrics import detail
from tests.conftest import crop


@pytest.mark.parametrize("kind", HOLE_KINDS)
def test_each_kind_of_hole_covers_5_to_50_percent(kind):
    coverage = [random_mask(128, 128, torch.Generator().manual_seed(s), kinds=(kind,)).float().mean().item()
                for s in range(12)]
    assert min(coverage) >= 0.04 and max(coverage) <= 0.62, coverage
    assert max(coverage) - min(coverage) > 0.1  # the size varies from draw to draw


def test_drawn_holes_mix_every_kind():
    masks = [random_mask(64, 64, torch.Generator().manual_seed(s)) for s in range(40)]
    squares = sum(torch.equal(m, centre_mask(64, 64, m.sum().sqrt().item() / 64)) for m in masks)
    assert 3 <= squares <= 20  # about a quarter are the paper's centre squares


def test_half_hole_is_a_centre_square_of_half_the_shorter_side():
    mask = make_hole("half", 100, 60, torch.Generator())
    rows, cols = mask.nonzero(as_tuple=True)
    assert (rows.min().item(), rows.max().item(), cols.min().item(), cols.max().item()) == (35, 64, 15, 44)


def test_the_fill_scale_brings_the_thickest_part_of_a_hole_to_0_3_of_the_crop():
    big = centre_mask(512, 512, 0.5)  # a 256 square: inscribed radius 128
    assert fill_scale(big, 128) == pytest.approx(0.3, rel=0.02)
    assert fill_scale(big, 256) == pytest.approx(0.6, rel=0.02)
    thin = torch.zeros(2000, 3000, dtype=torch.bool)
    thin[:, 1000:1010] = True  # a 10 px brush stroke across a large photo: filled at full resolution
    assert fill_scale(thin, 128) == 1.0


@pytest.mark.parametrize("hole", ["large", "thin"])
def test_a_hole_is_filled_in_one_pass_at_its_scale_and_nothing_else_changes(trained_inpaint_unet, hole):
    """One pass: averaging passes (scales, mirror images) washes out the texture."""
    model = Predictor.from_checkpoint(trained_inpaint_unet, "inpaint", torch.device("cpu"))
    image = crop("astronaut", 150, 190)
    mask = torch.zeros(150, 190, dtype=torch.bool)
    if hole == "large":
        mask[20:120, 30:150] = True
    else:
        mask[40:46, 10:120] = True
    scale = fill_scale(mask, model.config.image_size)
    assert (scale < 1) if hole == "large" else (scale == 1)
    filled = inpaint(model, image, mask)
    assert torch.equal(filled[:, ~mask], image[:, ~mask])
    with torch.inference_mode():
        one_pass = to_uint8(_fill_at_scale(model, fill(image, mask), mask, scale))
    assert torch.equal(filled[:, mask], one_pass[:, mask])


class ShrunkPhoto:
    """An oracle in place of T: whatever it is given, the clean photo at the size it was given."""

    def __init__(self, photo: torch.Tensor, crop: int):
        self.photo, self.config, self.geometry = to_float(photo), SimpleNamespace(image_size=crop), Geometry()

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return resize(self.photo, list(batch.shape[-2:]), antialias=True)[None]


def test_a_perfect_fill_at_a_smaller_scale_keeps_most_of_the_photos_detail():
    """The fill made at 0.6 of the size is enlarged bicubically: a perfect small fill keeps most
    of the photo's fine structure (bilinear enlarging kept 0.58 on the Kodak photos; bicubic 0.68)."""
    photo = crop("astronaut", 256, 256, 0, 100)
    mask = centre_mask(256, 256, 0.5)
    oracle = ShrunkPhoto(photo, 128)
    scale = fill_scale(mask, 128)
    assert scale == pytest.approx(0.6, rel=0.02)
    kept = detail(photo, inpaint(oracle, photo, mask), mask)
    side = round(256 * scale)  # the size the fill is made at, as _fill_at_scale rounds it
    shrunk = resize(to_float(photo), [side, side], antialias=True)[None]
    bilinear = to_uint8(F.interpolate(shrunk, size=(256, 256), mode="bilinear", align_corners=False)[0])
    assert kept > 0.6 and kept > detail(photo, bilinear, mask) + 0.05


def test_mean_colour_fill_uses_the_known_pixels_only():
    image = torch.zeros(3, 4, 4, dtype=torch.uint8)
    image[:, :, 2:] = 200
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[:, 3] = True  # the known pixels: 8 at 0, 4 at 200 -> mean 66.67
    out = mean_colour_fill(image, mask)
    assert out[:, :, 3].eq(67).all() and torch.equal(out[:, :, :3], image[:, :, :3])


def test_biharmonic_fill_is_scikit_images():
    image = crop("coffee", 40, 40)
    mask = centre_mask(40, 40, 0.5)
    expected = inpaint_biharmonic(image.permute(1, 2, 0).numpy() / 255.0, mask.numpy(), channel_axis=-1)
    out = biharmonic_fill(image, mask).permute(1, 2, 0).numpy()
    assert np.abs(out[mask.numpy()] - np.round(expected[mask.numpy()] * 255)).max() <= 1
    assert torch.equal(biharmonic_fill(image, mask)[:, ~mask], image[:, ~mask])


def test_eval_inpaint_prints_both_baselines_beside_the_model(trained_inpaint_unet, tmp_path, run_pan):
    made = run_pan("data", "make", "inpaint", "--from", "builtin", "--size", "64", "--holes", "half",
                   "-o", tmp_path / "d", "-q")
    assert made.exit_code == 0, made.stderr
    table = run_pan("eval", "--task", "inpaint", "--checkpoint", trained_inpaint_unet, "--data", tmp_path / "d")
    assert table.exit_code == 0, table.stderr
    means = {line.split()[1] if line.split()[1][0].isalpha() else "model": line
             for line in table.stdout.splitlines() if line.startswith("mean")}
    assert set(means) == {"model", "mean-colour", "biharmonic"}
    rows = [json.loads(line) for line in run_pan("eval", "--task", "inpaint", "--checkpoint", trained_inpaint_unet,
                                                 "--data", tmp_path / "d", "--json").stdout.splitlines()]
    by_method = {r["method"]: r for r in rows if r["name"].startswith("mean")}
    assert set(by_method) == {"model", "mean-colour", "biharmonic"}
    for row in by_method.values():
        assert np.isfinite(row["psnr_hole"]) and row["mae_hole"] > 0
    # the baselines differ from each other: they are computed, not copied
    assert by_method["mean-colour"]["psnr_hole"] != by_method["biharmonic"]["psnr_hole"]
    plain = run_pan("eval", "--task", "inpaint", "--checkpoint", trained_inpaint_unet, "--data", tmp_path / "d",
                    "--no-baselines")
    assert "biharmonic" not in plain.stdout


def _stroke_point_by_point(height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """The brush stroke drawn one point at a time and dilated by one square max pool: the
    definition the fast version (numpy points, two 1-D maxima) must match pixel for pixel."""
    import math

    import torch.nn.functional as F

    line = torch.zeros(1, 1, height, width)
    y = torch.rand((), generator=generator).item() * (height - 1)
    x = torch.rand((), generator=generator).item() * (width - 1)
    angle = torch.rand((), generator=generator).item() * 2 * math.pi
    for _ in range(int(torch.randint(2, 6, (), generator=generator))):
        angle += (torch.rand((), generator=generator).item() - 0.5) * math.pi
        length = (0.1 + 0.3 * torch.rand((), generator=generator).item()) * min(height, width)
        for t in torch.linspace(0, 1, max(2, int(length))).tolist():
            py = min(max(y + t * length * math.sin(angle), 0), height - 1)
            px = min(max(x + t * length * math.cos(angle), 0), width - 1)
            line[0, 0, round(py), round(px)] = 1.0
        y = min(max(y + length * math.sin(angle), 0), height - 1)
        x = min(max(x + length * math.cos(angle), 0), width - 1)
    radius = max(1, round(min(height, width) * (0.02 + 0.04 * torch.rand((), generator=generator).item())))
    return F.max_pool2d(line, 2 * radius + 1, stride=1, padding=radius)[0, 0] > 0


def test_fast_strokes_are_the_point_by_point_strokes():
    from pan_cli.datasets.holes import _stroke

    for seed in range(60):
        for height, width in ((128, 128), (97, 200), (256, 64)):
            fast = _stroke(height, width, torch.Generator().manual_seed(seed))
            assert torch.equal(fast, _stroke_point_by_point(height, width, torch.Generator().manual_seed(seed)))
