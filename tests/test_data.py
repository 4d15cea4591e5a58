"""Layouts, pairing, file conversions, paired augmentation and the deterministic batch stream."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from PIL import Image

from pan_cli.datasets.images import ImageReadError, read_image, write_image
from pan_cli.datasets.layout import detect_layout, find_pairs
from pan_cli.datasets.paired import PairedImages, StepBatches, load_pair
from pan_cli.errors import PanError
from pan_cli.tasks import crops, make_config
from tests.conftest import crop


def test_detects_paired_folders(rain_pairs):
    layout = detect_layout(rain_pairs)
    assert (layout.kind, layout.folders, layout.splits) == ("folders", ("A", "B"), ())
    pairs = find_pairs(layout)
    assert [p.name for p in pairs] == ["astronaut", "chelsea", "coffee", "rocket"]
    assert "paired folders A/ + B/" in layout.describe()


def test_detects_input_target_folders_in_splits_with_nested_names(tmp_path):
    for split in ("train", "test"):
        for side in ("input", "target"):
            write_image(tmp_path / split / side / "city" / "x.png", crop("coffee"))
    layout = detect_layout(tmp_path)
    assert (layout.kind, layout.folders, layout.splits) == ("folders", ("input", "target"), ("train", "test"))
    assert [p.name for p in find_pairs(layout, "test")] == ["city/x"]
    with pytest.raises(PanError, match="no val/ split"):
        find_pairs(layout, "val")


def test_aligned_files_split_at_half_width_in_either_direction(tmp_path):
    a, b = crop("astronaut", 32, 32), crop("rocket", 32, 32)
    write_image(tmp_path / "one.png", torch.cat([a, b], dim=2))
    layout = detect_layout(tmp_path)
    assert layout.kind == "aligned"
    pair = find_pairs(layout)[0]
    x, y = load_pair(pair, "AtoB")
    assert torch.equal(x, a) and torch.equal(y, b)
    x, y = load_pair(pair, "BtoA")
    assert torch.equal(x, b) and torch.equal(y, a)


def test_a_file_without_partner_is_named(rain_pairs):
    (rain_pairs / "B" / "rocket.png").unlink()
    with pytest.raises(PanError, match=r"A/rocket.png has no partner in .*B/"):
        find_pairs(detect_layout(rain_pairs))


def test_missing_and_empty_data_folders(tmp_path):
    with pytest.raises(PanError, match="does not exist"):
        detect_layout(tmp_path / "nope")
    with pytest.raises(PanError, match="no image pairs"):
        detect_layout(tmp_path)


def test_pair_of_different_sizes_is_refused(rain_pairs):
    write_image(rain_pairs / "B" / "rocket.png", crop("rocket", 40, 64))
    pair = [p for p in find_pairs(detect_layout(rain_pairs)) if p.name == "rocket"][0]
    with pytest.raises(ImageReadError, match=r"rocket.png is 64x48 but its partner .* is 64x40"):
        load_pair(pair, "AtoB")


def test_grey_palette_rgba_and_16_bit_files_become_rgb(tmp_path):
    rgb = crop("coffee").permute(1, 2, 0).numpy().copy()
    grey16 = (np.linspace(0, 65535, 16 * 8).reshape(8, 16)).astype(np.uint16)
    Image.fromarray(rgb).convert("P").save(tmp_path / "palette.png")
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(rgb).convert("L").save(tmp_path / "grey.png")
    Image.fromarray(grey16).save(tmp_path / "grey16.png")
    assert torch.equal(read_image(tmp_path / "rgba.png"), torch.from_numpy(rgb).permute(2, 0, 1))
    for name in ("palette", "grey"):
        assert read_image(tmp_path / f"{name}.png").shape == (3, 48, 64)
    image = read_image(tmp_path / "grey16.png")
    assert image.shape == (3, 8, 16) and image.dtype == torch.uint8
    assert (image[0, 0, 0].item(), image[0, -1, -1].item()) == (0, 255)  # scaled, not clipped
    assert read_image(tmp_path / "rgba.png", channels=1).shape == (1, 48, 64)


@pytest.mark.parametrize("content, reason", [
    (b"", "empty file"),
    (b"hello, not an image", "not an image file"),
    ("truncated", "cannot decode"),
])
def test_unreadable_images_are_named_with_a_reason(tmp_path, content, reason):
    path = tmp_path / "bad.png"
    if content == "truncated":
        write_image(path, crop("coffee"))
        content = path.read_bytes()[:200]
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=f"bad.png: {reason}"):
        read_image(path)


def test_one_random_crop_and_flip_is_shared_by_input_and_target(tmp_path):
    same = crop("astronaut", 48, 64)
    for side in ("A", "B"):
        write_image(tmp_path / side / "x.png", same)
    dataset = PairedImages(find_pairs(detect_layout(tmp_path)), crops(make_config("derain", image_size=24)))
    samples = [dataset[(0, seed)] for seed in range(8)]
    assert all(torch.equal(x, y) for x, y in samples)
    assert len({x.sum().item() for x, _ in samples}) > 1  # the crops do differ between seeds
    x, _ = samples[0]
    assert x.shape == (3, 24, 24) and x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1


def test_image_smaller_than_the_crop_is_named(rain_pairs):
    dataset = PairedImages(find_pairs(detect_layout(rain_pairs)), crops(make_config("derain", image_size=56)))
    with pytest.raises(ImageReadError, match="64x48, smaller than the 56x56 training crop"):
        dataset.check_sizes()


def test_batch_stream_is_a_pure_function_of_seed_and_position():
    def take(start, count, seed=3):
        return list(itertools.islice(iter(StepBatches(5, 2, seed, start)), count))

    straight = take(0, 7)
    assert take(4, 3) == straight[4:]
    assert take(0, 7, seed=4) != straight
    first_epoch = [i for batch in straight for i, _ in batch][:5]
    assert sorted(first_epoch) == [0, 1, 2, 3, 4]  # each epoch visits every pair once
    seeds = [s for batch in straight for _, s in batch]
    assert len(set(seeds)) == len(seeds)  # every sample gets its own augmentation draw


def test_rain_is_reproducible_and_varied():
    from pan_cli.datasets.rain import RainModel

    clean = crop("coffee", 64, 64)
    first = RainModel()(clean, torch.Generator().manual_seed(1))
    again = RainModel()(clean, torch.Generator().manual_seed(1))
    other = RainModel()(clean, torch.Generator().manual_seed(2))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.float().mean() > clean.float().mean() + 2  # streaks and haze brighten
    assert (first.float() - clean.float()).abs().amax() > 60  # some streaks are strong
