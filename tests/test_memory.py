"""The default --max-pixels comes from the memory free now and the model's peak activations."""

import torch
from torch import nn

from pan_cli.infer.memory import activation_bytes_per_pixel, max_pixels


def test_peak_activation_bytes_follow_what_is_alive_at_once():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))
    # the first conv's 8 channels and the ReLU's copy of them are alive together: 2 x 8 x 4 bytes
    assert activation_bytes_per_pixel(net, 3) == 64.0
    net[1].inplace = True  # an in-place ReLU adds nothing: the peak is then the two convs' outputs
    assert activation_bytes_per_pixel(net, 3) == (8 + 3) * 4.0
    assert next(net.parameters()).device.type == "cpu"  # the model itself is left as it was


def test_max_pixels_is_free_memory_over_bytes_per_pixel(monkeypatch):
    import pan_cli.infer.memory as memory

    monkeypatch.setattr(memory, "free_bytes", lambda device: 10 * 2**30)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))
    assert max_pixels(activation_bytes_per_pixel(net, 3), torch.device("cpu")) == int(10 * 2**30 * memory.HEADROOM / 64)


def test_an_inpainting_model_budgets_its_fill_buffers_too(monkeypatch, trained_inpaint_unet, trained_checkpoint):
    """A tiled image costs its own copies (32 bytes per pixel); filling holes adds the
    mean-colour fill, its mirror image and the float sum of the averaged passes (56 more)."""
    import pan_cli.infer.memory as memory
    from pan_cli.infer.predictor import Predictor

    monkeypatch.setattr(memory, "free_bytes", lambda device: 4 * 2**30)
    cpu = torch.device("cpu")
    inpaint = Predictor.from_checkpoint(trained_inpaint_unet, "inpaint", cpu)
    derain = Predictor.from_checkpoint(trained_checkpoint, "derain", cpu)
    assert (inpaint.bytes_per_pixel(), derain.bytes_per_pixel()) == (88, 32)
    assert inpaint.max_pixels() == int(4 * 2**30 * memory.HEADROOM / 88) < derain.max_pixels()
    whole = Predictor(inpaint.config, inpaint.net, cpu, tile=0)
    assert whole.bytes_per_pixel() == whole.activation_bytes_per_pixel + 56
