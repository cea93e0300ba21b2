"""Labelled windows read into memory as network inputs, with context, for training the weak networks.

Each :class:`ImageLabel` window is read with ``context`` extra pixels on every side (scene pixels where they
exist, mirrored and invalid past the scene edge) through :func:`firemap.raster.read_window`, normalized with
:func:`firemap.predict.prepare_input` (the same normalization and band-presence channels as ``predict``), and
padded to a multiple of the feature stride. The networks see the context; losses use only the window pixels.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from firemap.bands import BandSource, model_sources, resolve_bands
from firemap.config import DEFAULT_CLASSES, ModelConfig
from firemap.errors import ConfigError
from firemap.predict import prepare_input
from firemap.raster import open_scene, read_window
from firemap.train.data import TileSample, band_statistics
from firemap.weak.config import FEATURE_STRIDE, WeakConfig
from firemap.weak.labels import ImageLabel

log = logging.getLogger(__name__)

MAX_WINDOW = 2048
"""Largest labelled window edge, pixels (whole windows are read into memory to train on)."""


@dataclass(frozen=True)
class WindowSample:
    """One labelled window ready for the networks.

    Attributes:
        x: ``(in_channels, rows, cols)`` float32 normalized input: the window plus context, padded to a multiple
            of :data:`FEATURE_STRIDE`.
        valid: ``(rows, cols)`` bool, False on nodata and padding.
        inside: ``(rows, cols)`` bool, True on valid pixels of the labelled window itself.
        target: ``(classes,)`` float32: 1 present, 0 absent, NaN unknown.
        label: the image-level label it came from.
    """

    x: np.ndarray
    valid: np.ndarray
    inside: np.ndarray
    target: np.ndarray
    label: ImageLabel


@dataclass(frozen=True)
class SceneBands:
    """How a scene's bands feed the networks."""

    sources: list[BandSource | None]
    present: tuple[str, ...]
    zero_is_nodata: bool


def scene_bands(path: Path, cfg: WeakConfig, mc: ModelConfig | None = None) -> SceneBands:
    """Resolve the scene's bands to ``mc.bands`` (default ``cfg.bands``).

    Raises:
        MissingBandsError: a required band is missing (the message lists what the file offers).
    """
    bands, optional = (mc.bands, mc.optional_bands) if mc else (cfg.bands, cfg.optional_bands)
    info = open_scene(path, cfg.allow_no_crs)
    bandmap = resolve_bands(info.descriptions, info.count, cfg.sensor, cfg.band_spec, info.tags)
    sources, zero_fill = model_sources(bandmap, bands, optional, path.name)
    present = tuple(b for b, s in zip(bands, sources, strict=True) if s is not None)
    return SceneBands(sources, present, zero_fill)


