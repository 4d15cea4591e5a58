"""The PAN objective against hand-computed values, and where its gradients go."""

from __future__ import annotations

import math

import pytest
import torch

from pan_cli.errors import PanError
from pan_cli.losses import (
    d_gan_loss,
    discriminator_loss,
    margin_hinge,
    perceptual_distances,
    t_gan_loss,
    transformer_loss,
    weighted_sum,
)
from pan_cli.models.discriminator import Discriminator
from pan_cli.tasks import make_config
from tests.conftest import crop


def sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def test_each_perceptual_distance_is_the_mean_absolute_difference_of_its_layer():
    real = [torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.zeros(2, 3, 4, 4), torch.ones(1, 8)]
    fake = [torch.tensor([[0.0, 2.0], [5.0, 1.0]]), torch.full((2, 3, 4, 4), -0.5), torch.ones(1, 8)]
    # layer 1: |1-0| + 0 + |3-5| + |4-1| = 6 over 4 elements; layer 2: 0.5 everywhere; layer 3: 0
    assert perceptual_distances(real, fake).tolist() == pytest.approx([1.5, 0.5, 0.0])


def test_weighted_sum_uses_the_paper_lambdas():
    distances = torch.tensor([0.1, 0.2, 0.3, 0.4])
    expected = 5 * 0.1 + 1.5 * 0.2 + 1.5 * 0.3 + 1 * 0.4  # = 1.65
    assert weighted_sum(distances, (5, 1.5, 1.5, 1)).item() == pytest.approx(expected)


def test_hinge_is_margin_minus_discrepancy_below_margin():
    assert margin_hinge(torch.tensor(1.25), 3.0).item() == pytest.approx(1.75)


def test_hinge_is_zero_with_zero_gradient_at_or_above_margin():
    for value in (3.0, 7.5):
        weighted = torch.tensor(value, requires_grad=True)
        loss = margin_hinge(weighted, 3.0)
        loss.backward()
        assert loss.item() == 0.0
        assert weighted.grad.item() == 0.0


def test_d_gan_loss_uses_a_one_sided_0_9_real_target():
    real, fake = 2.0, -1.0
    expected_real = -(0.9 * math.log(sigmoid(real)) + 0.1 * math.log(1 - sigmoid(real)))
    expected_fake = -math.log(1 - sigmoid(fake))
    value = d_gan_loss(torch.tensor([real]), torch.tensor([fake]), 0.9).item()
    assert value == pytest.approx(expected_real + expected_fake, rel=1e-6)
    # with target 1.0 the real term would be -log(sigmoid(2)) instead: the 0.9 matters
    assert value != pytest.approx(-math.log(sigmoid(real)) + expected_fake, rel=1e-3)


def test_saturating_and_non_saturating_t_gan_terms():
    logits = torch.tensor([1.0, -2.0])
    saturating = sum(math.log(1 - sigmoid(v)) for v in (1.0, -2.0)) / 2
    non_saturating = sum(-math.log(sigmoid(v)) for v in (1.0, -2.0)) / 2
    assert t_gan_loss(logits, "saturating").item() == pytest.approx(saturating, rel=1e-6)
    assert t_gan_loss(logits, "non-saturating").item() == pytest.approx(non_saturating, rel=1e-6)


def test_gan_terms_stay_finite_for_extreme_logits():
    logits = torch.tensor([80.0, -80.0])
    assert torch.isfinite(d_gan_loss(logits, logits, 0.9))
    assert torch.isfinite(t_gan_loss(logits, "saturating"))
    assert torch.isfinite(t_gan_loss(logits, "non-saturating"))


def _setup(margin: float = 3.0):
    torch.manual_seed(0)
    config = make_config("derain", image_size=16, margin=margin, lambda_pix=0.0)
    D = Discriminator(16)
    y = torch.rand(2, 3, 16, 16, requires_grad=True)
    fake = torch.rand(2, 3, 16, 16, requires_grad=True)
    return config, D, y, fake


def test_t_step_gets_no_gradient_through_the_targets_features():
    config, D, y, output = _setup()
    real_hidden = D(y).hidden  # built with a graph on purpose: the loss must cut it
    terms = transformer_loss(config, output, y.detach(), D(output), real_hidden)
    terms["total"].backward()
    assert y.grad is None
    assert output.grad is not None and output.grad.abs().sum() > 0


def test_d_hinge_gradient_flows_through_both_branches_below_margin():
    config, D, y, fake = _setup(margin=1e6)
    terms = discriminator_loss(config, D(y), D(fake))
    assert terms["hinge"].item() > 0
    terms["hinge"].backward()
    assert y.grad.abs().sum() > 0 and fake.grad.abs().sum() > 0
    assert all(p.grad is not None for p in D.layers[0].parameters())


def test_d_hinge_gradient_is_zero_once_the_discrepancy_reaches_the_margin():
    config, D, y, fake = _setup(margin=0.0)
    terms = discriminator_loss(config, D(y), D(fake))
    assert terms["hinge"].item() == 0.0
    terms["hinge"].backward()
    assert y.grad.abs().sum() == 0 and fake.grad.abs().sum() == 0


