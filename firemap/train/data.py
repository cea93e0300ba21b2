"""Training data: scene/mask pairs with partial labels, the simulator stream, weighted mixtures, rare-class
oversampling, normalization statistics and augmentation valid for any number of bands.

Every source yields :class:`TileSample` objects in the *model's* band and class order, in physical units
(reflectance; kelvin for thermal bands). :class:`TrainStream` mixes sources by weight, augments, and feeds
the result through :func:`firemap.predict.prepare_input` (the same normalization and band-presence channels
``predict`` uses), so training and prediction see identical inputs.

Label convention: ``(classes, rows, cols)`` uint8, 1 = present, 0 = absent, 255 = not labelled (nodata, or a
class the dataset does not label).
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import rasterio
import torch
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from firemap import CLASS_NAMES
from firemap.bands import THERMAL_BANDS, BandSource, model_sources, resolve_bands
from firemap.config import ModelConfig
from firemap.errors import ConfigError, InputFileError, MissingBandsError
from firemap.raster import check_same_grid, open_scene, read_window
from firemap.train.config import AugmentConfig, DataConfig, SceneSource, SimulatorSource
from firemap.train.losses import IGNORE

log = logging.getLogger(__name__)

TCI_SATURATION = 0.255
"""Reflectance at which Sentinel-2's 8-bit TCI product saturates (TCI ~ 980 x reflectance + 3.9)."""

MAX_POSITIVES = 20000
"""Positive-pixel coordinates kept per class and scene for oversampling (a random subset beyond that)."""


@dataclass(frozen=True)
class TileSample:
    """One training tile in the model's band and class order.

    Attributes:
        image: ``(len(model bands), rows, cols)`` float32 physical values; absent bands and invalid pixels 0.
        valid: ``(rows, cols)`` bool, False on nodata and padding.
        present: the model bands the tile really has.
        labels: ``(len(model classes), rows, cols)`` uint8, 0/1, 255 = not labelled.
    """

    image: np.ndarray
    valid: np.ndarray
    present: tuple[str, ...]
    labels: np.ndarray


class TileSource(Protocol):
    """Anything that draws random tiles."""

    def sample(self, rng: np.random.Generator) -> TileSample:
        """Draw one tile."""
        ...


# --------------------------------------------------------------------------------------------------------
# Scene/mask pairs
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScenePair:
    """An image GeoTIFF and its mask GeoTIFF on the same grid."""

    image: Path
    mask: Path


def _image_files(images: str | list[str]) -> list[Path]:
    if isinstance(images, list):
        return [Path(p) for p in images]
    p = Path(images)
    if p.is_dir():
        return sorted(f for f in p.glob("*.tif*") if not f.name.endswith((".labels.tif", ".labels.tiff")))
    return sorted(Path(f) for f in glob.glob(images))


def find_pairs(src: SceneSource) -> list[ScenePair]:
    """The image/mask pairs of a scene source (``exclude`` applied), sorted by image name.

    Raises:
        InputFileError: no images, or an image without its mask.
    """
    images = [f for f in _image_files(src.images) if f.name.split(".")[0] not in src.exclude]
    if not images:
        raise InputFileError(f"source {src.label!r}: no images found at {src.images!r} (after exclude "
                             f"{src.exclude}); give a folder of .tif files, a glob or a list")
    pairs = []
    for image in images:
        stem = image.name.split(".")[0]
        mask = Path(src.masks) / image.name if src.masks else image.with_name(f"{stem}.labels.tif")
        if not mask.is_file():
            raise InputFileError(f"source {src.label!r}: no mask {mask} for image {image}; masks must have the "
                                 "image's file name in the masks folder (or <stem>.labels.tif beside it)")
        pairs.append(ScenePair(image, mask))
        check_mask(pairs[-1], src)
    return pairs


