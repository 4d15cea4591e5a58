"""`pan eval` output formats and errors, and best.pt from a validation split."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest
import torch

from pan_cli.datasets.images import read_image, write_image
from pan_cli.score.metrics import Settings, score
from pan_cli.store.checkpoint import load_checkpoint
from tests.conftest import crop, make_rain_pairs


def two_folders(root):
    for name in ("astronaut", "rocket"):
        write_image(root / "pred" / f"{name}.png", crop(name))
        write_image(root / "ref" / f"{name}.png", crop(name))
    return root / "pred", root / "ref"


def test_identical_folders_give_inf_psnr_and_ssim_one_in_every_format(tmp_path, run_pan):
    pred, ref = two_folders(tmp_path)
    table = run_pan("eval", "--pred", pred, "--ref", ref)
    assert table.exit_code == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0] == "# channel=rgb crop_border=0 data_range=255"
    assert [line.split()[0] for line in lines[2:]] == ["astronaut", "rocket", "mean"]
    assert lines[-2].split()[1] == "inf"  # each identical image: inf; their mean counts each as 100 dB
    assert lines[-1].split()[1:] == ["100.000", "1.0000", "1.0000", "1.0000"]
    rows = [json.loads(line) for line in run_pan("eval", "--pred", pred, "--ref", ref, "--json").stdout.splitlines()]
    assert [r["name"] for r in rows] == ["astronaut", "rocket", "mean"]
    assert rows[0]["psnr"] == "inf" and rows[-1]["psnr"] == 100.0 and rows[-1]["ssim"] == 1.0
    assert rows[-1]["channel"] == "rgb"
    table_csv = list(csv.DictReader(io.StringIO(run_pan("eval", "--pred", pred, "--ref", ref, "--csv").stdout)))
    assert table_csv[0]["psnr"] == "inf" and table_csv[-1]["name"] == "mean" and table_csv[-1]["psnr"] == "100.0"


def test_scores_and_settings_reach_the_output(tmp_path, run_pan):
    pred, ref = two_folders(tmp_path)
    noisy = (crop("rocket").float() * 0.9).round().byte()
    write_image(pred / "rocket.png", noisy)
    result = run_pan("eval", "--pred", pred, "--ref", ref, "--json", "--channel", "y", "--crop-border", "4")
    rows = [json.loads(line) for line in result.stdout.splitlines()]

    expected = score(crop("rocket"), noisy, Settings(channel="y", crop_border=4))
    assert rows[1]["psnr"] == expected["psnr"] and rows[1]["vif"] == expected["vif"]
    assert (rows[1]["channel"], rows[1]["crop_border"]) == ("y", 4)


def test_mismatched_names_or_sizes_are_clear_errors(tmp_path, run_pan):
    pred, ref = two_folders(tmp_path)
    (ref / "rocket.png").unlink()
    result = run_pan("eval", "--pred", pred, "--ref", ref)
    assert result.exit_code == 2 and "rocket has no match in" in result.stderr and result.stdout == ""
    write_image(ref / "rocket.png", crop("rocket", 40, 64))
    result = run_pan("eval", "--pred", pred, "--ref", ref)
    assert result.exit_code == 2 and "rocket.png is 64x48 but" in result.stderr


def test_eval_scores_a_checkpoint_on_a_dataset(tmp_path, run_pan, trained_checkpoint):
    data = make_rain_pairs(tmp_path / "data" / "test")
    result = run_pan("eval", "--task", "derain", "--checkpoint", trained_checkpoint, "--data", tmp_path / "data",
                     "--json", "--save", tmp_path / "saved")
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 5 and rows[-1]["name"] == "mean"
    assert sorted(p.name for p in (tmp_path / "saved").iterdir()) == sorted(p.name for p in (data / "A").iterdir())
    rescored = [json.loads(line) for line in run_pan("eval", "--pred", tmp_path / "saved", "--ref", data / "B",
                                                     "--json").stdout.splitlines()]
    assert rescored == rows  # scoring the saved files gives the same numbers


def test_training_with_a_val_split_keeps_best_pt(tmp_path, run_pan):
    make_rain_pairs(tmp_path / "data" / "train")
    make_rain_pairs(tmp_path / "data" / "val", names=("coffee", "chelsea"), seed=5)
    run = tmp_path / "run"
    result = run_pan("train", "derain", "--data", tmp_path / "data", "--steps", "4", "--image-size", "24",
                     "--batch-size", "2", "--run-dir", run, "--val-every", "2", "--sample-every", "0")
    assert result.exit_code == 0, result.stderr
    assert "validation: 2 pairs" in result.stderr
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in records if "val_psnr" in r]
    assert [r["step"] for r in val] == [2, 4]
    best = load_checkpoint(run / "best.pt")
    best_step = max(val, key=lambda r: r["val_psnr"])["step"]
    assert best["step"] == best_step and best["best"]["psnr"] == max(r["val_psnr"] for r in val)
    write_image(tmp_path / "x.png", crop("coffee"))
    inferred = run_pan("infer", "--task", "derain", "--checkpoint", run / "best.pt", tmp_path / "x.png",
                       "-o", tmp_path / "o")
    assert inferred.exit_code == 0 and inferred.stdout.strip() == str(tmp_path / "o" / "x.png")


def test_tensorboard_logs_scalars_and_samples_and_report_renders_the_run(rain_pairs, tmp_path, run_pan):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    result = run_pan("train", "derain", "--data", rain_pairs, "--steps", "3", "--image-size", "24",
                     "--batch-size", "2", "--run-dir", run, "--log-every", "1", "--sample-every", "2", "--tensorboard")
    assert result.exit_code == 0, result.stderr
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("t_perceptual")] == [1, 2, 3]
    assert [e.step for e in events.Images("samples")] == [2]
    report = run_pan("report", run)
    assert report.exit_code == 0, report.stderr
    assert report.stdout.splitlines() == [str(run / "report.png"), str(run / "report.html")]
    assert read_image(run / "report.png").shape[1] > 200  # a real plot
    page = (run / "report.html").read_text()
    assert "report.png" in page and "samples/step-2.png" in page and "&quot;task&quot;: &quot;derain&quot;" in page


def test_report_of_a_folder_that_is_not_a_run_is_a_clear_error(tmp_path, run_pan):
    result = run_pan("report", tmp_path)
    assert result.exit_code == 2 and "no metrics.jsonl" in result.stderr


def test_mask_scores_only_the_hole(tmp_path, run_pan):
    pred, ref = two_folders(tmp_path)
    image = crop("rocket")
    filled = image.clone()
    filled[:, 10:20, 20:40] = 128  # the "hole" is wrong; everything else is exact
    write_image(pred / "rocket.png", filled)
    for name in ("astronaut", "rocket"):
        mask = torch.zeros(1, 48, 64, dtype=torch.uint8)
        mask[:, 10:20, 20:40] = 255
        write_image(tmp_path / "mask" / f"{name}.png", mask)
    rows = [json.loads(line) for line in run_pan("eval", "--pred", pred, "--ref", ref, "--mask", tmp_path / "mask",
                                                 "--json").stdout.splitlines()]
    hole = image[:, 10:20, 20:40].double()
    assert rows[1]["mae_hole"] == pytest.approx(float((hole - 128).abs().mean()))
    assert rows[1]["psnr_hole"] == pytest.approx(10 * math.log10(255**2 / float(((hole - 128) ** 2).mean())))
    assert rows[1]["psnr_hole"] < rows[1]["psnr"]  # the whole image hides the damage behind good pixels
    assert rows[0]["psnr_hole"] == "inf"


@pytest.mark.parametrize("side", [1, 5, 10])
def test_images_too_small_to_score_are_one_line_naming_the_file(tmp_path, run_pan, side):
    for folder, level in (("p", 100), ("r", 90)):
        write_image(tmp_path / folder / "tiny.png", torch.full((3, side, side), level, dtype=torch.uint8))
    result = run_pan("eval", "--pred", tmp_path / "p", "--ref", tmp_path / "r")
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (f"pan: error: {tmp_path / 'r' / 'tiny.png'}: {side}x{side} (after any "
                                     "--crop-border) is smaller than SSIM's 11x11 window: too small to score")


def test_crop_border_past_the_image_and_an_empty_mask_name_the_file(tmp_path, run_pan):
    pred, ref = two_folders(tmp_path)
    result = run_pan("eval", "--pred", pred, "--ref", ref, "--crop-border", "500")
    assert result.exit_code == 2 and "leaves nothing" in result.stderr and str(ref) in result.stderr
    for name in ("astronaut", "rocket"):
        write_image(tmp_path / "m" / f"{name}.png", torch.zeros(1, *read_image(ref / f"{name}.png").shape[1:],
                                                                  dtype=torch.uint8))
    empty = run_pan("eval", "--pred", pred, "--ref", ref, "--mask", tmp_path / "m")
    assert empty.exit_code == 2 and "Traceback" not in empty.stderr
    assert f"{tmp_path / 'm' / 'astronaut.png'}: the mask marks no pixel" in empty.stderr
