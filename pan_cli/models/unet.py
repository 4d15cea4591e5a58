"""The paper's U-Net generator (pix2pix's encoder-decoder with skips) and its slim variant."""

from __future__ import annotations

import torch
from torch import nn

from pan_cli.models.generator import Generator
from pan_cli.models.geometry import Geometry


def down(cin: int, cout: int, bn: bool = True, act: bool = True) -> nn.Sequential:
    """LeakyReLU -> 3x3/2 conv -> BN: the activation leads, so the block's output (pre-activation)
    is what a skip connection carries, as in the paper's table."""
    layers: list[nn.Module] = [nn.LeakyReLU(0.2)] if act else []
    layers.append(nn.Conv2d(cin, cout, 3, 2, 1, bias=not bn))
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    return nn.Sequential(*layers)


def up(cin: int, cout: int) -> nn.Sequential:
    """4x4/2 transposed conv -> BN (its ReLU comes after the skip concatenation)."""
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout))


def up_out(cin: int, cout: int) -> list[nn.Module]:
    """The last 2x up-sampling, to the output channels (no BN: tanh follows)."""
    return [nn.ConvTranspose2d(cin, cout, 4, 2, 1)]


class UNet(Generator):
    """Six 3x3/2 encoder convs, six 4x4/2 decoder deconvs, the first four with mirrored skips.

    Subclasses change the widths, and `UP`/`UP_OUT` (how the decoder doubles the resolution)."""

    # six stride-2 stages; an output pixel sees up to 188 px (measured by gradient, tests/test_tiling.py)
    geometry = Geometry(multiple=64, reach=192)
    ENCODER = (64, 128, 256, 512, 512, 512)
    DECODER = (512, 256, 128, 64)  # these four concatenate encoder outputs 5, 4, 3, 2
    HEAD = 64  # the channels of the head's hidden layer
    UP = staticmethod(up)
    UP_OUT = staticmethod(up_out)

    def __init__(self, in_channels: int = 3, out_channels: int = 3):
        super().__init__()
        enc = self.ENCODER
        self.encoder = nn.ModuleList(
            [down(in_channels, enc[0], bn=False, act=False)]
            + [down(enc[i - 1], enc[i]) for i in range(1, len(enc))]
        )
        ups, channels = [], enc[-1]
        for i, out in enumerate(self.DECODER):
            ups.append(self.UP(channels, out))
            channels = out + enc[-2 - i]
        self.decoder = nn.ModuleList(ups)
        self.head = nn.Sequential(*self.UP(channels, self.HEAD), nn.ReLU(), *self.UP_OUT(self.HEAD, out_channels))

    @property
    def last(self) -> nn.Module:
        return self.head[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        h = nn.functional.leaky_relu(skips.pop(), 0.2)
        for i, block in enumerate(self.decoder):
            h = torch.relu(torch.cat([block(h), skips[-1 - i]], dim=1))
        return torch.tanh(self.head(h))


class SlimUNet(UNet):
    """The `unet` at half width (about a quarter of the weights): small enough to ship."""

    ENCODER = (32, 64, 128, 256, 256, 256)
    DECODER = (256, 128, 64, 32)
    HEAD = 32