def check_mask(pair: ScenePair, src: SceneSource) -> None:
    """Require a mask on its image's grid (size, CRS, transform) holding only declared values.

    Declared: 0 (background), the ``mask_values`` of the classes (``values`` format) or 1 (``bands`` format),
    ``ignore_values`` and the mask's nodata. A mask without any georeferencing is accepted on size alone.

    Raises:
        GridMismatchError: the mask is on another grid or CRS.
        ConfigError: the mask holds values that were not declared (they would silently count as negatives).
    """
    image, mask = open_scene(pair.image, allow_no_crs=True), open_scene(pair.mask, allow_no_crs=True)
    georeferenced = mask.grid.crs is not None or not mask.grid.transform.is_identity
    same_size = (mask.grid.width, mask.grid.height) == (image.grid.width, image.grid.height)
    if georeferenced or not same_size:
        check_same_grid(image, mask, what=f"mask {pair.mask}")
    positive = [v for vs in src.mask_values.values() for v in vs] if src.mask_format == "values" else [1]
    declared = {0, *positive, *src.ignore_values, *([] if mask.nodata is None else [mask.nodata])}
    found: set[float] = set()
    with rasterio.open(pair.mask) as msk:
        for r0 in range(0, msk.height, 1024):
            window = Window(0, r0, msk.width, min(1024, msk.height - r0))
            found.update(np.unique(msk.read(window=window)).tolist())
    undeclared = sorted(v for v in found if v not in declared and v == v)  # NaN: float nodata
    if undeclared:
        how = ("add them to mask_values (--mask-value CLASS=V,...) or ignore_values" if src.mask_format == "values"
               else "bands masks hold 0/1 and ignore values only")
        raise ConfigError(
            f"mask {pair.mask} holds value(s) {undeclared[:10]} that are not declared (declared: "
            f"{sorted(declared)}); they would silently count as background: {how}"
        )


def decode_mask(
    raw: np.ndarray, src: SceneSource, classes: Sequence[str], nodata: float | None = None
) -> np.ndarray:
    """Turn raw mask values into firemap labels for ``classes``.

    Args:
        raw: ``(mask bands, rows, cols)`` raw mask values.
        src: the source (mask format, values, labelled classes, ignore values).
        classes: model class names, in output order.
        nodata: the mask file's declared nodata (not labelled).

    Returns:
        ``(len(classes), rows, cols)`` uint8: 1/0 for labelled classes, 255 for unlabelled classes and pixels.
    """
    labelled = set(src.labelled_classes)
    ignore = np.isin(raw, [*src.ignore_values, *([] if nodata is None else [nodata])])  # per mask band
    out = np.full((len(classes), *raw.shape[1:]), IGNORE, np.uint8)
    for k, name in enumerate(classes):
        if name not in labelled:
            continue
        if src.mask_format == "values":
            out[k] = np.isin(raw[0], src.mask_values.get(name, []))
            out[k][ignore[0]] = IGNORE
        elif name in src.mask_bands:
            band = src.mask_bands.index(name)
            out[k] = raw[band] == 1
            out[k][ignore[band]] = IGNORE
    return out


def _pads(window: Window, height: int, width: int) -> tuple[Window, tuple[tuple[int, int], tuple[int, int]]]:
    inner = window.intersection(Window(0, 0, width, height))
    top, left = int(inner.row_off - window.row_off), int(inner.col_off - window.col_off)
    bottom = int(window.height - inner.height - top)
    right = int(window.width - inner.width - left)
    return inner, ((top, bottom), (left, right))


def pick_window(
    rng: np.random.Generator,
    shapes: Sequence[tuple[int, int]],
    positives: Sequence[dict[str, np.ndarray]],
    oversample: dict[str, float],
    tile: int,
) -> tuple[int, Window]:
    """Choose a scene and a ``tile`` x ``tile`` window in it.

    With probability ``oversample[c]`` the window contains a random positive pixel of class ``c`` at a random
    position (scenes weighted by their positive count); otherwise it is uniform (scenes weighted by area).
    Windows of scenes smaller than the tile extend past their edges.

    Args:
        rng: random generator.
        shapes: ``(rows, cols)`` of each scene.
        positives: per scene, class name -> ``(n, 2)`` row/col of positive pixels.
        oversample: class name -> probability.
        tile: window edge, pixels.

    Returns:
        ``(scene index, window)``.
    """
    u, acc = rng.random(), 0.0
    for name, p in oversample.items():
        acc += p
        counts = np.array([len(pos.get(name, ())) for pos in positives], float)
        if u < acc and counts.sum() > 0:
            i = int(rng.choice(len(shapes), p=counts / counts.sum()))
            r, c = positives[i][name][rng.integers(len(positives[i][name]))]
            return i, Window(int(c) - int(rng.integers(tile)), int(r) - int(rng.integers(tile)), tile, tile)
    areas = np.array([h * w for h, w in shapes], float)
    i = int(rng.choice(len(shapes), p=areas / areas.sum()))
    h, w = shapes[i]
    r0 = int(rng.integers(min(0, h - tile), max(0, h - tile) + 1))
    c0 = int(rng.integers(min(0, w - tile), max(0, w - tile) + 1))
    return i, Window(c0, r0, tile, tile)


