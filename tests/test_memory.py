"""The default --max-pixels comes from the memory free now and the model's peak activations."""

import torch
from torch import nn

from pan_cli.memory import activation_bytes_per_pixel, max_pixels


def test_peak_activation_bytes_follow_what_is_alive_at_once():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))
    # the first conv's 8 channels and the ReLU's copy of them are alive together: 2 x 8 x 4 bytes
    assert activation_bytes_per_pixel(net, 3) == 64.0
    net[1].inplace = True  # an in-place ReLU adds nothing: the peak is then the two convs' outputs
    assert activation_bytes_per_pixel(net, 3) == (8 + 3) * 4.0
    assert next(net.parameters()).device.type == "cpu"  # the model itself is left as it was


def test_max_pixels_is_free_memory_over_bytes_per_pixel(monkeypatch):
    import pan_cli.memory as memory

    monkeypatch.setattr(memory, "free_bytes", lambda device: 10 * 2**30)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))
    assert max_pixels(activation_bytes_per_pixel(net, 3), torch.device("cpu")) == int(10 * 2**30 * memory.HEADROOM / 64)
