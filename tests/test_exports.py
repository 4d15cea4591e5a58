"""Exports that leave Python: ONNX matches eager PyTorch at any size; safetensors + config.json
runs in `pan infer`; every export says what it is."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pan_cli.datasets.images import read_image, write_image
from pan_cli.models.networks import fold_batchnorm
from pan_cli.store.checkpoint import PRETRAINED, load_checkpoint, read_model
from tests.conftest import crop

onnxruntime = pytest.importorskip("onnxruntime")  # in the dev extra: CI runs these


@pytest.mark.parametrize("source", ["derain", "inpaint", "trained"])
def test_onnx_export_matches_eager_pytorch_at_two_sizes(source, tmp_path, run_pan, trained_checkpoint):
    checkpoint = trained_checkpoint if source == "trained" else PRETRAINED[source]
    result = run_pan("export", checkpoint, "-o", tmp_path / "model.onnx")
    assert result.exit_code == 0, result.stderr
    model = read_model(checkpoint)
    net = fold_batchnorm(model.generator()).eval()
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"))
    channels = model.config.in_channels
    for height, width in ((64, 96), (75, 130)):  # the second is no multiple of a U-Net's 2^k
        image = torch.rand(1, channels, height, width, generator=torch.Generator().manual_seed(height)) * 2 - 1
        if channels == 4:
            image[:, 3] = (image[:, 3] > 0).float()  # the mask channel: 1 = hole
        ours = session.run(None, {"image": image.numpy()})[0]
        with torch.inference_mode():
            eager = _eager(net, image, model.state)
        assert ours.shape == (1, 3, height, width)
        assert np.abs(ours - eager).max() < 1e-4, (source, height, width)
    meta = {p.key: p.value for p in __import__("onnx").load(str(tmp_path / "model.onnx")).metadata_props}
    assert meta["task"] == model.config.task and meta["generator"] == model.config.generator
    assert "data" in meta and "validation" in meta and json.loads(meta["config"])["task"] == meta["task"]


def _eager(net, image, state):
    """What pan infer computes: padded (edge pixels) up to the generator's multiple, cropped back."""
    from pan_cli.infer.predictor import Predictor

    return Predictor(state["config"], net, torch.device("cpu"), tile=0)(image).numpy()


def _no_constants(name: str):
    raise AssertionError(f"{name} is not JSON")


def test_safetensors_export_runs_in_pan_infer_like_the_checkpoint(tmp_path, run_pan, trained_checkpoint):
    result = run_pan("export", trained_checkpoint, "--format", "safetensors", "-o", tmp_path / "hub")
    assert result.exit_code == 0, result.stderr
    card = json.loads((tmp_path / "hub" / "config.json").read_text(), parse_constant=_no_constants)
    assert card["task"] == "derain" and card["data"]["items"] > 0 and len(card["data"]["sha256"]) == 64
    write_image(tmp_path / "in" / "a.png", crop("coffee"))
    for name, checkpoint in (("ckpt", trained_checkpoint), ("dir", tmp_path / "hub"),
                             ("file", tmp_path / "hub" / "model.safetensors")):
        done = run_pan("infer", "--task", "derain", "--checkpoint", checkpoint, tmp_path / "in", "-o", tmp_path / name)
        assert done.exit_code == 0, done.stderr
    reference = read_image(tmp_path / "ckpt" / "a.png")
    assert torch.equal(read_image(tmp_path / "dir" / "a.png"), reference)
    assert torch.equal(read_image(tmp_path / "file" / "a.png"), reference)
    again = run_pan("export", trained_checkpoint, "--format", "safetensors", "-o", tmp_path / "hub")
    assert again.exit_code == 2 and "--overwrite" in again.stderr


def test_an_export_of_a_run_that_never_validated_says_so_through_every_format(tmp_path, run_pan,
                                                                              trained_checkpoint):
    assert load_checkpoint(trained_checkpoint)["best"] is None  # the run had no validation pairs
    legacy = torch.load(trained_checkpoint, weights_only=True)  # as pan wrote it before: a placeholder
    legacy["best"] = {"step": 0, "psnr": float("-inf")}
    torch.save(legacy, tmp_path / "legacy.pt")
    chain = [tmp_path / "legacy.pt", tmp_path / "a", tmp_path / "b.pt", tmp_path / "c"]  # torch -> st -> torch -> st
    for source, target in zip(chain, chain[1:]):
        done = run_pan("export", source, "-o", target, "--format", "torch" if target.suffix else "safetensors")
        assert done.exit_code == 0, done.stderr
    for folder in (tmp_path / "a", tmp_path / "c"):
        card = json.loads((folder / "config.json").read_text(), parse_constant=_no_constants)
        assert card["validation"] == "none"  # no "-Infinity" figure, and no crash on the text "none"
    assert load_checkpoint(tmp_path / "b.pt")["best"] is None


def test_a_format_whose_extra_is_missing_is_one_line(tmp_path, run_pan, trained_checkpoint, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name == "onnx":
            raise ImportError("No module named 'onnx'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    result = run_pan("export", trained_checkpoint, "-o", tmp_path / "m.onnx")
    assert result.exit_code == 1
    assert result.stderr.strip() == "pan: error: this export needs onnx: pip install 'pan[onnx]'"
    assert not (tmp_path / "m.onnx").exists()
