"""--precision auto: bf16 only where the device runs it faster than fp32."""

import torch

from pan_cli.devices import resolve_precision


def test_auto_is_bf16_only_with_amx_on_the_cpu(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert resolve_precision("auto", cpu)[0] == "bf16"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    precision, why = resolve_precision("auto", cpu)
    assert precision == "fp32" and "slower" in why
    assert resolve_precision("bf16", cpu) == ("bf16", "as asked")  # an explicit choice stands
    assert resolve_precision("auto", torch.device("mps"))[0] == "fp32"


def test_train_says_which_precision_it_chose(run_pan, rain_pairs, tmp_path):
    result = run_pan("train", "derain", "--data", rain_pairs, "--steps", "1", "--image-size", "32",
                     "--batch-size", "2", "--run-dir", tmp_path / "run", "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    assert "device: cpu, " in result.stderr and "(auto: " in result.stderr
