"""How many pixels an image may have for a model to run on it whole on this machine.

A stride-1 generator keeps full-resolution feature maps for every layer: about 1.9 KB per
pixel for `idcgan`, so a 12-megapixel photo took 20.7 GB. The default `--max-pixels` of
`pan infer` is therefore derived from the memory free now and the model's activation bytes per
pixel (traced on the meta device: no memory, no arithmetic), so a photo that cannot fit is
refused in one line before it is decoded rather than failing inside the allocator.
"""

from __future__ import annotations

import copy
import os
import weakref

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

TRACE_SIDE = 64
HEADROOM = 0.7  # of the free memory: the decoded image, the output and the allocator need the rest


def free_bytes(device: torch.device) -> int:
    """Memory free now on `device` (CPU: MemAvailable, else the physical pages free)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30  # no way to ask: assume a modest machine


class _LiveBytes(TorchDispatchMode):
    """Counts every tensor an operation creates (fp32 bytes) for as long as it is referenced:
    functional activations and residual sums too, not only the outputs of leaf modules.
    Views and in-place results are the memory of their input, so they add nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0

    def _freed(self, size: int) -> None:
        self.live -= size

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.is_view:
            return out
        inputs = {id(t) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor) and id(tensor) not in inputs:
                size = tensor.numel() * 4
                self.live += size
                self.peak = max(self.peak, self.live)
                weakref.finalize(tensor, self._freed, size)
        return out


def activation_bytes_per_pixel(net: nn.Module, in_channels: int) -> float:
    """Peak bytes of intermediate tensors alive at once, per input pixel (fp32), found by running
    a meta-device copy and following each tensor's lifetime: skip connections stay alive, the
    rest are freed as the forward pass moves on (as they are in real inference)."""
    clone = copy.deepcopy(net).to("meta")
    counter = _LiveBytes()
    with torch.inference_mode():
        image = torch.empty(1, in_channels, TRACE_SIDE, TRACE_SIDE, device="meta")
        with counter:
            clone(image)
    return counter.peak / TRACE_SIDE**2


# Pillow's decompression-bomb warning threshold (Image.MAX_IMAGE_PIXELS): larger images are
# refused unless --max-pixels allows them, even though tiling could run them
BOMB_LIMIT = 89_478_485

# the decoded image, the output and its blend weights, the mask: all an image costs when it is
# tiled (or cut into windows, for the context encoder), whatever the model
IMAGE_BYTES_PER_PIXEL = 32
# and beyond those, filling holes with a fully convolutional T (inpainting.inpaint): the
# mean-colour fill and the pass's float prediction; a 12 MP photo with a 20 px stroke peaked at
# 59 bytes per pixel over the tile's activations and the interpreter with one pass (84 with the
# mean of a pass and its mirror image's that pan made before the texture recipe)
FILL_BYTES_PER_PIXEL = 56
# scoring a pair (pan eval --pred/--ref): PSNR, SSIM, UQI and VIF in float64 over both images;
# numpy alone peaked at 160 bytes per pixel for a 1 MP pair, the process at about 270
SCORE_BYTES_PER_PIXEL = 280


def max_pixels(bytes_per_pixel: float, device: torch.device) -> int:
    """The largest image (in pixels) that fits in the memory free now at `bytes_per_pixel`
    (Predictor.bytes_per_pixel: the activations of a whole-image pass, or only the image's own
    copies when it is tiled)."""
    return max(1, int(free_bytes(device) * HEADROOM / bytes_per_pixel))