def test_d_total_is_gan_plus_hinge_and_t_total_adds_its_terms():
    config, D, y, fake = _setup()
    config = config.replace(lambda_pix=25.0)
    d = discriminator_loss(config, D(y), D(fake.detach()))
    assert d["total"].item() == pytest.approx((d["gan"] + d["hinge"]).item())
    t = transformer_loss(config, fake, y.detach(), D(fake), D(y).hidden)
    expected = t["gan"] + t["perceptual"] + 25.0 * t["pixel"]
    assert t["total"].item() == pytest.approx(expected.item())


def test_comparison_objectives_have_their_own_terms():
    config, D, y, fake = _setup()
    pix2pix = make_config("derain", image_size=16, objective="pix2pix")
    assert pix2pix.lambda_pix == 100.0 and pix2pix.gan_form == "non-saturating"
    d = discriminator_loss(pix2pix, D(y), D(fake.detach()))
    assert "hinge" not in d and d["total"].item() == pytest.approx(d["gan"].item())
    t = transformer_loss(pix2pix, fake, y.detach(), D(fake))
    assert "perceptual" not in t
    assert t["total"].item() == pytest.approx((t["gan"] + 100 * t["pixel"]).item())
    l1 = transformer_loss(make_config("derain", image_size=16, objective="l1"), fake, y.detach())
    assert l1["total"].item() == pytest.approx((fake - y).abs().mean().item())


def test_the_pixel_term_is_the_mean_absolute_or_the_mean_squared_error():
    output = torch.tensor([[[[0.5, -0.5], [0.0, 1.0]]]])
    target = torch.tensor([[[[0.0, 0.5], [0.0, -1.0]]]])  # errors 0.5, 1, 0, 2
    l1 = transformer_loss(make_config("derain", image_size=16, objective="l1"), output, target)
    l2 = transformer_loss(make_config("derain", image_size=16, objective="l1", pixel_loss="l2"), output, target)
    assert l1["pixel"].item() == pytest.approx((0.5 + 1 + 0 + 2) / 4)
    assert l2["pixel"].item() == pytest.approx((0.25 + 1 + 0 + 4) / 4) == l2["total"].item()


def test_the_low_pass_pixel_term_compares_4x4_block_means_and_ignores_texture_within_them():
    config = make_config("derain", image_size=16, objective="l1", pixel_loss="l1-low")
    texture = torch.tensor([[0.5, -0.5], [-0.5, 0.5]]).repeat(3, 3)[None, None]  # 6x6, mean 0 in every 2x2
    flat = torch.zeros(1, 1, 6, 6)
    assert transformer_loss(config, flat, texture)["pixel"].item() == 0.0  # blocks 4x4, 4x2, 2x4, 2x2: all mean 0
    assert transformer_loss(make_config("derain", image_size=16, objective="l1"), flat, texture)["pixel"] == 0.5
    ramp = torch.arange(36.0).reshape(1, 1, 6, 6) / 36  # block means (hand): 10.5, 13.5, 28.5, 31.5 over 36
    expected = (abs(10.5 / 36 - 0.2) + abs(13.5 / 36 - 0.2) + abs(28.5 / 36 - 0.2) + abs(31.5 / 36 - 0.2)) / 4
    assert transformer_loss(config, ramp, torch.full((1, 1, 6, 6), 0.2))["pixel"].item() == pytest.approx(expected)


def test_the_ssim_pixel_term_is_one_minus_ssim_as_skimage_computes_it():
    from skimage.metrics import structural_similarity

    config = make_config("derain", image_size=16, objective="l1", pixel_loss="ssim")
    grey, dark = torch.full((1, 3, 12, 12), 0.5), torch.full((1, 3, 12, 12), -0.5)
    c1 = (0.01 * 2) ** 2  # flat images: SSIM = (2 a b + C1) / (a^2 + b^2 + C1), by hand
    assert transformer_loss(config, grey, dark)["pixel"].item() == pytest.approx(
        1 - (2 * 0.5 * -0.5 + c1) / (0.25 + 0.25 + c1), rel=1e-5)
    photo = crop("coffee", 32, 40).float() / 127.5 - 1
    noisy = (photo + 0.2 * torch.randn(photo.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    assert transformer_loss(config, photo[None], photo[None])["pixel"].item() == pytest.approx(0, abs=1e-6)
    expected = structural_similarity(noisy.permute(1, 2, 0).numpy(), photo.permute(1, 2, 0).numpy(), channel_axis=2,
                                     data_range=2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert transformer_loss(config, noisy[None], photo[None])["pixel"].item() == pytest.approx(1 - expected, abs=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # in fp32 under autocast: bf16 variances are noise
        under_autocast = transformer_loss(config, noisy[None], photo[None])["pixel"].item()
    assert under_autocast == pytest.approx(1 - expected, abs=1e-5)


def test_an_unknown_pixel_loss_is_refused_in_one_line(run_pan, tmp_path):
    with pytest.raises(PanError, match="unknown pixel loss 'l3'; choose one of l1, l2, l1-low"):
        make_config("derain", pixel_loss="l3")
    result = run_pan("train", "derain", "--data", tmp_path, "--pixel-loss", "l3")
    assert result.exit_code == 2 and "'l3' is not one of 'l1', 'l2', 'l1-low'" in result.stderr
