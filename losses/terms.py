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


PIXEL_LOSSES = {"l1": pixel_l1, "l2": pixel_l2, "l1-low": pixel_l1_low}  # --pixel-loss
