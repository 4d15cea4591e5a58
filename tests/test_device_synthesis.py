"""Synthesis on the training device (issue 26): the loader then only cuts clean crops, and the
rain or holes are drawn in the training loop where the batch is (CUDA when training there),
from the same seeded generators: the pairs, and so the weights, are those the loader makes.
On this CPU the device path runs with synthesis="device"."""

from __future__ import annotations

import pytest
import torch

from pan_cli.datasets.images import write_image
from pan_cli.datasets.layout import find_photos
from pan_cli.datasets.rain import PRESETS
from pan_cli.store.checkpoint import load_checkpoint
from pan_cli.tasks import make_config, training_set
from pan_cli.train.loop import TrainOptions, train
from tests.conftest import crop


@pytest.fixture
def photos(tmp_path):
    for name in ("astronaut", "rocket", "coffee"):
        write_image(tmp_path / "photos" / f"{name}.png", crop(name, 40, 48))
    return find_photos(tmp_path / "photos", "train", "AtoB")


@pytest.mark.parametrize("task, settings", [
    *(("derain", {"synthesize": "rain", "rain": preset, "image_size": 24}) for preset in PRESETS),
    ("inpaint", {"image_size": 64}),  # unet-fill: holes of every kind, the mask as a fourth channel
    ("inpaint", {"generator": "context-encoder"}),  # the paper's centre hole
])
def test_a_batch_synthesized_on_the_device_equals_the_loaders(photos, task, settings):
    if settings.get("generator") == "context-encoder":
        photos = [p for p in photos if "coffee" in p.name]  # 128 crops need a larger photo
        write_image(photos[0], crop("coffee", 140, 150))
    config = make_config(task, **settings)
    loader, device = training_set(config, photos), training_set(config, photos)
    device.defer = True
    keys = [(i % len(photos), (7 << 32) + i) for i in range(4)]
    made = [loader[key] for key in keys]
    deferred = [device[key] for key in keys]
    assert all(crop_.dtype == torch.uint8 for crop_, _ in deferred)  # the loader sends uint8 crops only
    x, y = device.synthesize(torch.stack([c for c, _ in deferred]), torch.stack([s for _, s in deferred]))
    assert torch.equal(x, torch.stack([a for a, _ in made])) and torch.equal(y, torch.stack([b for _, b in made]))


@pytest.mark.parametrize("task, settings", [("derain", {"synthesize": "rain", "image_size": 24}),
                                            ("inpaint", {"image_size": 64})])
def test_training_with_synthesis_on_the_device_gives_the_same_weights(photos, tmp_path, task, settings):
    config = make_config(task, batch_size=2, steps=3, **settings)
    weights = []
    for where in ("loader", "device"):
        options = TrainOptions(run_dir=tmp_path / where, sample_every=0, checkpoint_every=3, synthesis=where)
        weights.append(load_checkpoint(train(config, photos, options))["T"])
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_an_unknown_synthesis_place_is_refused(photos, tmp_path):
    config = make_config("derain", synthesize="rain", image_size=24, batch_size=2, steps=1)
    with pytest.raises(ValueError, match="synthesis must be auto, loader or device"):
        train(config, photos, TrainOptions(run_dir=tmp_path / "r", synthesis="gpu"))
    assert not (tmp_path / "r").exists()  # refused before a run directory was made
