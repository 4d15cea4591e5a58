"""A de-raining generator with a wide view at stride 1: residual blocks of dilated convolutions.

Rain100H-style streaks run 20-60 px; `idcgan` sees 25 px around a pixel, too little to tell a
long bright streak from an edge of the scene. Dilated convolutions (as in JORDER's contextualized
dilated network, Yang et al., CVPR 2017) widen the view to 125 px at about the cost of `idcgan`.
"""

from __future__ import annotations

import torch
from torch import nn

from pan_cli.models.generator import Generator
from pan_cli.models.geometry import Geometry
from pan_cli.models.streaming import Chain, Conv, Map, Skip, Stream, add_


class _Block(nn.Module):
    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, dilation, dilation=dilation)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, dilation, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # in place where autograd allows it (a conv's backward needs its input, not its output):
        # three full-resolution maps alive at once instead of five, so larger tiles fit
        return self.conv2(torch.relu_(self.conv1(x))).add_(x)


class DilatedNet(Generator):
    """Head conv, residual blocks whose dilations cycle 1, 2, 4, 8 twice, a last conv.

    No BatchNorm, so the output does not depend on the batch or the tile. It returns a correction
    (train it with the global residual, the derain default), and its weights keep torch's default
    (Kaiming) initialisation: N(0, 0.02) leaves a deep BN-free stack nearly silent at the start."""

    DILATIONS = (1, 2, 4, 8, 1, 2, 4, 8)
    CHANNELS = 48
    geometry = Geometry(multiple=1, reach=2 + 2 * sum(DILATIONS))  # 62 px; checked by gradient
    default_init = True

    def __init__(self, in_channels: int = 3, out_channels: int = 3):
        super().__init__()
        c = self.CHANNELS
        self.head = nn.Conv2d(in_channels, c, 3, 1, 1)
        self.blocks = nn.Sequential(*[_Block(c, d) for d in self.DILATIONS])
        self.last = nn.Conv2d(c, out_channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu_(self.head(x))
        for block in self.blocks:  # not self.blocks(h): its argument would stay alive to the end
            h = block(h)
        return self.last(torch.relu_(h))

    def stream(self) -> Stream:
        """This network for pan_cli.models.streaming: band by band, nothing computed twice."""
        relu = Map(torch.relu_)
        blocks = [Skip(Chain([Conv(b.conv1), relu, Conv(b.conv2)]), add_) for b in self.blocks]
        return Chain([Conv(self.head), relu, *blocks, relu, Conv(self.last)])
