"""Speed options keep results right: bf16 autocast, torch.compile, BatchNorm folding."""

from __future__ import annotations

import math

import pytest
import torch

from pan_cli.datasets.layout import detect_layout, find_pairs
from pan_cli.errors import PanError
from pan_cli.infer.predictor import Predictor
from pan_cli.models.discriminator import build_discriminator
from pan_cli.models.networks import build_generator, fold_batchnorm
from pan_cli.store.checkpoint import load_checkpoint
from pan_cli.tasks import make_config
from pan_cli.train.loop import TrainOptions, train
from pan_cli.train.step import Models


@pytest.mark.parametrize("generator, size", [("unet", 64), ("idcgan", 24), ("context-encoder", 128)])
def test_folding_batchnorm_keeps_the_outputs(generator, size):
    torch.manual_seed(0)
    config = make_config("inpaint" if generator == "context-encoder" else "sketch2photo",
                         generator=generator, image_size=size)
    net = build_generator(config)
    with torch.no_grad():
        for _ in range(3):  # give BatchNorm non-trivial running statistics
            net.train()(torch.rand(2, config.in_channels, size, size) * 2 - 1)
    x = torch.rand(2, config.in_channels, size, size) * 2 - 1
    with torch.no_grad():
        expected = net.eval()(x)
        folded = fold_batchnorm(net)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
        assert torch.allclose(folded(x), expected, atol=1e-4)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())  # the original is untouched


def test_folding_batchnorm_of_the_discriminator():
    D = build_discriminator(make_config("derain", image_size=32))
    D.train()(torch.rand(4, 3, 32, 32))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(fold_batchnorm(D)(x).logits, D.eval()(x).logits, atol=1e-4)


def _run(rain_pairs, run, **options):
    config = make_config("derain", image_size=24, batch_size=2, steps=3)
    path = train(config, find_pairs(detect_layout(rain_pairs)),
                 TrainOptions(run_dir=run, log_every=1, sample_every=0, **options))
    records = [line for line in (run / "metrics.jsonl").read_text().splitlines()]
    return load_checkpoint(path), records


def test_bf16_training_has_finite_losses_and_a_loadable_checkpoint(rain_pairs, tmp_path):
    import json

    state, records = _run(rain_pairs, tmp_path / "run", precision="bf16")
    assert state["step"] == 3
    for record in map(json.loads, records):
        assert all(math.isfinite(v) for k, v in record.items() if k != "step")
    assert all(v.dtype == torch.float32 for v in state["T"].values() if v.is_floating_point())  # weights stay fp32
    predictor = Predictor.from_checkpoint(tmp_path / "run" / "latest.pt", "derain", torch.device("cpu"))
    assert torch.isfinite(predictor(torch.zeros(1, 3, 24, 24))).all()


def test_fp16_needs_cuda():
    with pytest.raises(PanError, match="fp16 needs a CUDA device"):
        Models.build(make_config("derain", image_size=24), torch.device("cpu"), "fp16")


def test_compiled_training_has_finite_losses_and_a_plain_checkpoint(rain_pairs, tmp_path):
    import json

    state, records = _run(rain_pairs, tmp_path / "run", compile=True)
    assert state["step"] == 3
    assert all(math.isfinite(json.loads(r)["t_total"]) for r in records)
    assert not any("_orig_mod" in key for key in state["T"])  # loads into an uncompiled network
    Predictor.from_checkpoint(tmp_path / "run" / "latest.pt", "derain", torch.device("cpu"))


def test_adam_is_fused_on_cuda_only():
    from pan_cli.train.step import adam_options

    config = make_config("derain", image_size=24)
    assert adam_options(config, torch.device("cuda")) == {"lr": config.lr, "betas": config.betas, "fused": True}
    assert "fused" not in adam_options(config, torch.device("cpu"))  # the CPU numbers were measured without it
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], **adam_options(config, torch.device("cuda")))
    assert optimizer.defaults["fused"] is True  # torch accepts the option (it runs on the first CUDA step)