def positive_pixels(
    labels: np.ndarray, classes: Sequence[str], rng: np.random.Generator, row_off: int = 0
) -> dict[str, np.ndarray]:
    """Row/col of the positive pixels of each class (at most :data:`MAX_POSITIVES`, a random subset).

    Args:
        labels: ``(classes, rows, cols)`` uint8 labels.
        classes: class names in ``labels`` order.
        rng: for the subset.
        row_off: added to the rows (for labels read by blocks).

    Returns:
        class name -> ``(n, 2)`` int64 array.
    """
    out = {}
    for k, name in enumerate(classes):
        rows, cols = np.nonzero(labels[k] == 1)
        coords = np.stack([rows + row_off, cols], axis=1).astype(np.int64)
        if len(coords) > MAX_POSITIVES:
            coords = coords[rng.choice(len(coords), MAX_POSITIVES, replace=False)]
        out[name] = coords
    return out


@dataclass
class _Scene:
    """A pair with its band sources resolved and the positive pixels of each labelled class."""

    pair: ScenePair
    sources: list[BandSource | None]
    present: tuple[str, ...]
    zero_is_nodata: bool
    height: int
    width: int
    mask_nodata: float | None
    positives: dict[str, np.ndarray]


def _check_grid(pair: ScenePair, img: rasterio.io.DatasetReader, msk: rasterio.io.DatasetReader) -> None:
    if (img.width, img.height) != (msk.width, msk.height):
        raise InputFileError(f"{pair.mask} is {msk.width}x{msk.height} px but its image {pair.image} is "
                             f"{img.width}x{img.height}; masks must share the image grid")


def check_sources(data: DataConfig, mc: ModelConfig) -> dict[str, list[str]]:
    """Check every training and validation source before any slow work (statistics, model, simulation).

    Opens each image and mask header once: masks exist and share their image's size, the model's required bands
    resolve; simulated sensors have the model's required bands. Reads no pixels.

    Returns:
        Source name -> image file names of each scene source (recorded in the bundle provenance).

    Raises:
        InputFileError: missing images or masks, unreadable files, masks on another grid.
        MissingBandsError: a scene or simulated sensor lacks a band the model requires.
    """
    scenes: dict[str, list[str]] = {}
    for src in [*data.train, *data.val]:
        if isinstance(src, SimulatorSource):
            SimulatorTiles(src, mc, data.tile_size, {}, 0)  # checks the bands, simulates nothing yet
            continue
        pairs = find_pairs(src)
        for pair in pairs:
            try:
                with rasterio.open(pair.image) as img, rasterio.open(pair.mask) as msk:
                    _check_grid(pair, img, msk)
                    _band_sources(pair.image, img, mc, src.sensor, src.bands)
            except RasterioIOError as exc:
                raise InputFileError(f"source {src.label!r}: cannot read {pair.image} or its mask {pair.mask} "
                                     f"({str(exc).splitlines()[0][:200]})") from None
        scenes[src.label] = [p.image.name for p in pairs]
    return scenes


