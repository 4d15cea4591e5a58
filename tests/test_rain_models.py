"""The rain models (light, heavy, photoshop, mixed) and the --rain preset in data make and training."""

from __future__ import annotations

import pytest
import torch

from pan_cli.config import RAIN_PRESETS
from pan_cli.datasets.images import read_image, write_image
from pan_cli.datasets.rain import HeavyRain, PhotoshopRain, RainMix, RainModel, rain_preset
from tests.conftest import crop

CLEAN = crop("astronaut", 96, 128)


def brightening(model, seed: int = 0) -> torch.Tensor:
    rainy = model(CLEAN, torch.Generator().manual_seed(seed))
    assert rainy.dtype == torch.uint8 and rainy.shape == CLEAN.shape
    return (rainy.float() - CLEAN.float()).mean(0) / 255.0


@pytest.mark.parametrize("model", [RainModel(), HeavyRain(), PhotoshopRain(), RainMix()])
def test_every_rain_model_is_a_pure_function_of_the_seed(model):
    first = model(CLEAN, torch.Generator().manual_seed(3))
    assert torch.equal(first, model(CLEAN, torch.Generator().manual_seed(3)))
    assert not torch.equal(first, model(CLEAN, torch.Generator().manual_seed(4)))


def test_heavy_rain_covers_much_more_of_the_photo_than_light_rain():
    # Rain100H: the rain brightens most pixels by 0.1-0.4; light rain leaves most untouched
    heavy = torch.stack([brightening(HeavyRain(), s) for s in range(6)])
    light = torch.stack([brightening(RainModel(density=(0.001, 0.003), layers=(1, 1)), s) for s in range(6)])
    assert (heavy > 0.05).float().mean() > 0.3
    assert (light > 0.05).float().mean() < 0.15
    assert heavy.mean() > 3 * light.mean()


def test_heavy_rain_veil_lifts_dark_pixels_even_between_streaks():
    black = torch.zeros(3, 64, 64, dtype=torch.uint8)
    veiled = HeavyRain(layers=(1, 1), density=(1e-9, 1e-9), transmission=(0.8, 0.8), airlight=(1.0, 1.0))
    out = veiled(black, torch.Generator().manual_seed(0)).float() / 255
    # O = a B + (1 - a) A with B = 0 and no streaks: (1 - 0.8) * 1.0 everywhere
    assert out.mean().item() == pytest.approx(0.2, abs=1 / 255)


def test_photoshop_streaks_only_brighten():
    assert brightening(PhotoshopRain()).min() >= 0


def test_the_mixture_draws_every_model():
    mix = RainMix(models=(RainModel(intensity=(0.0, 0.0), haze=(0.0, 0.0)), HeavyRain()), weights=(0.5, 0.5))
    untouched = [torch.equal(mix(CLEAN, torch.Generator().manual_seed(s)), CLEAN) for s in range(12)]
    assert any(untouched) and not all(untouched)


def test_unknown_preset_is_refused():
    with pytest.raises(ValueError):
        rain_preset("drizzle")


def test_data_make_rain_heavy_is_heavier_than_light(tmp_path, run_pan):
    write_image(tmp_path / "photos" / "astronaut.png", CLEAN)
    means = {}
    for preset in ("light", "heavy"):
        result = run_pan("data", "make", "derain", "--from", tmp_path / "photos", "--rain", preset, "--draws", "4",
                         "-o", tmp_path / preset, "-q")
        assert result.exit_code == 0, result.stderr
        rainy = [read_image(tmp_path / preset / "A" / f"astronaut-{d}.png").float() for d in range(4)]
        means[preset] = (torch.stack(rainy) - CLEAN.float()).mean().item()
    assert means["heavy"] > 2 * means["light"]


@pytest.mark.parametrize("preset", RAIN_PRESETS)
def test_training_synthesizes_every_preset_and_stores_it(preset, tmp_path, run_pan):
    for name in ("astronaut", "coffee"):
        write_image(tmp_path / "photos" / f"{name}.png", crop(name, 40, 40))
    result = run_pan("train", "derain", "--synthesize", "--data", tmp_path / "photos", "--rain", preset,
                     "--steps", "1", "--image-size", "32", "--batch-size", "2", "--run-dir", tmp_path / "run",
                     "--sample-every", "0", "-q")
    assert result.exit_code == 0, result.stderr
    from pan_cli.store.checkpoint import load_checkpoint

    assert load_checkpoint(tmp_path / "run" / "latest.pt")["config"].rain == preset
