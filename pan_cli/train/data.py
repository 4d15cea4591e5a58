"""Finding what a run trains and validates on, from the folders a user gives."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from pan_cli.config import RunConfig
from pan_cli.datasets.images import several_frames
from pan_cli.datasets.layout import Pair, detect_layout, find_pairs, find_photos
from pan_cli.errors import PanError
from pan_cli.score.evaluation import best_split
from pan_cli.tasks import TASKS


@dataclass
class TrainingData:
    pairs: list[Pair] | list[Path]  # image pairs, or clean photos when the config synthesizes inputs
    val_pairs: list[Pair] | None
    description: str  # one line for the user: what was found
    warnings: list[str] = field(default_factory=list)


def find_training_data(config: RunConfig, data: Path | None, val_data: Path | None = None) -> TrainingData:
    """The training pairs (or photos) in `data` and the validation pairs: --val's best split if
    given, else a val/ split beside train/."""
    task = TASKS[config.task]
    if data is None:
        raise PanError(task.no_data)
    warnings = []
    if config.synthesize:
        pairs, val_pairs = find_photos(data, "train", config.direction), None
        description = f"{len(pairs)} clean photos in {data}; inputs synthesized ({config.synthesize})"
    else:
        layout = detect_layout(data)
        pairs = find_pairs(layout, "train")
        val_pairs = find_pairs(layout, "val") if "val" in layout.splits else None
        description = f"{layout.describe()}; {len(pairs)} training pairs"
        if layout.kind == "aligned" and task.synthesizer:
            warnings.append(f"each image in {data} is read as an input|target pair side by side; if they are "
                            "plain photos, add --synthesize to make the inputs from them")
    if val_data is not None:
        val_layout = detect_layout(val_data)
        val_pairs = find_pairs(val_layout, best_split(val_layout.splits))
    files = (p for item in pairs for p in ((item.a, item.b) if isinstance(item, Pair) else (item,)) if p is not None)
    if note := several_frames(files):
        warnings.append(note)
    return TrainingData(pairs, val_pairs, description, warnings)


def steps_for_epochs(epochs: float, items: int, config: RunConfig) -> int:
    """T updates that pass over `items` training items `epochs` times (a step reads one batch
    per objective phase: two with D, one without)."""
    return max(1, math.ceil(epochs * items / (config.batch_size * config.loss.batches_per_step)))
