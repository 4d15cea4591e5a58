"""The PAN objective and the objectives it is compared against (installed as pan_cli.losses)."""

from pan_cli.losses.objective import discriminator_loss, transformer_loss
from pan_cli.losses.terms import (
    d_gan_loss,
    margin_hinge,
    perceptual_distances,
    pixel_l1,
    pixel_l2,
    t_gan_loss,
    weighted_sum,
)

__all__ = [
    "d_gan_loss",
    "discriminator_loss",
    "margin_hinge",
    "perceptual_distances",
    "pixel_l1",
    "pixel_l2",
    "t_gan_loss",
    "transformer_loss",
    "weighted_sum",
]
