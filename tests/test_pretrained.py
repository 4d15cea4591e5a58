"""The pretrained derain model that ships in the package (`make weights` rebuilds it)."""

from __future__ import annotations

import pytest
import torch

from pan_cli.datasets.images import read_image, write_image
from pan_cli.datasets.photos import HELD_OUT_PHOTOS, builtin_photo
from pan_cli.datasets.rain import RainModel
from pan_cli.score.metrics import psnr
from pan_cli.store.checkpoint import PRETRAINED, load_checkpoint


@pytest.mark.parametrize("task, generator, mib", [("derain", "dilated", 4), ("inpaint", "unet-fill", 25)])
def test_each_shipped_model_is_a_small_export(task, generator, mib):
    path = PRETRAINED[task]
    assert path.is_file() and path.stat().st_size < mib * 2**20
    state = load_checkpoint(path, task=task)
    assert state["config"].generator == generator and state["exported"] and "D" not in state


def test_infer_with_no_run_uses_the_shipped_model_says_so_and_beats_the_rainy_input(tmp_path, run_pan,
                                                                                    monkeypatch):
    monkeypatch.chdir(tmp_path)  # no runs/derain here
    rain, generator = RainModel(), torch.Generator().manual_seed(123)
    clean = {name: builtin_photo(name)[:, 60:220, 40:250] for name in HELD_OUT_PHOTOS}  # never trained on
    for name, image in clean.items():
        write_image(tmp_path / "in" / f"{name}.png", rain(image, generator))
    result = run_pan("infer", "--task", "derain", "in", "-o", "out")
    assert result.exit_code == 0, result.stderr
    assert "using the pretrained derain model that ships with pan" in result.stderr
    for name, image in clean.items():
        rainy, derained = read_image(tmp_path / "in" / f"{name}.png"), read_image(tmp_path / "out" / f"{name}.png")
        assert derained.shape == image.shape
        assert psnr(image, derained) > psnr(image, rainy) + 1.0  # dB


def test_eval_with_no_run_scores_the_shipped_model(tmp_path, run_pan, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rain, generator = RainModel(), torch.Generator().manual_seed(7)
    clean = builtin_photo("coffee")[:, 100:164, 100:196]
    write_image(tmp_path / "d" / "A" / "coffee.png", rain(clean, generator))
    write_image(tmp_path / "d" / "B" / "coffee.png", clean)
    result = run_pan("eval", "--task", "derain", "--data", "d", "--json")
    assert result.exit_code == 0, result.stderr
    assert "using the pretrained derain model that ships with pan" in result.stderr
    assert result.stdout.count("psnr") == 2  # the image and the mean: stdout holds the scores only


def test_infer_inpaint_with_no_run_fills_any_size_keeps_the_rest_and_beats_a_mean_colour_fill(tmp_path, run_pan,
                                                                                             monkeypatch):
    from pan_cli.datasets.holes import make_hole
    from pan_cli.score.baselines import mean_colour_fill
    from pan_cli.score.metrics import hole_scores

    monkeypatch.chdir(tmp_path)  # no runs/inpaint here
    sizes = {"chelsea": (221, 301), "coffee": (157, 383)}  # odd sizes, no multiple of the U-Net's 2^k
    model_db, mean_db = [], []
    for (name, (h, w)), kind in zip(sizes.items(), ("half", "strokes")):
        image = builtin_photo(name)[:, :h, :w]
        mask = make_hole(kind, h, w, torch.Generator().manual_seed(3))
        write_image(tmp_path / "in" / f"{name}.png", torch.where(mask, torch.zeros_like(image), image))
        write_image(tmp_path / "masks" / f"{name}.png", (mask * 255).to(torch.uint8)[None])
        result = run_pan("infer", "--task", "inpaint", f"in/{name}.png", "--mask", f"masks/{name}.png", "-o", "out")
        assert result.exit_code == 0, result.stderr
        assert "using the pretrained inpaint model that ships with pan" in result.stderr
        filled = read_image(tmp_path / "out" / f"{name}.png")
        assert filled.shape == image.shape
        assert torch.equal(filled[:, ~mask], image[:, ~mask])  # PNG: the pixels outside the hole, exactly
        model_db.append(hole_scores(image, filled, mask)["psnr_hole"])
        mean_db.append(hole_scores(image, mean_colour_fill(image, mask), mask)["psnr_hole"])
    assert sum(model_db) / 2 > sum(mean_db) / 2 + 1.0  # dB, inside the holes
