"""`pan train --d-warmup N`: D learns against the starting T before T's first update."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from pan_cli.datasets.layout import detect_layout, find_pairs
from pan_cli.losses import discriminator_loss
from pan_cli.store.checkpoint import load_checkpoint
from pan_cli.train.loop import Interrupted, train
from pan_cli.train.step import Models, warm_up_d
from tests.test_training import assert_same_weights, options, tiny_config


class SameBatches:
    """A reader that gives the same two batches at every read, as a run's step would."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.batches, self.reads = [(x, y), (x, y)], 0

    def read(self):
        self.reads += 1
        return self.batches


def adam_steps(optimizer_state: dict) -> int:
    return int(next(iter(optimizer_state["state"].values()))["step"])


def test_warm_up_trains_d_alone_and_leaves_t_as_it_was():
    config = tiny_config(d_warmup=25)
    models = Models.build(config, torch.device("cpu"))
    torch.manual_seed(0)
    y = torch.rand(2, 3, 24, 24) * 2 - 1
    x = (y + 0.5 * torch.randn_like(y)).clamp(-1, 1)  # a noisy input: T's output is far from y
    t_before = {k: v.clone() for k, v in models.T.state_dict().items() if "running" not in k and "tracked" not in k}

    def d_loss() -> float:
        with torch.no_grad():
            return float(discriminator_loss(config, models.D(y), models.D(models.T(x)))["total"])

    before = d_loss()
    batches = SameBatches(x, y)
    warm_up_d(config, models, batches)
    assert batches.reads == 13  # two batches a read: 25 updates take 13 reads, the last one used once
    assert adam_steps(models.opt_D.state_dict()) == 25 and not models.opt_T.state_dict()["state"]
    for key, value in models.T.state_dict().items():
        if key in t_before:
            assert torch.equal(value, t_before[key]), key
    assert d_loss() < 0.5 * before  # D now tells T's output from the target


def test_a_warmed_up_run_resumes_exactly_and_differs_from_a_cold_start(rain_pairs, tmp_path):
    pairs = find_pairs(detect_layout(rain_pairs))
    straight = train(tiny_config(d_warmup=3), pairs, options(tmp_path / "straight"))
    state = load_checkpoint(straight)
    assert adam_steps(state["opt_D"]) == 3 + 4 and adam_steps(state["opt_T"]) == 4  # warm-up, then one per step

    def interrupt_at_2(step, scalars):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(Interrupted):
        train(tiny_config(d_warmup=3), pairs, options(tmp_path / "stopped"), on_step=interrupt_at_2)
    resumed = train(tiny_config(d_warmup=3), pairs, options(tmp_path / "stopped"), resume="latest")
    assert_same_weights(straight, resumed)  # the warm-up is not run again on resume
    assert adam_steps(load_checkpoint(resumed)["opt_D"]) == 7
    cold = load_checkpoint(train(tiny_config(), pairs, options(tmp_path / "cold")))
    assert max((cold["T"][k] - state["T"][k]).abs().max().item() for k in cold["T"] if "running" not in k
               and cold["T"][k].is_floating_point()) > 1e-4  # T's first update already followed another D


def test_warm_up_without_a_discriminator_is_one_clear_error(run_pan, rain_pairs, tmp_path):
    result = run_pan("train", "derain", "--data", rain_pairs, "--objective", "l1", "--d-warmup", "5", "--steps", "1",
                     "--image-size", "24", "--run-dir", tmp_path / "run", "-q")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "pan: error: --d-warmup: the l1 objective has no discriminator to warm up"]
    assert not (tmp_path / "run").exists()


def test_a_finetune_does_not_inherit_its_sources_warm_up(run_pan, rain_pairs, tmp_path):
    common = ("--data", rain_pairs, "--steps", "1", "--sample-every", "0")
    warmed = run_pan("train", "derain", *common, "--image-size", "24", "--batch-size", "2", "--d-warmup", "2",
                     "--run-dir", tmp_path / "warmed")
    assert warmed.exit_code == 0, warmed.stderr
    assert "2 discriminator updates against the starting generator first" in warmed.stderr
    source = tmp_path / "warmed" / "latest.pt"
    tuned = run_pan("train", "derain", *common, "--finetune", source, "--run-dir", tmp_path / "tuned")
    assert tuned.exit_code == 0, tuned.stderr
    assert "discriminator updates" not in tuned.stderr
    assert load_checkpoint(tmp_path / "tuned" / "latest.pt")["config"].d_warmup == 0
    again = run_pan("train", "derain", *common, "--finetune", source, "--d-warmup", "3",
                    "--run-dir", tmp_path / "again")
    assert again.exit_code == 0 and load_checkpoint(tmp_path / "again" / "latest.pt")["config"].d_warmup == 3
