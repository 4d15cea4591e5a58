"""The inpainting detail ratio (issue 27): RMS of the fill's high-pass (grey minus its sigma-2
Gaussian blur) inside the hole eroded by 4 px, over the clean photo's; checked against values
computed by hand from the definition."""

import json
import math

import pytest
import torch

from pan_cli.datasets.images import write_image
from pan_cli.score.metrics import detail, hole_scores
from tests.conftest import crop


def _gauss_1d() -> list[float]:
    # sigma 2, cut at 4 sigma (8 px), normalised: scipy's gaussian_filter kernel, written out
    weights = [math.exp(-(k * k) / (2 * 2.0**2)) for k in range(-8, 9)]
    return [w / sum(weights) for w in weights]


def _square_hole(size: int, side: int) -> torch.Tensor:
    mask = torch.zeros(size, size, dtype=torch.bool)
    start = (size - side) // 2
    mask[start:start + side, start:start + side] = True
    return mask


def test_detail_of_an_impulse_against_a_block_by_hand():
    # a 9x9 hole eroded by a 4 px disc leaves its centre pixel only; the high-pass there is
    # value * (1 - the kernel's weight over the shape), shapes far from the image's edges
    g = _gauss_1d()
    size, c = 33, 16
    reference = torch.zeros(3, size, size, dtype=torch.uint8)
    reference[:, c, c] = 255  # grey 255, one pixel
    test = torch.zeros(3, size, size, dtype=torch.uint8)
    for channel, value in enumerate((60, 90, 120)):  # grey 90, a 3x3 block
        test[channel, c - 1:c + 2, c - 1:c + 2] = value
    expected_ref = 255 * (1 - g[8] ** 2)
    expected_test = 90 * (1 - (g[7] + g[8] + g[9]) ** 2)
    assert detail(reference, test, _square_hole(size, 9)) == pytest.approx(expected_test / expected_ref, rel=1e-9)


def test_detail_is_one_for_the_photo_half_for_half_the_contrast_and_zero_for_a_flat_fill():
    photo = crop("astronaut", 64, 64) // 2 * 2  # even values: halving the contrast is exact in uint8
    mask = _square_hole(64, 32)
    assert detail(photo, photo, mask) == 1.0
    assert detail(photo, photo // 2 + 64, mask) == pytest.approx(0.5, rel=1e-12)  # the blur is linear
    flat = torch.full_like(photo, 128)
    assert detail(photo, flat, mask) == 0.0
    assert hole_scores(photo, flat, mask[None])["detail"] == 0.0


def test_only_the_eroded_hole_counts():
    photo = crop("coffee", 64, 64)
    mask = _square_hole(64, 32)
    changed = photo.clone()
    # the eroded hole is rows and columns 20-43; the blur reaches 8 px, so rows 0-11 and 52-63 never count
    changed[:, :12, :] = 0
    changed[:, 52:, :] = 255
    assert detail(photo, changed, mask) == pytest.approx(detail(photo, photo, mask)) == 1.0
    seam = photo.clone()
    seam[:, 16:20, 16:48] = 0  # the hole's outer 4 rows are not counted, but the blur carries them in
    assert detail(photo, seam, mask) != pytest.approx(1.0)


def test_a_hole_thinner_than_the_erosion_or_a_flat_photo_has_no_detail_to_measure():
    photo = crop("rocket", 40, 40)
    thin = torch.zeros(40, 40, dtype=torch.bool)
    thin[10:30, 18:25] = True  # 7 px wide: nothing is 4 px from its edge
    assert math.isnan(detail(photo, photo, thin))
    flat = torch.full((3, 40, 40), 77, dtype=torch.uint8)
    assert math.isnan(detail(flat, photo, _square_hole(40, 20)))


def test_eval_reports_detail_and_a_nan_neither_breaks_the_mean_nor_the_json(tmp_path, run_pan):
    photo = crop("chelsea", 48, 48)
    for folder in ("pred", "ref"):
        for name in ("a", "b"):
            write_image(tmp_path / folder / f"{name}.png", photo)
    big, thin = torch.zeros(1, 48, 48, dtype=torch.uint8), torch.zeros(1, 48, 48, dtype=torch.uint8)
    big[:, 8:40, 8:40], thin[:, 10:40, 20:24] = 255, 255
    write_image(tmp_path / "mask" / "a.png", big)
    write_image(tmp_path / "mask" / "b.png", thin)
    result = run_pan("eval", "--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "--mask", tmp_path / "mask",
                     "--json")
    assert result.exit_code == 0, result.stderr
    rows = {r["name"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert rows["a"]["detail"] == 1.0 and rows["b"]["detail"] is None and rows["mean"]["detail"] == 1.0
    table = run_pan("eval", "--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "--mask", tmp_path / "mask")
    assert "DETAIL" in table.stdout.splitlines()[1]
