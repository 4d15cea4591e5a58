"""Which training batch and crop sizes a config's networks accept.

BatchNorm in training mode needs more than one value per channel: a batch of 1 whose
innermost layer is 1x1 (the U-Net at its own size), or a crop so small that a strided
network reduces it to a single pixel, fails at the first step with a bare ValueError. The
shapes are traced on the meta device (no memory, no arithmetic) so such settings are refused
before anything is built for real.
"""

from __future__ import annotations

import torch
from torch import nn

from pan_cli.config import RunConfig
from pan_cli.models.discriminator import build_discriminator
from pan_cli.models.networks import build_generator, output_size


def _single_value_layers(net: nn.Module, example: torch.Tensor) -> list[str]:
    found: list[str] = []

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], name: str) -> None:
        shape = inputs[0].shape
        if shape[0] * shape[2:].numel() == 1:
            found.append(name)

    handles = [module.register_forward_pre_hook(lambda m, i, name=name: hook(m, i, name))
               for name, module in net.named_modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    try:
        net.train()(example)
    except ValueError:  # BatchNorm's own check, after the hook above named the layer
        if not found:
            raise
    finally:
        for handle in handles:
            handle.remove()
    return found


def batchnorm_problem(config: RunConfig) -> str | None:
    """Why config's batch size and crop leave a BatchNorm layer one value per channel, or None."""
    with torch.device("meta"):
        T = build_generator(config)
        layers = [f"T's {name}" for name in _single_value_layers(
            T, torch.empty(config.batch_size, config.in_channels, config.image_size, config.image_size))]
        if config.loss.uses_d:
            D = build_discriminator(config)
            size = output_size(config)
            layers += [f"D's {name}" for name in _single_value_layers(
                D, torch.empty(config.batch_size, config.out_channels, size, size))]
    if not layers:
        return None
    return (f"--batch-size {config.batch_size} with --image-size {config.image_size} leaves BatchNorm one value "
            f"per channel in {layers[0]} ({config.generator}); use --batch-size 2 or more, or a larger --image-size")
