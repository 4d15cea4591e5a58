"""Image quality scores, computed as published work does.

Every score is taken on 8-bit images (the saved files users evaluate, not float tensors),
optionally on BT.601 luma (Y) from RGB and with a border cropped. SSIM uses an 11x11
Gaussian window (sigma 1.5) and population covariance via scikit-image; UQI (Wang & Bovik
2002) uses 8x8 windows; VIF is the pixel-domain VIF-P (Sheikh & Bovik 2006), 4 scales.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import binary_erosion, gaussian_filter, uniform_filter
from scipy.signal import fftconvolve
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from skimage.morphology import disk

METRICS = ("psnr", "ssim", "uqi", "vif")


@dataclass(frozen=True)
class Settings:
    channel: str = "rgb"  # "rgb" or "y" (BT.601 luma from RGB)
    crop_border: int = 0
    data_range: int = 255

    def as_dict(self) -> dict[str, object]:
        return {"channel": self.channel, "crop_border": self.crop_border, "data_range": self.data_range}


RGB = Settings()


def to_y(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma in [16, 235] from HWC RGB in [0, 255] (RGB order: torchvision and Pillow
    load RGB, unlike the cv2-based tools whose BGR weights give wrong numbers here)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return (16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0)[..., None]


def prepare(image: torch.Tensor, settings: Settings = RGB) -> np.ndarray:
    """uint8 CHW tensor -> float64 HWC array in the settings' colour space, border cropped."""
    if image.dtype != torch.uint8:
        raise TypeError("score the saved 8-bit images: pass uint8 tensors")
    array = image.permute(1, 2, 0).cpu().numpy().astype(np.float64)
    if settings.channel == "y":
        array = to_y(array) if array.shape[2] == 3 else array
    elif settings.channel != "rgb":
        raise ValueError(f"channel must be 'rgb' or 'y', not {settings.channel!r}")
    b = settings.crop_border
    if b:
        if 2 * b >= min(array.shape[:2]):
            raise ValueError(f"crop border {b} leaves nothing of a {array.shape[1]}x{array.shape[0]} image")
        array = array[b:-b, b:-b]
    return array


def _psnr(ref: np.ndarray, out: np.ndarray, data_range: int) -> float:
    if np.array_equal(ref, out):
        return float("inf")
    return float(peak_signal_noise_ratio(ref, out, data_range=data_range))


SSIM_WINDOW = 11  # the Gaussian window (sigma 1.5, truncated at 3.5 sigma) papers use


def _ssim(ref: np.ndarray, out: np.ndarray, data_range: int) -> float:
    return float(structural_similarity(ref, out, data_range=data_range, channel_axis=-1,
                                       gaussian_weights=True, sigma=1.5, use_sample_covariance=False))


def _uqi_channel(x: np.ndarray, y: np.ndarray, window: int = 8) -> float:
    """Mean over 8x8 windows of Q = 4 cov(x,y) mean(x) mean(y) / ((var x + var y)(mean x^2 + mean y^2)).

    Flat windows, where Q is 0/0, score 1 when the means agree in the limit, as in the
    reference code (2 mean(x) mean(y) / (mean x^2 + mean y^2) when only the variances vanish)."""
    mx, my = uniform_filter(x, window), uniform_filter(y, window)
    vx = uniform_filter(x * x, window) - mx * mx
    vy = uniform_filter(y * y, window) - my * my
    cxy = uniform_filter(x * y, window) - mx * my
    means = mx * mx + my * my
    variances = vx + vy
    q = np.ones_like(x)
    flat = (np.abs(variances) < 1e-12) & (means > 0)
    q[flat] = 2 * mx[flat] * my[flat] / means[flat]
    full = np.abs(variances * means) >= 1e-12
    q[full] = 4 * cxy[full] * mx[full] * my[full] / (variances[full] * means[full])
    lead = window // 2  # uniform_filter centres an even window at i over [i - lead, i + window - lead)
    trail = window - 1 - lead
    return float(q[lead: q.shape[0] - trail, lead: q.shape[1] - trail].mean())  # every full window, once


def _gaussian(size: int, sigma: float) -> np.ndarray:
    axis = np.arange(size) - (size - 1) / 2.0
    kernel = np.exp(-(axis[:, None] ** 2 + axis[None, :] ** 2) / (2 * sigma**2))
    return kernel / kernel.sum()


