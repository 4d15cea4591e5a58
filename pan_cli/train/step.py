"""One PAN training step, as the paper writes it: the train state (T, D, their optimisers, the
EMA of T, autocast) and the D and T updates on a batch each."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from pan_cli.config import RunConfig
from pan_cli.errors import PanError
from pan_cli.losses import discriminator_loss, transformer_loss
from pan_cli.models.discriminator import Discriminator, build_discriminator
from pan_cli.models.networks import build_generator
from pan_cli.store.model import SavedModel
from pan_cli.train.distributed import Group


class Reader(Protocol):
    """A source of each step's batches (pan_cli.train.batches.StepData is one)."""

    def read(self) -> list[tuple[torch.Tensor, torch.Tensor]]: ...


def make_ema(model: nn.Module, decay: float) -> AveragedModel:
    """An exponential moving average of T's weights (and BN statistics) for inference.

    The decay ramps up as min(decay, (1 + n) / (10 + n)) so a short run is not dominated by
    its initial weights."""

    def average(averaged: torch.Tensor, current: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        n = float(count)
        return averaged + (current - averaged) * (1.0 - min(decay, (1.0 + n) / (10.0 + n)))

    return AveragedModel(model, avg_fn=average, use_buffers=True)


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Models:
    T: nn.Module
    D: Discriminator | None
    opt_T: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer | None
    ema: AveragedModel | None
    precision: str = "fp32"
    scaler_T: torch.amp.GradScaler | None = None
    scaler_D: torch.amp.GradScaler | None = None
    group: Group = Group()

    @classmethod
    def build(cls, config: RunConfig, device: torch.device, precision: str = "fp32", group: Group = Group()) -> Models:
        if precision not in PRECISIONS:
            raise PanError(f"--precision must be one of {', '.join(PRECISIONS)}")
        if precision == "fp16" and device.type != "cuda":
            raise PanError("--precision fp16 needs a CUDA device (use bf16 on CPU)")
        torch.manual_seed(config.seed)
        T = build_generator(config).to(device)
        D = build_discriminator(config).to(device) if config.loss.uses_d else None
        adam = adam_options(config, device)
        scaling = precision == "fp16"  # bf16 keeps fp32's range: no loss scaling
        return cls(
            T,
            D,
            torch.optim.Adam(T.parameters(), **adam),
            torch.optim.Adam(D.parameters(), **adam) if D is not None else None,
            make_ema(T, config.ema) if config.ema else None,
            precision,
            torch.amp.GradScaler(device.type, enabled=scaling),
            torch.amp.GradScaler(device.type, enabled=scaling),
            group,
        )

    def autocast(self):
        dtype = PRECISIONS[self.precision]
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    @property
    def device(self) -> torch.device:
        return next(self.T.parameters()).device

    def backward_and_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                          scaler: torch.amp.GradScaler) -> None:
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        self.group.average_gradients(p for g in optimizer.param_groups for p in g["params"])
        scaler.step(optimizer)
        scaler.update()

    def set_lr(self, lr: float) -> None:
        for optimizer in (self.opt_T, self.opt_D):
            for group in optimizer.param_groups if optimizer is not None else ():
                group["lr"] = lr

    def inference_net(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.T

    def checkpoint_bytes(self) -> int:
        """About what one checkpoint takes: weights, Adam's two moments, the EMA copy."""
        size = sum(p.numel() * p.element_size() for p in self.T.parameters()) * (4 if self.ema else 3)
        if self.D is not None:
            size += sum(p.numel() * p.element_size() for p in self.D.parameters()) * 3
        return size

    def state(self, config: RunConfig, step: int) -> dict:
        return {
            "config": config.to_dict(),
            "step": step,
            "T": self.T.state_dict(),
            "D": self.D.state_dict() if self.D is not None else None,
            "opt_T": self.opt_T.state_dict(),
            "opt_D": self.opt_D.state_dict() if self.opt_D is not None else None,
            "T_ema": self.ema.module.state_dict() if self.ema is not None else None,
            "ema_count": int(self.ema.n_averaged) if self.ema is not None else 0,
            "rng": {"torch": torch.get_rng_state()},
            "scalers": [self.scaler_T.state_dict(), self.scaler_D.state_dict()],
        }

    def start_from(self, state: dict) -> str:
        """Fine-tuning: T and its EMA from `state`'s inference weights (its EMA when it kept one), D
        from its D when it has one; the optimisers and the EMA's count start fresh. Returns what
        D took from `state`: "all", "convolutions" (D's last layer, a Linear sized from the image
        D sees, starts fresh when that size changed) or "nothing"."""
        weights = SavedModel.of(state).weights
        nets = [(self.T, weights, "generator")]
        if self.ema is not None:
            nets.append((self.ema.module, weights, "generator"))
        taken = "nothing"
        if self.D is not None and state.get("D") is not None:
            saved, taken = state["D"], "all"
            if saved["fc.weight"].shape != self.D.fc.weight.shape:
                saved = {**saved, **{f"fc.{k}": v for k, v in self.D.fc.state_dict().items()}}
                taken = "convolutions"
            nets.append((self.D, saved, "discriminator"))
        for net, saved, role in nets:
            try:
                net.load_state_dict(saved)
            except RuntimeError:
                raise PanError(f"--finetune: the checkpoint's {role} does not fit the one this run builds; leave "
                               "its shape (--generator, --d-width, channels) to the checkpoint") from None
        return taken

    def load_state(self, state: dict) -> None:
        self.T.load_state_dict(state["T"])
        self.opt_T.load_state_dict(state["opt_T"])
        if self.D is not None:
            self.D.load_state_dict(state["D"])
            self.opt_D.load_state_dict(state["opt_D"])
        if self.ema is not None:
            self.ema.module.load_state_dict(state["T_ema"])
            self.ema.n_averaged.fill_(state["ema_count"])
        torch.set_rng_state(state["rng"]["torch"])
        for scaler, saved in zip((self.scaler_T, self.scaler_D), state.get("scalers") or ()):
            if saved and scaler.is_enabled():
                scaler.load_state_dict(saved)


def adam_options(config: RunConfig, device: torch.device) -> dict:
    """Adam's settings; on CUDA the fused kernel (one launch for every parameter, and no host
    synchronisation), elsewhere torch's default, which the CPU results were measured with."""
    return dict(lr=config.lr, betas=config.betas, **({"fused": True} if device.type == "cuda" else {}))


def d_step(config: RunConfig, m: Models, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """One D update. T(x) is computed without a graph: no gradient reaches T."""
    m.D.requires_grad_(True)
    with m.autocast():
        with torch.no_grad():
            fake = m.T(x)
        terms = discriminator_loss(config, m.D(y), m.D(fake))
    m.backward_and_step(terms["total"], m.opt_D, m.scaler_D)
    return {k: v.detach().float() for k, v in terms.items()}


def t_step(config: RunConfig, m: Models, x: torch.Tensor, y: torch.Tensor) -> tuple[dict, torch.Tensor]:
    """One T update. D's weights get no gradient (requires_grad off saves their backward),
    and D's features of the target are a constant."""
    with m.autocast():
        output = m.T(x)
        fake = real_hidden = None
        if m.D is not None:
            m.D.requires_grad_(False)
            if config.loss.perceptual:
                with torch.no_grad():
                    real_hidden = m.D(y).hidden
            fake = m.D(output)
        terms = transformer_loss(config, output.float(), y, fake, real_hidden)
    m.backward_and_step(terms["total"], m.opt_T, m.scaler_T)
    for net in (m.T, m.D):  # both ran in train mode in both steps: BatchNorm statistics agree again
        m.group.average_buffers(net)
    if m.ema is not None:
        m.ema.update_parameters(m.T)
    return {k: v.detach().float() for k, v in terms.items()}, output.detach().float()


def warm_up_d(config: RunConfig, m: Models, batches: Reader) -> None:
    """config.d_warmup D updates against T as it starts, T unchanged, before the run's first step.
    A fine-tune from T alone starts with a random D whose verdicts, and hidden-layer features,
    say nothing yet: T's adversarial and perceptual gradients would then reward whatever fools
    it. The batches come from a stream of their own, so the run's own batches (and its exact
    resume, which begins after this) are unchanged."""
    m.set_lr(config.lr)
    done = 0
    while done < config.d_warmup:
        for x, y in batches.read()[: config.d_warmup - done]:
            d_step(config, m, x, y)
            done += 1
