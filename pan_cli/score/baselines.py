"""The classical hole fills an inpainting model has to beat, scored beside it by `pan eval`:
the mean colour of the known pixels, and scikit-image's biharmonic inpainting."""

from __future__ import annotations

import numpy as np
import torch
from skimage.restoration import inpaint_biharmonic


def mean_colour_fill(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """uint8 CHW with the hole (bool HxW, True = missing) set to the mean colour of the rest."""
    known = image[:, ~mask].double()
    colour = known.mean(1).round().to(torch.uint8) if known.numel() else torch.full((image.shape[0],), 128,
                                                                                    dtype=torch.uint8)
    return torch.where(mask, colour.view(-1, 1, 1), image)


def biharmonic_fill(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """uint8 CHW with the hole filled by `skimage.restoration.inpaint_biharmonic`."""
    array = image.permute(1, 2, 0).numpy().astype(np.float64) / 255.0
    filled = inpaint_biharmonic(array, mask.numpy(), channel_axis=-1)
    out = torch.from_numpy(np.clip(np.round(filled * 255.0), 0, 255).astype(np.uint8)).permute(2, 0, 1)
    return torch.where(mask, out, image)


BASELINES = {"mean-colour": mean_colour_fill, "biharmonic": biharmonic_fill}