def _vif_channel(ref: np.ndarray, out: np.ndarray, noise_var: float = 2.0) -> float:
    """Pixel-domain VIF: information the output keeps about the reference, over 4 scales.
    A reference with no signal holds no information to keep: VIF is then 1 for an output equal
    to it and 0 for any other, rather than 0/0. "No signal" is a local variance nowhere above
    the model's noise variance: a flat grey with one pixel off by 1 gave 3.09 otherwise, a
    ratio of two sums of rounding noise."""
    if np.array_equal(ref, out):
        return 1.0
    shift = ref.mean()  # variances do not change; the FFT's rounding error shrinks with the values
    ref, out = ref - shift, out - shift
    eps = 1e-10
    num = den = 0.0
    for scale in range(1, 5):
        size = 2 ** (5 - scale) + 1
        window = _gaussian(size, size / 5.0)
        if scale > 1:
            ref = fftconvolve(ref, window, mode="valid")[::2, ::2]
            out = fftconvolve(out, window, mode="valid")[::2, ::2]
        if min(ref.shape) < size:
            break  # too small for this scale
        mu1, mu2 = fftconvolve(ref, window, mode="valid"), fftconvolve(out, window, mode="valid")
        s1 = np.maximum(fftconvolve(ref * ref, window, mode="valid") - mu1 * mu1, 0)
        s2 = np.maximum(fftconvolve(out * out, window, mode="valid") - mu2 * mu2, 0)
        s12 = fftconvolve(ref * out, window, mode="valid") - mu1 * mu2
        if scale == 1 and s1.max() <= noise_var:
            return 0.0  # no signal in the reference (see above)
        g = s12 / (s1 + eps)
        sv = s2 - g * s12
        g[s1 < eps] = 0
        sv[s1 < eps] = s2[s1 < eps]
        s1[s1 < eps] = 0
        g[s2 < eps] = 0
        sv[s2 < eps] = 0
        sv[g < 0] = s2[g < 0]
        g[g < 0] = 0
        sv[sv <= eps] = eps
        num += np.sum(np.log10(1.0 + g * g * s1 / (sv + noise_var)))
        den += np.sum(np.log10(1.0 + s1 / noise_var))
    return float(num / den) if den > 0 else 0.0


def _per_channel(fn, ref: np.ndarray, out: np.ndarray) -> float:
    return float(np.mean([fn(ref[..., c], out[..., c]) for c in range(ref.shape[2])]))


def score(reference: torch.Tensor, test: torch.Tensor, settings: Settings = RGB) -> dict[str, float]:
    """All four scores of two uint8 CHW images of one size."""
    if reference.shape != test.shape:
        raise ValueError(f"images differ in size: {tuple(reference.shape)} vs {tuple(test.shape)}")
    ref, out = prepare(reference, settings), prepare(test, settings)
    if min(ref.shape[:2]) < SSIM_WINDOW:
        raise ValueError(f"{ref.shape[1]}x{ref.shape[0]} (after any --crop-border) is smaller than SSIM's "
                         f"{SSIM_WINDOW}x{SSIM_WINDOW} window: too small to score")
    return {
        "psnr": _psnr(ref, out, settings.data_range),
        "ssim": _ssim(ref, out, settings.data_range),
        "uqi": _per_channel(_uqi_channel, ref, out),
        "vif": _per_channel(_vif_channel, ref, out),
    }


DETAIL_SIGMA = 2.0  # the high-pass of the detail ratio: grey minus its Gaussian blur of this sigma
DETAIL_ERODE = 4  # pixels taken off the hole's edge first, so the seam with the known pixels does not count


def high_pass(image: torch.Tensor) -> np.ndarray:
    """The fine structure of a uint8 CHW image: its grey (mean of the channels, 0-255) minus
    that grey's Gaussian blur (sigma DETAIL_SIGMA, edges reflected)."""
    grey = image.double().mean(0).numpy()
    return grey - gaussian_filter(grey, DETAIL_SIGMA, mode="reflect")


def detail(reference: torch.Tensor, test: torch.Tensor, mask: torch.Tensor) -> float:
    """How much fine structure a fill has, against the real photo's: the RMS of the test
    image's high-pass over the hole eroded by DETAIL_ERODE px, divided by the reference's.
    1.0 is as much texture as the photo, a blur is near 0; PSNR rewards the blur, this does
    not. NaN when nothing is left of the hole after erosion or the photo is flat there."""
    inside = binary_erosion(mask.bool().reshape(mask.shape[-2:]).numpy(), disk(DETAIL_ERODE), border_value=1)
    if not inside.any():
        return float("nan")
    clean = float(np.sqrt(np.mean(high_pass(reference)[inside] ** 2)))
    if clean == 0:
        return float("nan")
    return float(np.sqrt(np.mean(high_pass(test)[inside] ** 2))) / clean


def hole_scores(reference: torch.Tensor, test: torch.Tensor, mask: torch.Tensor, data_range: int = 255) -> dict:
    """PSNR and mean absolute error over the masked pixels only (mask: nonzero = hole), as
    inpainting is judged: the pixels outside the hole are the input's own; and the fill's
    `detail` ratio (see detail())."""
    inside = mask.bool().expand_as(reference)
    if not inside.any():
        raise ValueError("the mask marks no pixel")
    diff = reference[inside].double() - test[inside].double()
    mse = float((diff * diff).mean())
    return {"psnr_hole": float("inf") if mse == 0 else 10 * np.log10(data_range**2 / mse),
            "mae_hole": float(diff.abs().mean()), "detail": detail(reference, test, mask)}


def psnr(reference: torch.Tensor, test: torch.Tensor, settings: Settings = RGB) -> float:
    """PSNR in dB of two uint8 CHW images (inf when identical)."""
    return _psnr(prepare(reference, settings), prepare(test, settings), settings.data_range)


def ssim(reference: torch.Tensor, test: torch.Tensor, settings: Settings = RGB) -> float:
    """SSIM of two uint8 CHW images, averaged over channels."""
    return _ssim(prepare(reference, settings), prepare(test, settings), settings.data_range)
