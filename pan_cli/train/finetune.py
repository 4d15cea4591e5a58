"""Fine-tuning: a fresh run that starts from the weights of another run or of a shipped model.

The run takes the starting model's settings (its generator, crop, losses, ...) except those
given on the command line, so `pan train inpaint --data mine --finetune shipped --steps 2000`
needs nothing else. Only the weights carry over: the step count, the optimisers' moments and
the schedule (--steps, --lr-decay, --d-warmup) start afresh, and --data is read as this command says
(pairs, or photos with --synthesize).
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from pan_cli.config import RunConfig
from pan_cli.errors import PanError
from pan_cli.store.checkpoint import PRETRAINED, load_checkpoint
from pan_cli.train.run_dir import SCHEDULE

SHIPPED = "shipped"  # --finetune shipped: the task's pretrained model inside the package
# Settings a fine-tuning run never takes from its source: how long it runs, how it starts (a
# D warm-up belongs to the run that asked for it), and whether --data holds pairs or clean
# photos to make inputs from (the shipped derain model learnt from synthesized rain; a user's
# fine-tuning data may be real pairs).
OWN = (*SCHEDULE, "d_warmup", "synthesize")


def finetune_source(task: str, given: str) -> Path:
    """The checkpoint file that --finetune names (`shipped`: the task's pretrained model)."""
    if given != SHIPPED:
        return Path(given)
    shipped = PRETRAINED.get(task)
    if shipped is None or not shipped.exists():
        raise PanError(f"--finetune shipped: pan ships no pretrained {task} model "
                       f"(there are: {', '.join(sorted(PRETRAINED))})")
    return shipped


def finetune_start(task: str, source: Path, settings: dict[str, Any],
                   asked: frozenset[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The fine-tuning run's settings and the checkpoint state whose weights it starts from.
    `settings` are the command line's (None: not given); those named in `asked` override the
    source's. The result goes through make_config like any run's settings, so they are checked
    together (the source's generator with this command's --image-size, say). --steps is applied
    with the run's start, as for any run: run_dir.starting_point."""
    state = load_checkpoint(source, task=task)
    inherited = {field.name: getattr(state["config"], field.name) for field in fields(RunConfig)
                 if field.name not in (*OWN, "task", "finetuned_from")}
    given = {name: settings.get(name) for name in asked | set(OWN)}  # None: the task's default
    name = f"shipped {source.name}" if source in PRETRAINED.values() else str(source)
    return {**inherited, **given, "finetuned_from": f"{name} (step {state['step']})"}, state
