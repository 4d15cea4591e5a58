"""Never lose work, never run a stranger's code, never crash on a hostile file."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pan_cli.datasets.images import ImageReadError, read_image, write_image
from pan_cli.datasets.layout import detect_layout, find_pairs
from pan_cli.errors import PanError
from pan_cli.store.checkpoint import load_checkpoint
from pan_cli.tasks import make_config
from pan_cli.train.loop import TrainOptions, train
from tests.conftest import crop, small_run

PAN = [sys.executable, "-m", "pan_cli"]


def train_cmd(data, run, steps, *extra):
    return [*PAN, "train", "derain", "--data", str(data), "--steps", str(steps), "--image-size", "24",
            "--batch-size", "2", "--run-dir", str(run), "--checkpoint-every", "2", "--sample-every", "0", *extra]


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_carrying_code_is_refused_without_running_it(tmp_path, run_pan):
    marker, evil = tmp_path / "pwned", tmp_path / "evil.pt"
    torch.save({"format": 1, "config": {}, "step": 0, "T": Payload(marker)}, evil)
    with pytest.raises(PanError, match="refused for safety"):
        load_checkpoint(evil)
    write_image(tmp_path / "x.png", crop("coffee"))
    result = run_pan("infer", "--task", "derain", "--checkpoint", evil, tmp_path / "x.png", "-o", tmp_path / "o")
    assert result.exit_code == 2 and "refused for safety" in result.stderr
    assert not marker.exists()


def test_checkpoint_of_another_format_says_why(tmp_path):
    torch.save({"format": 99, "config": {}, "step": 0, "T": {}}, tmp_path / "new.pt")
    with pytest.raises(PanError, match="checkpoint format 99; this pan .* reads format 1"):
        load_checkpoint(tmp_path / "new.pt")


def test_sigkill_between_write_and_rename_keeps_the_previous_checkpoint(rain_pairs, tmp_path):
    run = tmp_path / "run"
    # Kill the process (SIGKILL: no handler, no cleanup) right before step-4.pt is renamed into place.
    crash = ("import os, runpy, signal, sys\n"
             "real = os.replace\n"
             "def replace(a, b):\n"
             "    if str(b).endswith('step-4.pt'):\n"
             "        os.kill(os.getpid(), signal.SIGKILL)\n"
             "    return real(a, b)\n"
             "os.replace = replace\n"
             "sys.argv = ['pan'] + sys.argv[1:]\n"
             "runpy.run_module('pan_cli', run_name='__main__')\n")
    done = subprocess.run([sys.executable, "-c", crash, *train_cmd(rain_pairs, run, 6)[3:]], capture_output=True)
    assert done.returncode == -9
    assert list(run.glob(".pan-*.tmp"))  # the cut-short write is there, under a temporary name
    assert load_checkpoint(run / "latest.pt")["step"] == 2
    resumed = subprocess.run(train_cmd(rain_pairs, run, 6, "--resume", "auto"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr and "at step 2" in resumed.stderr
    assert load_checkpoint(run / "latest.pt")["step"] == 6
    assert not list(run.glob(".*.tmp"))


def test_resume_auto_skips_a_damaged_latest_and_reports_it(rain_pairs, tmp_path):
    run = tmp_path / "run"
    small_run(rain_pairs, run)
    damaged = run / "damaged"
    damaged.write_bytes((run / "step-4.pt").read_bytes()[:1000])
    os.replace(damaged, run / "latest.pt")  # latest.pt is now a truncated file; step-4.pt is intact
    with pytest.raises(PanError, match="latest.pt is not a pan checkpoint"):
        small_run(rain_pairs, run, steps=6, resume="latest")
    path, messages = small_run(rain_pairs, run, steps=6, resume="auto")
    assert any("skipping" in m and "latest.pt" in m for m in messages)
    assert any("resuming from" in m and "step-4.pt" in m for m in messages)
    assert load_checkpoint(path)["step"] == 6


def test_resume_auto_starts_fresh_in_an_empty_run_dir(rain_pairs, tmp_path):
    path, _ = small_run(rain_pairs, tmp_path / "run", steps=2, resume="auto")
    assert load_checkpoint(path)["step"] == 2


def test_a_fresh_run_never_overwrites_an_existing_one(rain_pairs, tmp_path):
    run = tmp_path / "run"
    small_run(rain_pairs, run, steps=2)
    before = (run / "latest.pt").read_bytes()
    with pytest.raises(PanError, match="already holds a run .*--resume"):
        small_run(rain_pairs, run, steps=2)
    assert (run / "latest.pt").read_bytes() == before


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(rain_pairs, tmp_path, monkeypatch):
    import pan_cli.losses.objective as objective

    real, calls = objective.PIXEL_LOSSES["l1"], {"n": 0}

    def poisoned(output, target):
        calls["n"] += 1
        value = real(output, target)
        return value * float("nan") if calls["n"] >= 3 else value

    monkeypatch.setitem(objective.PIXEL_LOSSES, "l1", poisoned)
    config = make_config("derain", image_size=24, batch_size=2, steps=6)
    options = TrainOptions(run_dir=tmp_path / "run", checkpoint_every=1, log_every=1, sample_every=0, keep=0)
    expected = r"non-finite loss at step 3 \(.*t_pixel=nan.*last good checkpoint is .*step-2.pt"
    with pytest.raises(PanError, match=expected):
        train(config, find_pairs(detect_layout(rain_pairs)), options)
    state = load_checkpoint(tmp_path / "run" / "latest.pt")
    assert state["step"] == 2
    assert all(torch.isfinite(v).all() for v in state["T"].values() if v.is_floating_point())


def test_unwritable_run_dir_is_a_clear_error_before_training(rain_pairs, tmp_path, run_pan):
    (tmp_path / "file").write_text("a file, not a folder")
    result = run_pan("train", "derain", "--data", rain_pairs, "--image-size", "24",
                     "--run-dir", tmp_path / "file" / "run")
    assert result.exit_code == 1 and "cannot write to run directory" in result.stderr
    assert "Traceback" not in result.stderr


def test_full_disk_is_a_clear_error_before_training(rain_pairs, tmp_path, run_pan, monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 2**20, 2**20))
    result = run_pan("train", "derain", "--data", rain_pairs, "--image-size", "24", "--run-dir", tmp_path / "run")
    assert result.exit_code == 1 and "1 MiB free, but a checkpoint needs about" in result.stderr
    assert not list((tmp_path / "run").glob("*.pt"))


def test_detect_anomaly_runs_a_normal_training(rain_pairs, tmp_path, run_pan):
    result = run_pan("train", "derain", "--data", rain_pairs, "--image-size", "24", "--batch-size", "2", "--steps", "1",
                     "--run-dir", tmp_path / "run", "--detect-anomaly")
    assert result.exit_code == 0, result.stderr


def test_an_image_over_the_pixel_limit_is_refused(tmp_path):
    write_image(tmp_path / "big.png", torch.zeros(3, 100, 100, dtype=torch.uint8))
    with pytest.raises(ImageReadError, match="100x100 is over the limit of 5000 pixels"):
        read_image(tmp_path / "big.png", max_pixels=5000)


def _encoded(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(crop("coffee", 24, 32).permute(1, 2, 0).numpy()).save(buffer, format=fmt)
    return buffer.getvalue()


GOOD = {"PNG": _encoded("PNG"), "JPEG": _encoded("JPEG")}


@st.composite
def hostile_bytes(draw):
    kind = draw(st.sampled_from(["random", "truncated", "mutated"]))
    if kind == "random":
        return draw(st.binary(max_size=2000))
    base = GOOD[draw(st.sampled_from(sorted(GOOD)))]
    if kind == "truncated":
        return base[: draw(st.integers(0, len(base) - 1))]
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 12))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=hostile_bytes())
def test_fuzzed_bytes_either_decode_or_raise_a_named_image_error(tmp_path, data):
    path = tmp_path / "fuzz.png"
    path.write_bytes(data)
    try:
        image = read_image(path)
    except ImageReadError as exc:
        assert str(exc).startswith(str(path))
    else:
        assert image.dtype == torch.uint8 and image.shape[0] == 3


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.lists(hostile_bytes(), min_size=1, max_size=6))
def test_infer_over_fuzzed_files_reports_each_bad_one_and_writes_the_good(tmp_path_factory, run_pan,
                                                                          trained_checkpoint, files):
    root = tmp_path_factory.mktemp("fuzz")
    folder = root / "in"
    for i, name in enumerate(["astronaut", "rocket"]):
        write_image(folder / f"good{i}.png", crop(name, 24, 32))
    for i, data in enumerate(files):
        (folder / f"fuzz{i}.{'png' if i % 2 else 'jpg'}").write_bytes(data)
    (folder / "empty.png").write_bytes(b"")
    result = run_pan("infer", "--task", "derain", "--checkpoint", trained_checkpoint, folder, "-o", root / "o")
    assert "Traceback" not in result.stderr
    written = {line.rsplit("/", 1)[1].rsplit(".", 1)[0] for line in result.stdout.splitlines()}
    assert {"good0", "good1"} <= written
    for path in folder.iterdir():
        assert path.stem in written or f"{path.name}:" in result.stderr, path.name
    assert result.exit_code == 3  # at least the empty file failed; the rest were written
    assert "failed" in result.stderr


def test_infer_memory_does_not_grow_with_the_number_of_inputs(tmp_path, trained_checkpoint):
    folder = tmp_path / "many"
    image = crop("astronaut", 48, 64)
    for i in range(200):
        write_image(folder / ("a" if i < 50 else "b") / f"{i:03d}.png", image)
    measure = ("import resource, runpy, sys\n"
               "sys.argv = ['pan'] + sys.argv[1:]\n"
               "try:\n    runpy.run_module('pan_cli', run_name='__main__')\n"
               "except SystemExit:\n    pass\n"
               "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n")

    def peak_kib(inputs, out):
        done = subprocess.run([sys.executable, "-c", measure, "infer", "--task", "derain", "--checkpoint",
                               str(trained_checkpoint), *map(str, inputs), "-o", str(out), "-q"],
                              capture_output=True, text=True)
        assert len(done.stdout.splitlines()) == sum(len(list(p.rglob("*.png"))) for p in inputs)
        return int(done.stderr.strip().splitlines()[-1])

    at_50 = peak_kib([folder / "a"], tmp_path / "o50")
    at_200 = peak_kib([folder], tmp_path / "o200")
    assert at_200 < at_50 * 1.1 + 20 * 1024, (at_50, at_200)  # flat: within 10% + 20 MiB


def test_infer_piped_into_head_ends_cleanly(tmp_path, trained_checkpoint):
    for i in range(12):
        write_image(tmp_path / "in" / f"{i:02d}.png", crop("rocket", 24, 32))
    command = (f"set -o pipefail; {sys.executable} -m pan_cli infer --task derain --checkpoint "
               f"{trained_checkpoint} {tmp_path / 'in'} -o {tmp_path / 'o'} --batch-size 1 | head -n 3")
    done = subprocess.run(["bash", "-c", command + "; echo \"status ${PIPESTATUS[0]}\" >&2"], capture_output=True,
                          text=True)
    assert len(done.stdout.splitlines()) == 3
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    assert "error" not in done.stderr and "status 141" in done.stderr  # quiet, as a Unix tool killed by SIGPIPE


def test_infer_with_stdout_closed_is_an_error_not_lost_paths(tmp_path, trained_checkpoint):
    write_image(tmp_path / "in" / "a.png", crop("rocket", 24, 32))
    command = (f"{sys.executable} -m pan_cli infer --task derain --checkpoint {trained_checkpoint} "
               f"{tmp_path / 'in'} -o {tmp_path / 'o'} >&-")
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True)
    assert done.returncode == 1 and "stdout is closed" in done.stderr, done.stderr
    assert not (tmp_path / "o").exists()


def test_outputs_are_never_inputs_of_a_later_folder_search(tmp_path, trained_checkpoint, run_pan):
    folder = tmp_path / "photos"
    write_image(folder / "a.png", crop("rocket", 24, 32))
    common = ("infer", "--task", "derain", "--checkpoint", trained_checkpoint, folder)
    first = run_pan(*common, "-o", folder / "out")
    assert first.exit_code == 0 and first.stdout.splitlines() == [str(folder / "out" / "a.png")]
    again = run_pan(*common, "-o", folder / "out", "--overwrite")  # this run's own output folder
    assert again.stdout.splitlines() == [str(folder / "out" / "a.png")] and "skipping" in again.stderr
    other = run_pan(*common, "-o", folder / "out2")  # an earlier run's output folder
    assert other.stdout.splitlines() == [str(folder / "out2" / "a.png")]
    assert f"skipping {(folder / 'out').resolve()}/: a pan output folder" in other.stderr
    direct = run_pan("infer", "--task", "derain", "--checkpoint", trained_checkpoint, folder / "out",
                     "-o", tmp_path / "x")
    assert direct.stdout.splitlines() == [str(tmp_path / "x" / "a.png")]  # asked for by name: taken


def test_a_tiny_file_that_decodes_to_100_megapixels_fails_alone_in_one_line(tmp_path, trained_checkpoint, run_pan):
    (tmp_path / "in").mkdir()
    Image.new("1", (10000, 10000)).save(tmp_path / "in" / "bomb.png")
    assert (tmp_path / "in" / "bomb.png").stat().st_size < 50_000
    write_image(tmp_path / "in" / "fine.png", crop("rocket", 24, 32))
    result = run_pan("infer", "--task", "derain", "--checkpoint", trained_checkpoint, tmp_path / "in",
                     "-o", tmp_path / "out")
    assert result.exit_code == 3, result.stderr  # some inputs failed, the others were written
    assert result.stdout.splitlines() == [str(tmp_path / "out" / "fine.png")]
    assert "Warning" not in result.stderr and "Traceback" not in result.stderr
    assert f"{tmp_path / 'in' / 'bomb.png'}: 10000x10000 is over the limit of" in result.stderr


def test_an_image_that_runs_out_of_memory_fails_alone(tmp_path, trained_checkpoint, run_pan, monkeypatch):
    from pan_cli.infer.predictor import Predictor

    run = Predictor.__call__

    def small_memory(self, batch):
        if batch.shape[-1] > 40:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:118] DefaultCPUAllocator: can't allocate memory")
        return run(self, batch)

    monkeypatch.setattr(Predictor, "__call__", small_memory)
    write_image(tmp_path / "in" / "big.png", crop("rocket", 48, 64))
    write_image(tmp_path / "in" / "small.png", crop("rocket", 24, 32))
    result = run_pan("infer", "--task", "derain", "--checkpoint", trained_checkpoint, tmp_path / "in",
                     "-o", tmp_path / "out", "--batch-size", "1")
    assert result.exit_code == 3 and result.stdout.splitlines() == [str(tmp_path / "out" / "small.png")]
    assert f"{tmp_path / 'in' / 'big.png'}: 64x48 needs more memory than is free" in result.stderr


def test_skipped_files_are_named_and_symlinked_folders_followed(tmp_path, trained_checkpoint, run_pan):
    write_image(tmp_path / "in" / "a.png", crop("rocket", 24, 32))
    Image.new("RGB", (32, 24)).save(tmp_path / "in" / "anim.gif")
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    write_image(tmp_path / "elsewhere" / "c.png", crop("coffee", 24, 32))
    (tmp_path / "in" / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "elsewhere" / "loop").symlink_to(tmp_path / "elsewhere", target_is_directory=True)  # a cycle
    result = run_pan("infer", "--task", "derain", "--checkpoint", trained_checkpoint, tmp_path / "in",
                     "-o", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == [str(tmp_path / "out" / "a.png"),
                                                  str(tmp_path / "out" / "linked" / "c.png")]
    assert "skipping 1 .gif file" in result.stderr and "GIF (animation) is not read" in result.stderr
    assert "skipping 1 .txt file" in result.stderr and "notes.txt" in result.stderr


def test_messages_name_the_thing_that_is_wrong(tmp_path, trained_checkpoint, run_pan):
    write_image(tmp_path / "a.png", crop("rocket", 24, 32))
    (tmp_path / "afile").write_text("x")
    common = ("infer", "--task", "derain", "--checkpoint")
    to_file = run_pan(*common, trained_checkpoint, tmp_path / "a.png", "-o", tmp_path / "afile")
    assert to_file.stderr.strip() == f"pan: error: -o {tmp_path / 'afile'} is a file; give a folder for the outputs"
    folder = run_pan(*common, tmp_path, tmp_path / "a.png", "-o", tmp_path / "o")
    assert folder.exit_code == 2 and "is a folder; give the checkpoint file in it" in folder.stderr
    os.mkfifo(tmp_path / "pipe.png")
    fifo = run_pan(*common, trained_checkpoint, tmp_path / "pipe.png", "-o", tmp_path / "o2")
    assert "pipe.png: not a regular file (a pipe or device)" in fifo.stderr
    export = run_pan("export", trained_checkpoint, "-o", tmp_path / "afile" / "model.pt")
    assert export.stderr.strip() == (f"pan: error: cannot write {tmp_path / 'afile' / 'model.pt'}: "
                                     f"{tmp_path / 'afile'} is a file, not a folder")


def test_plain_photos_without_synthesize_get_a_warning(tmp_path, run_pan):
    for name in ("rocket", "coffee"):
        write_image(tmp_path / "photos" / f"{name}.png", crop(name, 48, 64))
    result = run_pan("train", "derain", "--data", tmp_path / "photos", "--steps", "1", "--image-size", "24",
                     "--batch-size", "2", "--run-dir", tmp_path / "run")
    assert result.exit_code == 0, result.stderr
    assert "is read as an input|target pair side by side" in result.stderr and "add --synthesize" in result.stderr
    synthesized = run_pan("train", "derain", "--synthesize", "--data", tmp_path / "photos", "--steps", "1",
                          "--image-size", "24", "--batch-size", "2", "--run-dir", tmp_path / "run2")
    assert synthesized.exit_code == 0 and "side by side" not in synthesized.stderr


def test_pages_after_the_first_are_named_not_dropped_silently(tmp_path, trained_checkpoint, run_pan):
    (tmp_path / "in").mkdir()
    pages = [Image.new("RGB", (32, 24), colour) for colour in ("red", "green", "blue")]
    pages[0].save(tmp_path / "in" / "scan.tif", save_all=True, append_images=pages[1:])
    result = run_pan("infer", "--task", "derain", "--checkpoint", trained_checkpoint, tmp_path / "in",
                     "-o", tmp_path / "out")
    assert result.exit_code == 0 and result.stdout.splitlines() == [str(tmp_path / "out" / "scan.png")]
    assert f"{tmp_path / 'in' / 'scan.tif'}: 3 pages or frames; only the first is read" in result.stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_stdout_is_named_as_stdout(tmp_path, trained_checkpoint):
    write_image(tmp_path / "a.png", crop("rocket", 24, 32))
    command = (f"{sys.executable} -m pan_cli infer --task derain --checkpoint {trained_checkpoint} "
               f"{tmp_path / 'a.png'} -o {tmp_path / 'o'} -q > /dev/full")
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True)
    assert done.returncode == 1 and done.stderr.strip() == "pan: error: cannot write to stdout: No space left on device"


def test_an_unwritable_export_names_the_file_asked_for_not_the_temporary_one(tmp_path, trained_checkpoint,
                                                                            run_pan, monkeypatch):
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / ".model.pt.abc.tmp"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    result = run_pan("export", trained_checkpoint, "-o", tmp_path / "model.pt")
    assert result.stderr.strip() == f"pan: error: cannot write {tmp_path / 'model.pt'}: Permission denied"
