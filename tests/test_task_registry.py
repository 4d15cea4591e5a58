"""What the task registry tells a user: defaults in --help, size errors, missing data, label
maps that are never interpolated, masks that do not fit, and weights-only export."""

from __future__ import annotations

import torch
from torchvision import tv_tensors

from pan_cli.datasets.images import read_image, write_image
from pan_cli.datasets.labels import CITYSCAPES_COLOURS, colourize
from pan_cli.datasets.layout import Pair
from pan_cli.datasets.paired import PairedImages
from pan_cli.models.networks import build_generator
from pan_cli.store.checkpoint import load_checkpoint
from pan_cli.tasks import TASKS, crops, make_config
from tests.conftest import crop


def test_train_help_shows_the_named_tasks_defaults(run_pan):
    result = run_pan("train", "inpaint", "--help")
    assert result.exit_code == 0
    assert "Defaults for inpaint" in result.stdout and "unet-fill, image size 128" in result.stdout
    words = " ".join(result.stdout.split())
    assert "--zoom --d-width 0.5 --lambda-pix 100" in words
    assert "authors' settings: context-encoder" in words
    assert "holes (always)" in result.stdout and "Defaults for derain" not in result.stdout
    labels = run_pan("train", "labels2street", "--help").stdout
    assert "BtoA (input is a label map)" in labels and "unet, image size 256, load size 286" in labels
    everything = run_pan("train", "--help").stdout
    assert all(f"Defaults for {task}" in everything for task in ("derain", "inpaint", "labels2street",
                                                                   "sketch2photo"))


def test_sizes_a_generator_cannot_take_are_refused_naming_the_sizes_it_can(run_pan, tmp_path):
    result = run_pan("train", "sketch2photo", "--data", tmp_path, "--image-size", "100")
    assert result.exit_code == 2  # a value the config refuses is a usage error, in one line
    assert result.stderr.strip() == ("pan: error: generator 'unet' needs image sizes that are multiples of 64 "
                                     "(e.g. 128), not 100")
    result = run_pan("train", "inpaint", "--data", tmp_path, "--image-size", "96", "--paper")
    assert "takes exactly 128x128 images, not 96" in result.stderr


def test_labels2street_without_data_says_cityscapes_must_be_supplied(run_pan):
    result = run_pan("train", "labels2street")
    assert result.exit_code == 2
    assert "licence forbids redistribution" in result.stderr and "cityscapes-dataset.com" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_label_maps_are_resized_nearest_neighbour_never_interpolated(tmp_path):
    ids = torch.randint(0, 34, (1, 11, 13)).repeat_interleave(5, 1).repeat_interleave(5, 2).to(torch.uint8)
    photo = crop("coffee", 55, 65)
    write_image(tmp_path / "A" / "x.png", photo)
    write_image(tmp_path / "B" / "x_.png", colourize(ids))  # B: the label map (BtoA)
    pair = Pair(tmp_path / "A" / "x.png", tmp_path / "B" / "x_.png", "x")
    config = make_config("labels2street", image_size=64, load_size=83)
    x, y = PairedImages([pair], crops(config))[(0, 123)]
    colours = {tuple(c) for c in ((x + 1) * 127.5).round().to(torch.uint8).flatten(1).T.tolist()}
    assert colours <= set(CITYSCAPES_COLOURS)  # only classes that exist: no blends at region borders
    assert len(((y + 1) * 127.5).round().flatten(1).T.unique(dim=0)) > 100  # the photo is interpolated
    assert isinstance(PairedImages([pair], crops(config)).input_kind(x), tv_tensors.Mask)


