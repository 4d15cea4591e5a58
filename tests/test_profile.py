"""`pan train --profile`: where the time goes, split into data, the D step and the T step."""

from __future__ import annotations

import json
import time

import pytest

import pan_cli.train.batches as batches


def test_profile_splits_the_time_and_sees_a_slow_loader(run_pan, rain_pairs, tmp_path, monkeypatch):
    common = ("train", "derain", "--data", rain_pairs, "--image-size", "24", "--batch-size", "2", "--steps", "4",
              "--sample-every", "0", "--profile")
    result = run_pan(*common, "--run-dir", tmp_path / "fast")
    assert result.exit_code == 0, result.stderr
    assert "profile: " in result.stderr and "data_fraction" in result.stderr
    fast = json.loads((tmp_path / "fast" / "profile.json").read_text())
    per = fast["seconds_per_step"]
    assert fast["steps"] == 4 and set(per) == {"data", "d_step", "t_step", "other"}
    assert per["d_step"] > 0 and per["t_step"] > 0
    assert sum(per.values()) == pytest.approx(fast["wall_s"] / 4, rel=1e-6)
    assert fast["crops_per_s"] == pytest.approx(fast["steps_per_s"] * 2 * 2)  # batch 2, a D and a T batch
    real_read = batches.StepData.read

    def slow_read(self):  # a loader that takes 0.3 s a step: the profile must put it under data
        time.sleep(0.3)
        return real_read(self)

    monkeypatch.setattr(batches.StepData, "read", slow_read)
    assert run_pan(*common, "--run-dir", tmp_path / "slow").exit_code == 0
    slow = json.loads((tmp_path / "slow" / "profile.json").read_text())
    assert slow["seconds_per_step"]["data"] >= 0.3
    assert slow["data_fraction"] > fast["data_fraction"] + 0.1


def test_no_profile_without_the_flag(run_pan, rain_pairs, tmp_path):
    result = run_pan("train", "derain", "--data", rain_pairs, "--image-size", "24", "--batch-size", "2",
                     "--steps", "2", "--sample-every", "0", "--run-dir", tmp_path / "r")
    assert result.exit_code == 0 and not (tmp_path / "r" / "profile.json").exists()