def _band_sources(
    path: Path, src: rasterio.io.DatasetReader, mc: ModelConfig, sensor: str | None, spec: str | None
) -> tuple[list[BandSource | None], tuple[str, ...], bool]:
    bandmap = resolve_bands(src.descriptions, src.count, sensor, spec, src.tags(), src.scales, src.offsets)
    sources, zero_fill = model_sources(bandmap, mc.bands, mc.optional_bands, str(path))
    present = tuple(b for b, s in zip(mc.bands, sources, strict=True) if s is not None)
    return sources, present, zero_fill


class SceneTiles:
    """Random tiles from scene/mask pairs, oversampling rare classes.

    With probability ``oversample[c]`` a tile is placed so that a random pixel of class ``c`` lies inside it (at a
    random position); otherwise the tile is uniform over the scenes (scenes weighted by area). This is the
    DeepLabv3 paper's bootstrapping of rare classes applied to tiles.

    Args:
        src: the source config.
        mc: the model config (bands, classes).
        tile_size: tile edge, pixels.
        oversample: class name -> probability.
        seed: seed for the positive-pixel subsets (not for sampling).
    """

    def __init__(
        self, src: SceneSource, mc: ModelConfig, tile_size: int, oversample: dict[str, float], seed: int = 0
    ) -> None:
        self.src, self.mc, self.tile_size = src, mc, tile_size
        self.classes = [c.name for c in mc.classes]
        self.scenes = [self._open(p, np.random.default_rng(seed + i)) for i, p in enumerate(find_pairs(src))]
        self.oversample = {c: p for c, p in oversample.items()
                           if p > 0 and any(len(s.positives.get(c, ())) for s in self.scenes)}
        self._handles: dict[Path, rasterio.io.DatasetReader] = {}

    def __len__(self) -> int:
        return len(self.scenes)

    def _open(self, pair: ScenePair, rng: np.random.Generator) -> _Scene:
        with rasterio.open(pair.image) as img, rasterio.open(pair.mask) as msk:
            _check_grid(pair, img, msk)
            sources, present, zero_fill = _band_sources(pair.image, img, self.mc, self.src.sensor, self.src.bands)
            positives = self._positives(msk, rng)
            return _Scene(pair, sources, present, zero_fill, img.height, img.width, msk.nodata, positives)

    def _positives(self, msk: rasterio.io.DatasetReader, rng: np.random.Generator) -> dict[str, np.ndarray]:
        parts: list[dict[str, np.ndarray]] = []
        for r0 in range(0, msk.height, 1024):
            window = Window(0, r0, msk.width, min(1024, msk.height - r0))
            labels = decode_mask(msk.read(window=window), self.src, self.classes, msk.nodata)
            parts.append(positive_pixels(labels, self.classes, rng, r0))
        merged = {c: np.concatenate([p[c] for p in parts]) for c in self.classes}
        return {c: v[rng.permutation(len(v))[:MAX_POSITIVES]] for c, v in merged.items()}

    def _handle(self, path: Path) -> rasterio.io.DatasetReader:
        if path not in self._handles:  # opened lazily, so each DataLoader worker has its own handles
            self._handles[path] = rasterio.open(path)
        return self._handles[path]

    def _window(self, rng: np.random.Generator) -> tuple[_Scene, Window]:
        shapes = [(sc.height, sc.width) for sc in self.scenes]
        i, window = pick_window(rng, shapes, [sc.positives for sc in self.scenes], self.oversample, self.tile_size)
        return self.scenes[i], window

    def read(self, scene: _Scene, window: Window) -> TileSample:
        """Read a window (may extend past the scene: mirrored, marked invalid and unlabelled)."""
        data, valid = read_window(self._handle(scene.pair.image), window, scene.sources, scene.zero_is_nodata)
        msk = self._handle(scene.pair.mask)
        inner, pads = _pads(window, scene.height, scene.width)
        raw = np.pad(msk.read(window=inner), ((0, 0), *pads), constant_values=IGNORE)
        labels = decode_mask(raw, self.src, self.classes, scene.mask_nodata)
        labels[:, ~valid] = IGNORE
        return TileSample(data, valid, scene.present, labels)

    def sample(self, rng: np.random.Generator) -> TileSample:
        """Draw one tile (see the class docstring for the sampling rule)."""
        scene, window = self._window(rng)
        return self.read(scene, window)


