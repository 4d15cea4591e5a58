"""The PAN generators T (the discriminator D is in pan_cli.models.discriminator).

Layer tables follow the paper and the authors' Theano code (docs/method.md).
Blocks with BatchNorm have no conv bias: BN's shift makes it redundant.
"""

from __future__ import annotations

import copy
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from pan_cli.config import RunConfig
from pan_cli.errors import PanError
from pan_cli.models.dilated import DilatedNet
from pan_cli.models.fill_unet import FillUNet, WideFillUNet
from pan_cli.models.generator import Generator
from pan_cli.models.geometry import Geometry
from pan_cli.models.prenet import PReNet
from pan_cli.models.streaming import Chain, Conv, Map, Skip, Stream, add_, layers
from pan_cli.models.unet import SlimUNet, UNet, down, up


def _same(cin: int, cout: int, bn: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, 1, 1, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    return nn.Sequential(*layers)


class IDCGAN(Generator):
    """ID-CGAN's de-raining generator: all 3x3 stride-1 layers, additive skips, any image size.

    A stride-1 3x3 'deconvolution' with padding 1 is a convolution, so Conv2d is used for
    the decoder as well (same function class, faster kernels)."""

    geometry = Geometry(multiple=1, reach=12)  # twelve 3x3 stride-1 layers
    authors_std = 0.05  # ID-CGAN's generator: N(0, .05) throughout
    ENCODER = (64, 64, 64, 64, 32, 1)
    DECODER = (32, 64, 64, 64, 64)
    SKIPS = {1: 3, 3: 1}  # decoder layer index -> encoder layer index added to its output

    def __init__(self, in_channels: int = 3, out_channels: int = 3):
        super().__init__()
        enc, dec = self.ENCODER, self.DECODER
        self.encoder = nn.ModuleList(
            [_same(in_channels, enc[0], bn=False)] + [_same(enc[i - 1], enc[i]) for i in range(1, 6)]
        )
        self.decoder = nn.ModuleList(
            [_same(enc[-1], dec[0])] + [_same(dec[i - 1], dec[i]) for i in range(1, len(dec))]
        )
        self.last = nn.Conv2d(dec[-1], out_channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        encoded = []
        for block in self.encoder:
            x = block(x)
            encoded.append(x)  # BN output before the activation: what the skips add
            x = nn.functional.leaky_relu(x, 0.2)
        for i, block in enumerate(self.decoder):
            x = block(x)
            if i in self.SKIPS:
                x = x + encoded[self.SKIPS[i]]
            x = torch.relu(x)
        return torch.tanh(self.last(x))

    def stream(self) -> Stream:
        """This network for pan_cli.models.streaming. Each skip wraps the layers between its encoder
        output and the decoder layer it is added to (they nest, innermost last opened)."""
        sources = set(self.SKIPS.values())
        leaky = Map(partial(F.leaky_relu, negative_slope=0.2, inplace=True))
        opened: list[list[Stream]] = []
        parts: list[Stream] = []
        for j, block in enumerate(self.encoder):
            parts.append(layers(block))
            if j in sources:
                opened.append(parts)
                parts = []
            parts.append(leaky)
        for i, block in enumerate(self.decoder):
            parts.append(layers(block))
            if i in self.SKIPS:
                body = Chain(parts)
                parts = opened.pop()
                parts.append(Skip(body, add_))
            parts.append(Map(torch.relu_))
        return Chain([*parts, Conv(self.last), Map(torch.tanh_)])


class ContextEncoder(Generator):
    """Context-Encoder-style inpainting T: a 128x128 context in, the 64x64 centre patch out."""

    geometry = Geometry(fixed=128, patch=64)  # not fully convolutional

    def __init__(self, in_channels: int = 3, out_channels: int = 3, bottleneck: int = 4000):
        super().__init__()
        enc = (64, 64, 128, 256, 512)
        self.encoder = nn.Sequential(
            down(in_channels, enc[0], bn=False, act=False),
            *[down(enc[i - 1], enc[i]) for i in range(1, len(enc))],
            nn.LeakyReLU(0.2),
            nn.Conv2d(enc[-1], bottleneck, 4, 1, 0, bias=False),  # 4x4 valid -> 1x1
            nn.BatchNorm2d(bottleneck),
            nn.LeakyReLU(0.2),
        )
        dec = (512, 256, 128, 64)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(bottleneck, dec[0], 4, 1, 0, bias=False),  # 1x1 -> 4x4
            nn.BatchNorm2d(dec[0]),
            nn.ReLU(),
        ]
        for i in range(1, len(dec)):
            layers += [*up(dec[i - 1], dec[i]), nn.ReLU()]
        layers.append(nn.ConvTranspose2d(dec[-1], out_channels, 4, 2, 1))
        self.decoder = nn.Sequential(*layers, nn.Tanh())

    @property
    def last(self) -> nn.Module:
        return self.decoder[-2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


GENERATORS: dict[str, Callable[..., nn.Module]] = {
    "unet": UNet,
    "unet-slim": SlimUNet,
    "unet-fill": FillUNet,
    "unet-fill-wide": WideFillUNet,
    "idcgan": IDCGAN,
    "prenet": PReNet,
    "dilated": DilatedNet,
    "context-encoder": ContextEncoder,
}


class Residual(Generator):
    """Global residual (not in the paper): T predicts a correction to its input."""

    def __init__(self, net: nn.Module, out_channels: int):
        super().__init__()
        self.net = net
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x[:, : self.out_channels] + self.net(x)).clamp(-1.0, 1.0)

    def stream(self) -> Stream | None:
        """The sum and clamp around the network's own stream; None when it has none."""
        body = self.net.stream()
        if body is None:
            return None
        channels = self.out_channels
        return Skip(body, lambda held, out: out.add_(held[:, :channels]).clamp_(-1.0, 1.0))


class Composite(Generator):
    """Inpainting with a fully convolutional T: the input's last channel is the hole mask, and
    T's prediction replaces the masked pixels only; known pixels pass through untouched."""

    def __init__(self, net: nn.Module, out_channels: int):
        super().__init__()
        self.net = net
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = x[:, self.out_channels:]
        # in fp32: under bf16 autocast the network's output is bf16, and a blend in bf16 would
        # also round the known pixels it must pass through unchanged
        return torch.lerp(x[:, : self.out_channels].float(), self.net(x).float(), mask.float())


def geometry(generator: str) -> Geometry:
    if generator not in GENERATORS:
        raise PanError(f"unknown generator {generator!r}; choose one of {sorted(GENERATORS)}")
    return GENERATORS[generator].geometry


def check_size(generator: str, size: int) -> None:
    """Raise a PanError naming the sizes `generator` can take if it cannot take `size`."""
    try:
        geometry(generator).check(generator, size)
    except ValueError as exc:
        raise PanError(str(exc)) from None


def output_size(config: RunConfig) -> int:
    """The size of T's output (and of what D sees) for a training crop of config.image_size."""
    return geometry(config.generator).output_size(config.image_size)


def init_weights(module: nn.Module, std: float = 0.02, first_std: float | None = None) -> None:
    """N(0, std) for conv/linear weights, zero biases; BN scale 1, shift 0 (the authors' Lasagne
    defaults). `first_std` overrides the std of the first conv (the authors' special cases)."""
    first = True
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, first_std if (first and first_std) else std)
            first = False
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def build_generator(config: RunConfig) -> nn.Module:
    geometry(config.generator)  # a known name
    net = GENERATORS[config.generator](config.in_channels, config.out_channels)
    if net.default_init:
        pass  # keeps torch's own initialisation (see the class)
    elif config.init == "authors":  # first conv N(0, .05), the rest the generator's authors_std
        init_weights(net, net.authors_std, first_std=0.05)
    else:
        init_weights(net)
    if config.takes_mask:  # the extra channel is an inpainting mask
        if net.starts_as_input:
            _zero(net.last)  # it corrects its own fill of the hole: start with none
        return Composite(net, config.out_channels)
    if not config.residual:
        return net
    if not net.geometry.any_size:
        raise PanError(f"--residual needs a generator whose output is its input's size, "
                       f"not {config.generator!r}")
    # Zero the last layer so a residual T starts as the exact identity: training then only
    # has to learn the correction, and step 0 already scores the input's PSNR.
    _zero(net.last)
    return Residual(net, config.out_channels)


