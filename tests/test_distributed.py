"""Data-parallel training: two CPU processes (gloo) against one process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import pan_cli.train.loop as training
from pan_cli.datasets.layout import detect_layout, find_pairs
from pan_cli.store.checkpoint import load_checkpoint
from pan_cli.tasks import make_config
from pan_cli.train.distributed import Group
from pan_cli.train.loop import TrainOptions, train

STEPS = 3


def _config(batch_size, seed=0):
    return make_config("derain", image_size=24, batch_size=batch_size, steps=STEPS, ema=0.9, seed=seed)


def _rank(rank, world, data, root):
    torch.set_num_threads(1)
    built = []  # capture this process's networks (only rank 0 writes checkpoints)
    real_build = training.Models.build
    training.Models.build = lambda *args, **kwargs: built.append(real_build(*args, **kwargs)) or built[-1]
    dist.init_process_group("gloo", init_method=f"file://{root}/store", rank=rank, world_size=world)
    try:
        options = TrainOptions(run_dir=root / "run", sample_every=0, checkpoint_every=STEPS, group=Group(rank, world))
        train(_config(batch_size=2), find_pairs(detect_layout(data)), options)
        models = built[0]
        torch.save({"T": models.T.state_dict(), "D": models.D.state_dict(), "T_ema": models.ema.module.state_dict()},
                   root / f"rank-{rank}.pt")
    finally:
        dist.destroy_process_group()


def _single(data, run, seed=0):
    torch.set_num_threads(1)
    options = TrainOptions(run_dir=run, sample_every=0, checkpoint_every=STEPS)
    return load_checkpoint(train(_config(batch_size=4, seed=seed), find_pairs(detect_layout(data)), options))


def _distance(a, b):
    return sum(float((a[k].float() - b[k].float()).norm()) for k in a if a[k].is_floating_point())


def test_two_processes_match_one_process_with_the_same_global_batch(rain_pairs, tmp_path):
    mp.spawn(_rank, args=(2, rain_pairs, tmp_path), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank-{r}.pt", weights_only=True) for r in (0, 1)]
    for part in ("T", "D", "T_ema"):  # parameters and BatchNorm statistics alike
        for key, value in ranks[0][part].items():
            assert torch.equal(value, ranks[1][part][key]), (part, key)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        ".lock", "config.json", "latest.pt", "metrics.jsonl", f"step-{STEPS}.pt"]  # one writer, one lock
    parallel = load_checkpoint(tmp_path / "run" / "latest.pt")
    single = _single(rain_pairs, tmp_path / "single")
    other_seed = _single(rain_pairs, tmp_path / "other", seed=1)
    assert parallel["step"] == single["step"] == STEPS
    # Same samples, same initial weights, averaged gradients: the runs differ only because each
    # process normalises with its own half batch's BatchNorm statistics. That difference must be
    # far smaller than the one between two seeds.
    for part in ("T", "D"):
        close, far = _distance(parallel[part], single[part]), _distance(single[part], other_seed[part])
        assert close < 0.1 * far, (part, close, far)


def test_torchrun_launch_writes_one_checkpoint_one_log_and_one_stdout(rain_pairs, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "pan_cli",
         "train", "derain", "--data", str(rain_pairs), "--steps", "2", "--image-size", "24", "--batch-size", "2",
         "--run-dir", str(tmp_path / "run"), "--sample-every", "0"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [str(tmp_path / "run" / "step-2.pt")]  # rank 0 only
    assert "2 processes x batch 2 = effective batch 4" in done.stderr
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".lock", "config.json", "latest.pt",
                                                                    "metrics.jsonl", "step-2.pt"]
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 1
