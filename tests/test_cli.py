"""The `pan` command line: data on stdout, one clear line on stderr for every bad input."""

from __future__ import annotations

import pytest
import torch

from pan_cli.datasets.images import read_image, write_image
from tests.conftest import crop


@pytest.fixture
def checkpoint(trained_checkpoint):
    return trained_checkpoint


def make_photo_tree(root):
    """Nested folders of images of two sizes (batching must split them) plus a non-image."""
    files = {
        "a.png": crop("astronaut", 40, 56),
        "sub/b.jpg": crop("rocket", 40, 56),
        "sub/deeper/c.png": crop("coffee", 33, 45),
        "sub/deeper/d.png": crop("chelsea", 40, 56),
    }
    for name, image in files.items():
        write_image(root / name, image)
    (root / "notes.txt").write_text("not an image")
    return files


def test_infer_over_nested_folders_keeps_relative_paths_and_sizes(checkpoint, tmp_path, run_pan):
    files = make_photo_tree(tmp_path / "photos")
    out = tmp_path / "out"
    result = run_pan("infer", "--task", "derain", "--checkpoint", checkpoint, tmp_path / "photos", "-o", out,
                     "--batch-size", "2")
    assert result.exit_code == 0, result.stderr
    expected = sorted(str(out / name).rsplit(".", 1)[0] + ".png" for name in files)
    assert sorted(result.stdout.splitlines()) == expected  # stdout: exactly the written paths
    for name, image in files.items():
        written = read_image(out / (name.rsplit(".", 1)[0] + ".png"))
        assert written.shape == image.shape  # the input's own size: no resize
    assert "wrote 4 of 4 images" in result.stderr


def test_infer_reads_paths_from_stdin(checkpoint, tmp_path, run_pan, monkeypatch):
    make_photo_tree(tmp_path / "photos")
    monkeypatch.chdir(tmp_path)
    paths = "photos/a.png\nphotos/sub/b.jpg\n\n"
    result = run_pan("infer", "--task", "derain", "--checkpoint", checkpoint, "-", "-o", "out", input=paths)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == ["out/photos/a.png", "out/photos/sub/b.png"]


def test_infer_takes_and_prints_nul_separated_paths_and_keeps_spaces_in_names(checkpoint, tmp_path, run_pan,
                                                                              monkeypatch):
    monkeypatch.chdir(tmp_path)
    names = [" lead.png", "new\nline.png"]  # a leading space and a newline: both legal in a file name
    for name in names:
        write_image(tmp_path / "in" / name, crop("coffee"))
    result = run_pan("infer", "--task", "derain", "--checkpoint", checkpoint, "-", "-o", "out", "-0",
                     input="".join(f"in/{name}\0" for name in names))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split("\0") == [f"out/in/{name}" for name in names] + [""]
    assert all((tmp_path / "out" / "in" / name).is_file() for name in names)
    lines = run_pan("infer", "--task", "derain", "--checkpoint", checkpoint, "-", "-o", "out2", input="in/ lead.png\n")
    assert lines.exit_code == 0 and lines.stdout == "out2/in/ lead.png\n"  # only the line end is cut


def test_infer_uses_the_runs_latest_checkpoint_by_default(checkpoint, tmp_path, run_pan, monkeypatch):
    (tmp_path / "runs" / "derain").mkdir(parents=True)
    (tmp_path / "runs" / "derain" / "latest.pt").write_bytes(checkpoint.read_bytes())
    write_image(tmp_path / "x.png", crop("coffee"))
    monkeypatch.chdir(tmp_path)
    result = run_pan("infer", "--task", "derain", "x.png", "-o", "out")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == ["out/x.png"]
    assert "pan: using runs/derain/latest.pt" in result.stderr  # which checkpoint ran, said on stderr


