"""`pan train --finetune`: a fresh run that starts from another model's weights and settings."""

from __future__ import annotations

import json
from pathlib import Path

from pan_cli.store.checkpoint import load_checkpoint
from pan_cli.tasks import make_config


def tune(run_pan, data: Path, source: Path | str, run: Path, *args: str):
    return run_pan("train", "derain", "--data", data, "--finetune", source, "--run-dir", run,
                   "--sample-every", "0", *args)


def largest_difference(a: dict, b: dict) -> float:
    """Over the weights (a training step moves BatchNorm's running statistics whatever the rate)."""
    return max((a[k] - b[k]).abs().max().item() for k in a if a[k].is_floating_point() and "running_" not in k)


def test_a_finetune_starts_from_the_source_weights_with_its_settings(run_pan, rain_pairs, trained_checkpoint, tmp_path):
    source = load_checkpoint(trained_checkpoint)
    # A learning rate of 1e-12 moves no weight visibly in one step: the run's weights are the source's,
    # not those its seed would draw.
    result = tune(run_pan, rain_pairs, trained_checkpoint, tmp_path / "tuned", "--steps", "1", "--lr", "1e-12",
                  "--lambda-pix", "7", "--seed", "5")
    assert result.exit_code == 0, result.stderr
    assert f"fine-tuning from {trained_checkpoint} (step 2)" in result.stderr
    tuned = load_checkpoint(tmp_path / "tuned" / "latest.pt")
    config = tuned["config"]
    assert (config.image_size, config.batch_size) == (24, 2) != (make_config("derain").image_size, 4)  # the source's
    assert (config.lambda_pix, config.lr, config.steps, tuned["step"]) == (7.0, 1e-12, 1, 1)  # the command line's
    assert config.finetuned_from == f"{trained_checkpoint} (step 2)"
    assert largest_difference(tuned["T_ema"], source["T_ema"]) < 1e-6
    assert largest_difference(tuned["D"], source["D"]) < 1e-6
    scratch = run_pan("train", "derain", "--data", rain_pairs, "--run-dir", tmp_path / "scratch", "--steps", "1",
                      "--lr", "1e-12", "--image-size", "24", "--batch-size", "2", "--sample-every", "0", "--seed", "5",
                      "--generator", "idcgan", "--d-width", "1")  # the source's shape, fresh weights
    assert scratch.exit_code == 0, scratch.stderr
    assert largest_difference(load_checkpoint(tmp_path / "scratch" / "latest.pt")["T_ema"], source["T_ema"]) > 1e-3


def test_a_finetune_from_an_export_trains_a_fresh_discriminator(run_pan, rain_pairs, trained_checkpoint, tmp_path):
    exported = tmp_path / "model.pt"
    assert run_pan("export", trained_checkpoint, "-o", exported).exit_code == 0
    result = tune(run_pan, rain_pairs, exported, tmp_path / "tuned", "--steps", "2", "--lr-decay", "2")
    assert result.exit_code == 0, result.stderr
    assert "; the discriminator starts fresh" in result.stderr
    config = json.loads((tmp_path / "tuned" / "config.json").read_text())
    assert (config["steps"], config["lr_decay"], config["image_size"]) == (2, 2, 24)


def test_finetune_refuses_a_model_of_another_shape_in_one_line(run_pan, rain_pairs, trained_checkpoint, tmp_path):
    result = tune(run_pan, rain_pairs, trained_checkpoint, tmp_path / "tuned", "--steps", "1", "--d-width", "0.5",
                  "-q")
    assert result.exit_code != 0
    assert result.stderr.strip().splitlines() == [
        "pan: error: --finetune: the checkpoint's discriminator does not fit the one this run builds; leave its "
        "shape (--generator, --d-width, channels) to the checkpoint"]
    assert not list((tmp_path / "tuned").glob("*.pt"))


def test_finetune_names_what_it_cannot_start_from(run_pan, rain_pairs, tmp_path):
    missing = tune(run_pan, rain_pairs, tmp_path / "none.pt", tmp_path / "a", "--steps", "1")
    assert missing.exit_code != 0
    assert missing.stderr.strip() == f"pan: error: checkpoint {tmp_path / 'none.pt'} does not exist"
    shipped = run_pan("train", "sketch2photo", "--data", rain_pairs, "--finetune", "shipped", "--steps", "1")
    assert shipped.exit_code != 0
    assert shipped.stderr.strip() == ("pan: error: --finetune shipped: pan ships no pretrained sketch2photo model "
                                      "(there are: derain, inpaint)")