def test_infer_refuses_a_mask_of_another_size_and_an_input_without_mask(run_pan, tmp_path, trained_inpaint_unet):
    write_image(tmp_path / "in" / "a.png", crop("coffee", 64, 64))
    write_image(tmp_path / "in" / "b.png", crop("chelsea", 64, 64))
    write_image(tmp_path / "masks" / "a.png", torch.zeros(1, 60, 64, dtype=torch.uint8))
    result = run_pan("infer", "--task", "inpaint", "--checkpoint", trained_inpaint_unet, tmp_path / "in",
                     "--mask", tmp_path / "masks", "-o", tmp_path / "out")
    assert result.exit_code == 2 and "no mask for" in result.stderr and "b.png" in result.stderr
    hole = torch.zeros(1, 64, 64, dtype=torch.uint8)
    hole[:, 20:30, 20:30] = 255
    write_image(tmp_path / "masks" / "b.png", hole)
    result = run_pan("infer", "--task", "inpaint", "--checkpoint", trained_inpaint_unet, tmp_path / "in",
                     "--mask", tmp_path / "masks", "-o", tmp_path / "out")
    assert result.exit_code == 3  # one written, one failed
    assert "masks/a.png is 64x60 but its image" in result.stderr
    filled, original = read_image(tmp_path / "out" / "b.png"), crop("chelsea", 64, 64)
    assert torch.equal(filled[:, hole[0] == 0], original[:, hole[0] == 0])  # only the hole changed


def test_export_keeps_only_inference_weights_and_gives_identical_outputs(run_pan, tmp_path, trained_checkpoint):
    exported = tmp_path / "derain-small.pt"
    result = run_pan("export", trained_checkpoint, "-o", exported)
    assert result.exit_code == 0 and result.stdout.strip() == str(exported)
    assert exported.stat().st_size < trained_checkpoint.stat().st_size / 20  # no D, no Adam moments
    write_image(tmp_path / "in" / "x.png", crop("rocket", 37, 41))
    for name, checkpoint in (("full", trained_checkpoint), ("small", exported)):
        assert run_pan("infer", "--task", "derain", "--checkpoint", checkpoint, tmp_path / "in",
                       "-o", tmp_path / name).exit_code == 0
    assert torch.equal(read_image(tmp_path / "full" / "x.png"), read_image(tmp_path / "small" / "x.png"))


def test_a_half_precision_export_is_half_the_file_and_infers_in_float32_on_its_stored_values(
        run_pan, tmp_path, trained_checkpoint):
    full, half = tmp_path / "full.pt", tmp_path / "half.pt"
    assert run_pan("export", trained_checkpoint, "-o", full).exit_code == 0
    result = run_pan("export", trained_checkpoint, "-o", half, "--half")
    assert result.exit_code == 0 and result.stdout.strip() == str(half)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    stored, original = load_checkpoint(half)["T"], load_checkpoint(full)["T"]
    assert all(v.dtype == torch.float16 for v in stored.values() if v.is_floating_point())
    net = build_generator(load_checkpoint(half)["config"])
    net.load_state_dict(stored)  # the network stays float32, holding exactly the stored values
    for name, tensor in net.state_dict().items():
        if tensor.is_floating_point():
            assert tensor.dtype == torch.float32 and torch.equal(tensor, original[name].half().float())
    write_image(tmp_path / "in" / "x.png", crop("rocket", 37, 41))
    for name, checkpoint in (("full", full), ("half", half)):
        assert run_pan("infer", "--task", "derain", "--checkpoint", checkpoint, tmp_path / "in",
                       "-o", tmp_path / name).exit_code == 0
    a, b = read_image(tmp_path / "full" / "x.png"), read_image(tmp_path / "half" / "x.png")
    assert (a.int() - b.int()).abs().max() <= 2  # rounding the weights moves no pixel by more than 2 of 255
    back = tmp_path / "back.pt"  # exported again without --half: float32 again, the same values
    assert run_pan("export", half, "-o", back).exit_code == 0
    assert all(torch.equal(v, stored[k].float()) and v.dtype == torch.float32
               for k, v in load_checkpoint(back)["T"].items() if v.is_floating_point())
    refused = run_pan("export", trained_checkpoint, "-o", tmp_path / "m.onnx", "--half")
    assert refused.exit_code != 0 and "--half writes pan's own torch file" in refused.stderr
    assert not (tmp_path / "m.onnx").exists()


def test_every_synthesizer_a_config_accepts_has_a_builder():
    from pan_cli.config import SYNTHESIZERS as NAMES
    from pan_cli.tasks import SYNTHESIZERS

    assert set(SYNTHESIZERS) == set(NAMES) - {""}
    assert {task.synthesizer for task in TASKS.values()} <= set(NAMES)
