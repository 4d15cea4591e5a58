"""Shapes, perceptual taps, sizing, initialisation and the global residual."""

from __future__ import annotations

import pytest
import torch

from pan_cli.errors import PanError
from pan_cli.models.discriminator import Discriminator, build_discriminator
from pan_cli.models.networks import IDCGAN, ContextEncoder, UNet, build_generator, count_parameters, geometry
from pan_cli.tasks import make_config


@pytest.mark.parametrize("net, size, out", [
    (UNet(), 256, 256),  # the paper's size
    (UNet(), 128, 128),
    (IDCGAN(), (37, 53), (37, 53)),  # stride 1: any size
    (ContextEncoder(), 128, 64),  # 128x128 context -> 64x64 centre patch
])
def test_generator_output_shapes(net, size, out):
    h, w = size if isinstance(size, tuple) else (size, size)
    oh, ow = out if isinstance(out, tuple) else (out, out)
    with torch.no_grad():
        y = net.eval()(torch.rand(1, 3, h, w) * 2 - 1)
    assert y.shape == (1, 3, oh, ow)
    assert y.abs().max() <= 1.0  # tanh output


def test_unet_takes_a_mask_as_fourth_channel():
    assert UNet(4, 3).eval()(torch.zeros(1, 4, 64, 64)).shape == (1, 3, 64, 64)


def test_d_taps_are_the_outputs_of_layers_1_4_6_and_8():
    D = Discriminator(64).eval()
    seen = {}
    for index, layer in enumerate(D.layers, start=1):
        layer.register_forward_hook(lambda m, i, o, index=index: seen.__setitem__(index, o))
    out = D(torch.rand(2, 3, 64, 64))
    assert len(out.hidden) == 4
    for tap, layer in zip(out.hidden, (1, 4, 6, 8)):
        assert tap is seen[layer]
    assert [h.shape[1] for h in out.hidden] == [64, 256, 512, 512]
    assert out.logits.shape == (2,)  # one logit per image, not a patch map


@pytest.mark.parametrize("size, fc_inputs", [(256, 8 * 8 * 8), (64, 8 * 2 * 2), (32, 8)])
def test_d_fc_layer_is_sized_from_the_image(size, fc_inputs):
    assert Discriminator(size).fc.in_features == fc_inputs


def test_d_for_inpainting_sees_the_64x64_patch():
    config = make_config("inpaint", paper=True)  # the context encoder predicts the centre patch only
    assert build_discriminator(config).image_size == 64
    assert build_discriminator(make_config("inpaint")).image_size == 128  # unet-fill: the whole crop


def test_residual_generator_starts_as_the_identity_and_is_clamped():
    config = make_config("derain", image_size=32)
    T = build_generator(config).eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(T(x), x)
    assert build_generator(config.replace(residual=False)).eval()(x).abs().max() > 0


def test_weights_are_initialised_from_n_0_0_02():
    T = build_generator(make_config("labels2street"))
    weights = torch.cat([p.flatten() for n, p in T.named_parameters() if p.dim() == 4])
    assert weights.std().item() == pytest.approx(0.02, rel=0.05)
    assert abs(weights.mean().item()) < 1e-3


def test_paper_preset_uses_the_authors_settings():
    config = make_config("derain", paper=True)
    assert (config.residual, config.lambda_pix, config.ema) == (False, 0.0, 0.0)
    assert (config.image_size, config.load_size) == (256, 286)
    assert config.d_first_activation == "tanh" and config.init == "authors"
    D = build_discriminator(config)
    assert D.layers[0][0].weight.std().item() == pytest.approx(0.5, rel=0.1)
    assert isinstance(D.layers[0][1], torch.nn.Tanh)


def test_task_defaults_follow_the_design():
    derain = make_config("derain")
    assert (derain.generator, derain.residual, derain.lambda_pix) == ("dilated", True, 25.0)
    assert (derain.image_size, derain.d_width) == (96, 0.5)  # the shipped model's recipe
    assert derain.lambdas == (5.0, 1.5, 1.5, 1.0) and derain.margin == 3.0
    paper = make_config("derain", paper=True)  # the authors' generator, sizes and D
    assert (paper.generator, paper.image_size, paper.load_size, paper.d_width) == ("idcgan", 256, 286, 1.0)
    assert make_config("labels2street").direction == "BtoA"
    assert make_config("sketch2photo").generator == "unet"
    assert make_config("inpaint", generator="unet", image_size=64).in_channels == 4


