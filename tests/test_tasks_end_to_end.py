"""Each task from its real on-disk data format to outputs: train a few steps through `pan
train`, run `pan infer`, check what was written."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from pan_cli.datasets.edges import sketch
from pan_cli.datasets.images import read_image, write_image
from pan_cli.datasets.labels import colourize, pseudo_labels
from pan_cli.datasets.photos import builtin_photo
from tests.conftest import crop

QUICK = ("--steps", "2", "--batch-size", "2", "--sample-every", "0", "-q")


def train(run_pan, tmp_path: Path, *args) -> Path:
    run_dir = tmp_path / "run"
    result = run_pan("train", *args, "--run-dir", run_dir, *QUICK)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(run_dir / "step-2.pt")
    return run_dir / "latest.pt"


def infer(run_pan, checkpoint: Path, task: str, inputs: Path, out: Path, *args) -> list[Path]:
    result = run_pan("infer", "--task", task, "--checkpoint", checkpoint, inputs, "-o", out, *args)
    assert result.exit_code == 0, result.stderr
    return [Path(line) for line in result.stdout.splitlines()]


def write_photos(folder: Path, sizes: dict[str, tuple[int, int]]) -> dict[str, torch.Tensor]:
    images = {}
    for name, (height, width) in sizes.items():
        images[name] = crop(name, height, width, 40, 40)
        write_image(folder / f"{name}.png", images[name])
    return images


def test_derain_synthesized_from_clean_photos_then_full_resolution_inference(tmp_path, run_pan):
    write_photos(tmp_path / "photos", {"astronaut": (80, 90), "rocket": (70, 100), "coffee": (64, 64)})
    checkpoint = train(run_pan, tmp_path, "derain", "--data", tmp_path / "photos", "--synthesize",
                       "--image-size", "32")
    inputs = write_photos(tmp_path / "rainy", {"chelsea": (123, 77), "coffee": (50, 211)})
    written = infer(run_pan, checkpoint, "derain", tmp_path / "rainy", tmp_path / "out")
    assert sorted(p.stem for p in written) == ["chelsea", "coffee"]
    for path in written:  # idcgan is stride 1: any size, never resized
        assert read_image(path).shape == inputs[path.stem].shape


def masks_for(images: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A rectangle, a thin line and a blob near the border: holes anywhere, of any shape."""
    masks = {}
    for name, image in images.items():
        height, width = image.shape[1:]
        mask = torch.zeros(height, width, dtype=torch.bool)
        mask[5:20, 10:30] = True
        mask[height // 2, :] = True
        mask[-12:, -9:] = True
        masks[name] = mask
    return masks


def check_inpainted(written: list[Path], images, masks) -> None:
    assert sorted(p.stem for p in written) == sorted(images)
    for path in written:
        image, mask, out = images[path.stem], masks[path.stem], read_image(path)
        assert out.shape == image.shape
        assert torch.equal(out[:, ~mask], image[:, ~mask])  # outside the mask: bit for bit
        assert not torch.equal(out[:, mask], image[:, mask])  # inside: filled


def fill_masked_holes(run_pan, checkpoint: Path, tmp_path: Path, sizes: dict[str, tuple[int, int]]) -> None:
    """Photos of these sizes, masks with holes anywhere, `pan infer --mask`, then the checks."""
    images = write_photos(tmp_path / "in", sizes)
    masks = masks_for(images)
    for name, mask in masks.items():
        write_image(tmp_path / "masks" / f"{name}.png", mask[None].to(torch.uint8) * 255)
    written = infer(run_pan, checkpoint, "inpaint", tmp_path / "in", tmp_path / "out", "--mask", tmp_path / "masks")
    check_inpainted(written, images, masks)


def test_inpaint_context_encoder_from_photos_fills_masked_holes_of_any_size(trained_context_encoder, tmp_path,
                                                                             run_pan):
    fill_masked_holes(run_pan, trained_context_encoder, tmp_path, {"coffee": (97, 203), "chelsea": (300, 180)})


def test_inpaint_without_mask_fills_the_papers_centre_hole(trained_context_encoder, tmp_path, run_pan):
    images = write_photos(tmp_path / "in", {"coffee": (128, 128)})
    written = infer(run_pan, trained_context_encoder, "inpaint", tmp_path / "in", tmp_path / "out")
    centre = torch.zeros(128, 128, dtype=torch.bool)
    centre[36:92, 36:92] = True  # the inner 56x56, rows and columns 36-91
    check_inpainted(written, images, {"coffee": centre})


def test_inpaint_unet_with_mask_channel_trains_on_random_holes_and_fills_masks(trained_inpaint_unet, tmp_path,
                                                                               run_pan):
    fill_masked_holes(run_pan, trained_inpaint_unet, tmp_path, {"coffee": (97, 150), "chelsea": (64, 70)})


def test_labels2street_from_cityscapes_label_ids_and_from_pix2pix_side_by_side_files(tmp_path, run_pan):
    cities = tmp_path / "cityscapes"
    for split, city, names in (("train", "aachen", ("astronaut", "rocket")), ("val", "lindau", ("coffee",))):
        for name in names:
            photo = crop(name, 72, 96, 30, 30)
            ids = torch.randint(0, 34, (1, 9, 12)).repeat_interleave(8, 1).repeat_interleave(8, 2).to(torch.uint8)
            stem = f"{city}_{name}_000019"
            write_image(cities / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", photo)
            write_image(cities / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", ids)
            write_image(cities / "gtFine" / split / city / f"{stem}_gtFine_color.png", colourize(ids))
    checkpoint = train(run_pan, tmp_path, "labels2street", "--data", cities, "--image-size", "64",
                       "--load-size", "70")
    # pix2pix's cityscapes files: photo|label side by side, trained BtoA (label -> photo)
    aligned = tmp_path / "aligned"
    for name in ("astronaut", "chelsea"):
        photo = crop(name, 64, 64, 30, 30)
        write_image(aligned / "train" / f"{name}.jpg", torch.cat([photo, pseudo_labels(photo, 12)], dim=2))
    other = tmp_path / "other"
    other.mkdir()
    train(run_pan, other, "labels2street", "--data", aligned, "--image-size", "64", "--load-size", "0")

    ids = torch.randint(0, 34, (1, 50, 90), dtype=torch.uint8)
    write_image(tmp_path / "in" / "frankfurt_000001_gtFine_labelIds.png", ids)
    write_image(tmp_path / "in" / "colour.png", colourize(ids))
    written = infer(run_pan, checkpoint, "labels2street", tmp_path / "in", tmp_path / "out")
    assert len(written) == 2
    for path in written:
        assert read_image(path).shape == (3, 50, 90)
    # a label-id file is read as its colour map: both inputs give the same output
    assert torch.equal(read_image(written[0]), read_image(written[1]))


def test_sketch2photo_from_edges2shoes_style_files(tmp_path, run_pan):
    data = tmp_path / "edges2photos"
    for split, names in (("train", ("astronaut", "rocket", "coffee")), ("val", ("chelsea",))):
        for name in names:
            photo = crop(name, 64, 64, 50, 50)
            write_image(data / split / f"{name}.jpg", torch.cat([sketch(photo), photo], dim=2))  # edges|photo
    checkpoint = train(run_pan, tmp_path, "sketch2photo", "--data", data, "--image-size", "64", "--load-size", "72")
    drawing = sketch(builtin_photo("chelsea")[:, :100, :150])
    write_image(tmp_path / "in" / "drawing.png", drawing)
    (written,) = infer(run_pan, checkpoint, "sketch2photo", tmp_path / "in", tmp_path / "out")
    assert read_image(written).shape == (3, 100, 150)


def test_eval_scores_an_inpainting_model_inside_the_holes_data_make_wrote(trained_context_encoder, tmp_path,
                                                                          run_pan):
    write_photos(tmp_path / "photos", {"coffee": (150, 160), "chelsea": (140, 170)})
    made = run_pan("data", "make", "inpaint", "--from", tmp_path / "photos", "-o", tmp_path / "d", "-q",
                   "--holes", "random")
    assert made.exit_code == 0, made.stderr
    result = run_pan("eval", "--task", "inpaint", "--data", tmp_path / "d", "--checkpoint", trained_context_encoder,
                     "--json", "--save", tmp_path / "filled")
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["name"] for r in rows] == ["chelsea", "coffee", "mean", "mean mean-colour", "mean biharmonic"]
    assert [r["method"] for r in rows[2:]] == ["model", "mean-colour", "biharmonic"]
    assert all(0 < r["psnr_hole"] < r["psnr"] for r in rows)  # outside the hole the output is the input's own
    for name in ("chelsea", "coffee"):
        mask = read_image(tmp_path / "d" / "masks" / f"{name}.png", 1)[0] > 127
        filled = read_image(tmp_path / "filled" / f"{name}.png")
        given = read_image(tmp_path / "d" / "A" / f"{name}.png")
        assert torch.equal(filled[:, ~mask], given[:, ~mask])
