"""The task registry: each task's generator, sizes and loss defaults, and how a run's
RunConfig is made from them, the --paper preset and the user's overrides."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Sequence

from pan_cli.config import RunConfig
from pan_cli.datasets.paired import Crops, PairedImages
from pan_cli.datasets.rain import Rain, RainModel, rain_preset
from pan_cli.datasets.synthesized import SynthesizedPairs, Synthesizer, centre_hole, rainy, random_holes
from pan_cli.errors import PanError
from pan_cli.losses.objectives import OBJECTIVES
from pan_cli.models.networks import GENERATORS, check_size


@dataclass(frozen=True)
class Task:
    name: str
    summary: str
    data: str  # what a user's data looks like
    generator: str
    image_size: int
    load_size: int = 0  # 0: crop at the photo's own scale (rain streaks must keep their size)
    direction: str = "AtoB"
    residual: bool = False
    # Every task adds a pixel L1 term and keeps an EMA of T's weights (not the paper's
    # settings; --paper restores those). Measured on CPU, 240 s per task (docs/benchmarks.md, "Every
    # task on built-in data"), PSNR without -> with: derain see its model card; inpaint inside
    # the hole 11.05 -> 13.13 dB (mean-colour fill: 11.97); labels2street 14.62 -> 16.23;
    # sketch2photo 12.51 -> 13.06.
    lambda_pix: float = 25.0
    ema: float = 0.999
    objective: str = "pan"
    synthesizer: str = ""  # how inputs are made from clean photos ("rain", "holes"); "" none
    always_synthesize: bool = False  # trains from clean photos only (inpaint)
    fills_holes: bool = False  # each input comes with a mask of what to fill (inpaint)
    builtin_data: bool = False  # `pan compare` has built-in data for it (rain on scikit-image's photos)
    label_input: bool = False
    make_size: int = 0  # `pan data make`: resize the shorter side and centre-crop to this (0: keep)
    no_data: str = ""  # what to tell a user who gave no --data
    val_channel: str = "rgb"  # what validation PSNR is taken on ("y": luma, as de-raining papers score)
    # The shipped model's recipe: settings over the defaults above that `pan train TASK` uses
    # unless --paper is given (the authors' generator and sizes then).
    recipe: tuple[tuple[str, Any], ...] = ()
    paper_generator: str = ""  # --paper's generator ("": the task's generator)

    @property
    def takes_rain(self) -> bool:
        """Its inputs are made with rain (the --rain options apply)."""
        return self.synthesizer == "rain"

    def defaults(self, paper: bool = False) -> dict[str, Any]:
        """The settings a run starts from: with `paper`, the authors' generator and no recipe."""
        values = {
            "generator": (self.paper_generator or self.generator) if paper else self.generator,
            "image_size": self.image_size,
            "load_size": self.load_size,
            "direction": self.direction,
            "residual": self.residual,
            "lambda_pix": self.lambda_pix,
            "ema": self.ema,
            "objective": self.objective,
            "synthesize": self.synthesizer if self.always_synthesize else "",
            "label_input": self.label_input,
        }
        return values if paper else {**values, **dict(self.recipe)}


TASKS: dict[str, Task] = {
    "derain": Task(
        "derain",
        "rainy photo -> clean photo",
        "pairs: A/ (rainy) + B/ (clean), or input/ + target/; or clean photos with --synthesize",
        generator="dilated",
        image_size=96,  # the shipped model's crop (--paper: the authors' 256 from 286)
        # Measured on CPU (docs/method.md): without the global residual every objective made
        # images worse; with it and a pixel term PAN beats the input.
        residual=True,
        # the shipped model's recipe (docs/models/derain.md): the dilated network's 125 px view
        # (idcgan's 25 px was the limit on heavy rain) on 96 px crops, a half-width D
        recipe=(("d_width", 0.5),),
        paper_generator="idcgan",
        synthesizer="rain",
        val_channel="y",
        builtin_data=True,
        no_data="give --data: a folder of rainy/clean pairs, or of clean photos with --synthesize "
                "(`pan data make derain --from builtin -o pairs` writes pairs from built-in photos)",
    ),
    "inpaint": Task(
        "inpaint",
        "photo with a hole -> completed photo",
        "a folder of clean photos (or the B/ side of pairs); holes are made on the fly",
        generator="unet-fill",
        image_size=128,
        load_size=150,
        # the shipped model's recipe (docs/models/inpaint.md, its first stage): crops of random
        # zoom, a half-width D, lambda-pix 100
        recipe=(("zoom", True), ("d_width", 0.5), ("lambda_pix", 100.0)),
        paper_generator="context-encoder",
        synthesizer="holes",
        builtin_data=True,
        always_synthesize=True,
        fills_holes=True,
        make_size=128,
        no_data="give --data: a folder of clean photos (holes are made on the fly)",
    ),
    "labels2street": Task(
        "labels2street",
        "semantic label map -> street scene",
        "Cityscapes: leftImg8bit/ + gtFine/ (*_labelIds.png), or pix2pix's photo|label files",
        generator="unet",
        image_size=256,
        load_size=286,
        direction="BtoA",
        label_input=True,
        no_data="labels2street trains on Cityscapes, which pan cannot ship (its licence forbids "
                "redistribution): download it from https://www.cityscapes-dataset.com and give --data "
                "the folder holding leftImg8bit/ and gtFine/, or pix2pix's photo|label files",
    ),
    "sketch2photo": Task(
        "sketch2photo",
        "edge/sketch drawing -> photo",
        "pix2pix 'aligned' edges|photo files (edges2shoes-style), or A/ edges + B/ photos",
        generator="unet",
        image_size=256,
        load_size=286,
        make_size=256,
        no_data="give --data: edges2shoes-style edges|photo files, or make them from photos with "
                "`pan data make sketch2photo --from PHOTOS -o pairs`",
    ),
}

