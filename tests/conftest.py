"""Shared fixtures: tiny GeoTIFFs with known answers and fake models with known behaviour."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from rasterio.crs import CRS
from torch import nn

from firemap.config import ModelConfig
from firemap.models import Bundle

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
"""Real rasters shared between projects (absent in some checkouts: tests using it skip)."""

BANDS = ("blue", "green", "red", "nir", "swir1", "swir2")
UTM = CRS.from_epsg(32610)
UTM_TRANSFORM = Affine(30.0, 0.0, 500000.0, 0.0, -30.0, 4200000.0)
GEO_TRANSFORM = Affine(0.0003, 0.0, -120.0, 0.0, -0.0003, 38.0)


def requires_shared(*parts: str) -> Path:
    """Path under ../shared/data, skipping the test when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path


def background(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Vegetation-like reflectance ``(6, height, width)`` float32 in BANDS order, with mild noise."""
    rng = np.random.default_rng(seed)
    base = np.array([0.04, 0.07, 0.05, 0.30, 0.20, 0.10], np.float32)[:, None, None]
    return (base + rng.normal(0, 0.01, (6, height, width))).astype(np.float32)


@pytest.fixture
def write_tif(tmp_path: Path) -> Callable[..., Path]:
    """Factory: write ``(bands, rows, cols)`` to a GeoTIFF in tmp_path and return its path."""

    def write(
        data: np.ndarray,
        name: str = "scene.tif",
        crs: CRS | None = UTM,
        transform: Affine = UTM_TRANSFORM,
        nodata: float | None = None,
        descriptions: Sequence[str] | None = BANDS,
    ) -> Path:
        path = tmp_path / name
        profile = {"driver": "GTiff", "count": data.shape[0], "height": data.shape[1], "width": data.shape[2],
                   "dtype": str(data.dtype), "transform": transform, "nodata": nodata}
        if crs is not None:
            profile["crs"] = crs
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)
            for i, d in enumerate(descriptions or (), start=1):
                dst.set_band_description(i, d)
        return path

    return write


class ThresholdNet(nn.Module):
    """A 1x1 conv with known answers on raw reflectance (config mean 0, std 1).

    fire if swir2 > 0.5; smoke if blue > 0.3; burn_scar if nir < 0.1 (logit = 40 * margin).
    Counts the tiles it sees in ``self.tiles``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(6, 3, 1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 5] = 40.0
            self.conv.weight[1, 0] = 40.0
            self.conv.weight[2, 3] = -40.0
            self.conv.bias.copy_(torch.tensor([-40 * 0.5, -40 * 0.3, 40 * 0.1]))
        self.tiles = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.tiles += x.shape[0]
        return self.conv(x)


class SmallConvNet(nn.Module):
    """Random convs with receptive-field radius 3 (3x3 then 5x5, zero padding): for exact-stitching tests."""

    def __init__(self, in_channels: int = 6, classes: int = 3, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(8, classes, 5, padding=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def raw_config(**kw: object) -> ModelConfig:
    """A ModelConfig over BANDS with identity normalization (mean 0, std 1)."""
    args: dict[str, object] = {"bands": BANDS, "mean": (0.0,) * 6, "std": (1.0,) * 6, "tile_size": 64, "overlap": 16}
    args.update(kw)
    return ModelConfig(**args)  # type: ignore[arg-type]


@pytest.fixture
def threshold_bundle() -> Bundle:
    """A bundle around :class:`ThresholdNet` (not saved: for library-level pipeline tests)."""
    return Bundle(raw_config(), ThresholdNet().eval(), {"name": "threshold"})


@pytest.fixture
def conv_bundle() -> Bundle:
    """A bundle around :class:`SmallConvNet` with non-trivial normalization."""
    cfg = raw_config(mean=(0.05, 0.07, 0.06, 0.3, 0.2, 0.1), std=(0.02, 0.03, 0.03, 0.1, 0.08, 0.06))
    return Bundle(cfg, SmallConvNet().eval(), {"name": "conv"})


@pytest.fixture(scope="session")
def smp_bundle_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real, randomly initialised DeepLabV3+/mobilenet_v2 bundle file (no download)."""
    from firemap.models import build_model, save_bundle

    cfg = ModelConfig(arch="deeplabv3plus", encoder="mobilenet_v2", tile_size=64, overlap=16)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("bundle") / "random.firemap.pt"
    return save_bundle(path, build_model(cfg).eval(), cfg, {"name": "random"})