# --------------------------------------------------------------------------------------------------------
# The simulator
# --------------------------------------------------------------------------------------------------------


def _simulate(src: SimulatorSource, size: int, seed: int) -> Any:
    """One simulated scene with the source's randomised content (fire, smoke, scar, clouds, swath edge)."""
    from firemap.simulate import simulate_scene

    rng = np.random.default_rng(seed)
    flags: dict[str, Any] = {"fire": rng.random() < src.p_fire, "smoke": rng.random() < src.p_smoke,
             "burn_scar": rng.random() < src.p_burn_scar}
    clouds = src.clouds[int(rng.integers(len(src.clouds)))] if src.clouds else "none"
    return simulate_scene(src.sensor, size, size, seed=seed, clouds=clouds,
                          swath_edge=bool(rng.random() < src.p_swath_edge), **flags, **src.options.model_dump())


class SimulatorTiles:
    """Tiles from the simulator, mapped to the model's bands and classes.

    Tiles are random crops (with rare-class oversampling) of a pool of ``src.pool_scenes`` simulated scenes drawn
    on first use from ``seed``; with ``pool_scenes == 0`` each tile is its own simulated scene.

    Args:
        src: the source config.
        mc: the model config.
        tile_size: tile edge, pixels.
        oversample: class name -> probability.
        seed: seed of the scenes.

    Raises:
        MissingBandsError: the simulated sensor lacks a band the model requires.
    """

    def __init__(
        self, src: SimulatorSource, mc: ModelConfig, tile_size: int, oversample: dict[str, float], seed: int
    ) -> None:
        from firemap.simulate.sensor import sensor_spec

        sim_bands = tuple(sensor_spec(src.sensor).bands)
        required = [b for b in mc.bands if b not in mc.optional_bands and b not in sim_bands]
        if required:
            raise MissingBandsError(f"simulated sensor {src.sensor!r} lacks band(s) {required} the model needs "
                                    f"(it has {list(sim_bands)}); choose another simulator sensor")
        self.src, self.mc, self.tile_size, self.oversample = src, mc, tile_size, oversample
        self.band_index = [sim_bands.index(b) if b in sim_bands else -1 for b in mc.bands]
        self.present = tuple(b for b, i in zip(mc.bands, self.band_index, strict=True) if i >= 0)
        self.classes = [c.name for c in mc.classes]
        self.seeds = np.random.SeedSequence(seed)
        self.pool: list[TileSample] = []
        self.positives: list[dict[str, np.ndarray]] = []

    def _next_seed(self) -> int:
        return int(self.seeds.spawn(1)[0].generate_state(1)[0])

    def _convert(self, scene: Any) -> TileSample:
        data = np.zeros((len(self.band_index), *scene.valid.shape), np.float32)
        for k, i in enumerate(self.band_index):
            if i >= 0:
                data[k] = scene.physical[i]
        labels = np.full((len(self.classes), *scene.valid.shape), IGNORE, np.uint8)
        for k, name in enumerate(self.classes):
            if name in CLASS_NAMES:
                labels[k] = scene.labels[CLASS_NAMES.index(name)]
        valid = scene.valid & np.isfinite(data).all(axis=0)
        data[:, ~valid] = 0.0
        labels[:, ~valid] = IGNORE
        return TileSample(data, valid, self.present, labels)

    def _fill_pool(self) -> None:
        rng = np.random.default_rng(self._next_seed())
        for _ in range(self.src.pool_scenes):
            sample = self._convert(_simulate(self.src, self.src.pool_size, self._next_seed()))
            self.pool.append(sample)
            self.positives.append(positive_pixels(sample.labels, self.classes, rng))
        log.debug("simulated a pool of %d %s scenes", len(self.pool), self.src.sensor)

    def sample(self, rng: np.random.Generator) -> TileSample:
        """A random crop of a pooled scene, or a freshly simulated tile when the pool is off."""
        if self.src.pool_scenes == 0:
            return self._convert(_simulate(self.src, self.tile_size, self._next_seed()))
        if not self.pool:
            self._fill_pool()
        shapes = [s.valid.shape for s in self.pool]
        i, window = pick_window(rng, shapes, self.positives, self.oversample, self.tile_size)
        return crop(self.pool[i], window)


