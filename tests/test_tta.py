"""Multi-scale + flip test-time augmentation inside the streaming tile path."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window

from firemap.bands import model_sources, resolve_bands
from firemap.config import PredictConfig, parse_scales
from firemap.errors import ConfigError
from firemap.models import Bundle
from firemap.predict import forward_probs, iter_predictions, normalize_, scaled_size
from firemap.raster import open_scene, read_window
from tests.conftest import SmallConvNet, background, raw_config


def _old_forward_probs(model: torch.nn.Module, x: torch.Tensor, tta: str) -> torch.Tensor:
    """forward_probs as it was before multi-scale inference (the reference for bit-for-bit equality)."""
    views = {"none": [(0, False)], "flip": [(0, False), (0, True)],
             "d4": [(k, f) for f in (False, True) for k in range(4)]}[tta]
    total = torch.zeros(())
    for k, flip in views:
        v = torch.rot90(x, k, (2, 3)) if k else x
        v = torch.flip(v, (3,)) if flip else v
        p = torch.sigmoid(model(v).float())
        p = torch.flip(p, (3,)) if flip else p
        total = total + (torch.rot90(p, -k, (2, 3)) if k else p)
    return total / len(views)


@pytest.mark.parametrize("tta", ["none", "flip", "d4"])
def test_scale_one_is_bit_for_bit_todays_output(tta: str) -> None:
    net = SmallConvNet().eval()
    x = torch.randn(2, 6, 32, 32)
    with torch.no_grad():
        assert torch.equal(forward_probs(net, x, tta, scales=(1.0,), multiple=16), _old_forward_probs(net, x, tta))


def test_scales_resize_to_stride_multiples_and_change_the_result() -> None:
    assert [scaled_size(256, s, 16) for s in (0.5, 0.75, 1.25, 1.3)] == [128, 192, 320, 336]
    assert scaled_size(16, 0.25, 16) == 16
    seen: list[tuple[int, int]] = []
    net = SmallConvNet().eval()
    net.register_forward_hook(lambda m, inp, out: seen.append(tuple(inp[0].shape[-2:])))
    x = torch.randn(1, 6, 64, 64)
    with torch.no_grad():
        multi = forward_probs(net, x, "flip", scales=(0.75, 1.0, 1.25), multiple=16)
        plain = forward_probs(net, x, "flip")
    assert seen[-8:-2] == [(48, 48)] * 2 + [(64, 64)] * 2 + [(80, 80)] * 2
    assert multi.shape == plain.shape and not torch.allclose(multi, plain, atol=1e-3)


class PixelNet(torch.nn.Module):
    """A 1x1 convolution: scale-equivariant up to resampling, so multi-scale TTA has a whole-image answer."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = torch.nn.Conv2d(6, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * 20


@pytest.mark.parametrize("tta", ["flip", "d4"])
def test_multiscale_stitched_equals_whole_image(write_tif, tta: str) -> None:
    """Each tile resized, predicted, resized back and blended == the same TTA on the whole (padded) scene.

    Tile origins (multiples of 16 from -16) times 0.75 / 1.25 are whole pixels, so tile and scene resampling grids
    coincide, and the 8 px discarded at tile edges hide the tiles' own resampling borders.
    """
    data = background(96, 160, seed=3)
    data[:, 30:50, 40:90] += 0.2
    info = open_scene(write_tif(data))
    bundle = Bundle(raw_config(), PixelNet().eval(), {"name": "pixel"})
    scales = (0.75, 1.0, 1.25)
    cfg = PredictConfig(tile_size=64, overlap=32, tta=tta, tta_scales=scales)
    stitched = np.concatenate([b.probs for b in iter_predictions(info, bundle, cfg)], axis=1)
    sources, zero = model_sources(resolve_bands(info.descriptions, info.count), bundle.config.bands, (), "scene")
    with rasterio.open(info.path) as src:  # the scene with the tiles' reflect padding all round (16 px)
        padded, _ = read_window(src, Window(-16, -16, 160 + 32, 96 + 32), sources, zero)
    x = torch.from_numpy(normalize_(padded, bundle.config))[None]
    with torch.no_grad():
        whole = forward_probs(bundle.model, x, tta, scales=scales, multiple=16)[0, :, 16:-16, 16:-16].numpy()
    np.testing.assert_allclose(stitched, whole, atol=2e-5)
    single = np.concatenate([b.probs for b in iter_predictions(info, bundle, cfg.model_copy(
        update={"tta_scales": (1.0,)}))], axis=1)
    assert np.abs(single - stitched).max() > 1e-3  # the scales did something


def test_tta_scales_options_are_checked() -> None:
    assert parse_scales("0.75,1,1.25") == (0.75, 1.0, 1.25) and parse_scales(None) is None
    with pytest.raises(ConfigError, match="--tta-scales"):
        parse_scales("0.75,big")
    with pytest.raises(ValueError, match="distinct factors in"):
        PredictConfig(tta_scales=(1.0, 8.0))
    with pytest.raises(ValueError, match="distinct factors in"):
        PredictConfig(tta_scales=())
