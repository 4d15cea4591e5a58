"""Image quality scores, computed as published work does: on 8-bit images, SSIM with an 11x11
Gaussian window (sigma 1.5) and population covariance, via scikit-image."""

from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


def _hwc(image: torch.Tensor) -> np.ndarray:
    if image.dtype != torch.uint8:
        raise TypeError("score the saved 8-bit images: pass uint8 tensors")
    return image.permute(1, 2, 0).cpu().numpy()


def psnr(reference: torch.Tensor, test: torch.Tensor) -> float:
    """PSNR in dB of two uint8 CHW images (inf when identical)."""
    ref, out = _hwc(reference), _hwc(test)
    if np.array_equal(ref, out):
        return float("inf")
    return float(peak_signal_noise_ratio(ref, out, data_range=255))


def ssim(reference: torch.Tensor, test: torch.Tensor) -> float:
    """SSIM of two uint8 CHW images, averaged over channels."""
    return float(structural_similarity(
        _hwc(reference), _hwc(test), data_range=255, channel_axis=-1,
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    ))