def crop(s: TileSample, window: Window) -> TileSample:
    """Cut a window out of an in-memory sample; outside parts are mirrored, invalid and unlabelled."""
    h, w = s.valid.shape
    inner, pads = _pads(window, h, w)
    rows = slice(int(inner.row_off), int(inner.row_off + inner.height))
    cols = slice(int(inner.col_off), int(inner.col_off + inner.width))
    image, valid, labels = s.image[:, rows, cols], s.valid[rows, cols], s.labels[:, rows, cols]
    if any(p for pair in pads for p in pair):
        reflect = min(image.shape[1:]) > max(max(pads[0]), max(pads[1]))
        image = np.pad(image, ((0, 0), *pads), mode="reflect" if reflect else "edge")
        valid = np.pad(valid, pads, constant_values=False)
        labels = np.pad(labels, ((0, 0), *pads), constant_values=IGNORE)
        image[:, ~valid] = 0.0
    return TileSample(np.ascontiguousarray(image), valid, s.present, np.ascontiguousarray(labels))


def simulated_scenes(src: SimulatorSource, folder: Path, seed: int) -> SceneSource:
    """Write ``src.scenes`` simulated hold-out scenes (and labels) to ``folder`` once; return them as a source.

    Existing files are reused, so a resumed run validates on the same scenes.
    """
    from firemap.simulate import write_scene
    from firemap.simulate.sensor import sensor_spec

    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for i in range(src.scenes):
        path = folder / f"{src.label}_{i:02d}.tif"
        if not path.exists():
            write_scene(_simulate(src, src.scene_size, seed + i), path)
        images.append(str(path))
    return SceneSource(name=src.label, images=images, mask_format="bands", mask_bands=list(CLASS_NAMES),
                       sensor=sensor_spec(src.sensor).preset)


def make_source(
    src: SceneSource | SimulatorSource, mc: ModelConfig, data: DataConfig, seed: int
) -> TileSource:
    """Build the tile source for a config entry."""
    if isinstance(src, SimulatorSource):
        return SimulatorTiles(src, mc, data.tile_size, data.oversample, seed)
    return SceneTiles(src, mc, data.tile_size, data.oversample, seed)


class Mixture:
    """Draw from several sources with probabilities proportional to their weights."""

    def __init__(self, sources: Sequence[TileSource], weights: Sequence[float]) -> None:
        self.sources = list(sources)
        w = np.asarray(weights, float)
        self.p = w / w.sum()

    def sample(self, rng: np.random.Generator) -> TileSample:
        """Pick a source by weight and draw one tile from it."""
        return self.sources[int(rng.choice(len(self.sources), p=self.p))].sample(rng)


# --------------------------------------------------------------------------------------------------------
# Normalization statistics
# --------------------------------------------------------------------------------------------------------


