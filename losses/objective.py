"""D's and T's losses for each objective, as dicts of named terms with the sum under 'total'.

- pan:     D: BCE(D(y), .9) + BCE(D(T(x)), 0) + max(0, m - sum lambda_j P_j)
           T: GAN term + sum lambda_j P_j (+ lambda_pix * pixel term when lambda_pix > 0)
- pix2pix: D: the same GAN terms; T: GAN term + lambda_pix * pixel term (pix2pix uses 100)
- l1:      no D; T: the pixel term
The pixel term is L1 unless --pixel-loss l2 makes it the mean squared error.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import torch

from pan_cli.losses.objectives import Objective
from pan_cli.losses.terms import (
    PIXEL_LOSSES,
    d_gan_loss,
    margin_hinge,
    perceptual_distances,
    t_gan_loss,
    weighted_sum,
)


class LossSettings(Protocol):
    """What the losses read of a run's settings (pan_cli.config.RunConfig has all of it)."""

    loss: Objective
    lambdas: Sequence[float]
    margin: float
    real_label: float
    gan_form: str
    lambda_pix: float
    pixel_loss: str
    objective: str


class Judged(Protocol):
    """D's verdict on a batch (pan_cli.models.discriminator.DOutput): one logit per image and
    the hidden layers H_1..H_4."""

    logits: torch.Tensor
    hidden: Sequence[torch.Tensor]


def _perceptual_terms(
    config: LossSettings, real_hidden: Sequence[torch.Tensor], fake_hidden: Sequence[torch.Tensor]
) -> dict[str, torch.Tensor]:
    distances = perceptual_distances(real_hidden, fake_hidden)
    terms = {f"P{j}": p for j, p in enumerate(distances, start=1)}
    terms["perceptual"] = weighted_sum(distances, config.lambdas)
    return terms


def discriminator_loss(config: LossSettings, real: Judged, fake: Judged) -> dict[str, torch.Tensor]:
    """D's loss. The hinge's gradient flows through both H_j(y) and H_j(T(x)): while the
    discrepancy is below m, D is pushed to find features where real and output differ more.
    `fake` must come from a detached T(x) so that no gradient reaches T."""
    terms = {"gan": d_gan_loss(real.logits, fake.logits, config.real_label)}
    if config.loss.perceptual:
        terms.update(_perceptual_terms(config, real.hidden, fake.hidden))
        terms["hinge"] = margin_hinge(terms["perceptual"], config.margin)
        terms["total"] = terms["gan"] + terms["hinge"]
    else:
        terms["total"] = terms["gan"]
    return terms


def transformer_loss(
    config: LossSettings,
    output: torch.Tensor,
    target: torch.Tensor,
    fake: Judged | None = None,
    real_hidden: Sequence[torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """T's loss. `real_hidden` (D's features of the target) is treated as a constant: only
    H_j(T(x)) carries gradient to T."""
    terms: dict[str, torch.Tensor] = {"pixel": PIXEL_LOSSES[config.pixel_loss](output, target)}
    if not config.loss.uses_d:
        terms["total"] = terms["pixel"]
        return terms
    if fake is None:
        raise ValueError(f"objective {config.objective!r} needs D's output on T(x)")
    terms["gan"] = t_gan_loss(fake.logits, config.gan_form)
    total = terms["gan"] + config.lambda_pix * terms["pixel"]
    if config.loss.perceptual:
        if real_hidden is None:
            raise ValueError("the pan objective needs D's features of the target")
        real_hidden = [h.detach() for h in real_hidden]
        terms.update(_perceptual_terms(config, real_hidden, fake.hidden))
        total = total + terms["perceptual"]
    terms["total"] = total
    return terms