def test_a_resumed_finetune_ends_as_one_that_never_stopped(run_pan, rain_pairs, trained_checkpoint, tmp_path):
    whole = tune(run_pan, rain_pairs, trained_checkpoint, tmp_path / "whole", "--steps", "2")
    assert whole.exit_code == 0, whole.stderr
    first = tune(run_pan, rain_pairs, trained_checkpoint, tmp_path / "tuned", "--steps", "1")
    assert first.exit_code == 0, first.stderr
    again = tune(run_pan, rain_pairs, trained_checkpoint, tmp_path / "tuned", "--steps", "2", "--resume")
    assert again.exit_code == 0, again.stderr
    assert "--finetune is ignored: the run resumes from its own checkpoint" in again.stderr
    resumed, uninterrupted = (load_checkpoint(tmp_path / run / "latest.pt") for run in ("tuned", "whole"))
    assert resumed["step"] == 2 and resumed["config"].finetuned_from == f"{trained_checkpoint} (step 2)"
    # had the resume taken the source's weights again, step 1's update would be lost
    assert largest_difference(resumed["T"], uninterrupted["T"]) < 1e-6
    assert largest_difference(resumed["D"], uninterrupted["D"]) < 1e-6


def test_the_shipped_model_tunes_on_real_pairs_though_it_learnt_from_synthesized_rain(run_pan, rain_pairs, tmp_path):
    result = run_pan("train", "derain", "--data", rain_pairs, "--finetune", "shipped", "--steps", "1",
                     "--image-size", "32", "--batch-size", "2", "--run-dir", tmp_path / "tuned", "--sample-every", "0")
    assert result.exit_code == 0, result.stderr
    assert "paired folders A/ + B/; 4 training pairs" in result.stderr  # not read as photos to rain on
    assert "fine-tuning from shipped derain.pt (step " in result.stderr
    assert "; the discriminator starts fresh" in result.stderr
    config = json.loads((tmp_path / "tuned" / "config.json").read_text())
    assert (config["generator"], config["synthesize"], config["image_size"]) == ("dilated", "", 32)


def test_a_finetune_may_change_the_crop_size_and_keeps_the_discriminators_convolutions(run_pan, trained_inpaint_unet,
                                                                                        tmp_path):
    source = load_checkpoint(trained_inpaint_unet)
    photos = trained_inpaint_unet.parent.parent / "photos"
    # 192 fits the source's generator (unet: multiples of 64) but not inpaint's default (context-encoder: 128 only):
    # the size is checked against the settings the run ends up with
    result = run_pan("train", "inpaint", "--data", photos, "--finetune", trained_inpaint_unet, "--image-size", "192",
                     "--load-size", "200", "--steps", "1", "--lr", "1e-12", "--run-dir", tmp_path / "tuned",
                     "--sample-every", "0")
    assert result.exit_code == 0, result.stderr
    assert "; the discriminator's last layer starts fresh (it is sized from --image-size)" in result.stderr
    tuned = load_checkpoint(tmp_path / "tuned" / "latest.pt")
    assert (tuned["config"].generator, tuned["config"].image_size, source["config"].image_size) == ("unet", 192, 64)
    convolutions = [k for k in source["D"] if not k.startswith("fc.")]
    assert largest_difference({k: tuned["D"][k] for k in convolutions}, source["D"]) < 1e-6
    assert tuned["D"]["fc.weight"].numel() == 9 * source["D"]["fc.weight"].numel()  # (192/64)^2 as many inputs
    bad = run_pan("train", "inpaint", "--data", photos, "--finetune", trained_inpaint_unet, "--image-size", "100",
                  "--steps", "1", "--run-dir", tmp_path / "bad")
    assert bad.exit_code == 2
    assert len(bad.stderr.strip().splitlines()) == 1 and "unet" in bad.stderr and "64" in bad.stderr
    assert not (tmp_path / "bad").exists()


def test_a_finetune_at_the_same_size_keeps_all_of_d_where_d_sees_less_than_the_crop(run_pan, trained_context_encoder,
                                                                                      tmp_path):
    # the context encoder's D judges its 64x64 patch, not the 128x128 crop: nothing of D depends on a changed size here
    source = load_checkpoint(trained_context_encoder)
    photos = trained_context_encoder.parent.parent / "photos"
    result = run_pan("train", "inpaint", "--data", photos, "--finetune", trained_context_encoder, "--steps", "1",
                     "--lr", "1e-12", "--run-dir", tmp_path / "tuned", "--sample-every", "0")
    assert result.exit_code == 0, result.stderr
    assert f"fine-tuning from {trained_context_encoder} (step 2)\n" in result.stderr  # nothing starts fresh
    assert largest_difference(load_checkpoint(tmp_path / "tuned" / "latest.pt")["D"], source["D"]) < 1e-6