def band_statistics(
    source: TileSource, bands: Sequence[str], tiles: int, seed: int = 0, per_tile: int = 8192
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Robust per-band normalization statistics from random training tiles.

    Only valid pixels of bands the tile really has are used (nodata and absent optional bands never count).
    The centre is the median and the spread ``IQR / 1.349`` (the standard deviation for Gaussian data), so the
    rare very bright pixels (active fire in SWIR, saturated clouds) neither inflate the scale nor get clipped:
    normalization is affine, and a fire pixel keeps its many-sigma SWIR signal.

    Args:
        source: where to draw tiles from (normally the training mixture, without augmentation).
        bands: the model bands, in order.
        tiles: number of tiles to draw.
        seed: sampling seed.
        per_tile: at most this many random pixels per tile and band.

    Returns:
        ``(mean, std)`` tuples, one value per band, physical units.

    Raises:
        ConfigError: a band had no valid pixel in any drawn tile.
    """
    rng = np.random.default_rng(seed)
    values: list[list[np.ndarray]] = [[] for _ in bands]
    for _ in range(tiles):
        s = source.sample(rng)
        pix = np.flatnonzero(s.valid)
        if pix.size > per_tile:
            pix = rng.choice(pix, per_tile, replace=False)
        for k, band in enumerate(bands):
            if band in s.present and pix.size:
                values[k].append(s.image[k].ravel()[pix])
    mean, std = [], []
    for band, parts in zip(bands, values, strict=True):
        if not parts:
            raise ConfigError(f"no valid pixel of band {band!r} in {tiles} training tiles; check the data or "
                              "raise data.stats_tiles")
        v = np.concatenate(parts).astype(np.float64)
        q25, q50, q75 = np.percentile(v, [25, 50, 75])
        floor = 1.0 if band in THERMAL_BANDS else 1e-3
        mean.append(round(float(q50), 6))
        std.append(round(max(float(q75 - q25) / 1.349, floor), 6))
    return tuple(mean), tuple(std)


# --------------------------------------------------------------------------------------------------------
# Augmentation
# --------------------------------------------------------------------------------------------------------


class Augmenter:
    """Geometric (albumentations, image and labels alike) and radiometric (own, physical units) augmentation.

    Args:
        cfg: augmentation settings.
        bands: model bands, in order.
        optional_bands: bands that may be dropped (band dropout).
        seed: seed of albumentations' own generator.
    """

    def __init__(self, cfg: AugmentConfig, bands: Sequence[str], optional_bands: Sequence[str], seed: int) -> None:
        import albumentations as A

        self.cfg, self.bands, self.optional = cfg, list(bands), list(optional_bands)
        self.reflective = np.array([b not in THERMAL_BANDS for b in bands])
        self.visible = np.array([b in ("blue", "green", "red") for b in bands])
        ops: list[Any] = []
        if cfg.flip:
            ops += [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)]
        if cfg.rot90:
            ops.append(A.RandomRotate90(p=0.5))
        if cfg.affine_p > 0:
            ops.append(A.Affine(scale=cfg.scale, rotate=(-cfg.rotate, cfg.rotate), p=cfg.affine_p, fill=0,
                                fill_mask=IGNORE, interpolation=1, mask_interpolation=0))
        self.geometric = A.Compose(ops, seed=seed) if ops else None

    def geometry(self, s: TileSample) -> TileSample:
        """Apply the geometric transforms to image, validity and labels together."""
        if self.geometric is None:
            return s
        invalid = np.where(s.valid, 0, IGNORE).astype(np.uint8)[None]  # filled areas become invalid
        mask = np.concatenate([s.labels, invalid]).transpose(1, 2, 0)
        out = self.geometric(image=np.ascontiguousarray(s.image.transpose(1, 2, 0)), mask=np.ascontiguousarray(mask))
        m = out["mask"].transpose(2, 0, 1)
        valid = m[-1] == 0
        image = np.ascontiguousarray(out["image"].transpose(2, 0, 1))
        image[:, ~valid] = 0.0
        labels = np.ascontiguousarray(m[:-1])
        labels[:, ~valid] = IGNORE
        return TileSample(image, valid, s.present, labels)

    def radiometry(self, s: TileSample, rng: np.random.Generator) -> TileSample:
        """Global brightness, per-band gain and offset, Gaussian noise on reflective bands; TCI saturation."""
        c = self.cfg
        image = s.image.copy()
        sel = self.reflective & np.array([b in s.present for b in self.bands])
        n = int(sel.sum())
        if n:
            gain = rng.uniform(1 - c.brightness, 1 + c.brightness) * rng.uniform(1 - c.gain, 1 + c.gain, n)
            offset = rng.uniform(-c.offset, c.offset, n)
            block = image[sel] * gain[:, None, None].astype(np.float32) + offset[:, None, None].astype(np.float32)
            if c.noise > 0:
                block += rng.normal(0.0, c.noise, block.shape).astype(np.float32)
            image[sel] = block
        if c.saturate_visible and rng.random() < c.saturate_visible:
            image[self.visible] = np.minimum(image[self.visible], TCI_SATURATION)
        image[:, ~s.valid] = 0.0
        return replace(s, image=image)

    def dropout(self, s: TileSample, rng: np.random.Generator) -> TileSample:
        """Drop each present optional band with probability ``band_dropout`` (data zeroed, presence cleared)."""
        drop = {b for b in self.optional if b in s.present and rng.random() < self.cfg.band_dropout}
        if not drop:
            return s
        image = s.image.copy()
        for k, b in enumerate(self.bands):
            if b in drop:
                image[k] = 0.0
        return replace(s, image=image, present=tuple(b for b in s.present if b not in drop))

    def __call__(self, s: TileSample, rng: np.random.Generator) -> TileSample:
        """Geometry, then radiometry, then band dropout."""
        return self.dropout(self.radiometry(self.geometry(s), rng), rng)


# --------------------------------------------------------------------------------------------------------
# The training stream
# --------------------------------------------------------------------------------------------------------


def to_tensors(s: TileSample, mc: ModelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Network input and target of a sample, exactly as ``predict`` prepares inputs.

    Returns:
        ``(x, y)``: ``(mc.in_channels, rows, cols)`` float32 and ``(classes, rows, cols)`` uint8 (255 ignored).
    """
    from firemap.predict import prepare_input

    x = prepare_input(s.image, s.valid, mc, s.present)
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(s.labels))


