"""Sketch-like edges from a photo, for sketch2photo pairs when only photos exist.

Canny on the grey image, smoothed in proportion to the image's size, with thresholds set as
quantiles of the gradient so busy and plain photos give similar amounts of line: thin black
lines on white, the look of pix2pix's edges2shoes / edges2handbags inputs.
"""

from __future__ import annotations

import torch
from skimage.color import rgb2gray
from skimage.feature import canny


def sketch(photo: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
    """uint8 3xHxW photo -> uint8 3xHxW black-on-white edge drawing of the same size."""
    grey = rgb2gray(photo.permute(1, 2, 0).numpy())
    sigma = sigma if sigma is not None else max(1.0, min(grey.shape) / 128)
    lines = canny(grey, sigma=sigma, low_threshold=0.8, high_threshold=0.9, use_quantiles=True)
    drawing = torch.from_numpy(~lines).to(torch.uint8) * 255
    return drawing.expand(3, -1, -1).contiguous()
