"""How a generator's output relates to its input: the sizes it takes and how far it sees.

Every generator class declares one `Geometry`; inference, tiling, training-crop checks and the
ONNX export read it instead of testing generator names.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Geometry:
    multiple: int = 1  # any-size generators: each side is padded up to a multiple of this
    reach: int = 0  # how far (px) from an output pixel the input can change it: tiles overlap by twice this
    fixed: int = 0  # >0: takes exactly fixed x fixed images and returns their centre `patch`
    patch: int = 0

    @property
    def any_size(self) -> bool:
        """Fully convolutional: output the size of the input, so it can run whole or in tiles."""
        return self.fixed == 0

    def output_size(self, size: int) -> int:
        return size if self.any_size else self.patch

    def check(self, name: str, size: int) -> None:
        """Raise ValueError naming the sizes the generator takes if it cannot take `size`."""
        if not self.any_size and size != self.fixed:
            raise ValueError(f"generator {name!r} takes exactly {self.fixed}x{self.fixed} images, not {size}")
        if self.multiple > 1 and size % self.multiple:
            example = self.multiple * max(1, round(size / self.multiple))
            raise ValueError(f"generator {name!r} needs image sizes that are multiples of {self.multiple} "
                             f"(e.g. {example}), not {size}")

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """NCHW padded at the bottom and right up to the multiple, edge pixels repeated (valid at
        any size, and what the ONNX export computes too: no test on the amounts, so a traced
        graph pads whatever size it is given)."""
        if self.multiple == 1:
            return x
        pad_h, pad_w = (-x.shape[-2]) % self.multiple, (-x.shape[-1]) % self.multiple
        return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