def test_infer_output_matches_the_library_prediction(checkpoint, tmp_path, run_pan):
    from pan_cli.datasets.images import to_float, to_uint8
    from pan_cli.infer.predictor import Predictor

    image = crop("chelsea", 40, 56)
    write_image(tmp_path / "x.png", image)
    run_pan("infer", "--task", "derain", "--checkpoint", checkpoint, tmp_path / "x.png", "-o", tmp_path / "o")
    predictor = Predictor.from_checkpoint(checkpoint, "derain", torch.device("cpu"))
    assert torch.equal(read_image(tmp_path / "o" / "x.png"), to_uint8(predictor(to_float(image)[None])[0]))


def test_bad_image_is_skipped_and_reported_with_a_partial_exit_code(checkpoint, tmp_path, run_pan):
    write_image(tmp_path / "in" / "good.png", crop("coffee"))
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    result = run_pan("infer", "--task", "derain", "--checkpoint", checkpoint, tmp_path / "in", "-o", tmp_path / "o")
    assert result.exit_code == 3
    assert result.stdout.splitlines() == [str(tmp_path / "o" / "good.png")]
    assert "broken.png" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "o" / "broken.png").exists()
    fail = run_pan("infer", "--task", "derain", "--checkpoint", checkpoint, tmp_path / "in" / "broken.png",
                   "-o", tmp_path / "o2", "--on-error", "fail")
    assert fail.exit_code == 2 and not (tmp_path / "o2").exists()


def test_infer_never_overwrites_without_being_asked(checkpoint, tmp_path, run_pan):
    write_image(tmp_path / "x.png", crop("coffee"))
    args = ("infer", "--task", "derain", "--checkpoint", checkpoint, tmp_path / "x.png", "-o")
    assert run_pan(*args, tmp_path / "o").exit_code == 0
    again = run_pan(*args, tmp_path / "o")
    assert again.exit_code == 2 and "already exists (use --overwrite" in again.stderr
    assert run_pan(*args, tmp_path / "o", "--overwrite").exit_code == 0
    onto_input = run_pan(*args, tmp_path)
    assert onto_input.exit_code == 2 and "would overwrite an input" in onto_input.stderr


