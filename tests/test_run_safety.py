"""Training work that must never be lost: one trainer per run directory, exports that cannot
replace a run's checkpoints, a checkpoint before a data error, --keep that counts good files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from pan_cli.errors import PanError
from pan_cli.store.checkpoint import load_checkpoint
from tests.conftest import small_run

HOLD_LOCK = "import sys, time; from pathlib import Path; from pan_cli.train.lock import run_dir_lock\n" \
            "with run_dir_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)"


def test_a_second_trainer_on_a_run_dir_is_refused_naming_the_holder_and_a_killed_holder_frees_it(
        rain_pairs, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(PanError, match=f"in use by another pan train \\(PID {holder.pid}\\)"):
            small_run(rain_pairs, run_dir)
        assert not list(run_dir.glob("*.pt")) and not (run_dir / "metrics.jsonl").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    path, _ = small_run(rain_pairs, run_dir, steps=2)  # the kernel released the killed holder's lock
    assert load_checkpoint(path)["step"] == 2


def test_the_cli_refuses_a_second_run_in_one_line(rain_pairs, tmp_path, run_pan):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        holder.stdout.readline()
        result = run_pan("train", "derain", "--data", rain_pairs, "--steps", "2", "--image-size", "24",
                         "--batch-size", "2", "--run-dir", run_dir, "-q")
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("pan: error:") and f"PID {holder.pid}" in result.stderr


def test_export_never_replaces_a_runs_checkpoint_or_an_existing_file(rain_pairs, tmp_path, run_pan):
    run_dir = tmp_path / "run"
    small_run(rain_pairs, run_dir)
    before = (run_dir / "latest.pt").read_bytes()
    for name in ("latest.pt", "best.pt", "step-4.pt", "step-9.pt"):
        result = run_pan("export", run_dir / "step-2.pt", "-o", run_dir / name, "--overwrite")
        assert result.exit_code == 2 and "the training run" in result.stderr, name
    assert (run_dir / "latest.pt").read_bytes() == before and not (run_dir / "step-9.pt").exists()
    out = tmp_path / "model.pt"
    assert run_pan("export", run_dir / "step-2.pt", "-o", out).exit_code == 0
    again = run_pan("export", run_dir / "step-4.pt", "-o", out)
    assert again.exit_code == 2 and "exists; give --overwrite" in again.stderr
    assert load_checkpoint(out)["step"] == 2
    assert run_pan("export", run_dir / "step-4.pt", "-o", out, "--overwrite").exit_code == 0
    assert load_checkpoint(out)["step"] == 4
    folder = run_pan("export", run_dir / "step-4.pt", "-o", tmp_path)
    assert folder.exit_code == 2 and "is a folder" in folder.stderr


def test_resume_passes_over_an_export_put_among_the_checkpoints(rain_pairs, tmp_path, run_pan):
    run_dir = tmp_path / "run"
    small_run(rain_pairs, run_dir)
    assert run_pan("export", run_dir / "step-4.pt", "-o", tmp_path / "model.pt").exit_code == 0
    os.replace(tmp_path / "model.pt", run_dir / "step-6.pt")  # as a careless copy would
    os.link(run_dir / "step-6.pt", run_dir / "latest.tmp")
    os.replace(run_dir / "latest.tmp", run_dir / "latest.pt")
    with pytest.raises(PanError, match="latest.pt is an exported model .* not a training checkpoint"):
        small_run(rain_pairs, run_dir, steps=8, resume="latest")
    path, messages = small_run(rain_pairs, run_dir, steps=8, resume="auto")
    assert any("skipping" in m and "exported model" in m for m in messages)
    assert any("resuming from" in m and "step-4.pt" in m for m in messages)
    assert load_checkpoint(path)["step"] == 8


def test_a_data_error_mid_run_saves_the_finished_steps_first(rain_pairs, tmp_path):
    run_dir = tmp_path / "run"

    def break_the_data(step, scalars):
        if step == 3:  # every input file still has a valid header, but its pixels are cut off
            for image in (rain_pairs / "A").iterdir():
                image.write_bytes(image.read_bytes()[:200])

    with pytest.raises(PanError, match=r"at step 4; checkpoint .*step-3.pt saved first"):
        small_run(rain_pairs, run_dir, steps=6, on_step=break_the_data)
    assert load_checkpoint(run_dir / "latest.pt")["step"] == 3


def test_pairs_of_different_sizes_are_refused_before_training(rain_pairs, tmp_path):
    from PIL import Image

    first = sorted((rain_pairs / "B").iterdir())[-1]
    with Image.open(first) as image:
        image.crop((0, 0, image.width - 2, image.height)).save(first)
    with pytest.raises(PanError, match="but its partner"):
        small_run(rain_pairs, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before it wrote anything


def test_keep_does_not_count_a_damaged_checkpoint(rain_pairs, tmp_path):
    run_dir = tmp_path / "run"
    small_run(rain_pairs, run_dir, steps=4, keep=2)
    assert sorted(p.name for p in run_dir.glob("step-*.pt")) == ["step-2.pt", "step-4.pt"]
    damaged = (run_dir / "step-4.pt").read_bytes()[:1000]
    (run_dir / "step-4.pt").unlink()
    (run_dir / "step-4.pt").write_bytes(damaged)  # latest.pt stays a good hard link of the old file
    (run_dir / "latest.pt").unlink()
    (run_dir / "latest.pt").write_bytes(damaged)
    path, messages = small_run(rain_pairs, run_dir, steps=3, resume="auto", keep=2)  # resumes at 2, saves step 3
    assert load_checkpoint(path)["step"] == 3
    assert load_checkpoint(run_dir / "step-2.pt")["step"] == 2  # the good file survived the pruning
    assert any("not counting step-4.pt" in m for m in messages)


def test_resume_names_each_setting_it_ignores(rain_pairs, tmp_path, run_pan):
    common = ("train", "derain", "--data", rain_pairs, "--batch-size", "2", "--run-dir", tmp_path / "run")
    assert run_pan(*common, "--steps", "2", "--image-size", "24", "-q").exit_code == 0
    resumed = run_pan(*common, "--steps", "3", "--image-size", "32", "--lambda-pix", "7", "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    assert "--image-size 32 is ignored: the run continues with its checkpoint's 24" in resumed.stderr
    assert "--lambda-pix 7.0 is ignored" in resumed.stderr
    assert "--batch-size" not in resumed.stderr  # the same value: nothing to say
    assert load_checkpoint(tmp_path / "run" / "latest.pt")["config"].image_size == 24
