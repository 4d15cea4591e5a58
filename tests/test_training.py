"""The trainer: exact resume, what a run writes, and a tiny run that beats its input."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch

from pan_cli.datasets.images import read_image, to_float, to_uint8
from pan_cli.datasets.layout import detect_layout, find_pairs
from pan_cli.errors import PanError
from pan_cli.infer.predictor import Predictor
from pan_cli.score.metrics import psnr
from pan_cli.store.checkpoint import load_checkpoint
from pan_cli.tasks import make_config
from pan_cli.train.loop import Interrupted, TrainOptions, train
from tests.conftest import make_rain_pairs


def tiny_config(**changes):
    values = dict(image_size=24, batch_size=2, steps=4, ema=0.9, seed=7)
    values.update(changes)
    return make_config("derain", **values)


def options(run_dir, **changes):
    values = dict(run_dir=run_dir, log_every=1, sample_every=2, checkpoint_every=2, keep=0)
    values.update(changes)
    return TrainOptions(**values)


def weights(checkpoint):
    state = load_checkpoint(checkpoint)
    return {f"{part}.{k}": v for part in ("T", "D", "T_ema") for k, v in state[part].items()}


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.allclose(wa[key].float(), wb[key].float(), atol=1e-6, rtol=0), key


def test_interrupted_and_resumed_run_matches_an_uninterrupted_one(rain_pairs, tmp_path):
    pairs = find_pairs(detect_layout(rain_pairs))
    straight = train(tiny_config(), pairs, options(tmp_path / "straight"))

    def interrupt_at_2(step, scalars):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C would: the step finishes, then it stops

    with pytest.raises(Interrupted, match="interrupted at step 2"):
        train(tiny_config(), pairs, options(tmp_path / "stopped"), on_step=interrupt_at_2)
    assert load_checkpoint(tmp_path / "stopped" / "latest.pt")["step"] == 2
    resumed = train(tiny_config(), pairs, options(tmp_path / "stopped"), resume="latest")
    assert resumed.name == straight.name == "step-4.pt"
    assert_same_weights(straight, resumed)
    logged = [json.loads(line)["step"] for line in (tmp_path / "stopped" / "metrics.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3, 4]


def test_resume_can_extend_a_finished_run(rain_pairs, tmp_path):
    pairs = find_pairs(detect_layout(rain_pairs))
    straight = train(tiny_config(), pairs, options(tmp_path / "straight"))
    train(tiny_config(steps=2), pairs, options(tmp_path / "short"))
    extended = train(tiny_config(steps=2), pairs, options(tmp_path / "short"), resume="latest", steps=4)
    assert_same_weights(straight, extended)


def test_lr_decay_falls_linearly_over_the_last_steps():
    config = tiny_config(steps=10, lr_decay=4)
    assert [config.lr_factor(step) for step in range(1, 11)] == [1, 1, 1, 1, 1, 1, 0.8, 0.6, 0.4, 0.2]
    assert tiny_config(steps=3).lr_factor(3) == 1.0  # no decay by default


def test_a_decay_phase_added_on_resume_is_the_run_that_had_it_from_the_start(rain_pairs, tmp_path):
    """The schedule may change on --resume: constant steps, then a decay phase asked for later,
    end with the weights of a run given the decay from the start (and Adam's last lr is the
    schedule's)."""
    pairs = find_pairs(detect_layout(rain_pairs))
    straight = train(tiny_config(lr_decay=2), pairs, options(tmp_path / "straight"))
    train(tiny_config(steps=2), pairs, options(tmp_path / "later"))
    warnings = []
    later = train(tiny_config(steps=2, lr_decay=2), pairs, options(tmp_path / "later"), resume="latest", steps=4,
                  asked=frozenset({"steps", "lr_decay"}), warn=warnings.append)
    assert not [w for w in warnings if "ignored" in w]
    assert_same_weights(straight, later)
    state = load_checkpoint(later)
    assert state["config"].lr_decay == 2
    assert state["opt_T"]["param_groups"][0]["lr"] == pytest.approx(2e-4 / 3)


def test_checkpoint_holds_everything_a_resume_and_inference_need(rain_pairs, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(), find_pairs(detect_layout(rain_pairs)), options(run, keep=1))
    state = load_checkpoint(run / "latest.pt")
    assert state["step"] == 4 and state["pan_version"] and state["format"] == 1
    assert state["config"] == tiny_config()
    for key in ("T", "D", "T_ema", "opt_T", "opt_D", "rng"):
        assert state[key] is not None, key
    assert sorted(p.name for p in run.glob("step-*.pt")) == ["step-4.pt"]  # --keep 1
    assert os.path.samefile(run / "latest.pt", run / "step-4.pt")
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step-2.png", "step-4.png"]
    grid = read_image(run / "samples" / "step-4.png")
    assert grid.shape[2] == 3 * 24 + 4 * 4  # input | output | target, with 4-pixel gaps
    lines = (run / "metrics.jsonl").read_text().splitlines()
    record = json.loads(lines[-1])
    assert {"step", "d_gan", "d_hinge", "t_gan", "t_perceptual", "t_pixel", "t_P1"} <= set(record)
    assert json.loads((run / "config.json").read_text())["task"] == "derain"


def test_l1_objective_trains_without_a_discriminator(rain_pairs, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(objective="l1"), find_pairs(detect_layout(rain_pairs)), options(run))
    state = load_checkpoint(run / "latest.pt")
    assert state["D"] is None and state["opt_D"] is None


def test_resume_without_a_checkpoint_is_a_clear_error(rain_pairs, tmp_path):
    with pytest.raises(PanError, match="no checkpoint at"):
        train(tiny_config(), find_pairs(detect_layout(rain_pairs)), options(tmp_path / "r"), resume="latest")


def test_a_short_pan_run_de_rains_held_out_photos(tmp_path):
    """The trained model beats its input on photos and rain it never saw."""
    make_rain_pairs(tmp_path / "train", names=("astronaut", "rocket"), height=96, width=128)
    # the paper's idcgan: 40 steps of 32 px crops are enough for it; the default dilated network,
    # whose view is 125 px, is 6-7 dB below its input after them (at its own 96 px crops it
    # beats the input by 0.7 dB after 50 steps on held-out chelsea)
    config = make_config("derain", generator="idcgan", image_size=32, batch_size=4, steps=40, ema=0.9, seed=0)
    checkpoint = train(config, find_pairs(detect_layout(tmp_path / "train")),
                       TrainOptions(run_dir=tmp_path / "run", sample_every=0, checkpoint_every=40))
    predictor = Predictor.from_checkpoint(checkpoint, "derain", torch.device("cpu"))
    make_rain_pairs(tmp_path / "held", names=("coffee", "chelsea"), height=96, width=128, seed=99)
    gains = []
    for name in ("coffee", "chelsea"):
        rainy, clean = (read_image(tmp_path / "held" / side / f"{name}.png") for side in ("A", "B"))
        out = to_uint8(predictor(to_float(rainy)[None])[0])
        gains.append(psnr(clean, out) - psnr(clean, rainy))
    assert sum(gains) / len(gains) > 0.5, gains
