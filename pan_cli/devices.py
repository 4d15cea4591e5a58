"""Where training runs and in what precision: the device, and bf16 only where it is fast."""

from __future__ import annotations

import torch

from pan_cli.errors import PanError


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise PanError("--device cuda: no CUDA device is available here")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise PanError("--device mps: no MPS device is available here")
    if name.startswith("cuda:") and torch.cuda.is_available():
        return torch.device(name)
    if name not in ("cpu", "cuda", "mps"):
        raise PanError(f"unknown device {name!r}; use auto, cpu, cuda or mps")
    return torch.device(name)


def fast_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast is faster than fp32 here. On the CPU only AMX makes it so: with
    AVX-512 BF16 alone a PAN step took 1.4x as long in bf16 (docs/benchmarks.md, "Precision")."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
        return bool(amx and amx())
    return False


def resolve_precision(name: str, device: torch.device) -> tuple[str, str]:
    """(precision, why) for --precision; `auto` is bf16 only where it runs fast."""
    if name != "auto":
        return name, "as asked"
    if fast_bf16(device):
        return "bf16", "auto: this device runs bf16 faster than fp32"
    return "fp32", "auto: bf16 would be slower than fp32 on this device"
