"""A de-raining generator of the PReNet kind, measured beside `idcgan` (docs/models/derain.md)."""

from __future__ import annotations

import torch
from torch import nn

from pan_cli.models.generator import Generator
from pan_cli.models.geometry import Geometry


class _ResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.conv2(torch.relu(self.conv1(x))))


class PReNet(Generator):
    """A progressive recurrent residual network of the PReNet kind (Ren et al., CVPR 2019):
    the same small residual stage runs `STAGES` times, each time on the rainy input beside the
    current estimate, with a convolutional LSTM carrying state from stage to stage, and refines
    the estimate. No BatchNorm (batch-size and tile independent), stride 1: any image size.

    It returns the correction (final estimate - input), so the global `Residual` wrapper adds
    the input back, and its zeroed `last` layer makes T start as the identity."""

    geometry = Geometry(multiple=1, reach=44)  # stride 1; measured by gradient (tests/test_tiling.py)
    STAGES = 4
    CHANNELS = 32
    BLOCKS = 4

    def __init__(self, in_channels: int = 3, out_channels: int = 3):
        super().__init__()
        c = self.CHANNELS
        self.out_channels = out_channels
        self.head = nn.Conv2d(in_channels + out_channels, c, 3, 1, 1)
        self.gates = nn.Conv2d(2 * c, 4 * c, 3, 1, 1)  # input, forget, cell and output gates
        self.blocks = nn.Sequential(*[_ResBlock(c) for _ in range(self.BLOCKS)])
        self.last = nn.Conv2d(c, out_channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        source = x[:, : self.out_channels]
        estimate = source
        n, _, height, width = x.shape
        hidden = cell = x.new_zeros(n, self.CHANNELS, height, width)
        for _ in range(self.STAGES):
            h = torch.relu(self.head(torch.cat([x, estimate], 1)))
            i, f, g, o = self.gates(torch.cat([h, hidden], 1)).chunk(4, 1)
            cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
            hidden = torch.sigmoid(o) * torch.tanh(cell)
            estimate = source + self.last(self.blocks(hidden))
        return estimate - source
