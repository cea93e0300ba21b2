"""``firemap demo``: simulate a fire scene, map it with the shipped default model, and draw a quicklook.

The quicklook is a PNG with two panels of the same false-colour composite (swir2, nir, red as R, G, B, each
stretched between its 2nd and 98th percentile: vegetation green, burn scars red-brown, active fire bright
orange-yellow, smoke bluish), the simulator's exact labels outlined on the left and the model's classes outlined on
the right. Outlines are 2 px wide in colours that stand out on that composite: fire yellow, smoke cyan, burn scar
magenta (:data:`QUICKLOOK_COLORS`; the class rasters and QGIS styles keep the class colours).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from scipy import ndimage

from firemap.bands import resolve_bands
from firemap.config import DEFAULT_CLASSES, ClassInfo, PredictConfig
from firemap.raster import CLASS_NODATA, atomic_output, check_writable

log = logging.getLogger(__name__)

DEMO_STEM = "demo_scene"
QUICKLOOK_COLORS: dict[str, tuple[int, int, int]] = {"fire": (255, 255, 0), "smoke": (0, 255, 255),
                                                     "burn_scar": (255, 0, 255)}
"""Outline colour per class in the quicklook (high contrast on the swir2/nir/red composite)."""
FALSE_COLOUR = ("swir2", "nir", "red")


@dataclass
class DemoResult:
    """What the demo wrote.

    Attributes:
        scene: the simulated scene GeoTIFF.
        labels: its exact labels GeoTIFF.
        quicklook: the PNG.
        outputs: the predict outputs (kind -> path).
        area_ha: predicted area per class, hectares.
        polygons: predicted polygons per class.
    """

    scene: Path
    labels: Path
    quicklook: Path
    outputs: dict[str, Path] = field(default_factory=dict)
    area_ha: dict[str, float] = field(default_factory=dict)
    polygons: dict[str, int] = field(default_factory=dict)


def false_colour(path: Path, bands: Sequence[str] = FALSE_COLOUR) -> np.ndarray:
    """``(3, rows, cols)`` uint8 false-colour composite of a scene (whole file read: for small scenes).

    Raises:
        MissingBandsError: the scene lacks one of ``bands``.
    """
    with rasterio.open(path) as src:
        bandmap = resolve_bands(src.descriptions, src.count, None, None, src.tags())
        sources = [s for s in bandmap.select(list(bands)) if s is not None]  # required: never None
        data = np.stack([s.encoding.to_physical(src.read(s.index)) for s in sources])
        valid = src.dataset_mask() > 0
    out = np.zeros(data.shape, np.uint8)
    for k, band in enumerate(data):
        lo, hi = np.percentile(band[valid], [2, 98]) if valid.any() else (0.0, 1.0)
        out[k] = np.clip((band - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    out[:, ~valid] = 0
    return out


def outline(image: np.ndarray, masks: np.ndarray, classes: Sequence[ClassInfo]) -> np.ndarray:
    """Draw the 2-pixel outline of each class mask (whole mask when thinner) on a copy of ``image``.

    Args:
        image: ``(3, rows, cols)`` uint8.
        masks: ``(classes, rows, cols)`` bool, in ``classes`` order.
        classes: class definitions (the highest priority is drawn last, on top); colours from
            :data:`QUICKLOOK_COLORS`, else the class colour.

    Returns:
        ``(3, rows, cols)`` uint8.
    """
    out = image.copy()
    for k in sorted(range(len(classes)), key=lambda k: classes[k].priority, reverse=True):
        inner = ndimage.binary_erosion(masks[k], structure=np.ones((3, 3), bool), iterations=2)
        color = QUICKLOOK_COLORS.get(classes[k].name, classes[k].color)
        out[:, masks[k] & ~inner] = np.asarray(color, np.uint8)[:, None]
    return out


def class_masks(class_raster: np.ndarray, classes: Sequence[ClassInfo]) -> np.ndarray:
    """``(classes, rows, cols)`` bool masks from a one-class-per-pixel raster (255 = nodata)."""
    return np.stack([(class_raster == c.id) & (class_raster != CLASS_NODATA) for c in classes])


def write_png(path: Path, image: np.ndarray, overwrite: bool = False) -> Path:
    """Write ``(3, rows, cols)`` uint8 as a PNG, atomically."""
    with atomic_output(path, overwrite) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        profile = {"driver": "PNG", "width": image.shape[2], "height": image.shape[1], "count": 3, "dtype": "uint8"}
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(image)
    return path


def quicklook(scene: Path, labels: Path | None, classes_tif: Path, png: Path, overwrite: bool = False) -> Path:
    """Two-panel PNG: false colour with the true labels (left, if given) and the predicted classes (right)."""
    base = false_colour(scene)
    with rasterio.open(classes_tif) as src:
        predicted = outline(base, class_masks(src.read(1), DEFAULT_CLASSES), DEFAULT_CLASSES)
    panels = [predicted]
    if labels is not None:
        with rasterio.open(labels) as src:
            truth = src.read() == 1
        panels.insert(0, outline(base, truth, DEFAULT_CLASSES))
    gap = np.full((3, base.shape[1], 8), 255, np.uint8)
    image = np.concatenate([p for panel in panels for p in (panel, gap)][:-1], axis=2)
    return write_png(png, image, overwrite)


def run_demo(
    out_dir: str | Path,
    overwrite: bool = False,
    sensor: str = "landsat8",
    size: int = 512,
    seed: int = 1,
    model: str | Path | None = None,
    landscape: str | None = "forest",
) -> DemoResult:
    """Simulate a scene with fire, smoke and a burn scar, predict it, and draw the quicklook.

    Args:
        out_dir: output folder (created).
        overwrite: replace earlier demo outputs.
        sensor: simulated sensor.
        size: scene size, pixels.
        seed: simulator seed.
        model: bundle path; None = the shipped default model.
        landscape: simulator landscape (None = random).

    Returns:
        The :class:`DemoResult`.

    Raises:
        OutputExistsError: outputs exist and ``overwrite`` is False.
        BundleError: no default model installed.
    """
    from firemap.predict import predict_scenes
    from firemap.simulate import labels_path, simulate_scene, write_scene

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scene_path = out / f"{DEMO_STEM}.tif"
    png = out / f"{DEMO_STEM}.quicklook.png"
    for p in (scene_path, labels_path(scene_path), png):
        check_writable(p, overwrite)
    scene = simulate_scene(sensor, size, size, seed=seed, clouds="few", landscape=landscape)
    scene_path, label_path = write_scene(scene, scene_path, overwrite=overwrite)
    cfg = PredictConfig(overwrite=overwrite)
    (result,) = predict_scenes([scene_path], out, model, cfg)
    quicklook(scene_path, label_path, result.outputs["classes"], png, overwrite)
    log.info("demo outputs in %s", out)
    return DemoResult(scene_path, label_path, png, dict(result.outputs), result.area_ha, result.polygons)


__all__ = [
    "QUICKLOOK_COLORS", "DemoResult", "class_masks", "false_colour", "outline", "quicklook", "run_demo", "write_png",
]