# The authors' exact settings (their facades script and Theano code), for --paper.
PAPER = {
    "residual": False,
    "lambda_pix": 0.0,
    "ema": 0.0,
    "objective": "pan",
    "lambdas": (5.0, 1.5, 1.5, 1.0),
    "margin": 3.0,
    "gan_form": "saturating",
    "real_label": 0.9,
    "lr": 2e-4,
    "betas": (0.5, 0.999),
    "batch_size": 4,
    "init": "authors",
    "d_first_activation": "tanh",
}
PAPER_SIZES = {"inpaint": (128, 0)}  # (image_size, load_size); the rest resize 286, crop 256

# What each objective implies unless the user says otherwise.
def rain_model(config: RunConfig) -> Rain:
    """The rain of config.rain; the --rain-* ranges shape its light streaks."""
    light = RainModel(density=config.rain_density, length=config.rain_length, angle=config.rain_angle,
                      intensity=config.rain_intensity)
    return rain_preset(config.rain, light)


# config.synthesize -> the synthesizer its inputs are made with: (clean uint8 crop, generator)
# -> (input, target); module-level functions and partials, which DataLoader workers can pickle
SYNTHESIZERS: dict[str, Callable[[RunConfig], Synthesizer]] = {
    "rain": lambda config: partial(rainy, rain_model(config)),
    "holes": lambda config: random_holes if config.takes_mask else centre_hole,
}


def crops(config: RunConfig) -> Crops:
    """How a run's training samples are cut (what the datasets need of its settings)."""
    return Crops(config.image_size, config.load_size, config.flip, config.zoom, config.direction,
                 (config.in_channels, config.out_channels), config.label_input)


def training_set(config: RunConfig, sources: Sequence) -> PairedImages | SynthesizedPairs:
    """The training samples: pairs from disk, or (config.synthesize) inputs made from photos."""
    if config.synthesize:
        return SynthesizedPairs(sources, crops(config), SYNTHESIZERS[config.synthesize](config))
    return PairedImages(sources, crops(config))


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise PanError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]


def make_config(task_name: str, paper: bool = False, **overrides: Any) -> RunConfig:
    """Task defaults, then the --paper preset, then the objective's implied settings, then
    every override that is not None (None means 'not given on the command line')."""
    task = get_task(task_name)
    given = {k: v for k, v in overrides.items() if v is not None}
    values: dict[str, Any] = {"task": task.name, **task.defaults(paper)}
    if paper:
        values.update(PAPER)
        values["image_size"], values["load_size"] = PAPER_SIZES.get(task.name, (256, 286))
    objective = given.get("objective", values["objective"])
    if objective not in OBJECTIVES:
        raise PanError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    values.update(OBJECTIVES[objective].implies)
    values.update(given)
    if task.fills_holes and values["residual"]:
        raise PanError(f"{task.name} needs no --residual: known pixels already pass through unchanged")
    if values["generator"] not in GENERATORS:
        raise PanError(f"unknown generator {values['generator']!r}; choose one of {', '.join(GENERATORS)}")
    generator = GENERATORS[values["generator"]]
    if task.fills_holes and generator.geometry.any_size:
        values.setdefault("in_channels", 4)  # image + hole mask for a fully convolutional T
    if generator.needs_mask and not task.fills_holes:
        fillers = ", ".join(name for name, t in TASKS.items() if t.fills_holes)
        raise PanError(f"generator {values['generator']!r} fills holes: use it with task {fillers}")
    check_size(values["generator"], values["image_size"])
    return RunConfig(**values)
