"""Tiny labelled datasets for the training, transfer and evaluation tests (written to tmp folders)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

from tests.conftest import BANDS, UTM, UTM_TRANSFORM, background


def write(
    path: Path, data: np.ndarray, descriptions: tuple[str, ...] | None = None, nodata: float | None = None
) -> Path:
    """Write ``(bands, rows, cols)`` as a GeoTIFF on the conftest UTM grid."""
    profile = {"driver": "GTiff", "count": data.shape[0], "height": data.shape[1], "width": data.shape[2],
               "dtype": str(data.dtype), "crs": UTM, "transform": UTM_TRANSFORM, "nodata": nodata}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i, d in enumerate(descriptions or (), start=1):
            dst.set_band_description(i, d)
    return path


def burn_scene(size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Vegetation with a square burn scar (dark nir, bright swir2) and two 2x2 fire spots (hot swir).

    Returns:
        ``(image (6, size, size) float32 reflectance in BANDS order, scar (size, size) bool)``.
    """
    img = background(size, size, seed)
    scar = np.zeros((size, size), bool)
    q = size // 4
    scar[q : 3 * q, q : 3 * q] = True
    img[3][scar] = 0.06  # nir
    img[5][scar] = 0.20  # swir2
    for r, c in ((5, 5), (size - 8, size - 8)):
        img[4, r : r + 2, c : c + 2] = 0.9
        img[5, r : r + 2, c : c + 2] = 1.5
    return img, scar


def write_pairs(root: Path, n: int = 2, size: int = 64) -> tuple[Path, Path]:
    """Write ``n`` burn scenes to ``root/images`` and single-band 0/1 burn masks to ``root/masks``."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img, scar = burn_scene(size, seed=i)
        write(root / "images" / f"s{i}.tif", img, BANDS)
        write(root / "masks" / f"s{i}.tif", scar.astype(np.uint8)[None])
    return root / "images", root / "masks"


def tiny_train_config(root: Path, out: Path, **over: object) -> dict:
    """A training config dict over :func:`write_pairs` data: DeepLabV3+/mobilenet_v2, 32 px tiles."""
    images, masks = write_pairs(root)
    cfg: dict = {
        "name": "tiny",
        "model": {"arch": "deeplabv3plus", "encoder": "mobilenet_v2", "bands": list(BANDS),
                  "optional_bands": ["swir1"], "band_presence": True, "tile_size": 32, "overlap": 8,
                  "decoder_channels": 32},
        "data": {"train": [{"kind": "scenes", "images": str(images), "masks": str(masks),
                            "labelled": ["burn_scar"]}],
                 "val": [{"kind": "scenes", "name": "val", "images": str(images), "masks": str(masks)}],
                 "tile_size": 32, "batch_size": 2, "stats_tiles": 4, "oversample": {"burn_scar": 0.5}},
        "optim": {"lr": 1e-3, "warmup_steps": 1},
        "epochs": 1, "steps_per_epoch": 2, "seed": 0, "device": "cpu", "out": str(out), "threads": 2,
    }
    cfg.update(over)
    return cfg
