"""Scores cross-checked against scikit-image, sewar and brute-force definitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sewar.full_ref import vifp
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from pan_cli.score.metrics import Settings, prepare, psnr, score, ssim, to_y
from tests.conftest import crop

rng = np.random.default_rng(0)


def random_pair(height=40, width=56, noise=15.0):
    clean = torch.from_numpy(rng.integers(0, 256, (3, height, width), dtype=np.uint8))
    clean = torch.from_numpy(np.asarray(clean.float().numpy().cumsum(2) % 256, dtype=np.uint8))  # some structure
    noisy = (clean.float() + torch.from_numpy(rng.normal(0, noise, clean.shape)).float()).clamp(0, 255)
    return clean, noisy.round().to(torch.uint8)


def hwc(image):
    return image.permute(1, 2, 0).numpy()


def test_psnr_and_ssim_match_scikit_image_with_published_settings():
    clean, noisy = random_pair()
    assert psnr(clean, noisy) == pytest.approx(peak_signal_noise_ratio(hwc(clean), hwc(noisy), data_range=255))
    expected = structural_similarity(hwc(clean), hwc(noisy), data_range=255, channel_axis=-1,
                                     gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert ssim(clean, noisy) == pytest.approx(expected)


def test_identical_images_score_inf_psnr_and_one_elsewhere():
    clean, _ = random_pair()
    assert score(clean, clean) == pytest.approx({"psnr": float("inf"), "ssim": 1.0, "uqi": 1.0, "vif": 1.0})


def test_vif_matches_sewar():
    clean, noisy = random_pair(64, 80)
    ours = score(clean, noisy)["vif"]
    theirs = vifp(hwc(clean).astype(np.float64), hwc(noisy).astype(np.float64))
    assert ours == pytest.approx(theirs, rel=1e-9)
    assert 0 < ours < 1


def test_uqi_is_the_mean_q_over_every_8x8_window():
    # sewar's uqi mixes window means with the sum-based formula, so the definition is checked directly.
    clean, noisy = random_pair(14, 17)
    x, y = hwc(clean).astype(np.float64), hwc(noisy).astype(np.float64)
    values = []
    for c in range(3):
        for i in range(14 - 7):
            for j in range(17 - 7):
                a, b = x[i:i + 8, j:j + 8, c], y[i:i + 8, j:j + 8, c]
                cov = ((a - a.mean()) * (b - b.mean())).mean()
                values.append(4 * cov * a.mean() * b.mean() / ((a.var() + b.var()) * (a.mean() ** 2 + b.mean() ** 2)))
    assert score(clean, noisy)["uqi"] == pytest.approx(np.mean(values), rel=1e-9)


def test_uqi_of_a_constant_shift_on_a_flat_image_is_the_mean_ratio():
    flat = torch.full((3, 16, 16), 100, dtype=torch.uint8)
    brighter = torch.full((3, 16, 16), 120, dtype=torch.uint8)
    assert score(flat, brighter)["uqi"] == pytest.approx(2 * 100 * 120 / (100**2 + 120**2))


def test_y_channel_uses_bt601_weights_on_rgb():
    pixel = np.array([[[255.0, 0.0, 0.0]]])
    assert to_y(pixel)[0, 0, 0] == pytest.approx(16 + 65.481)  # pure red, RGB order
    white = np.full((1, 1, 3), 255.0)
    assert to_y(white)[0, 0, 0] == pytest.approx(235.0)
    clean, _ = random_pair()
    assert prepare(clean, Settings(channel="y")).shape == (40, 56, 1)


def test_crop_border_removes_the_border_before_scoring():
    clean, noisy = random_pair()
    damaged = noisy.clone()
    damaged[:, :4] = 255 - damaged[:, :4]  # wreck only the top 4 rows
    inner = psnr(clean[:, 4:-4, 4:-4], noisy[:, 4:-4, 4:-4])
    assert psnr(clean, damaged, Settings(crop_border=4)) == pytest.approx(inner)
    assert psnr(clean, damaged) < psnr(clean, damaged, Settings(crop_border=4))


def test_float_images_are_refused():
    with pytest.raises(TypeError, match="8-bit"):
        psnr(torch.rand(3, 8, 8), torch.rand(3, 8, 8))


def test_vif_against_a_flat_reference_is_zero_unless_the_output_is_that_flat_image():
    flat = torch.full((3, 40, 40), 128, dtype=torch.uint8)
    photo = crop("coffee", 40, 40)
    assert score(flat, photo)["vif"] == 0.0  # the photo keeps none of a flat image's (zero) information
    assert score(flat, flat)["vif"] == 1.0
    assert score(photo, photo)["vif"] == 1.0
