"""A real `pan train` process stopped by SIGINT or SIGTERM keeps its work."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import torch

from pan_cli.store.checkpoint import load_checkpoint


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_mid_run_writes_a_loadable_checkpoint_and_exits_130(rain_pairs, tmp_path, signum):
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pan_cli", "train", "derain", "--data", str(rain_pairs), "--steps", "100000",
         "--image-size", "24", "--batch-size", "2", "--run-dir", str(run), "--log-every", "1",
         "--checkpoint-every", "100000", "--sample-every", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "training never logged two steps"
        time.sleep(0.1)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert stdout == ""
    assert "interrupted at step" in stderr and "--resume" in stderr and "Traceback" not in stderr
    state = load_checkpoint(run / "latest.pt", task="derain")
    assert state["step"] >= 2
    assert not list(run.glob(".*.tmp"))  # no temporary file left behind

    # Resuming to two steps past the interruption gives the weights of a run that never stopped.
    total = str(state["step"] + 2)
    common = ["--image-size", "24", "--batch-size", "2", "--sample-every", "0", "--steps", total]
    base = [sys.executable, "-m", "pan_cli", "train", "derain", "--data", str(rain_pairs), *common]
    resumed = subprocess.run([*base, "--run-dir", str(run), "--resume"], capture_output=True, text=True)
    straight = subprocess.run([*base, "--run-dir", str(tmp_path / "straight")], capture_output=True, text=True)
    assert resumed.returncode == 0 and straight.returncode == 0, resumed.stderr + straight.stderr
    a, b = load_checkpoint(run / "latest.pt"), load_checkpoint(tmp_path / "straight" / "latest.pt")
    assert a["step"] == b["step"] == int(total)
    for part in ("T", "D", "T_ema"):
        for key, value in a[part].items():
            assert torch.allclose(value.float(), b[part][key].float(), atol=1e-6, rtol=0), (part, key)
