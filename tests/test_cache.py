"""Decode once (issue 26): `pan train` decodes its images into a memory-mapped cache and cuts
every crop from there; the crops, and so the trained weights, are exactly those of decoding
each file at every crop."""

from __future__ import annotations

import pickle

import pytest
import torch

import pan_cli.datasets.cache as cache_module
import pan_cli.datasets.synthesized as synthesized
from pan_cli.datasets.images import write_image
from pan_cli.datasets.layout import detect_layout, find_pairs, find_photos
from pan_cli.store.checkpoint import load_checkpoint
from pan_cli.tasks import make_config, training_set
from tests.conftest import crop


def _photos(folder, names=("astronaut", "rocket", "coffee")):
    for name in names:
        write_image(folder / f"{name}.png", crop(name, 40, 48))
    return folder


def _counting_reads(monkeypatch) -> list:
    calls = []
    real = synthesized.read_image

    def counted(path, *args, **kwargs):
        calls.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(synthesized, "read_image", counted)
    return calls


def test_a_run_decodes_each_photo_once_and_a_second_run_none(tmp_path, run_pan, monkeypatch):
    photos = _photos(tmp_path / "photos")
    calls = _counting_reads(monkeypatch)  # counted in this process: no loader processes (--workers 0)
    args = ("train", "derain", "--synthesize", "--data", photos, "--steps", "3", "--image-size", "24",
            "--batch-size", "2", "--sample-every", "0", "--workers", "0", "--cache", tmp_path / "cache")
    first = run_pan(*args, "--run-dir", tmp_path / "a")
    assert first.exit_code == 0, first.stderr
    assert len(calls) == 3  # 3 steps x 2 batches x 2 crops = 12 crops from 3 decoded photos
    assert "decoded 3 items once into" in first.stderr
    [folder] = (tmp_path / "cache").iterdir()
    assert (folder / "images.u8").stat().st_size == 3 * 3 * 40 * 48
    calls.clear()
    second = run_pan(*args, "--run-dir", tmp_path / "b")
    assert second.exit_code == 0 and calls == [] and "from the cache" in second.stderr
    streamed = run_pan(*args[:-2], "--no-cache", "--run-dir", tmp_path / "c")
    assert streamed.exit_code == 0 and len(calls) == 12  # without the cache: a decode per crop
    for run in ("b", "c"):  # the same crops, so the same weights, bit for bit
        a, b = load_checkpoint(tmp_path / "a" / "latest.pt"), load_checkpoint(tmp_path / run / "latest.pt")
        assert all(torch.equal(a["T"][k], b["T"][k]) for k in a["T"])


@pytest.mark.parametrize("layout", ["photos", "A/B", "aligned"])
def test_items_from_the_cache_equal_items_from_the_files(tmp_path, layout):
    if layout == "photos":
        config = make_config("inpaint", image_size=64, generator="unet")
        sources = find_photos(_photos(tmp_path / "d"), "train", "AtoB")
    else:
        for name in ("coffee", "chelsea"):
            a, b = crop(name, 40, 48), crop(name, 40, 48, top=150)
            if layout == "A/B":
                write_image(tmp_path / "d" / "A" / f"{name}.png", a)
                write_image(tmp_path / "d" / "B" / f"{name}.png", b)
            else:
                write_image(tmp_path / "d" / f"{name}.png", torch.cat([a, b], 2))
        config = make_config("sketch2photo", image_size=32, load_size=36, direction="BtoA", generator="idcgan")
        sources = find_pairs(detect_layout(tmp_path / "d"), "train")
    plain, cached = training_set(config, sources), training_set(config, sources)
    notes = []
    cached.use_cache(tmp_path / "cache", notes.append, notes.append)
    assert cached.cache is not None and notes[0].startswith("decoded")
    for key in [(0, 7), (1, 123), (len(sources) - 1, 2**40 + 5)]:
        for mine, theirs in zip(cached[key], plain[key]):
            assert torch.equal(mine, theirs)
    shipped = pickle.dumps(cached.cache)  # what a spawned DataLoader worker receives: the folder, not pixels
    assert len(shipped) < 4096 and all(torch.equal(a, b) for a, b in zip(pickle.loads(shipped)[0], cached.cache[0]))


def test_a_changed_file_gets_a_new_cache_and_a_damaged_one_is_rebuilt(tmp_path):
    photos = _photos(tmp_path / "photos")
    config = make_config("derain", image_size=24, synthesize="rain")
    notes = []

    def cached():
        dataset = training_set(config, find_photos(photos, "train", "AtoB"))
        dataset.use_cache(tmp_path / "cache", notes.append, notes.append)
        return dataset

    cached()
    write_image(photos / "rocket.png", crop("chelsea", 40, 48))
    assert torch.equal(cached().cache[2][0], crop("chelsea", 40, 48))  # sorted: astronaut, coffee, rocket
    assert len(list((tmp_path / "cache").iterdir())) == 2 and notes[-1].startswith("decoded")
    newest = max((tmp_path / "cache").iterdir(), key=lambda p: p.stat().st_mtime_ns)
    with open(newest / "images.u8", "r+b") as file:
        file.truncate(100)
    rebuilt = cached()
    assert "is damaged" in notes[-2] and notes[-1].startswith("decoded")
    assert torch.equal(rebuilt.cache[2][0], crop("chelsea", 40, 48))
    assert torch.equal(rebuilt.cache[0][0], crop("astronaut", 40, 48))


def test_a_data_set_too_big_for_the_disk_streams_and_says_so(tmp_path, run_pan, monkeypatch):
    photos = _photos(tmp_path / "photos")
    free = type("Usage", (), {"free": cache_module.RESERVE + 1000})
    monkeypatch.setattr(cache_module.shutil, "disk_usage", lambda path: free)
    result = run_pan("train", "derain", "--synthesize", "--data", photos, "--steps", "1", "--image-size", "24",
                     "--batch-size", "2", "--sample-every", "0", "--cache", tmp_path / "cache", "-q",
                     "--run-dir", tmp_path / "run")
    assert result.exit_code == 0, result.stderr
    assert "decoding each image from its file at every crop" in result.stderr  # a warning: shown under -q too
    assert not any((tmp_path / "cache").iterdir())


def test_cache_and_no_cache_together_is_a_usage_error(tmp_path, run_pan):
    result = run_pan("train", "derain", "--data", tmp_path, "--cache", tmp_path / "c", "--no-cache")
    assert result.exit_code == 2 and "not both" in result.stderr
