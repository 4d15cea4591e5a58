"""`make bench`: training-step and inference speed on this device, as a markdown table.

For each generator it times a full PAN step (one D update + one T update, as the trainer runs
them) and inference, after warm-up, and reports seconds, images/s, achieved GFLOP/s (FLOPs
counted by torch's FlopCounterMode) as a fraction of the fp32 matmul rate measured in the
same run, and peak memory. A reference pix2pix step (U-Net-256 + 70x70 PatchGAN,
GAN + 100 L1, written here) is timed beside it so the PAN/pix2pix ratio is measured, not
quoted. Ratios within one run are the figures to trust on a noisy machine.
"""

from __future__ import annotations

import math
import resource
import time
from pathlib import Path
from typing import Callable

import click
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from pan_cli.devices import pick_device
from pan_cli.errors import PanError
from pan_cli.models.networks import GENERATORS, fold_batchnorm
from pan_cli.tasks import make_config
from pan_cli.train.step import Models, d_step, t_step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1) -> float:
    """Median seconds of `fn` over `repeats` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - began)
    return sorted(times)[len(times) // 2]


def flops_of(fn: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def matmul_gflops(device: torch.device, n: int = 2048) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    return 2 * n**3 / timed(lambda: a @ b, device, repeats=5, warmup=2) / 1e9


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (Linux: KiB)


VARIANTS = {
    "fp32": {},
    "channels_last": {"channels_last": True},
    "bf16 autocast": {"precision": "bf16"},
    "torch.compile": {"compiled": True},
}


class Pix2PixUNet(nn.Module):
    """junyanz's U-Net (unet_256 at 256: eight 4x4/2 downs to 1x1) with mirrored ups and skip
    concatenation; log2(size) stages for other sizes, as unet_128 has seven."""

    def __init__(self, size: int = 256):
        super().__init__()
        stages = int(math.log2(size))
        if 2**stages != size or stages < 5:
            raise click.UsageError(f"the pix2pix reference needs a power-of-two size of at least 32, not {size}")
        widths = (64, 128, 256, 512, *([512] * (stages - 4)))
        self.downs = nn.ModuleList()
        cin = 3
        for i, w in enumerate(widths):
            layers = [nn.LeakyReLU(0.2)] if i else []
            layers.append(nn.Conv2d(cin, w, 4, 2, 1, bias=i == 0 or i == len(widths) - 1))
            if 0 < i < len(widths) - 1:
                layers.append(nn.BatchNorm2d(w))
            self.downs.append(nn.Sequential(*layers))
            cin = w
        self.ups = nn.ModuleList()
        for i, w in enumerate(reversed(widths[:-1])):
            cin_up = widths[-1] if i == 0 else 2 * widths[-1 - i]
            layers = [nn.ReLU(), nn.ConvTranspose2d(cin_up, w, 4, 2, 1, bias=False), nn.BatchNorm2d(w)]
            if i < 3:
                layers.append(nn.Dropout(0.5))
            self.ups.append(nn.Sequential(*layers))
        self.out = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(2 * widths[0], 3, 4, 2, 1), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
        skips.pop()
        for up in self.ups:
            x = torch.cat([up(x), skips.pop()], 1)
        return self.out(x)


def patchgan() -> nn.Module:
    """The 70x70 PatchGAN on concat(input, image)."""
    return nn.Sequential(
        nn.Conv2d(6, 64, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(64, 128, 4, 2, 1, bias=False), nn.BatchNorm2d(128), nn.LeakyReLU(0.2),
        nn.Conv2d(128, 256, 4, 2, 1, bias=False), nn.BatchNorm2d(256), nn.LeakyReLU(0.2),
        nn.Conv2d(256, 512, 4, 1, 1, bias=False), nn.BatchNorm2d(512), nn.LeakyReLU(0.2),
        nn.Conv2d(512, 1, 4, 1, 1),
    )


def pix2pix_step(device: torch.device, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    G, D = Pix2PixUNet(x.shape[-1]).to(device).train(), patchgan().to(device).train()
    opt_g = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    bce = F.binary_cross_entropy_with_logits

    def step() -> None:
        fake = G(x)
        real_logits, fake_logits = D(torch.cat([x, y], 1)), D(torch.cat([x, fake.detach()], 1))
        loss_d = 0.5 * (bce(real_logits, torch.ones_like(real_logits))
                        + bce(fake_logits, torch.zeros_like(fake_logits)))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        logits = D(torch.cat([x, fake], 1))
        loss_g = bce(logits, torch.ones_like(logits)) + 100 * (fake - y).abs().mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()

    return step


def pan_step(generator: str, size: int, batch: int, device: torch.device, precision: str = "fp32",
             channels_last: bool = False, compiled: bool = False):
    task = "inpaint" if generator == "context-encoder" else "sketch2photo"
    config = make_config(task, generator=generator, image_size=size, batch_size=batch, ema=0.0)
    models = Models.build(config, device, precision)
    x = torch.rand(batch, config.in_channels, size, size, device=device) * 2 - 1
    y_size = GENERATORS[generator].geometry.output_size(size)
    y = torch.rand(batch, 3, y_size, y_size, device=device) * 2 - 1
    if channels_last:
        for net in (models.T, models.D):
            net.to(memory_format=torch.channels_last)
        x, y = x.contiguous(memory_format=torch.channels_last), y.contiguous(memory_format=torch.channels_last)
    if compiled:
        models.T.compile()
        models.D.compile()

    def step() -> None:  # the trainer's own step functions, on two batches as it runs them
        d_step(config, models, x, y)
        t_step(config, models, x, y)

    inference_net = fold_batchnorm(models.T)  # as pan infer runs it

    def infer() -> None:
        with torch.inference_mode(), models.autocast():
            inference_net(x)

    return step, infer


@click.command()
@click.option("--size", type=int, default=256, show_default=True, help="Image size (context-encoder: 128).")
@click.option("--batch", type=int, default=4, show_default=True)
@click.option("--repeats", type=int, default=3, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("bench-output/bench.md"), show_default=True)
@click.option("--variants/--no-variants", default=True, show_default=True,
              help="Also time channels_last, bf16 and torch.compile for T=unet.")
def main(size: int, batch: int, repeats: int, device: str, out: Path, variants: bool) -> None:
    dev = pick_device(device)
    peak = matmul_gflops(dev)
    x = torch.rand(batch, 3, size, size, device=dev) * 2 - 1
    reference = pix2pix_step(dev, x, x.clone())
    ref_seconds = timed(reference, dev, repeats)
    ref_flops = flops_of(reference)
    rows = [f"device: {dev.type}, {torch.get_num_threads()} threads; fp32 matmul {peak:.0f} GFLOP/s; "
            f"batch {batch}; median of {repeats} after warm-up", "",
            "| model | size | train s/step | train img/s | train GFLOP/s | % matmul | vs pix2pix step "
            "| infer img/s | infer % matmul | peak MiB |",
            "|---|---|---|---|---|---|---|---|---|---|",
            f"| pix2pix reference (U-Net + 70x70 PatchGAN) | {size} | {ref_seconds:.3f} | "
            f"{batch / ref_seconds:.2f} | {ref_flops / ref_seconds / 1e9:.0f} | "
            f"{100 * ref_flops / ref_seconds / 1e9 / peak:.0f}% | 1.00x | | | |"]
    for generator in GENERATORS:
        shape = GENERATORS[generator].geometry
        s = size if shape.any_size else shape.fixed
        step, infer = pan_step(generator, s, batch, dev)
        seconds, flops = timed(step, dev, repeats), flops_of(step)
        infer_seconds, infer_flops = timed(infer, dev, repeats), flops_of(infer)
        rows.append(
            f"| PAN, T={generator} | {s} | {seconds:.3f} | {2 * batch / seconds:.2f} | "
            f"{flops / seconds / 1e9:.0f} | {100 * flops / seconds / 1e9 / peak:.0f}% | "
            f"{seconds / ref_seconds:.2f}x | {batch / infer_seconds:.2f} | "
            f"{100 * infer_flops / infer_seconds / 1e9 / peak:.0f}% | {peak_memory_mib(dev):.0f} |")
        click.echo(rows[-1], err=True)
    if variants:
        base = None
        rows += ["", f"Variants of the PAN step with T=unet at {size}, same run (time ratio to fp32; < 1 is faster):",
                 "",
                 "| variant | train s/step | vs fp32 | infer img/s | vs fp32 |", "|---|---|---|---|---|"]
        for name, kwargs in VARIANTS.items():
            try:
                step, infer = pan_step("unet", size, batch, dev, **kwargs)
            except PanError as exc:
                rows.append(f"| {name} | n/a: {exc} | | | |")
                continue
            seconds, infer_rate = timed(step, dev, repeats, warmup=2), batch / timed(infer, dev, repeats, warmup=2)
            base = base or (seconds, infer_rate)
            rows.append(f"| {name} | {seconds:.3f} | {seconds / base[0]:.2f}x | {infer_rate:.2f} | "
                        f"{base[1] / infer_rate:.2f}x |")
            click.echo(rows[-1], err=True)
    rows.append("")
    rows.append("A PAN step is one D update and one T update on two batches (train img/s counts both); "
                "the pix2pix step updates D and G on one batch. Peak MiB is the process's peak RSS on CPU.")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(rows) + "\n")
    click.echo("\n".join(rows))


if __name__ == "__main__":
    main()
