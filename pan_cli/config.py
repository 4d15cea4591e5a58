"""RunConfig: the one frozen description of a run.

The CLI builds it, the trainer consumes it, the checkpoint stores it (as a plain dict),
and inference rebuilds the networks from it. Nothing else carries configuration around.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from pan_cli.datasets.rain import PRESETS as RAIN_PRESETS
from pan_cli.errors import PanError
from pan_cli.losses.objectives import OBJECTIVES, Objective
from pan_cli.losses.terms import PIXEL_LOSSES

GAN_FORMS = ("saturating", "non-saturating")
SYNTHESIZERS = ("", "rain", "holes")
RANGES = ("rain_density", "rain_length", "rain_angle", "rain_intensity")
# What each rain range may span: a streak longer than 1000 px is a kernel of a million pixels
RANGE_BOUNDS = {"rain_density": (0.0, 0.5), "rain_length": (0.0, 1000.0), "rain_angle": (-90.0, 90.0),
                "rain_intensity": (0.0, 1.0)}
TUPLES = ("lambdas", "betas", *RANGES)
FLOATS = ("margin", "lambda_pix", "real_label", "lr", "ema", "d_width")


# Bounds on sizes and counts, so that no setting (from the command line or a checkpoint) can
# ask for an absurd allocation before anything else is checked.
MAX_SIDE = 8192  # a training crop or load size beyond this is a typo, not a plan
BOUNDS = {"image_size": (1, MAX_SIDE), "load_size": (0, MAX_SIDE), "in_channels": (1, 64), "out_channels": (1, 4),
          "batch_size": (1, 65536), "steps": (1, 10**12), "lr_decay": (0, 10**12), "seed": (0, 2**63 - 1),
          "lr": (0.0, 10.0), "margin": (0.0, 1e6), "lambda_pix": (0.0, 1e6), "real_label": (0.0, 1.0),
          "d_warmup": (0, 10**9)}
FIELD_TYPES = {"int": int, "float": float, "str": str, "bool": bool, "tuple[float, ...]": tuple,
               "tuple[float, float]": tuple}
FIELD_NAMES = {int: "a whole number", float: "a finite number", str: "a string", bool: "true or false",
               tuple: "a list of finite numbers"}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class RunConfig:
    task: str
    generator: str
    image_size: int  # training crop (square)
    load_size: int = 0  # resize the shorter side to this before cropping; 0 = no resize
    in_channels: int = 3
    out_channels: int = 3
    direction: str = "AtoB"  # which side of a pair is the input
    residual: bool = False  # output = clamp(x + T(x), -1, 1)
    objective: str = "pan"
    lambdas: tuple[float, ...] = (5.0, 1.5, 1.5, 1.0)
    margin: float = 3.0
    lambda_pix: float = 0.0  # pixel term's weight in T's loss (pix2pix uses 100)
    pixel_loss: str = "l1"  # the pixel term: "l1" (mean absolute error) or "l2" (mean squared error)
    gan_form: str = "saturating"  # T's GAN term: log(1 - D(T(x))) or -log D(T(x))
    # D updates against the starting T before T's first update: a fine-tune's fresh D learns what
    # T's output looks like before its gradient steers T (0: none)
    d_warmup: int = 0
    real_label: float = 0.9  # one-sided label smoothing for D's real target
    lr: float = 2e-4
    lr_decay: int = 0  # the last steps, over which both learning rates fall linearly to 0 (pix2pix's n_epochs_decay)
    betas: tuple[float, float] = (0.5, 0.999)
    batch_size: int = 4
    steps: int = 1000  # T updates; each step is one D batch then one T batch
    flip: bool = True
    zoom: bool = False  # crops of random size and place resized to image_size (RandomResizedCrop)
    ema: float = 0.0  # decay of the moving average of T's weights used for inference
    init: str = "dcgan"  # "dcgan": N(0, 0.02); "authors": the authors' Theano init
    d_first_activation: str = "lrelu"  # "tanh" in the authors' code
    d_width: float = 1.0  # D's channel multiplier: 0.5 is a quarter of the cost (CPU training)
    seed: int = 0
    # Inputs made on the fly from clean photos: "" (paired data), "rain" or "holes" (inpainting).
    synthesize: str = ""
    label_input: bool = False  # the input is a label map: resized nearest-neighbour, never interpolated
    # Rain synthesizer ranges (low, high), used with synthesize="rain"; see datasets/rain.py.
    rain_density: tuple[float, float] = (0.001, 0.012)
    rain_length: tuple[float, float] = (6.0, 40.0)
    rain_angle: tuple[float, float] = (-35.0, 35.0)
    rain_intensity: tuple[float, float] = (0.12, 0.7)
    # The rain model (datasets/rain.py): "light" (the streaks the ranges above shape), "heavy"
    # (Yang et al.), "photoshop" (Fu et al.) or "mixed" (each draw picks one).
    rain: str = "mixed"
    # Fine-tuned: the checkpoint (and its step) whose weights the run started from; "" = from scratch.
    finetuned_from: str = ""

    def __post_init__(self) -> None:
        self._check_types()
        for name, (low, high) in BOUNDS.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise PanError(f"--{name.replace('_', '-')} {value} is outside {low}..{high}")
        if 0 < self.load_size < self.image_size and not self.zoom:
            raise PanError(f"--load-size {self.load_size} is below --image-size {self.image_size}: the photo is "
                           "resized to the load size before a crop is taken (give 0 to crop at its own scale)")
        if self.objective not in OBJECTIVES:
            raise PanError(f"unknown objective {self.objective!r}; choose one of {tuple(OBJECTIVES)}")
        if self.pixel_loss not in PIXEL_LOSSES:
            raise PanError(f"unknown pixel loss {self.pixel_loss!r}; choose one of {', '.join(PIXEL_LOSSES)}")
        if self.gan_form not in GAN_FORMS:
            raise PanError(f"unknown GAN form {self.gan_form!r}; choose one of {GAN_FORMS}")
        if self.d_warmup and not self.loss.uses_d:
            raise PanError(f"--d-warmup: the {self.objective} objective has no discriminator to warm up")
        if len(self.lambdas) != 4:
            raise PanError(f"--lambdas needs 4 numbers (one per D layer 1,4,6,8), got {len(self.lambdas)}")
        if min(self.lambdas) < 0:
            raise PanError(f"--lambdas {','.join(f'{v:g}' for v in self.lambdas)}: weights cannot be negative")
        if self.direction not in ("AtoB", "BtoA"):
            raise PanError(f"--direction must be AtoB or BtoA, not {self.direction!r}")
        if self.lr_decay < 0:
            raise PanError("--lr-decay must be 0 or more steps")
        for name in ("image_size", "batch_size", "steps"):
            if getattr(self, name) < 1:
                raise PanError(f"{name.replace('_', '-')} must be at least 1")
        if not 0.0 < self.d_width <= 4.0:
            raise PanError("--d-width must be in (0, 4]")
        if not 0.0 <= self.ema < 1.0:
            raise PanError("--ema must be in [0, 1)")
        if self.synthesize not in SYNTHESIZERS:
            raise PanError(f"unknown synthesizer {self.synthesize!r}; choose one of {SYNTHESIZERS}")
        if self.rain not in RAIN_PRESETS:
            raise PanError(f"unknown rain preset {self.rain!r}; choose one of {', '.join(RAIN_PRESETS)}")
        for name in RANGES:
            low, high = getattr(self, name)
            if low > high:
                raise PanError(f"--{name.replace('_', '-')}: LOW {low:g} is above HIGH {high:g}")
            least, most = RANGE_BOUNDS[name]
            if low < least or high > most:
                raise PanError(f"--{name.replace('_', '-')} {low:g},{high:g}: both must be within {least:g}..{most:g}")

    def _check_types(self) -> None:
        """Every field of the type it is declared with (a checkpoint is untrusted input: a string
        where a number belongs must not reach a network's constructor); numbers finite."""
        for f in dataclasses.fields(self):
            value, kind = getattr(self, f.name), FIELD_TYPES[f.type]
            if kind is tuple:
                good = isinstance(value, tuple) and all(_is_number(v) for v in value) and (
                    len(value) == 2 or f.type != "tuple[float, float]")
            elif kind is float:
                good = _is_number(value)
            else:
                good = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
            if not good:
                raise PanError(f"setting {f.name!r} must be {FIELD_NAMES[kind]}, not {value!r:.60}")

    @property
    def takes_mask(self) -> bool:
        """T's input carries the hole mask as its last channel (a fully convolutional inpainting
        T; the context encoder takes the paper's mean-colour-filled centre instead)."""
        return self.in_channels == self.out_channels + 1

    @property
    def loss(self) -> Objective:
        """What the objective needs from training (losses/objectives.py)."""
        return OBJECTIVES[self.objective]

    def lr_factor(self, step: int) -> float:
        """The learning rates' multiplier at `step` (1-based): 1, then a linear fall over the
        last lr_decay steps, reaching 1/(lr_decay + 1) at the last one."""
        remaining = self.steps - step + 1
        return 1.0 if remaining > self.lr_decay else remaining / (self.lr_decay + 1)

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values only, so a checkpoint loads with weights_only=True."""
        out = dataclasses.asdict(self)
        for key in TUPLES:
            out[key] = list(out[key])
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise PanError(f"checkpoint config has settings this version does not know: {unknown}")
        values = dict(values)
        if values.get("synthesize") == "rain":
            values.setdefault("rain", "light")  # checkpoints from before the presets: the streaks alone
        for key in TUPLES:
            if isinstance(values.get(key), (list, tuple)):
                values[key] = tuple(values[key])
        for key in FLOATS:  # JSON and old checkpoints may hold 1 for 1.0
            if isinstance(values.get(key), int) and not isinstance(values[key], bool):
                values[key] = float(values[key])
        try:
            return cls(**values)
        except TypeError as exc:  # a required setting missing
            raise PanError(f"config is incomplete ({exc})") from None

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)