def stream_seed(seed: int, epoch: int, rank: int = 0, worker: int = 0) -> int:
    """A distinct, reproducible seed per (run seed, epoch, DDP rank, DataLoader worker)."""
    return int(np.random.SeedSequence([seed, epoch, rank, worker]).generate_state(1)[0])


class TrainStream(torch.utils.data.IterableDataset):
    """Infinite stream of augmented ``(x, y)`` training pairs from the weighted mixture of sources.

    Sources are built inside each DataLoader worker (file handles and the simulator are per process); each
    (epoch, rank, worker) gets its own seed, so a resumed run replays the same data from the next epoch on.

    Args:
        data: data config (sources, weights, tile size, oversampling).
        augment: augmentation config.
        mc: model config with statistics.
        seed: run seed.
        epoch: epoch number (part of the seed).
        rank: DDP rank (part of the seed).
    """

    def __init__(
        self, data: DataConfig, augment: AugmentConfig, mc: ModelConfig, seed: int, epoch: int = 0, rank: int = 0
    ) -> None:
        super().__init__()
        self.data, self.augment, self.mc = data, augment, mc
        self.seed, self.epoch, self.rank = seed, epoch, rank

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        seed = stream_seed(self.seed, self.epoch, self.rank, info.id if info else 0)
        rng = np.random.default_rng(seed)
        mixture = build_mixture(self.data, self.mc, seed)
        aug = Augmenter(self.augment, self.mc.bands, self.mc.optional_bands, seed % 2**31)
        while True:
            yield to_tensors(aug(mixture.sample(rng), rng), self.mc)


def build_mixture(data: DataConfig, mc: ModelConfig, seed: int) -> Mixture:
    """The weighted mixture of ``data.train`` sources."""
    sources = [make_source(s, mc, data, seed + 7919 * i) for i, s in enumerate(data.train)]
    return Mixture(sources, [s.weight for s in data.train])


def make_loader(
    data: DataConfig, augment: AugmentConfig, mc: ModelConfig, seed: int, epoch: int, rank: int = 0
) -> torch.utils.data.DataLoader:
    """A DataLoader of ``(x, y)`` batches: ``(B, in_channels, T, T)`` float32 and ``(B, classes, T, T)`` uint8."""
    workers = data.num_workers
    return torch.utils.data.DataLoader(
        TrainStream(data, augment, mc, seed, epoch, rank), batch_size=data.batch_size, num_workers=workers,
        persistent_workers=False, prefetch_factor=2 if workers else None,
    )


__all__ = [
    "MAX_POSITIVES", "TCI_SATURATION", "Augmenter", "Mixture", "ScenePair", "SceneTiles", "SimulatorTiles",
    "TileSample", "TrainStream", "band_statistics", "build_mixture", "check_sources", "crop", "decode_mask",
    "find_pairs", "make_loader", "make_source", "pick_window", "positive_pixels", "simulated_scenes", "stream_seed",
    "to_tensors",
]
