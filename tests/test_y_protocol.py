"""`pan eval --channel y` reproduces the de-raining papers' protocol, checked against an
independent computation written out here: MATLAB rgb2ycbcr's Y (16-235) of 8-bit images,
PSNR with peak 255, SSIM with an 11x11 Gaussian window of sigma 1.5 (Wang et al. 2004,
K1 0.01, K2 0.03, the 'valid' part of the image)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pan_cli.datasets.images import write_image


def matlab_y(rgb: np.ndarray) -> np.ndarray:
    """MATLAB rgb2ycbcr on double images in [0, 1], scaled to 0-255: Y = 16 + 65.481 R + 128.553 G + 24.966 B."""
    r, g, b = (rgb[..., c].astype(np.float64) / 255.0 for c in range(3))
    return 16.0 + 65.481 * r + 128.553 * g + 24.966 * b


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    axis = np.arange(size) - size // 2
    g = np.exp(-(axis**2) / (2 * sigma**2))
    window = np.outer(g, g)
    return window / window.sum()


def filter_valid(image: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Correlation over the positions where the whole window fits (MATLAB filter2 'valid')."""
    k = window.shape[0]
    h, w = image.shape
    out = np.empty((h - k + 1, w - k + 1))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = (image[i: i + k, j: j + k] * window).sum()
    return out


def ssim_by_hand(x: np.ndarray, y: np.ndarray, peak: float = 255.0) -> float:
    window = gaussian_window()
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    mx, my = filter_valid(x, window), filter_valid(y, window)
    sxx = filter_valid(x * x, window) - mx * mx
    syy = filter_valid(y * y, window) - my * my
    sxy = filter_valid(x * y, window) - mx * my
    ssim_map = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return float(ssim_map.mean())


def psnr_by_hand(x: np.ndarray, y: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((x - y) ** 2)))


@pytest.mark.parametrize("shape", [(3, 24, 30), (3, 31, 17)])
def test_y_channel_psnr_and_ssim_match_the_papers_protocol_computed_by_hand(shape, tmp_path, run_pan):
    rng = np.random.default_rng(sum(shape))
    clean = rng.integers(0, 256, shape).astype(np.uint8)
    clean = np.asarray(np.cumsum(clean, axis=2) % 256, dtype=np.uint8)  # some structure
    streaks = np.zeros(shape)
    streaks[:, :, ::5] = rng.uniform(40, 120, (shape[1], len(range(0, shape[2], 5))))  # bright rain columns
    rainy = np.clip(clean + streaks + rng.normal(0, 4, shape), 0, 255).round().astype(np.uint8)
    write_image(tmp_path / "ref" / "a.png", torch.from_numpy(clean))
    write_image(tmp_path / "pred" / "a.png", torch.from_numpy(rainy))
    result = run_pan("eval", "--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "--channel", "y", "--json")
    assert result.exit_code == 0, result.stderr
    row = json.loads(result.stdout.splitlines()[0])
    y_clean, y_rainy = matlab_y(clean.transpose(1, 2, 0)), matlab_y(rainy.transpose(1, 2, 0))
    assert row["channel"] == "y"
    assert row["psnr"] == pytest.approx(psnr_by_hand(y_clean, y_rainy), abs=1e-9)
    # scikit-image pads and crops the border instead of taking MATLAB's 'valid' part: the same
    # mean over the same interior positions
    assert row["ssim"] == pytest.approx(ssim_by_hand(y_clean, y_rainy), abs=1e-6)