def load_weights(net: nn.Module, weights: dict[str, torch.Tensor], what: str) -> None:
    """net.load_state_dict(weights), or one PanError line saying how they differ (torch's own
    message lists every tensor: fifty lines for a model of another width)."""
    own = net.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    shapes = [k for k in own if k in weights and weights[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = [f"{len(found)} {kind} (e.g. {found[0]}{example})" for found, kind, example in (
            (shapes, "of another shape", f": {tuple(weights[shapes[0]].shape)} here, {tuple(own[shapes[0]].shape)} "
                                         "expected" if shapes else ""),
            (missing, "missing", ""), (unexpected, "unexpected", "")) if found]
        raise PanError(f"{what} does not fit: {'; '.join(parts)} of {len(own)} tensors")
    net.load_state_dict(weights)


def _zero(layer: nn.Module) -> None:
    nn.init.zeros_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """A copy of an eval-mode `module` with every BatchNorm that directly follows a convolution
    in a Sequential folded into that convolution's weights (exact, as BN in eval mode is an
    affine map): one fewer pass over every activation at inference."""
    folded = copy.deepcopy(module).eval()
    for sequential in [m for m in folded.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(sequential) - 1):
            conv, bn = sequential[i], sequential[i + 1]
            if isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)) and isinstance(bn, nn.BatchNorm2d):
                transpose = isinstance(conv, nn.ConvTranspose2d)
                sequential[i] = fuse_conv_bn_eval(conv, bn, transpose=transpose)
                sequential[i + 1] = nn.Identity()
    return folded