def _outer(window: Window, context: int) -> Window:
    h = -(-(int(window.height) + 2 * context) // FEATURE_STRIDE) * FEATURE_STRIDE
    w = -(-(int(window.width) + 2 * context) // FEATURE_STRIDE) * FEATURE_STRIDE
    return Window(int(window.col_off) - context, int(window.row_off) - context, w, h)


def _check_window(label: ImageLabel, width: int, height: int) -> Window:
    w = label.window or Window(0, 0, width, height)
    if w.col_off + w.width > width or w.row_off + w.height > height:
        raise ConfigError(
            f"{label.scene.name}: window (col {w.col_off}, row {w.row_off}, {w.width} x {w.height}) leaves the "
            f"{width} x {height} px scene; fix the label file's window"
        )
    if max(w.width, w.height) > MAX_WINDOW:
        raise ConfigError(
            f"{label.scene.name}: labelled window {w.width} x {w.height} px exceeds {MAX_WINDOW} px; label tiles "
            f"of the scene instead (col,row,width,height columns)"
        )
    return w


def read_raw(labels: Sequence[ImageLabel], cfg: WeakConfig) -> list[tuple[TileSample, Window, Window]]:
    """Read each labelled window with context in physical units.

    Returns:
        Per label: ``(sample, window, outer)``: the sample's ``labels`` field is unused (empty).
    """
    out = []
    bands: dict[Path, SceneBands] = {}
    for label in labels:
        sb = bands.setdefault(label.scene, scene_bands(label.scene, cfg))
        with rasterio.open(label.scene) as src:
            window = _check_window(label, src.width, src.height)
            outer = _outer(window, cfg.context)
            data, valid = read_window(src, outer, sb.sources, sb.zero_is_nodata)
        out.append((TileSample(data, valid, sb.present, np.zeros((0, *valid.shape), np.uint8)), window, outer))
    return out


class _RawSource:
    """The raw windows as a tile source for :func:`firemap.train.data.band_statistics`."""

    def __init__(self, samples: Sequence[TileSample]) -> None:
        self.samples = samples

    def sample(self, rng: np.random.Generator) -> TileSample:
        return self.samples[int(rng.integers(len(self.samples)))]


def model_config(raw: Sequence[TileSample], classes: Sequence[str], cfg: WeakConfig) -> ModelConfig:
    """Bands, robust normalization statistics (from the labelled windows) and classes of the weak networks.

    Optional bands that no scene has are dropped (nothing to normalize or learn from).
    """
    have = {b for r in raw for b in r.present}
    keep = [i for i, b in enumerate(cfg.bands) if b in have]
    bands = tuple(cfg.bands[i] for i in keep)
    optional = tuple(b for b in cfg.optional_bands if b in bands)
    source = _RawSource([TileSample(r.image[keep], r.valid, r.present, r.labels) for r in raw])
    mean, std = band_statistics(source, bands, tiles=min(256, 4 * len(raw)), seed=cfg.seed)
    infos = tuple(c for c in DEFAULT_CLASSES if c.name in classes)
    return ModelConfig(bands=bands, optional_bands=optional, band_presence=bool(optional), mean=mean, std=std,
                       classes=infos, tile_size=cfg.tile_size, overlap=cfg.overlap)


def load_samples(
    labels: Sequence[ImageLabel], classes: Sequence[str], cfg: WeakConfig, mc: ModelConfig | None = None
) -> tuple[list[WindowSample], ModelConfig]:
    """Read and normalize every labelled window.

    Args:
        labels: image-level labels.
        classes: the classes the networks learn (output order).
        cfg: options (bands, context).
        mc: a model config with statistics to reuse; None = compute them from these windows.

    Returns:
        ``(samples, model config)``.
    """
    raw = read_raw(labels, cfg)
    mc = mc or model_config([r[0] for r in raw], classes, cfg)
    samples = []
    for label, (tile, window, outer) in zip(labels, raw, strict=True):
        image = tile.image[[cfg.bands.index(b) for b in mc.bands]]
        x = prepare_input(image, tile.valid, mc, tile.present)
        inside = np.zeros_like(tile.valid)
        r0, c0 = int(window.row_off - outer.row_off), int(window.col_off - outer.col_off)
        inside[r0 : r0 + int(window.height), c0 : c0 + int(window.width)] = True
        target = np.array([label.classes.get(c, np.nan) for c in classes], np.float32)
        samples.append(WindowSample(x, tile.valid, inside & tile.valid, target, label))
    log.info("read %d labelled windows (%s)", len(samples), ", ".join(
        f"{c}: {int(np.nansum([s.target[k] for s in samples]))} present" for k, c in enumerate(classes)))
    return samples, mc




def augment(arrays: Sequence[np.ndarray], k: int, flip: bool) -> list[np.ndarray]:
    """Rotate by ``k`` x 90 degrees and optionally mirror the last two axes of each array (labels stay valid)."""
    out = []
    for a in arrays:
        a = np.rot90(a, k, axes=(-2, -1))
        out.append(np.ascontiguousarray(a[..., ::-1] if flip else a))
    return out


def shape_groups(samples: Sequence[WindowSample]) -> list[list[int]]:
    """Indices of samples grouped by input shape (a batch stacks windows of one shape)."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, s in enumerate(samples):
        groups.setdefault(s.x.shape, []).append(i)
    return list(groups.values())


def pick_batch(groups: Sequence[Sequence[int]], rng: np.random.Generator, size: int) -> list[int]:
    """A random batch of sample indices from one shape group (groups weighted by their size)."""
    sizes = np.array([len(g) for g in groups], float)
    group = groups[int(rng.choice(len(groups), p=sizes / sizes.sum()))]
    return [int(i) for i in rng.choice(group, min(size, len(group)), replace=False)]


__all__ = ["MAX_WINDOW", "SceneBands", "WindowSample", "augment", "load_samples", "model_config", "pick_batch",
           "read_raw", "scene_bands", "shape_groups"]
