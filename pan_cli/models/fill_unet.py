"""An inpainting generator that corrects a smooth fill instead of inventing the hole from grey.

`unet-slim` sees the hole as one flat colour and has to paint all of it; on thin strokes that
loses to a classical smooth fill. `unet-fill` first fills the hole by push-pull (a mask-weighted
image pyramid, pulled back up bilinearly: each hole pixel gets the colours around it, from
further out the deeper the hole), then the same slim U-Net predicts a correction to that fill,
starting from zero: at step 0 the model is the smooth fill, and training only adds what it learns.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pan_cli.models.geometry import Geometry
from pan_cli.models.unet import SlimUNet, UNet

LEVELS = 6  # the coarsest cell is 64 px, the U-Net's multiple, so every level divides evenly


def smooth_fill(image: torch.Tensor, known: torch.Tensor, levels: int = LEVELS) -> torch.Tensor:
    """NCHW `image` with the pixels where `known` (N1HW, 1 = known) is 0 filled by push-pull.

    Down: each level averages the known colour (premultiplied by how much of the cell is known)
    over 2x2 cells. Up: a level keeps its own known share and takes the rest from the coarser
    level, upsampled bilinearly, so known pixels come back exactly. A coarsest cell with nothing
    known gets 0 (mid grey)."""
    sums, weights = [image * known], [known]
    for _ in range(levels):
        sums.append(F.avg_pool2d(sums[-1], 2))
        weights.append(F.avg_pool2d(weights[-1], 2))
    filled = sums[-1] / weights[-1].clamp_min(1e-6)
    for colour, weight in zip(reversed(sums[:-1]), reversed(weights[:-1])):
        coarse = F.interpolate(filled, size=colour.shape[-2:], mode="bilinear", align_corners=False)
        filled = colour + (1.0 - weight) * coarse
    return filled


def resize_up(cin: int, cout: int) -> nn.Sequential:
    """Nearest 2x upsampling, 3x3 conv, BN: the U-Net's 4x4/2 transposed convs drew a visible
    checkerboard over the fill (Odena et al., "Deconvolution and checkerboard artifacts", 2016)."""
    return nn.Sequential(*resize_up_out(cin, cout, bias=False), nn.BatchNorm2d(cout))


def resize_up_out(cin: int, cout: int, bias: bool = True) -> list[nn.Module]:
    """The last 2x up-sampling, to the output channels: nearest, then a 3x3 conv (no BN)."""
    return [nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(cin, cout, 3, 1, 1, bias=bias)]


class FillUNet(SlimUNet):
    """`unet-slim` predicting a correction to the push-pull fill of the hole (mask channel last),
    with resize-convolutions for its up-sampling."""

    geometry = Geometry(multiple=64, reach=320)  # U-Net 192 + fill; checked by gradient (tests/test_tiling.py)
    needs_mask = True  # inpaint only: make_config refuses it for other tasks
    starts_as_input = True  # build_generator zeroes `last`: T starts as the smooth fill
    UP = staticmethod(resize_up)
    UP_OUT = staticmethod(resize_up_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image, hole = x[:, :-1], x[:, -1:]  # the mask is the last channel (make_config checks there is one)
        filled = smooth_fill(image, 1.0 - hole)
        return (filled + super().forward(torch.cat([filled, hole], 1))).clamp(-1.0, 1.0)


class WideFillUNet(FillUNet):
    """`unet-fill` at the paper U-Net's full width (four times the weights and the work), for
    training where compute is plentiful (a GPU). `pan export --half` keeps its file at 24.5 MB."""

    ENCODER = UNet.ENCODER
    DECODER = UNet.DECODER
    HEAD = UNet.HEAD
