"""The one owner of a saved model's state, whatever the file: SavedModel knows which weights
infer (the EMA of T when the run kept one), the generator they build and the card every export
carries; FORMAT is the files' format number. Reading any file into one: store.checkpoint;
writing one out: store.exports. Training, inference, export and serve all go through it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pan_cli import __version__
from pan_cli.config import RunConfig
from pan_cli.errors import RunFailure
from pan_cli.models.networks import build_generator, load_weights

FORMAT = 1  # of pan's own files and of what a safetensors export reads back as
WEIGHTS_NAME, CONFIG_NAME = "model.safetensors", "config.json"  # a safetensors export's folder


@dataclass(frozen=True)
class SavedModel:
    """A model as pan saved it (a training checkpoint, an export, a shipped model), read and
    checked (store.checkpoint.read_model): the one place that knows which weights infer, how the
    generator is built from the config, and what every export's card says. `state` is all the
    file holds (a training checkpoint also has D, both optimisers and the RNG, for --resume)."""

    config: RunConfig
    step: int
    state: dict[str, Any] = field(repr=False)
    path: Path | None = None

    @classmethod
    def of(cls, state: dict[str, Any], path: Path | None = None) -> SavedModel:
        return cls(state["config"], state["step"], state, path)

    @property
    def weights(self) -> dict[str, torch.Tensor]:
        """T's weights that inference uses: its EMA when the run kept one, else T itself."""
        return self.state["T_ema"] if self.state.get("T_ema") is not None else self.state["T"]

    @property
    def discriminator(self) -> dict[str, torch.Tensor] | None:
        return self.state.get("D")

    @property
    def exported(self) -> bool:
        """Weights only (an export or a shipped model): it cannot continue training."""
        return bool(self.state.get("exported")) or "opt_T" not in self.state

    def generator(self, what: str | None = None) -> nn.Module:
        """T built from the config with the inference weights (as trained: BatchNorm unfolded)."""
        net = build_generator(self.config)
        load_weights(net, self.weights, what or f"{self.path or 'the model'}: the weights of its "
                                               f"{self.config.generator!r} generator")
        return net

    def card(self) -> dict[str, Any]:
        """What every export records: task, generator, step, pan version, training data, validation."""
        return {"task": self.config.task, "generator": self.config.generator, "step": self.step,
                "pan_version": self.state.get("pan_version", __version__),
                "data": self.state.get("data") or "unknown", "validation": self.state.get("best") or "none"}


def require_extra(module: str, extra: str, purpose: str = "this export"):
    try:
        return __import__(module)
    except ImportError:
        raise RunFailure(f"{purpose} needs {module}: pip install 'pan[{extra}]'") from None
