"""What each objective needs from the training loop, in one place: the loop, the loss
functions, the CLI and the size checks ask this table instead of testing names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Objective:
    name: str
    uses_d: bool  # trains a discriminator (and T gets its GAN term)
    perceptual: bool  # T and D's hinge use D's hidden features (the PAN loss)
    implies: dict[str, Any] = field(default_factory=dict)  # settings it brings, before the user's own

    @property
    def batches_per_step(self) -> int:
        """One D batch then one T batch (the authors' alternation), or one batch with no D."""
        return 2 if self.uses_d else 1


PAN = "pan"  # the paper's objective: `pan compare` measures the others against it

OBJECTIVES: dict[str, Objective] = {
    "pan": Objective("pan", uses_d=True, perceptual=True),
    "pix2pix": Objective("pix2pix", uses_d=True, perceptual=False,
                         implies={"lambda_pix": 100.0, "gan_form": "non-saturating", "pixel_loss": "l1"}),
    # defined by their L1 term: a task recipe's other pixel term (inpaint's l1-low) is not theirs
    "l1": Objective("l1", uses_d=False, perceptual=False, implies={"pixel_loss": "l1"}),
}
