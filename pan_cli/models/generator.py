"""What every generator T declares, in one place: build_generator, the predictor, tiling and
the ONNX export read these class attributes instead of testing generator names."""

from __future__ import annotations

from torch import nn

from pan_cli.models.geometry import Geometry
from pan_cli.models.streaming import Stream


class Generator(nn.Module):
    """The base of every T. A subclass sets what differs from these defaults and has a `last`
    layer (the output convolution, zeroed when T must start as its input)."""

    geometry: Geometry = Geometry()  # the sizes it takes and how far it sees
    default_init: bool = False  # keeps torch's own initialisation instead of N(0, 0.02)
    authors_std: float = 0.02  # the std of the authors' init (--paper) beyond the first layer
    starts_as_input: bool = False  # its last layer starts at zero: T begins as its own fill
    needs_mask: bool = False  # takes the hole mask as its input's last channel (inpaint only)

    def stream(self) -> Stream | None:
        """This network for pan_cli.models.streaming (band by band), or None when it cannot."""
        return None
