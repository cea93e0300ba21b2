"""``firemap demo``: simulate a fire scene, map it with the shipped default model, and draw a quicklook.

The quicklook is a PNG with two panels of the same false-colour composite (swir2, nir, red as R, G, B, each
stretched between its 2nd and 98th percentile: vegetation green, burn scars red-brown, active fire bright
orange-yellow, smoke bluish), the simulator's exact labels outlined on the left and the model's classes outlined on
the right. Outlines are 2 px wide in colours that stand out on that composite: fire yellow, smoke cyan, burn scar
magenta (:data:`QUICKLOOK_COLORS`; the class rasters and QGIS styles keep the class colours). A title above each
panel says which is which ("truth: simulator labels", "prediction: <model>"), and a legend below names the
outline colours and the composite (drawn with OpenCV's Hershey font, no plotting library needed).
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


GAP_PX = 8
"""White gap between the two panels, pixels."""


def _font_scale(width: int) -> float:
    """Hershey font scale for a panel ``width`` pixels wide (about 13 px high text on a 512 px panel)."""
    return float(np.clip(width / 1000, 0.3, 0.8))


def _text_bar(width: int, height: int, items: Sequence[tuple[str, tuple[int, int, int] | None]], scale: float,
              ) -> np.ndarray:
    """A white ``(3, height, width)`` bar with ``items`` left to right: a colour swatch (when given) then text.

    Items that do not fit are left out; the first always starts at the left edge.
    """
    import cv2

    bar = np.full((height, width, 3), 255, np.uint8)
    x, pad = 4, max(4, height // 4)
    for text, color in items:
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        swatch = th + 2 if color is not None else 0
        if x + swatch + tw > width - 2 and x > 4:
            break
        if color is not None:
            cv2.rectangle(bar, (x, (height - th) // 2 - 1), (x + th, (height + th) // 2), color, -1)
            cv2.rectangle(bar, (x, (height - th) // 2 - 1), (x + th, (height + th) // 2), (0, 0, 0), 1)
            x += swatch + 2
        cv2.putText(bar, text, (x, (height + th) // 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
        x += tw + 2 * pad
    return bar.transpose(2, 0, 1)


def _titled(panel: np.ndarray, titles: Sequence[str], scale: float, height: int) -> np.ndarray:
    """``panel`` under the first title of ``titles`` that fits its width (the last one otherwise)."""
    import cv2

    width = panel.shape[2]
    fits = [t for t in titles if cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] <= width - 8]
    return np.concatenate([_text_bar(width, height, [((fits or titles[-1:])[0], None)], scale), panel], axis=1)


def quicklook(
    scene: Path, labels: Path | None, classes_tif: Path, png: Path, overwrite: bool = False, model: str = "model"
) -> Path:
    """Two-panel PNG: false colour with the true labels (left, if given) and the predicted classes (right), each
    under a title saying which it is, with a legend of the outline colours below.

    Args:
        scene: the scene GeoTIFF.
        labels: its true labels (``(classes, rows, cols)`` 0/1 GeoTIFF), or None for the prediction panel only.
        classes_tif: the predicted class raster.
        png: output path.
        overwrite: replace an existing PNG.
        model: model name for the prediction panel's title.

    Returns:
        ``png``: an RGB PNG of ``title + rows + legend`` by ``panels x cols + gaps`` pixels.
    """
    base = false_colour(scene)
    width = base.shape[2]
    scale = _font_scale(width)
    bar = round(32 * scale / 0.5)
    with rasterio.open(classes_tif) as src:
        predicted = outline(base, class_masks(src.read(1), DEFAULT_CLASSES), DEFAULT_CLASSES)
    panels = [_titled(predicted, [f"prediction: {model}", "prediction"], scale, bar)]
    if labels is not None:
        with rasterio.open(labels) as src:
            truth = src.read() == 1
        panels.insert(0, _titled(outline(base, truth, DEFAULT_CLASSES), ["truth: simulator labels", "truth"],
                                 scale, bar))
    gap = np.full((3, panels[0].shape[1], GAP_PX), 255, np.uint8)
    image = np.concatenate([p for panel in panels for p in (panel, gap)][:-1], axis=2)
    legend: list[tuple[str, tuple[int, int, int] | None]] = [
        (c.name.replace("_", " "), QUICKLOOK_COLORS.get(c.name, c.color)) for c in DEFAULT_CLASSES]
    legend.append(("outlines on false colour " + "/".join(b.upper() for b in FALSE_COLOUR), None))
    image = np.concatenate([image, _text_bar(image.shape[2], bar, legend, scale)], axis=1)
    return write_png(png, image, overwrite)


def _model_name(model: str | Path | None, classes_tif: Path) -> str:
    if model is not None:
        return Path(model).name.removesuffix(".firemap.pt")
    with rasterio.open(classes_tif) as ds:  # the default predict picked for the scene's sensor
        return f"{ds.tags().get('MODEL', 'default')} (default)"


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
    quicklook(scene_path, label_path, result.outputs["classes"], png, overwrite,
              _model_name(model, result.outputs["classes"]))
    log.info("demo outputs in %s", out)
    return DemoResult(scene_path, label_path, png, dict(result.outputs), result.area_ha, result.polygons)


__all__ = [
    "GAP_PX", "QUICKLOOK_COLORS", "DemoResult", "class_masks", "false_colour", "outline", "quicklook", "run_demo",
    "write_png",
]
