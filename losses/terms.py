"""The individual loss terms, each a plain function of tensors.

Everything works on logits (binary_cross_entropy_with_logits / softplus), never on
sigmoid-then-log, which loses precision exactly where a GAN needs it.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def perceptual_distances(
    real_hidden: Sequence[torch.Tensor], fake_hidden: Sequence[torch.Tensor]
) -> torch.Tensor:
    """P_j = mean |H_j(y) - H_j(T(x))|, the L1 distance averaged over every element of layer j.

    Returns a vector with one entry per tapped layer."""
    return torch.stack([(r.float() - f.float()).abs().mean() for r, f in zip(real_hidden, fake_hidden)])


def weighted_sum(distances: torch.Tensor, lambdas: Sequence[float]) -> torch.Tensor:
    """sum_j lambda_j P_j."""
    return (distances * distances.new_tensor(list(lambdas))).sum()


def margin_hinge(weighted: torch.Tensor, margin: float) -> torch.Tensor:
    """D's perceptual term max(0, m - sum_j lambda_j P_j): zero, with zero gradient, at or
    above the margin."""
    return F.relu(margin - weighted)


def d_gan_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, real_label: float) -> torch.Tensor:
    """BCE(D(y), real_label) + BCE(D(T(x)), 0); real_label 0.9 is one-sided label smoothing."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, real_label))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def t_gan_loss(fake_logits: torch.Tensor, form: str) -> torch.Tensor:
    """T's GAN term: the paper's saturating mean log(1 - D(T(x))), or the non-saturating
    mean -log D(T(x))."""
    if form == "saturating":
        return -F.softplus(fake_logits).mean()  # log(1 - sigmoid(l)) = -softplus(l)
    if form == "non-saturating":
        return F.softplus(-fake_logits).mean()  # -log sigmoid(l) = softplus(-l)
    raise ValueError(f"unknown GAN form {form!r}")


def pixel_l1(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean |y - T(x)|."""
    return (output - target).abs().mean()


def pixel_l2(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean (y - T(x))^2: where the target is uncertain (deep in a large hole) it pulls toward
    the mean of what could be there, which is what PSNR rewards; L1 pulls toward the median."""
    return F.mse_loss(output, target)


LOW_PASS = 4  # pixel_l1_low compares the means of LOW_PASS x LOW_PASS blocks


def pixel_l1_low(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean |pool(y) - pool(T(x))| over 4x4 block means (the last blocks may be partial): the
    colours and shapes T must get right, with the finer texture left to the adversarial terms.
    A full-resolution pixel term pulls an uncertain fill (deep in a hole) to the blur that
    minimises its error; hallucinated texture costs PSNR little, wrong colours cost it much."""
    def pool(image: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(image, LOW_PASS, ceil_mode=True)

    return (pool(output) - pool(target)).abs().mean()


SSIM_WINDOW, SSIM_SIGMA = 11, 1.5  # the Gaussian window of Wang et al. (2004), as de-raining papers score


def ssim(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of images in [-1, 1] (data range 2), each channel on its own, over a Gaussian
    11 x 11 window with sigma 1.5 and the constants K1 0.01, K2 0.03; windows are whole (no
    padding), as skimage.metrics.structural_similarity with gaussian_weights=True. In fp32 with
    autocast off: the variances are differences of near-equal means, which bf16 turns to noise."""
    with torch.autocast(output.device.type, enabled=False):
        return _ssim(output.float(), target.float())


def _ssim(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    channels = output.shape[1]
    taps = torch.arange(SSIM_WINDOW, dtype=torch.float32, device=output.device) - SSIM_WINDOW // 2
    line = torch.exp(-taps ** 2 / (2 * SSIM_SIGMA ** 2))
    line = line / line.sum()
    window = (line[:, None] * line[None, :]).expand(channels, 1, SSIM_WINDOW, SSIM_WINDOW)

    def blur(image: torch.Tensor) -> torch.Tensor:
        return F.conv2d(image, window, groups=channels)

    c1, c2 = (0.01 * 2) ** 2, (0.03 * 2) ** 2
    mu_x, mu_y = blur(output), blur(target)
    var_x = blur(output * output) - mu_x ** 2
    var_y = blur(target * target) - mu_y ** 2
    cov = blur(output * target) - mu_x * mu_y
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return index.mean()


def pixel_ssim(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - SSIM(T(x), y): PReNet's negative-SSIM term (Ren et al., CVPR 2019), which de-raining
    found better than L1/L2 at removing streaks without blurring the structure behind them."""
    return 1 - ssim(output, target)


PIXEL_LOSSES = {"l1": pixel_l1, "l2": pixel_l2, "l1-low": pixel_l1_low, "ssim": pixel_ssim}  # --pixel-loss
