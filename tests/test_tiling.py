"""Tiled inference equals whole-image inference, for every generator that tiles; streamed
inference (pan_cli.models.streaming) too, for the generators that stream."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pan_cli.config import RunConfig
from pan_cli.datasets.images import read_image, write_image
from pan_cli.datasets.photos import builtin_photo
from pan_cli.infer.predictor import Predictor
from pan_cli.infer.tiling import TilePlan, run_tiled, starts
from pan_cli.models.networks import build_generator, fold_batchnorm, geometry
from pan_cli.models.streaming import Conv, layers, run_streamed

CPU = torch.device("cpu")
# (generator, input channels, image size, tile side): images that fit whole and need several tiles
# (the least tile is twice the overlap: tiling.smallest_tile)
CASES = [("idcgan", 3, (150, 133), 80), ("prenet", 3, (250, 231), 208), ("dilated", 3, (330, 301), 280),
         ("unet-slim", 3, (1000, 920), 896), ("unet-slim", 4, (1000, 920), 896), ("unet", 3, (920, 1000), 896),
         ("unet-fill", 4, (1500, 1450), 1408)]
STARTS_AT_ZERO = ("prenet", "unet-fill")  # their last layer starts at zero: give them something to compute


def _net(generator: str, in_channels: int) -> tuple[RunConfig, torch.nn.Module]:
    config = RunConfig(task="derain", generator=generator, image_size=64, in_channels=in_channels,
                       residual=generator == "prenet")
    torch.manual_seed(0)
    net = build_generator(config)
    if generator in STARTS_AT_ZERO:
        torch.nn.init.normal_(net.net.last.weight, 0, 0.05)
    return config, net


def _photo(size: tuple[int, int], in_channels: int) -> torch.Tensor:
    x = F.interpolate(builtin_photo("astronaut")[None].float(), size=size, mode="bilinear") / 127.5 - 1
    if in_channels == 4:  # a mask channel: a blob of hole
        mask = torch.zeros(1, 1, *size)
        mask[..., size[0] // 3: size[0] // 2, size[1] // 4: size[1] // 2] = 1
        x = torch.cat([x, mask], 1)
    return x


@pytest.mark.parametrize("generator, in_channels, size, tile", CASES)
def test_tiled_output_equals_whole_image_output(generator, in_channels, size, tile):
    config, net = _net(generator, in_channels)
    x = _photo(size, in_channels)
    whole = Predictor(config, net, CPU, tile=0)(x)
    tiled_predictor = Predictor(config, net, CPU, tile=tile)
    tiled = tiled_predictor(x)
    plan, multiple = tiled_predictor.plan, geometry(generator).multiple
    assert len(starts(size[0] + (-size[0]) % multiple, plan.size, plan.overlap)) >= 2  # it really was tiled
    levels = (whole - tiled).abs() * 127.5  # in 8-bit levels
    assert (levels <= 1).float().mean() >= 0.999
    assert levels.max() < 0.01  # in fact equal up to float rounding


@pytest.mark.parametrize("generator, in_channels", [("idcgan", 3), ("prenet", 3), ("dilated", 3), ("unet-slim", 3),
                                                     ("unet-fill", 4)])
def test_declared_reach_covers_what_the_gradient_reaches(generator, in_channels):
    """An output pixel's gradient is zero beyond Geometry.reach, at every phase of the stride grid
    (with a mask channel: holes over most of the image, so the fill reaches as far as it can)."""
    config, net = _net(generator, in_channels)
    net = fold_batchnorm(net)
    shape = geometry(generator)
    side = 2 * shape.reach + (64 if shape.multiple > 1 else 32)
    side += (-side) % shape.multiple
    x = torch.randn(1, in_channels, side, side)
    if in_channels == 4:
        x[:, 3] = (torch.rand(side, side, generator=torch.Generator().manual_seed(0)) < 0.9).float()
    x.requires_grad_(True)
    out = net(x)
    for row in range(side // 2, side // 2 + shape.multiple, max(1, shape.multiple // 8)):
        x.grad = None
        out[0, :, row, side // 2].sum().backward(retain_graph=True)
        touched = x.grad[0].abs().sum(dim=(0, 2)).nonzero()[:, 0]
        assert touched.min() >= row - shape.reach and touched.max() <= row + shape.reach


def test_blend_weights_sum_to_one_so_an_identity_comes_back_exactly():
    x = torch.rand(2, 3, 301, 257)
    plan = TilePlan(size=96, overlap=40, margin=12, batch=3)
    def source(top, bottom, left, right):
        return x[..., top:bottom, left:right]

    out = run_tiled(lambda t: t, source, (2, 301, 257), 3, plan)
    assert torch.allclose(out, x, atol=1e-6)
    assert starts(301, 96, 40) == [0, 56, 112, 168, 205] and starts(50, 96, 40) == [0]


def test_predict_reads_a_large_uint8_image_tile_by_tile_and_matches_whole(monkeypatch):
    config, net = _net("idcgan", 3)
    image = builtin_photo("coffee")[:, :200, :260]
    reads = []
    import pan_cli.infer.predictor as predictor_module

    region = predictor_module._region
    monkeypatch.setattr(predictor_module, "_region", lambda img, *box: reads.append(box) or region(img, *box))
    tiled = Predictor(config, net, CPU, tile=96).predict(image)
    assert len(reads) > 4 and all(bottom - top <= 96 and right - left <= 96 for top, bottom, left, right in reads)
    whole = Predictor(config, net, CPU, tile=0).predict(image)
    assert tiled.dtype == torch.uint8 and ((tiled.int() - whole.int()).abs() <= 1).float().mean() >= 0.999


def test_inpainting_tiles_too_and_keeps_every_known_pixel(trained_inpaint_unet):
    state_predictor = Predictor.from_checkpoint(trained_inpaint_unet, "inpaint", CPU, tile=0)
    image = ((_photo((1000, 1100), 3)[0] + 1) * 127.5).round().to(torch.uint8)
    mask = torch.zeros(1000, 1100, dtype=torch.bool)
    mask[100:130, 50:1050] = True  # a thin stroke: filled at full resolution, so in tiles
    whole = state_predictor.predict(image, mask)
    tiled = Predictor(state_predictor.config, state_predictor.net, CPU, tile=896).predict(image, mask)
    assert torch.equal(tiled[:, ~mask], image[:, ~mask])
    assert ((tiled.int() - whole.int()).abs() <= 1).float().mean() >= 0.999


def _infer_whole_and(tile, tmp_path, run_pan, checkpoint, photo):
    """`pan infer` of one photo with --tile 0 and with `tile`: both outputs (uint8)."""
    write_image(tmp_path / "in" / "a.png", photo)
    for option in ("0", tile):
        result = run_pan("infer", tmp_path / "in", "--task", "derain", "--checkpoint", checkpoint,
                         "--tile", option, "-o", tmp_path / f"out{option}", "-q")
        assert result.exit_code == 0, result.stderr
    return read_image(tmp_path / "out0" / "a.png"), read_image(tmp_path / f"out{tile}" / "a.png")


def test_infer_tile_option_gives_the_whole_image_result(tmp_path, run_pan, trained_checkpoint):
    photo = builtin_photo("chelsea")[:, :150, :170]
    whole, tiled = _infer_whole_and("80", tmp_path, run_pan, trained_checkpoint, photo)
    assert ((whole.int() - tiled.int()).abs() <= 1).float().mean() >= 0.999


def test_a_bad_tile_size_is_one_line(tmp_path, run_pan, trained_checkpoint):
    result = run_pan("infer", tmp_path, "--task", "derain", "--checkpoint", trained_checkpoint,
                     "--tile", "big", "-o", tmp_path / "out")
    assert result.exit_code == 2 and "'big' is not auto or a whole number of pixels" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_tile_smaller_than_the_overlap_is_one_line(tmp_path, run_pan, trained_checkpoint):
    write_image(tmp_path / "in" / "a.png", builtin_photo("chelsea")[:, :50, :60])
    result = run_pan("infer", tmp_path / "in", "--task", "derain", "--checkpoint", trained_checkpoint,
                     "--tile", "30", "-o", tmp_path / "out")
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == ("pan: error: --tile 30 is too small: tiles overlap by 40 px here, so a tile under "
                                     "80 px would compute each pixel more than 4 times (give at least that, --tile 0 "
                                     "for whole images, or a smaller --tile-overlap)")
    assert not (tmp_path / "out").exists()


def _random_net(generator: str, residual: bool) -> tuple[RunConfig, nn.Module]:
    """A generator whose every layer does something (fresh ones start near silent or at zero)."""
    config = RunConfig(task="derain", generator=generator, image_size=64, residual=residual)
    torch.manual_seed(0)
    net = build_generator(config)
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, 0, 1.5 / module.weight[0].numel() ** 0.5)
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 2)
    return config, net.eval()


@pytest.mark.parametrize("generator, residual", [("idcgan", False), ("idcgan", True), ("dilated", True),
                                                 ("dilated", False)])
@pytest.mark.parametrize("rows_per_band", [1, 3, 16, 200])  # 1 and 3: fewer than a dilated layer's padding
def test_streamed_output_equals_whole_image_output(monkeypatch, generator, residual, rows_per_band):
    config, net = _random_net(generator, residual)
    net = fold_batchnorm(net)
    x = torch.rand(2, 3, 97, 61) * 2 - 1
    monkeypatch.setattr("pan_cli.models.streaming.BAND_PIXELS", 61 * rows_per_band)
    reads = []

    def source(top, bottom, left, right):
        reads.append((top, bottom, left, right))
        return x[:, :, top:bottom, left:right].clone()

    with torch.inference_mode():
        whole = net(x)
        streamed = run_streamed(net.stream(), source, (2, 97, 61), 3)
    assert whole.std() > 0.3 and (whole - x).abs().mean() > 0.3  # the network does change the image
    assert (streamed - whole).abs().max() < 1e-5
    assert reads[0] == (0, min(rows_per_band, 97), 0, 61) and len(reads) == -(-97 // rows_per_band)


def test_only_stride_1_same_convolutions_and_pointwise_layers_stream():
    for conv in (nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.Conv2d(3, 8, 3, padding=0),
                 nn.Conv2d(3, 8, 3, padding=1, padding_mode="reflect")):
        with pytest.raises(ValueError, match="only stride-1, zero-padded 'same' convolutions stream"):
            Conv(conv)
    assert Conv(nn.Conv2d(3, 8, 3, padding=4, dilation=4)).pad == 4
    for module in (nn.MaxPool2d(3, 1, 1), nn.BatchNorm2d(8).train()):
        with pytest.raises(ValueError, match="not a convolution or a pointwise layer in eval mode"):
            layers(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), module))
    assert len(layers(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8).eval(), nn.ReLU())).parts) == 3
    unet = RunConfig(task="derain", generator="unet-slim", image_size=64, residual=True)
    assert build_generator(unet).stream() is None


def test_auto_streams_a_large_image_band_by_band_and_falls_back_to_tiles_when_a_band_is_too_wide(monkeypatch):
    """--tile auto on an image larger than a tile: a generator that streams reads full-width
    bands and never tiles; when a band and its held rows would not fit the budget, it tiles."""
    import pan_cli.infer.predictor as predictor_module

    config, net = _random_net("dilated", True)
    image = ((_photo((330, 301), 3)[0] + 1) * 127.5).round().to(torch.uint8)
    whole = Predictor(config, net, CPU, tile=0).predict(image)
    monkeypatch.setattr("pan_cli.models.streaming.BAND_PIXELS", 301 * 8)
    region, tiled = predictor_module._region, predictor_module.run_tiled
    reads, tilings = [], []
    monkeypatch.setattr(predictor_module, "_region", lambda img, *box: reads.append(box) or region(img, *box))
    monkeypatch.setattr(predictor_module, "run_tiled", lambda *args: tilings.append(1) or tiled(*args))
    # 576 bytes per pixel: a 228 px tile, raised to the least (280: twice the overlap), and
    # 301 x (8 + 124) x 576 = 22.9 MB for a band and its held rows
    monkeypatch.setattr("pan_cli.infer.tiling.TILE_BUDGET", 30e6)
    streamed = Predictor(config, net, CPU).predict(image)
    assert not tilings and len(reads) == -(-330 // 8) and all(box[2:] == (0, 301) for box in reads)
    assert ((streamed.int() - whole.int()).abs() <= 1).float().mean() >= 0.999
    monkeypatch.setattr("pan_cli.models.streaming.BAND_PIXELS", 301 * 200)  # 301 x (200 + 124) x 576 = 56 MB
    reads.clear()
    tiled_out = Predictor(config, net, CPU).predict(image)
    assert tilings and all(right - left <= 280 for _, _, left, right in reads)
    assert ((tiled_out.int() - whole.int()).abs() <= 1).float().mean() >= 0.999


def test_infer_tile_auto_streams_to_the_whole_image_result(tmp_path, monkeypatch, run_pan, trained_checkpoint):
    import pan_cli.infer.predictor as predictor_module

    streamed_runs = []
    run_streamed_ = predictor_module.run_streamed
    monkeypatch.setattr("pan_cli.infer.tiling.TILE_BUDGET", 30e6)  # idcgan: 125 px tiles, so the photo must be cut
    monkeypatch.setattr("pan_cli.models.streaming.BAND_PIXELS", 170 * 8)
    monkeypatch.setattr(predictor_module, "run_tiled", lambda *args: pytest.fail("tiled, not streamed"))
    monkeypatch.setattr(predictor_module, "run_streamed", lambda *args: streamed_runs.append(1) or run_streamed_(*args))
    whole, streamed = _infer_whole_and("auto", tmp_path, run_pan, trained_checkpoint,
                                       builtin_photo("chelsea")[:, :300, :170])
    assert streamed_runs == [1]
    assert ((whole.int() - streamed.int()).abs() <= 1).float().mean() >= 0.999