def one_line_error(result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) >= 1 and lines[-1].startswith("pan: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]


def train_args(data, run_dir, *extra):
    return ("train", "derain", "--data", data, "--steps", "2", "--image-size", "24", "--batch-size", "2",
            "--run-dir", run_dir, *extra)


def test_missing_and_empty_data_folders_are_clear_errors(tmp_path, run_pan):
    one_line_error(run_pan(*train_args(tmp_path / "nope", tmp_path / "r")), 2, "nope does not exist")
    (tmp_path / "empty").mkdir()
    one_line_error(run_pan(*train_args(tmp_path / "empty", tmp_path / "r")), 2, "no image pairs in")
    assert not (tmp_path / "r").exists()  # nothing written for a run that could not start


def test_file_without_partner_is_named(rain_pairs, tmp_path, run_pan):
    (rain_pairs / "A" / "coffee.png").unlink()
    one_line_error(run_pan(*train_args(rain_pairs, tmp_path / "r")), 2, "coffee.png has no partner")


def test_pair_with_different_sizes_is_named(rain_pairs, tmp_path, run_pan):
    write_image(rain_pairs / "B" / "coffee.png", crop("coffee", 40, 64))
    one_line_error(run_pan(*train_args(rain_pairs, tmp_path / "r")), 2, "coffee.png is 64x48 but its partner")


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_unreadable_training_image_is_named(rain_pairs, tmp_path, run_pan, damage):
    path = rain_pairs / "A" / "coffee.png"
    path.write_bytes(path.read_bytes()[:150] if damage == "truncate" else b"GIF89a nonsense")
    result = run_pan(*train_args(rain_pairs, tmp_path / "r"))
    one_line_error(result, 2, "coffee.png")
    assert not (tmp_path / "r" / "latest.pt").exists()


def test_image_smaller_than_the_crop_is_named(rain_pairs, tmp_path, run_pan):
    result = run_pan("train", "derain", "--data", rain_pairs, "--image-size", "64", "--run-dir", tmp_path / "r")
    one_line_error(result, 2, "smaller than the 64x64 training crop")


def test_checkpoint_of_another_task_is_refused(checkpoint, tmp_path, run_pan):
    write_image(tmp_path / "x.png", crop("coffee"))
    result = run_pan("infer", "--task", "sketch2photo", "--checkpoint", checkpoint, tmp_path / "x.png",
                     "-o", tmp_path / "o")
    one_line_error(result, 2, "is a 'derain' checkpoint, not 'sketch2photo'")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("content", [b"", b"certainly not a checkpoint", "truncated"])
def test_non_checkpoint_files_are_refused(checkpoint, tmp_path, run_pan, content):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(checkpoint.read_bytes()[:5000] if content == "truncated" else content)
    write_image(tmp_path / "x.png", crop("coffee"))
    result = run_pan("infer", "--task", "derain", "--checkpoint", bad, tmp_path / "x.png", "-o", tmp_path / "o")
    one_line_error(result, 2, "bad.pt")


def test_plain_torch_file_is_not_a_checkpoint(tmp_path, run_pan):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    write_image(tmp_path / "x.png", crop("coffee"))
    result = run_pan("infer", "--task", "derain", "--checkpoint", tmp_path / "other.pt", tmp_path / "x.png",
                     "-o", tmp_path / "o")
    one_line_error(result, 2, "not a pan checkpoint")


def test_missing_input_and_missing_checkpoint(checkpoint, tmp_path, run_pan):
    one_line_error(run_pan("infer", "--task", "derain", "--checkpoint", checkpoint, tmp_path / "none.png",
                           "-o", tmp_path / "o"), 2, "none.png does not exist")
    one_line_error(run_pan("infer", "--task", "derain", "--checkpoint", tmp_path / "no.pt", tmp_path,
                           "-o", tmp_path / "o"), 2, "no.pt does not exist")


def test_epochs_sets_the_step_count_from_the_dataset_size(rain_pairs, tmp_path, run_pan):
    # 4 pairs, batch 2, two batches a step (D then T): one epoch is 1 step, 2.5 epochs 3 steps
    result = run_pan(*train_args(rain_pairs, tmp_path / "r")[:4], "--epochs", "2.5", "--image-size", "24",
                     "--batch-size", "2", "--run-dir", tmp_path / "r", "--sample-every", "0")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip().endswith("step-3.pt")
    both = run_pan(*train_args(rain_pairs, tmp_path / "r2"), "--epochs", "1")
    assert both.exit_code == 2 and "not both" in both.stderr


def test_usage_errors_exit_2(run_pan, tmp_path):
    assert run_pan("train", "nosuchtask", "--data", tmp_path).exit_code == 2
    result = run_pan("train", "derain", "--data", tmp_path, "--lambdas", "1,2")
    assert result.exit_code == 2 and "needs 4 numbers" in result.stderr


def test_tasks_lists_every_task_with_parameter_counts(run_pan):
    result = run_pan("tasks", "-v")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["derain", "inpaint", "labels2street", "sketch2photo"]
    # derain: the shipped recipe (dilated, 96 px crops, half-width D); --paper: idcgan
    assert "generator=dilated size=96" in lines[0] and "paper=idcgan" in lines[0]
    assert "T_params=335187" in lines[0] and "D_params=1772753" in lines[0]


def test_version(run_pan):
    from pan_cli import __version__

    result = run_pan("--version")
    assert result.exit_code == 0 and __version__ in result.stdout



def test_training_loads_in_the_cpu_cores_less_one_processes_by_default(monkeypatch):
    import os

    from tests.conftest import REAL_DEFAULT_WORKERS  # the suite itself loads in the training process

    for cores, workers in ((1, 1), (2, 1), (4, 3), (16, 8), (None, 1)):
        monkeypatch.setattr(os, "cpu_count", lambda cores=cores: cores)
        assert REAL_DEFAULT_WORKERS() == workers
