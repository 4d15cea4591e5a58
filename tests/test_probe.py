"""The second hostile probe (issue 30): each numbered reproduction, as a test that failed before
its fix. (The server's, 7-10, are in test_serve.py; the tile bound, 12, also in test_tiling.py.)"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pan_cli.datasets.images import read_image, write_image
from pan_cli.datasets.labels import colourize, read_input
from pan_cli.infer.files import run_inference
from pan_cli.infer.jobs import Job, iter_jobs
from pan_cli.infer.predictor import Predictor
from pan_cli.infer.tiling import plan, starts
from pan_cli.score.metrics import _vif_channel
from pan_cli.store.checkpoint import PRETRAINED, load_checkpoint
from tests.conftest import crop, small_run

CPU = torch.device("cpu")


def refused(result, *fragments: str, code: int = 2) -> None:
    """One line on stderr, the exit code, no traceback, and every fragment in the line."""
    assert result.exit_code == code, (result.exit_code, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.startswith("pan: error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# --- (a) data lost or overwritten -------------------------------------------------------------

def test_1_an_output_path_that_is_a_fifo_or_device_is_never_replaced(run_pan, tmp_path, trained_checkpoint):
    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)
    for fmt in ("torch", "onnx"):
        refused(run_pan("export", trained_checkpoint, "-o", fifo, "--format", fmt, "--overwrite"),
                "not a regular file")
        assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    write_image(tmp_path / "in" / "a.png", crop("coffee"))
    (tmp_path / "out").mkdir()
    os.mkfifo(tmp_path / "out" / "a.png")
    result = run_pan("infer", "--task", "derain", "--checkpoint", trained_checkpoint, tmp_path / "in",
                     "-o", tmp_path / "out", "--overwrite")
    assert result.exit_code == 2 and "not a regular file" in result.stderr
    assert stat.S_ISFIFO(os.lstat(tmp_path / "out" / "a.png").st_mode)


def test_2_eval_save_never_writes_over_the_datasets_files_nor_without_overwrite(run_pan, tmp_path,
                                                                                  trained_checkpoint, rain_pairs):
    before = {p: p.read_bytes() for p in (rain_pairs / "A").iterdir()}
    common = ("eval", "--task", "derain", "--checkpoint", trained_checkpoint, "--data", rain_pairs)
    refused(run_pan(*common, "--save", rain_pairs / "A"), "holds the dataset's own files")
    refused(run_pan(*common, "--save", rain_pairs / "B", "--overwrite"), "holds the dataset's own files")
    assert {p: p.read_bytes() for p in (rain_pairs / "A").iterdir()} == before
    assert run_pan(*common, "--save", tmp_path / "saved").exit_code == 0
    first = (tmp_path / "saved" / "coffee.png").read_bytes()
    (tmp_path / "saved" / "coffee.png").write_bytes(b"mine")
    refused(run_pan(*common, "--save", tmp_path / "saved"), "exists; give --overwrite")
    assert (tmp_path / "saved" / "coffee.png").read_bytes() == b"mine"
    assert run_pan(*common, "--save", tmp_path / "saved", "--overwrite").exit_code == 0
    assert (tmp_path / "saved" / "coffee.png").read_bytes() == first


def test_3_a_safetensors_export_keeps_a_config_json_it_did_not_write_and_no_export_goes_into_a_run(
        run_pan, tmp_path, trained_checkpoint):
    (tmp_path / "hub").mkdir()
    (tmp_path / "hub" / "config.json").write_text('{"mine": true}')
    refused(run_pan("export", trained_checkpoint, "--format", "safetensors", "-o", tmp_path / "hub"),
            "config.json exists; give --overwrite")
    assert (tmp_path / "hub" / "config.json").read_text() == '{"mine": true}'
    assert not (tmp_path / "hub" / "model.safetensors").exists()
    run_dir = trained_checkpoint.parent
    metrics = (run_dir / "metrics.jsonl").read_bytes()
    refused(run_pan("export", trained_checkpoint, "-o", run_dir / "metrics.jsonl", "--overwrite"),
            "the folder of the training run")
    assert (run_dir / "metrics.jsonl").read_bytes() == metrics


def test_4_a_lock_that_is_a_symlink_is_never_followed(run_pan, tmp_path, rain_pairs):
    precious = tmp_path / "precious.txt"
    precious.write_text("nineteen bytes here")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".lock").symlink_to(precious)
    result = run_pan("train", "derain", "--data", rain_pairs, "--image-size", "24", "--steps", "1",
                     "--run-dir", tmp_path / "run", "-q")
    refused(result, ".lock is not a regular file")
    assert precious.read_text() == "nineteen bytes here"


def test_5_an_output_another_writer_made_meanwhile_is_kept_and_reported(tmp_path, trained_checkpoint):
    """Two `pan infer` into one -o without --overwrite: what the other wrote after this run's
    check stays, and this run says so (it wrote 1 of 2), instead of claiming both."""
    predictor = Predictor.from_checkpoint(trained_checkpoint, "derain", CPU)
    jobs = []
    for name in ("coffee", "rocket"):
        write_image(tmp_path / "in" / f"{name}.png", crop(name))
        jobs.append(Job(tmp_path / "in" / f"{name}.png", tmp_path / "out" / f"{name}.png"))

    def other_writer(path: Path) -> None:  # lands between this run's check and its second write
        (tmp_path / "out" / "rocket.png").write_bytes(b"the other run's output")

    failed = []
    summary = run_inference(predictor, jobs, batch_size=1, workers=0, on_written=other_writer,
                            on_failed=failed.append)
    assert summary.written == [jobs[0].output] and len(summary.failed) == 1 and "rocket.png exists" in failed[0]
    assert (tmp_path / "out" / "rocket.png").read_bytes() == b"the other run's output"


def test_6_data_photos_keeps_files_and_data_make_never_reads_an_earlier_made_set(run_pan, tmp_path):
    (tmp_path / "ph").mkdir()
    (tmp_path / "ph" / "astronaut.png").write_bytes(b"my own file")
    refused(run_pan("data", "photos", "-o", tmp_path / "ph"), "astronaut.png exists; give --overwrite")
    assert (tmp_path / "ph" / "astronaut.png").read_bytes() == b"my own file"
    assert not (tmp_path / "ph" / "rocket.png").exists()  # refused before anything was written
    assert run_pan("data", "photos", "-o", tmp_path / "ph", "--overwrite").exit_code == 0
    photos = len(list((tmp_path / "ph").glob("*.png")))
    for made in ("made1", "made2"):
        result = run_pan("data", "make", "inpaint", "--from", tmp_path / "ph", "-o", tmp_path / "ph" / made,
                         "--size", "32", "-q")
        assert result.exit_code == 0, result.stderr
        assert len(result.stdout.splitlines()) == photos, made  # made2 did not take made1's inputs as photos


# --- (b, d) checkpoints and exports are untrusted input --------------------------------------------

def _tampered(tmp_path: Path, change) -> Path:
    state = torch.load(PRETRAINED["derain"], weights_only=True)
    change(state)
    torch.save(state, tmp_path / "t.pt")
    return tmp_path / "t.pt"


TAMPERINGS = {
    "image_size a string": (lambda s: s["config"].update(image_size="96"), "'image_size'"),
    "image_size missing": (lambda s: s["config"].pop("image_size"), "image_size"),
    "lambdas a string": (lambda s: s["config"].update(lambdas="5,1"), "'lambdas'"),
    "lambdas an int": (lambda s: s["config"].update(lambdas=5), "'lambdas'"),
    "in_channels negative": (lambda s: s["config"].update(in_channels=-3), "in-channels -3"),
    "in_channels huge": (lambda s: s["config"].update(in_channels=10_000_000), "in-channels 10000000"),
    "generator unknown": (lambda s: s["config"].update(generator="../../x"), "field 'generator'"),
    "task unknown": (lambda s: s["config"].update(task="juggle"), "field 'task'"),
    "no config": (lambda s: s.pop("config"), "no config"),
    "no step": (lambda s: s.pop("step"), "no step"),
    "step a string": (lambda s: s.update(step="9"), "field 'step'"),
    "T not a dict": (lambda s: s.update(T=[1, 2]), "field 'T'"),
    "best a list": (lambda s: s.update(best=[1]), "field 'best'"),
}


@pytest.mark.parametrize("name", TAMPERINGS)
def test_11_a_tampered_checkpoint_is_one_line_naming_the_file_and_the_field(name, run_pan, tmp_path):
    change, field = TAMPERINGS[name]
    path = _tampered(tmp_path, change)
    write_image(tmp_path / "in" / "a.png", crop("coffee"))
    refused(run_pan("infer", "--task", "derain", "--checkpoint", path, tmp_path / "in", "-o", tmp_path / "o"),
            str(path), field)
    refused(run_pan("export", path, "-o", tmp_path / "e.pt"), field)  # nothing writes what nothing can load
    assert not (tmp_path / "e.pt").exists()


@pytest.mark.parametrize("content, says", [
    (b"<!doctype html><html><body>nope</body></html>", "a text or HTML file"),
    (b"hello, I am text\n" * 10, "not a pan checkpoint"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "a PNG image"),
])
def test_11_24_a_file_that_is_not_a_checkpoint_says_what_it_is(content, says, run_pan, tmp_path):
    (tmp_path / "m.pt").write_bytes(content)
    result = run_pan("export", tmp_path / "m.pt", "-o", tmp_path / "e.pt")
    refused(result, "m.pt", says)
    assert "refused for safety" not in result.stderr


def test_11_a_damaged_safetensors_export_is_one_line(run_pan, tmp_path, trained_checkpoint):
    assert run_pan("export", trained_checkpoint, "--format", "safetensors", "-o", tmp_path / "hub").exit_code == 0
    weights = tmp_path / "hub" / "model.safetensors"
    whole = weights.read_bytes()
    for damaged in (whole[: len(whole) // 2], os.urandom(len(whole))):
        weights.write_bytes(damaged)
        refused(run_pan("export", tmp_path / "hub", "-o", tmp_path / "e.pt"), "not a pan safetensors export")
    weights.write_bytes(whole)
    (tmp_path / "hub" / "config.json").write_text("[1, 2, 3]")
    refused(run_pan("export", tmp_path / "hub", "-o", tmp_path / "e.pt"), "config.json", "not a table")


def test_24_weights_of_another_shape_are_one_line_not_fifty(run_pan, tmp_path):
    path = _tampered(tmp_path, lambda s: s["config"].update(generator="idcgan"))
    write_image(tmp_path / "in" / "a.png", crop("coffee"))
    refused(run_pan("infer", "--task", "derain", "--checkpoint", path, tmp_path / "in", "-o", tmp_path / "o"),
            "does not fit", "missing", "unexpected")


# --- (d) unbounded work ----------------------------------------------------------------------------

def test_12_no_tile_computes_a_pixel_more_than_four_times():
    for reach, multiple in ((12, 1), (62, 1), (200, 64)):
        overlap_plan = plan(reach, multiple, 500.0, 2**34)
        smallest = 2 * overlap_plan.overlap
        with pytest.raises(ValueError, match="would compute each pixel more than 4 times"):
            plan(reach, multiple, 500.0, 2**34, tile=smallest - multiple)
        tiles = plan(reach, multiple, 500.0, 2**34, tile=smallest)
        side = 20 * tiles.size
        computed = len(starts(side, tiles.size, tiles.overlap)) * tiles.size
        assert (computed / side) ** 2 <= 4.5


@pytest.mark.parametrize("command", ["train", "make"])
@pytest.mark.parametrize("option, value", [("--rain-length", "1e6,1e7"), ("--rain-intensity", "-5,-1"),
                                           ("--rain-density", "0,0.9")])
def test_13_rain_ranges_are_bounded(command, option, value, run_pan, tmp_path):
    args = (("train", "derain", "--synthesize", "--data", tmp_path, "--steps", "1") if command == "train"
            else ("data", "make", "derain", "--from", "builtin", "-o", tmp_path / "made"))
    refused(run_pan(*args, option, value), option, "within")
    assert not (tmp_path / "made").exists()


def test_14_eval_pred_ref_refuses_images_past_the_memory_budget(run_pan, tmp_path, monkeypatch):
    for side in ("pred", "ref"):
        (tmp_path / side).mkdir()
        Image.new("1", (3000, 3000)).save(tmp_path / side / "a.png")  # 9 MP in a few KB
    monkeypatch.setattr("pan_cli.infer.memory.free_bytes", lambda device: 2**30)  # 1 GiB free: ~2.7 MP at 280 B/px
    refused(run_pan("eval", "--pred", tmp_path / "pred", "--ref", tmp_path / "ref"), "a.png", "over the limit")


def test_15_paths_on_stdin_run_as_they_come(tmp_path, trained_checkpoint):
    """The first path's output lands while stdin is still open (nothing ran until every path was
    read); `yes x.png | pan infer -` ends at once, naming the collision, instead of never starting."""
    write_image(tmp_path / "x.png", crop("coffee"))
    command = [sys.executable, "-m", "pan_cli", "infer", "--task", "derain", "--checkpoint", str(trained_checkpoint),
               "-", "-o", str(tmp_path / "out"), "-q"]
    infer = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        infer.stdin.write(f"{tmp_path / 'x.png'}\n")
        infer.stdin.flush()  # and stdin stays open: more paths could follow
        assert infer.stdout.readline().strip() == str(tmp_path / "out" / "x.png")
        assert infer.poll() is None
    finally:
        infer.kill()
    yes = subprocess.Popen(["yes", str(tmp_path / "x.png")], stdout=subprocess.PIPE)
    command[-2] = str(tmp_path / "out2")
    endless = subprocess.run(command, stdin=yes.stdout, capture_output=True, text=True, timeout=120)
    yes.kill()
    assert endless.returncode == 2 and "would both be written to" in endless.stderr


def test_15_iter_jobs_reads_stdin_lazily(tmp_path):
    write_image(tmp_path / "a.png", crop("coffee"))

    def endless():
        yield str(tmp_path / "a.png")
        raise AssertionError("read past the first path before its job was used")

    assert next(iter_jobs(["-"], tmp_path / "out", "png", endless())).source == tmp_path / "a.png"


# --- (b, c) tracebacks and silent wrong answers ----------------------------------------------------

def test_16_stray_files_and_damaged_metrics_lines_in_a_run_directory(rain_pairs, tmp_path, run_pan):
    run = tmp_path / "run"
    small_run(rain_pairs, run, steps=2)
    (run / "step-final.pt").write_bytes(b"x")
    (run / "step-3.bak.pt").write_bytes(b"x")
    with (run / "metrics.jsonl").open("a") as handle:
        handle.write('{"step": 1, "half-writ\n[1, 2]\n\x00\x01binary\n')
    common = ("train", "derain", "--data", rain_pairs, "--image-size", "24", "--batch-size", "2", "-q",
              "--checkpoint-every", "2", "--sample-every", "0")
    for resume in ("--resume", "auto"), ("--resume",):
        result = run_pan(*common, "--steps", "4" if len(resume) == 2 else "6", "--run-dir", run, *resume)
        assert result.exit_code == 0, result.stderr
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert all(isinstance(json.loads(line), dict) for line in lines)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "step-final.pt").write_bytes(b"x")
    assert run_pan(*common, "--steps", "2", "--run-dir", fresh).exit_code == 0


def test_17_a_full_disk_while_saving_names_the_file_and_the_last_good_checkpoint(rain_pairs, tmp_path, run_pan,
                                                                                  monkeypatch):
    real_save = torch.save

    def full_disk(state, handle, *args, **kwargs):
        if state.get("step") == 4:
            raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing "
                               "file data/0: file write failed")
        return real_save(state, handle, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    result = run_pan("train", "derain", "--data", rain_pairs, "--image-size", "24", "--batch-size", "2",
                     "--steps", "6", "--checkpoint-every", "2", "--sample-every", "0", "--run-dir", tmp_path / "r")
    refused(result, "could not write", "step-4.pt", "the last good checkpoint is", "step-2.pt", code=1)
    assert load_checkpoint(tmp_path / "r" / "latest.pt")["step"] == 2


def test_18_a_255_byte_file_name_is_written(tmp_path, trained_checkpoint, run_pan):
    name = "n" * 251 + ".png"
    write_image(tmp_path / "in" / name, crop("coffee"))
    result = run_pan("infer", "--task", "derain", "--checkpoint", trained_checkpoint, tmp_path / "in",
                     "-o", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "out" / name).is_file()
    assert run_pan("export", trained_checkpoint, "-o", tmp_path / ("m" * 252 + ".pt")).exit_code == 0


@pytest.mark.parametrize("args, says", [
    (("train", "derain", "--image-size", "64", "--load-size", "32"), "--load-size 32 is below --image-size 64"),
    (("train", "derain", "--seed", "99999999999999999999"), "--seed 99999999999999999999 is outside"),
    (("data", "make", "derain", "--from", "builtin", "--split", "nan,0,0"), "--split 'nan,0,0'"),
    (("data", "make", "inpaint", "--from", "builtin", "--size", "1"), "too small"),
])
def test_19_odd_numbers_are_one_line(args, says, run_pan, tmp_path, rain_pairs):
    extra = ("--data", rain_pairs, "--run-dir", tmp_path / "r") if args[0] == "train" else ("-o", tmp_path / "m")
    refused(run_pan(*args, *extra), says)


def test_20_sixteen_bit_label_ids_keep_their_classes(tmp_path):
    ids = np.full((8, 12), 7, dtype=np.uint16)  # road
    ids[:, 6:] = 26  # car
    Image.fromarray(ids).save(tmp_path / "a_gtFine_labelIds.png")
    assert Image.open(tmp_path / "a_gtFine_labelIds.png").mode.startswith("I;16")
    read = read_input(tmp_path / "a_gtFine_labelIds.png")
    assert torch.equal(read, colourize(torch.from_numpy(ids.astype(np.uint8))))
    assert read[:, 0, 0].tolist() == [128, 64, 128] and read[:, 0, -1].tolist() == [0, 0, 142]


def test_21_masks_honour_transparency_and_an_empty_mask_is_refused(run_pan, tmp_path, trained_inpaint_unet):
    image = crop("astronaut", 64, 64)
    write_image(tmp_path / "in" / "a.png", image)
    rgba = np.zeros((64, 64, 4), dtype=np.uint8)
    rgba[..., :3] = 255  # white everywhere, but transparent: no hole
    Image.fromarray(rgba).save(tmp_path / "clear.png")
    common = ("infer", "--task", "inpaint", "--checkpoint", trained_inpaint_unet, tmp_path / "in")
    for mask in ("clear.png", "black.png"):
        if mask == "black.png":
            write_image(tmp_path / mask, torch.zeros(1, 64, 64, dtype=torch.uint8))
        result = run_pan(*common, "--mask", tmp_path / mask, "-o", tmp_path / f"o-{mask}")
        assert result.exit_code == 2 and "the mask marks no pixel" in result.stderr, result.stderr
        assert not (tmp_path / f"o-{mask}" / "a.png").exists()
    rgba[20:30, 10:50, 3] = 255  # a stroke painted on the transparent layer
    Image.fromarray(rgba).save(tmp_path / "stroke.png")
    assert run_pan(*common, "--mask", tmp_path / "stroke.png", "-o", tmp_path / "o").exit_code == 0
    out = read_image(tmp_path / "o" / "a.png")
    hole = torch.zeros(64, 64, dtype=torch.bool)
    hole[20:30, 10:50] = True
    assert torch.equal(out[:, ~hole], image[:, ~hole]) and not torch.equal(out[:, hole], image[:, hole])


def test_21_several_pages_are_named_by_data_check_and_train(run_pan, tmp_path):
    for side in ("A", "B"):
        (tmp_path / "pairs" / side).mkdir(parents=True)
        pages = [Image.fromarray(crop("coffee", 32, 32).permute(1, 2, 0).numpy())] * 3
        pages[0].save(tmp_path / "pairs" / side / "c.tif", save_all=True, append_images=pages[1:])
        write_image(tmp_path / "pairs" / side / "d.png", crop("rocket", 32, 32))
    check = run_pan("data", "check", tmp_path / "pairs")
    assert "note: " in check.stdout and "c.tif holds 3 pages or frames" in check.stdout
    train = run_pan("train", "derain", "--data", tmp_path / "pairs", "--image-size", "24", "--batch-size", "2",
                    "--steps", "1", "--run-dir", tmp_path / "r", "-q")
    assert train.exit_code == 0 and "c.tif holds 3 pages or frames" in train.stderr


def test_22_vif_of_a_reference_with_no_signal_is_not_above_one():
    ref = np.full((64, 64), 128.0)
    ref[30, 30] = 129
    noisy = ref + np.random.default_rng(0).normal(0, 1, ref.shape)
    assert _vif_channel(ref, noisy) == 0.0 and _vif_channel(ref, ref.copy()) == 1.0


def test_23_quiet_still_warns_that_resume_ignores_a_changed_setting(rain_pairs, tmp_path, run_pan):
    small_run(rain_pairs, tmp_path / "run", steps=2)
    result = run_pan("train", "derain", "--data", rain_pairs, "--image-size", "32", "--steps", "3", "--resume",
                     "--run-dir", tmp_path / "run", "-q")
    assert result.exit_code == 0, result.stderr
    assert "pan: warning: --image-size 32 is ignored" in result.stderr
    assert "resuming from" not in result.stderr  # information stays quiet


def test_24_messages_say_what_is_wrong(run_pan, tmp_path, trained_checkpoint):
    refused(run_pan("infer", "--task", "derain", "--checkpoint", trained_checkpoint, tmp_path / "gone.png",
                    "-o", tmp_path / "o"), "gone.png does not exist")
    from_stdin = run_pan("infer", "--task", "derain", "--checkpoint", trained_checkpoint, "-", "-o", tmp_path / "o",
                         input=f"{tmp_path / 'gone.png'}\n")
    assert from_stdin.exit_code == 2 and f"{tmp_path / 'gone.png'}: no such file" in from_stdin.stderr
    refused(run_pan("export", "shipped", "-o", tmp_path / "e.pt"), "--finetune", "derain.pt")
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07\x12\x07pytorch")
    refused(run_pan("export", tmp_path / "model.onnx", "-o", tmp_path / "e.pt"), "an ONNX export")
