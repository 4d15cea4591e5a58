"""`pan compare` end to end on a tiny dataset: both views, every objective, report and grid."""

from __future__ import annotations

from pan_cli.datasets.images import read_image, write_image
from tests.conftest import crop, make_rain_pairs


def test_compare_reports_both_views_for_each_objective(tmp_path, run_pan):
    make_rain_pairs(tmp_path / "data" / "train")
    make_rain_pairs(tmp_path / "data" / "test", names=("coffee", "chelsea"), seed=3)
    out = tmp_path / "cmp"
    result = run_pan("compare", "--task", "derain", "--data", tmp_path / "data", "--out", out, "--steps", "2",
                     "--seeds", "0", "--objectives", "pan,l1", "--image-size", "24", "--batch-size", "2")
    assert result.exit_code == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| pan") or line.startswith("| l1")]
    assert [row.split("|")[1:3] for row in rows] == [
        [" pan ", " equal steps "], [" l1 ", " equal steps "],
        [" pan ", " equal wall-clock "], [" l1 ", " equal wall-clock "],
    ]
    assert int(rows[3].split("|")[3]) >= 2  # l1 used PAN's wall time: at least as many steps
    assert (out / "report.md").read_text().count("| l1 |") == 2
    grid = read_image(out / "grid.png")
    assert grid.shape[2] == 4 * 64 + 5 * 4  # input | pan | l1 | target for each scored image
    again = run_pan("compare", "--task", "derain", "--data", tmp_path / "data", "--out", out, "--steps", "2")
    assert again.exit_code == 2 and "already exists" in again.stderr


def test_compare_needs_pan_first_and_data_for_other_tasks(tmp_path, run_pan):
    assert run_pan("compare", "--task", "derain", "--objectives", "l1,pan", "--out", tmp_path).exit_code == 2
    result = run_pan("compare", "--task", "sketch2photo", "--out", tmp_path / "x")
    assert result.exit_code == 2 and "needs --data" in result.stderr


def test_compare_inpaint_on_built_in_photos_reports_the_hole_and_its_detail(tmp_path, run_pan):
    out = tmp_path / "cmp"
    result = run_pan("compare", "--task", "inpaint", "--out", out, "--steps", "2", "--seeds", "0",
                     "--objectives", "pan,l1", "--image-size", "64", "--batch-size", "2")
    assert result.exit_code == 0, result.stderr
    header = result.stdout.splitlines()[0]
    assert "PSNR in hole" in header and "detail" in header
    rows = [line.split("|") for line in result.stdout.splitlines() if line.startswith(("| pan", "| l1"))]
    assert len(rows) == 4
    for row in rows:  # every score is a number: hole PSNR between a blank fill's and a perfect one's
        psnr_hole, detail = (float(cell.split("±")[0]) for cell in row[-3:-1])
        assert 5 < psnr_hole < 60 and 0 <= detail < 5
    test = sorted(p.name for p in (out / "data" / "test" / "masks").iterdir())
    assert test == ["chelsea-strokes.png", "chelsea.png", "coffee-strokes.png", "coffee.png"]
    assert read_image(out / "data" / "test" / "A" / "coffee.png").shape[1:] == (64, 64)
    grid = read_image(out / "grid.png")
    assert grid.shape[1] == 4 * 64 + 5 * 4 and grid.shape[2] == 4 * 64 + 5 * 4  # 4 pairs: input | pan | l1 | target


def test_compare_inpaint_data_may_be_plain_photos_beside_pairs_with_holes(tmp_path, run_pan):
    from pan_cli.score.compare import comparison_data

    for name in ("astronaut", "rocket", "coffee"):
        write_image(tmp_path / "d" / "train" / f"{name}.png", crop(name, 40, 48))
    made = run_pan("data", "make", "inpaint", "--from", tmp_path / "d" / "train", "--size", "32", "--holes", "half",
                   "-o", tmp_path / "d" / "test", "-q")
    assert made.exit_code == 0, made.stderr
    found = comparison_data("inpaint", tmp_path / "d", tmp_path / "out", 64)
    assert len(found.train) == 3 and [p.name for p in found.scored] == ["astronaut", "coffee", "rocket"]
    assert all(p.b is not None for p in found.scored) and found.split == "test"
