"""PAN's discriminator D: nine 3x3 convolutions and one logit per image, with four hidden
layers tapped for the perceptual loss. Layer table from the paper and the authors' code
(docs/method.md)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import NamedTuple

import torch
from torch import nn

from pan_cli.config import RunConfig
from pan_cli.models.networks import init_weights, output_size

# D: (out channels, stride) of its nine 3x3 convolutions; perceptual taps after layers 1,4,6,8.
D_LAYERS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 2), (8, 2))
D_TAPS = (1, 4, 6, 8)


class DOutput(NamedTuple):
    logits: torch.Tensor  # (N,): one logit per image, not a patch map
    hidden: tuple[torch.Tensor, ...]  # H_1..H_4, the post-activation outputs of layers 1,4,6,8


def conv_out_size(size: int, stride: int, kernel: int = 3, padding: int = 1) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class Discriminator(nn.Module):
    """D sees only a target or an output image (never the input) and gives one logit."""

    def __init__(self, image_size: int, in_channels: int = 3, first_activation: str = "lrelu", width: float = 1.0):
        super().__init__()
        layers: list[nn.Module] = []
        channels, size = in_channels, image_size
        for index, (out, stride) in enumerate(D_LAYERS, start=1):
            if index < len(D_LAYERS):  # `width` scales every layer but the last (8 channels to the FC)
                out = max(8, round(out * width))
            if index == 1:  # no BatchNorm; Tanh in the authors' code
                act = nn.Tanh() if first_activation == "tanh" else nn.LeakyReLU(0.2)
                block = nn.Sequential(nn.Conv2d(channels, out, 3, stride, 1), act)
            elif index == len(D_LAYERS):  # no BatchNorm, no activation
                block = nn.Sequential(nn.Conv2d(channels, out, 3, stride, 1))
            else:
                block = nn.Sequential(
                    nn.Conv2d(channels, out, 3, stride, 1, bias=False),
                    nn.BatchNorm2d(out),
                    nn.LeakyReLU(0.2),
                )
            layers.append(block)
            channels, size = out, conv_out_size(size, stride)
        self.layers = nn.ModuleList(layers)
        self.fc = nn.Linear(channels * size * size, 1)  # sized from the training image
        self.image_size = image_size

    def forward(self, image: torch.Tensor) -> DOutput:
        hidden = []
        h = image
        for index, layer in enumerate(self.layers, start=1):
            if min(h.shape[-2:]) < 2:  # a 1-px-wide map (small crops): in fp32, see _fp32
                with _fp32(h):
                    h = layer(h.float())
            else:
                h = layer(h)
            if index in D_TAPS:
                hidden.append(h)
        with _fp32(h):  # the logit in fp32 under autocast: the GAN terms are taken from it
            logits = self.fc(h.flatten(1).float()).squeeze(1)
        return DOutput(logits, tuple(hidden))


def _fp32(h: torch.Tensor) -> AbstractContextManager:
    """Autocast off, for the layers that must run in fp32. oneDNN's bf16 convolution (on CPUs
    with AMX, which --precision auto picks bf16 on) returns a garbage weight gradient, up to
    1e37 or NaN in about half the calls, for a stride-2 layer whose input is 1 px wide: D's
    last layers on crops of 16 px or less. Measured against fp32 (tests/test_precision.py);
    the maps are 1x1, so fp32 costs nothing there."""
    if h.device.type not in ("cpu", "cuda"):  # "meta" (the size checks) has no autocast to turn off
        return nullcontext()
    return torch.autocast(h.device.type, enabled=False)


def build_discriminator(config: RunConfig) -> Discriminator:
    net = Discriminator(output_size(config), config.out_channels, config.d_first_activation, config.d_width)
    init_weights(net, first_std=0.5 if config.init == "authors" else None)
    return net