@pytest.mark.parametrize("task, generator, size, message", [
    ("sketch2photo", "unet", 100, "multiples of 64"),
    ("inpaint", "context-encoder", 256, "exactly 128x128"),
])
def test_sizes_a_generator_cannot_take_give_a_clear_error(task, generator, size, message):
    with pytest.raises(PanError, match=message):
        make_config(task, generator=generator, image_size=size)


def test_residual_needs_a_same_size_generator():
    with pytest.raises(PanError, match="--residual"):
        build_generator(make_config("inpaint", residual=True))


def test_parameter_counts():
    assert count_parameters(IDCGAN()) == 263173  # ~1 MB of float32: small enough to ship
    assert count_parameters(Discriminator(256)) == 7047945


def test_dilated_generator_takes_any_size_and_starts_as_the_identity():
    config = make_config("derain", generator="dilated", image_size=32)
    T = build_generator(config).eval()
    x = torch.rand(1, 3, 37, 53) * 2 - 1
    assert torch.equal(T(x), x)  # global residual over a zeroed last layer
    assert count_parameters(T) == 335187  # 1.3 MB of float32


def _stroke_on_astronaut() -> tuple[torch.Tensor, torch.Tensor]:
    from pan_cli.datasets.holes import random_mask
    from pan_cli.datasets.photos import builtin_photo

    image = torch.nn.functional.interpolate(builtin_photo("astronaut")[None].float(), size=(256, 256),
                                            mode="bilinear", antialias=True) / 127.5 - 1
    mask = random_mask(256, 256, torch.Generator().manual_seed(3), coverage=(0.2, 0.2), kinds=("strokes",))
    return image, mask


def test_smooth_fill_keeps_known_pixels_and_fills_a_stroke_far_better_than_a_flat_colour():
    from pan_cli.models.fill_unet import smooth_fill

    image, mask = _stroke_on_astronaut()
    known = (~mask).float()[None, None]
    filled = smooth_fill(image, known)
    assert torch.allclose(filled[..., ~mask], image[..., ~mask], atol=1e-6)
    def psnr(fill: torch.Tensor) -> float:
        return 10 * torch.log10(4 / (fill - image)[..., mask].square().mean()).item()
    flat = image[..., ~mask].mean(-1)[..., None, None].expand_as(image)
    assert psnr(filled) > psnr(flat) + 3  # measured: 14.0 dB against 10.4 (biharmonic: 15.2)
    constant = torch.full((1, 3, 64, 64), 0.25)
    assert torch.allclose(smooth_fill(constant, (torch.rand(1, 1, 64, 64) < 0.3).float()), constant, atol=1e-6)


@pytest.mark.parametrize("generator", ["unet-fill", "unet-fill-wide"])
def test_unet_fill_starts_as_its_smooth_fill_and_passes_known_pixels_through(generator):
    from pan_cli.models.fill_unet import smooth_fill

    image, mask = _stroke_on_astronaut()
    T = build_generator(make_config("inpaint", generator=generator, image_size=128)).eval()
    x = torch.cat([torch.where(mask, 0.0, image), mask[None, None].float()], 1)
    out = T(x)
    assert torch.equal(out[..., ~mask], image[..., ~mask])
    assert torch.allclose(out, smooth_fill(image, (~mask).float()[None, None]).clamp(-1, 1), atol=1e-6)


def test_the_wide_fill_unet_is_the_same_network_at_the_full_unets_width():
    def weights(name: str) -> int:
        return count_parameters(build_generator(make_config("inpaint", generator=name)))

    assert weights("unet-fill") == 3_055_491
    assert weights("unet-fill-wide") == 12_211_971  # channels doubled: about four times the weights
    assert geometry("unet-fill-wide") == geometry("unet-fill")  # same depth: same multiple and reach


def test_unet_fill_is_refused_outside_inpainting():
    with pytest.raises(PanError, match="fills holes: use it with task inpaint"):
        make_config("derain", generator="unet-fill")
