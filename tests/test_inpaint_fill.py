"""Holes the way users draw them, the scale a mask-channel T fills them at, and the classical
fills `pan eval --task inpaint` scores beside the model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from skimage.restoration import inpaint_biharmonic

from pan_cli.datasets.holes import HOLE_KINDS, centre_mask, fill, make_hole, random_mask
from pan_cli.infer.inpainting import _fill_at_scale, fill_scales, inpaint
from pan_cli.infer.predictor import Predictor
from pan_cli.score.baselines import biharmonic_fill, mean_colour_fill
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


def test_fill_scales_bring_the_thickest_part_of_a_hole_to_0_28_to_0_32_of_the_crop():
    big = centre_mask(512, 512, 0.5)  # a 256 square: inscribed radius 128
    assert fill_scales(big, 128) == pytest.approx([0.28, 0.29, 0.30, 0.31, 0.32], rel=0.02)
    assert fill_scales(big, 256) == pytest.approx([0.56, 0.58, 0.60, 0.62, 0.64], rel=0.02)
    thin = torch.zeros(2000, 3000, dtype=torch.bool)
    thin[:, 1000:1010] = True  # a 10 px brush stroke across a large photo: filled at full resolution, once
    assert fill_scales(thin, 128) == [1.0]


@pytest.mark.parametrize("hole", ["large", "thin"])
def test_a_mirrored_photo_gets_the_mirrored_fill(trained_inpaint_unet, hole):
    """Each fill averages the image's and its mirror image's, so mirroring the photo mirrors the
    fill within a level, though a single pass at any of its scales misses that by more (large:
    five shrunk scales; thin: full resolution)."""
    model = Predictor.from_checkpoint(trained_inpaint_unet, "inpaint", torch.device("cpu"))
    image = crop("astronaut", 150, 190)
    mask = torch.zeros(150, 190, dtype=torch.bool)
    if hole == "large":
        mask[20:120, 30:150] = True
    else:
        mask[40:46, 10:120] = True
    assert len(fill_scales(mask, model.config.image_size)) == (5 if hole == "large" else 1)
    filled = inpaint(model, image, mask)
    mirrored = inpaint(model, image.flip(-1), mask.flip(-1)).flip(-1)
    assert torch.equal(filled[:, ~mask], image[:, ~mask])
    assert (filled.int() - mirrored.int()).abs().max() <= 1
    for scale in fill_scales(mask, model.config.image_size):  # one pass alone misses that bound
        one_way = _fill_at_scale(model, fill(image, mask), mask, scale)
        other_way = _fill_at_scale(model, fill(image, mask).flip(-1), mask.flip(-1), scale).flip(-1)
        assert (one_way - other_way)[:, mask].abs().max() * 127.5 > 1.5


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
