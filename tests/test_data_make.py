"""`pan data make` and `pan data check`, and the synthesizers they use."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from pan_cli.datasets.edges import sketch
from pan_cli.datasets.holes import MEAN_FILL, centre_mask, random_mask
from pan_cli.datasets.images import list_images, read_image, write_image
from pan_cli.datasets.labels import CITYSCAPES_COLOURS, colourize
from pan_cli.datasets.photos import builtin_photo
from tests.conftest import crop

NAMES = ("astronaut", "rocket", "coffee", "chelsea", "camera", "coins", "grass", "brick", "moon", "clock")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for i, name in enumerate(NAMES):
        write_image(folder / ("nested" if i % 3 == 0 else "") / f"{name}.png", crop(name, 60 + i, 70, 20, 20))
    return folder


def make(run_pan, task, photos, out, *args):
    result = run_pan("data", "make", task, "--from", photos, "-o", out, "-q", *args)
    assert result.exit_code == 0, result.stderr
    return result


def split_names(out: Path) -> dict[str, set[str]]:
    return {split: {p.stem for p in (out / split / "B").rglob("*.png")} for split in ("train", "val", "test")}


@pytest.mark.parametrize("task,extra", [("derain", ("--draws", "2")), ("inpaint", ()), ("sketch2photo", ())])
def test_make_writes_disjoint_splits_reproducibly(task, extra, photos, tmp_path, run_pan):
    first = make(run_pan, task, photos, tmp_path / "a", "--split", "0.6,0.2,0.2", "--seed", "3", *extra)
    make(run_pan, task, photos, tmp_path / "b", "--split", "0.6,0.2,0.2", "--seed", "3", *extra)
    make(run_pan, task, photos, tmp_path / "c", "--split", "0.6,0.2,0.2", "--seed", "4", *extra)
    splits = split_names(tmp_path / "a")
    draws = 2 if task == "derain" else 1
    assert [len(splits[s]) for s in ("train", "val", "test")] == [6 * draws, 2 * draws, 2 * draws]
    photo_of = {s: {n.rsplit("-", 1)[0] if draws > 1 else n for n in names} for s, names in splits.items()}
    assert not (photo_of["train"] & photo_of["val"] or photo_of["train"] & photo_of["test"]
                or photo_of["val"] & photo_of["test"])  # disjoint by photo: no draw of a test photo in train
    assert len(first.stdout.splitlines()) == 10 * draws  # the inputs written, one path per line
    files_a, files_b = list_images(tmp_path / "a"), list_images(tmp_path / "b")
    assert [p.relative_to(tmp_path / "a") for p in files_a] == [p.relative_to(tmp_path / "b") for p in files_b]
    assert all(p.read_bytes() == q.read_bytes() for p, q in zip(files_a, files_b))  # same seed: same bytes
    assert split_names(tmp_path / "c") != splits  # another seed: another split
    check = run_pan("data", "check", tmp_path / "a")
    assert check.exit_code == 0, check.stdout
    assert check.stdout.splitlines()[-1] == "0 problems"


def test_make_inputs_are_what_each_task_expects(photos, tmp_path, run_pan):
    make(run_pan, "derain", photos, tmp_path / "derain")
    clean, rainy = read_image(tmp_path / "derain/B/coffee.png"), read_image(tmp_path / "derain/A/coffee.png")
    assert clean.shape == (3, 62, 70)  # derain keeps the photo's size (streaks keep their scale)
    assert (rainy.float() - clean.float()).mean() > 1  # screen-blended streaks only brighten

    make(run_pan, "inpaint", photos, tmp_path / "inpaint")
    holed, target = read_image(tmp_path / "inpaint/A/coffee.png"), read_image(tmp_path / "inpaint/B/coffee.png")
    mask = read_image(tmp_path / "inpaint/masks/coffee.png", 1)[0] > 127
    assert holed.shape == (3, 128, 128) and torch.equal(mask, centre_mask(128, 128))
    assert torch.equal(holed[:, mask].unique(dim=1), torch.tensor(MEAN_FILL, dtype=torch.uint8)[:, None])
    assert torch.equal(holed[:, ~mask], target[:, ~mask])

    make(run_pan, "sketch2photo", photos, tmp_path / "sketch")
    drawing = read_image(tmp_path / "sketch/A/coffee.png")
    assert drawing.shape == (3, 256, 256) and set(drawing.unique().tolist()) == {0, 255}


def test_make_refuses_a_folder_that_holds_files_and_tasks_without_a_maker(photos, tmp_path, run_pan):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    result = run_pan("data", "make", "derain", "--from", photos, "-o", tmp_path / "out")
    assert result.exit_code == 2 and "is not empty" in result.stderr
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"
    result = run_pan("data", "make", "labels2street", "--from", photos, "-o", tmp_path / "x")
    assert result.exit_code == 2  # not a choice: Cityscapes cannot be made from photos


def test_check_finds_every_planted_defect(photos, tmp_path, run_pan):
    data = tmp_path / "data"
    make(run_pan, "derain", photos, data, "--split", "0.6,0.2,0.2")
    train_b = sorted((data / "train" / "B").glob("*.png"))
    train_b[0].unlink()  # 1: missing partner
    a_file = data / "train" / "A" / train_b[1].name
    write_image(a_file, read_image(a_file)[:, :-3])  # 2: size mismatch
    (data / "val" / "A" / next((data / "val" / "A").glob("*.png")).name).write_bytes(b"\x89PNG\r\n junk")  # 3
    test_a = next((data / "test" / "A").glob("*.png"))
    duplicate = data / "train" / "A" / test_a.name  # 4: the same name in train and test
    duplicate.write_bytes(test_a.read_bytes())
    (data / "train" / "B" / test_a.name).write_bytes((data / "test" / "B" / test_a.name).read_bytes())

    result = run_pan("data", "check", data)
    assert result.exit_code == 1
    problems = [line for line in result.stdout.splitlines() if line.startswith("problem: ")]
    assert len(problems) == 4, result.stdout
    assert f"{data / 'train' / 'A' / train_b[0].name}: no partner in {data / 'train' / 'B'}/" in problems[0]
    assert any("but its partner" in p and train_b[1].name in p for p in problems)
    assert any("not an image" in p or "cannot decode" in p for p in problems)
    assert any(f"'{test_a.stem}' is in more than one split (train, test)" in p for p in problems)
    assert result.stdout.splitlines()[0].startswith("layout: ")
    assert "4 problems" in result.stderr


def test_check_flags_images_smaller_than_a_tasks_crop(tmp_path, run_pan):
    write_image(tmp_path / "d" / "A" / "x.png", crop("coffee", 40, 50))
    write_image(tmp_path / "d" / "B" / "x.png", crop("coffee", 40, 50))
    assert run_pan("data", "check", tmp_path / "d").exit_code == 0
    result = run_pan("data", "check", tmp_path / "d", "--task", "derain")
    assert result.exit_code == 1 and "smaller than the 96x96 training crop" in result.stdout


def test_centre_mask_is_the_papers_inner_56_and_random_masks_vary_with_the_seed():
    mask = centre_mask(128, 128)
    rows, cols = mask.nonzero(as_tuple=True)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (36, 91, 36, 91)
    masks = [random_mask(96, 96, torch.Generator().manual_seed(s)) for s in range(20)]
    coverage = torch.stack([m.float().mean() for m in masks])
    assert coverage.min() > 0.04 and coverage.max() < 0.6
    assert torch.equal(masks[0], random_mask(96, 96, torch.Generator().manual_seed(0)))
    assert not torch.equal(masks[0], masks[1])


def test_label_ids_become_cityscapes_colours():
    ids = torch.tensor([[7, 26], [23, 255]], dtype=torch.uint8)
    colours = colourize(ids)
    assert colours[:, 0, 0].tolist() == [128, 64, 128]  # road
    assert colours[:, 0, 1].tolist() == [0, 0, 142]  # car
    assert colours[:, 1, 0].tolist() == [70, 130, 180]  # sky
    assert colours[:, 1, 1].tolist() == [0, 0, 0]  # an id outside 0-33: unlabelled
    assert len(CITYSCAPES_COLOURS) == 34


def test_sketch_is_thin_black_lines_on_white():
    drawing = sketch(builtin_photo("coffee")[:, :256, :256])
    dark = drawing[0] == 0
    assert torch.equal(drawing[0], drawing[1]) and 0.01 < dark.float().mean() < 0.12
    # thin: almost no dark pixel has dark neighbours on both sides in both directions
    blob = dark[1:-1, 1:-1] & dark[:-2, 1:-1] & dark[2:, 1:-1] & dark[1:-1, :-2] & dark[1:-1, 2:]
    assert blob.float().sum() < 0.02 * dark.float().sum()


def test_rain_ranges_reach_the_synthesizer_in_data_make_and_in_training(photos, tmp_path, run_pan):
    make(run_pan, "derain", photos, tmp_path / "none", "--rain-density", "0,0")
    make(run_pan, "derain", photos, tmp_path / "heavy", "--rain-density", "0.02,0.02", "--rain-intensity", "0.8,0.8")
    clean = read_image(tmp_path / "none" / "B" / "coffee.png").float()
    veil = (read_image(tmp_path / "none" / "A" / "coffee.png").float() - clean).abs()
    heavy = (read_image(tmp_path / "heavy" / "A" / "coffee.png").float() - clean).abs()
    assert veil.std() < 2.5 and heavy.std() > 4 * veil.std()  # no streaks: only the even haze is left
    bad = run_pan("data", "make", "derain", "--from", photos, "-o", tmp_path / "x", "--rain-angle", "30,-30")
    assert bad.exit_code == 2 and "LOW 30 is above HIGH -30" in bad.stderr
    ignored = run_pan("data", "make", "derain", "--from", photos, "-o", tmp_path / "y", "--rain", "heavy",
                      "--rain-density", "0,0")
    assert ignored.exit_code == 2 and "--rain-density shapes light rain only" in ignored.stderr
    assert not (tmp_path / "y").exists()

    result = run_pan("train", "derain", "--synthesize", "--data", photos, "--rain-length", "5,9", "--steps", "1",
                     "--image-size", "32", "--batch-size", "2", "--workers", "1", "--run-dir", tmp_path / "run", "-q")
    assert result.exit_code == 0, result.stderr
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["synthesize"] == "rain" and config["rain_length"] == [5.0, 9.0]
    assert config["rain"] == "light"  # range flags alone pick the streak model they shape


def test_synthesized_datasets_pickle_for_spawned_workers(photos):
    from pan_cli.tasks import make_config, training_set

    for config in (make_config("derain", synthesize="rain", image_size=32), make_config("inpaint"),
                   make_config("inpaint", generator="unet")):
        dataset = pickle.loads(pickle.dumps(training_set(config, list_images(photos))))
        x, y = dataset[(0, 5)]
        assert x.shape[0] == config.in_channels and y.shape[0] == 3


def test_check_reads_cityscapes_as_downloaded_and_names_a_missing_label_file(tmp_path, run_pan):
    root = tmp_path / "cityscapes"
    for stem in ("aachen_000000_000019", "aachen_000001_000019"):
        write_image(root / "leftImg8bit" / "train" / "aachen" / f"{stem}_leftImg8bit.png", crop("coffee", 32, 64))
    ids = torch.full((1, 32, 64), 7, dtype=torch.uint8)
    write_image(root / "gtFine" / "train" / "aachen" / "aachen_000000_000019_gtFine_labelIds.png", ids)
    write_image(root / "gtFine" / "train" / "aachen" / "aachen_000000_000019_gtFine_color.png", colourize(ids))
    result = run_pan("data", "check", root)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == f"layout: {root}: Cityscapes leftImg8bit/ photos (A) + gtFine/ *_labelIds (B) in splits train"
    assert lines[1] == "train: 1 usable pairs; sizes 64x32"  # the _color file is not a second label
    assert lines[2].startswith(f"problem: {root}/leftImg8bit/train/aachen/aachen_000001_000019_leftImg8bit.png: "
                               "no partner in")
    train = run_pan("train", "labels2street", "--data", root, "--steps", "1")
    assert train.exit_code == 2
    assert "expected a file named aachen/aachen_000001_000019_gtFine_labelIds.png" in train.stderr
