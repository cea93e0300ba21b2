"""Pseudo masks from image-level labels: train the classifier and AffinityNet, then CAM + random walk per scene.

``pseudolabel(label_file, out_dir, cfg)`` is what ``firemap pseudolabel`` runs:

1. read the image-level labels (:mod:`firemap.weak.labels`) and the labelled windows (:mod:`firemap.weak.samples`);
2. train the multi-label classifier and compute CAMs (:mod:`firemap.weak.cam`);
3. train AffinityNet on the confident parts of the CAMs (:mod:`firemap.weak.affinity`);
4. per scene, stream the raw CAMs over overlapping tiles into a scratch raster (:class:`firemap.tiling.RowStitcher`,
   memory = one row of tiles), then walk them block by block with a halo (:mod:`firemap.weak.walk`), and write
   ``<stem>.labels.tif`` on the scene grid: the multi-label mask format of ``firemap label`` (bands fire, smoke,
   burn_scar; 1 class, 0 not the class, 255 not labelled / unsure / nodata), usable by ``firemap train`` as it is.

A class band is 255 outside the labelled windows (unless ``label_outside``), where the best score beats the
runner-up by less than ``margin``, on nodata, and everywhere for classes never labelled; it is 0 inside windows
labelled absent for that class.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

from firemap.config import ModelConfig
from firemap.errors import OutputExistsError
from firemap.predict import prepare_input
from firemap.raster import CLASS_NODATA, SceneInfo, TiledWriter, atomic_output, check_writable, open_scene, read_window
from firemap.tiling import RowStitcher, TileGrid, blocks, tile_count
from firemap.weak.affinity import AffinityNet, confident_labels, train_affinity
from firemap.weak.cam import CamNet, background, cam_scales, cams, normalize_window, train_classifier, window_cams
from firemap.weak.config import WeakConfig
from firemap.weak.labels import ABSENT, CLASSES, PRESENT, ImageLabel, LabelFileError, labelled_classes, read_labels
from firemap.weak.samples import SceneBands, load_samples, scene_bands
from firemap.weak.walk import ReadBlock, walk_tiles

log = logging.getLogger(__name__)

Progress = Callable[[int], None]
ProgressFactory = Callable[[Path, int], Progress]


@dataclass
class WeakModels:
    """The trained weak networks and what they need at inference.

    Attributes:
        config: bands, normalization statistics and classes (in the networks' output order).
        classifier: the CAM network.
        affinity: AffinityNet, or None (``method: cam``).
        scales: ``(classes,)`` global CAM scale per class (see :func:`firemap.weak.cam.cam_scales`).
    """

    config: ModelConfig
    classifier: CamNet
    affinity: AffinityNet | None
    scales: np.ndarray

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names in the networks' output order."""
        return tuple(c.name for c in self.config.classes)


@dataclass
class PseudoResult:
    """What ``pseudolabel`` made of one scene.

    Attributes:
        scene: input path.
        outputs: ``labels`` (and ``cam``, ``walk``) -> path.
        pixels: class name -> pixels labelled 1.
        unsure: class name -> pixels left 255 inside the labelled windows (valid pixels).
        seconds: wall time for this scene.
    """

    scene: Path
    outputs: dict[str, Path] = field(default_factory=dict)
    pixels: dict[str, int] = field(default_factory=dict)
    unsure: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def _progress(factory: ProgressFactory | None, name: str, total: int) -> Progress | None:
    return factory(Path(name), total) if factory else None


def train_weak(labels: Sequence[ImageLabel], cfg: WeakConfig, progress: ProgressFactory | None = None) -> WeakModels:
    """Train the classifier (CAMs) and, for ``method: walk``, AffinityNet on the labelled windows.

    Raises:
        LabelFileError: no class is labelled present anywhere.
        MissingBandsError, ConfigError: bands or windows that do not fit.
    """
    classes = labelled_classes(labels)
    if not classes:
        raise LabelFileError("no class is labelled present anywhere; a CAM needs positive examples")
    samples, mc = load_samples(labels, classes, cfg)
    if not any(np.nanmin(s.target) == 0 for s in samples if not np.isnan(s.target).all()):
        log.warning("no window is labelled absent for any class: the classifier cannot learn what is not a class")
    net = train_classifier(samples, mc.in_channels, len(classes), cfg, _progress(progress, "classifier", cfg.cam_steps))
    raw = window_cams(net, samples)
    scales = cam_scales(raw, samples)
    affinity = None
    if cfg.method == "walk":
        keep = [i for i, s in enumerate(samples) if not np.isnan(s.target).any()]
        maps = [confident_labels(normalize_window(raw[i], samples[i].target, samples[i].inside, scales),
                                 samples[i].inside, cfg) for i in keep]
        affinity = train_affinity([samples[i] for i in keep], maps, mc.in_channels, cfg,
                                  _progress(progress, "AffinityNet", cfg.aff_steps))
    return WeakModels(mc, net, affinity, scales)


# ------------------------------------------------------------------------------------------ scene passes


def _input(src: rasterio.io.DatasetReader, window: Window, sb: SceneBands, mc: ModelConfig) -> tuple[np.ndarray, ...]:
    data, valid = read_window(src, window, sb.sources, sb.zero_is_nodata, fill=mc.mean)
    return prepare_input(data, None, mc, sb.present), valid


def _cam_pass(info: SceneInfo, sb: SceneBands, models: WeakModels, cfg: WeakConfig, scratch: Path,
              progress: Progress | None) -> None:
    """Raw CAMs of the whole scene (plus a validity band) into ``scratch``, tile row by tile row."""
    grid = TileGrid(info.grid.height, info.grid.width, cfg.tile_size, cfg.overlap)
    k = len(models.classes)
    stitcher = RowStitcher(grid, k + 1)
    profile = {"driver": "GTiff", "width": info.grid.width, "height": info.grid.height, "count": k + 1,
               "dtype": "float32", "tiled": True, "blockxsize": 256, "blockysize": 256, "crs": info.grid.crs,
               "transform": info.grid.transform}
    with rasterio.open(info.path) as src, rasterio.open(scratch, "w", **profile) as dst:
        for tile in grid:
            x, valid = _input(src, tile.window, sb, models.config)
            pred = np.empty((k + 1, *valid.shape), np.float32)
            pred[:k] = cams(models.classifier, torch.from_numpy(x[None]))[0].numpy() * valid
            pred[k] = valid
            stitcher.add(tile, pred)
            if tile.col == grid.shape[1] - 1:
                for row_off, values in stitcher.release(tile.row):
                    dst.write(values, window=Window(0, row_off, info.grid.width, values.shape[1]))
            if progress:
                progress(1)


def _read_padded(ds: rasterio.io.DatasetReader, window: Window) -> np.ndarray:
    inner = window.intersection(Window(0, 0, ds.width, ds.height))
    data = ds.read(window=inner)
    top, left = int(inner.row_off - window.row_off), int(inner.col_off - window.col_off)
    pads = ((0, 0), (top, int(window.height) - data.shape[1] - top), (left, int(window.width) - data.shape[2] - left))
    return np.pad(data, pads)


@dataclass
class _SceneLabels:
    """A scene's labelled windows with the raw CAM maximum of each present class."""

    windows: list[tuple[Window, dict[str, int], dict[str, float]]]


def _scene_labels(labels: Sequence[ImageLabel], info: SceneInfo, scratch: rasterio.io.DatasetReader,
                  classes: Sequence[str]) -> _SceneLabels:
    out = []
    for lab in labels:
        window = lab.window or Window(0, 0, info.grid.width, info.grid.height)
        peaks = {}
        if any(lab.classes.get(c) == PRESENT for c in classes):
            data = _read_padded(scratch, window)
            ok = data[-1] > 0.5
            for k, c in enumerate(classes):
                if lab.classes.get(c) == PRESENT:
                    peaks[c] = float(data[k][ok].max()) if ok.any() else 0.0
        out.append((window, dict(lab.classes), peaks))
    return _SceneLabels(out)


def _slices(window: Window, outer: Window) -> tuple[slice, slice] | None:
    inter = window.intersection(outer) if _overlaps(window, outer) else None
    if inter is None:
        return None
    r, c = int(inter.row_off - outer.row_off), int(inter.col_off - outer.col_off)
    return slice(r, r + int(inter.height)), slice(c, c + int(inter.width))


def _overlaps(a: Window, b: Window) -> bool:
    return (a.col_off < b.col_off + b.width and b.col_off < a.col_off + a.width
            and a.row_off < b.row_off + b.height and b.row_off < a.row_off + a.height)


def _normalized(raw: np.ndarray, outer: Window, sl: _SceneLabels, models: WeakModels) -> np.ndarray:
    """Normalized CAMs of a block: window maxima where present, 0 where absent, the global scale elsewhere."""
    norm = raw / models.scales[:, None, None]
    for phase in (PRESENT, ABSENT):
        for window, classes, peaks in sl.windows:
            s = _slices(window, outer)
            if s is None:
                continue
            for k, c in enumerate(models.classes):
                if classes.get(c) != phase:
                    continue
                norm[k][s] = raw[k][s] / peaks[c] if phase == PRESENT and peaks.get(c, 0) > 0 else 0.0
    return np.clip(norm, 0.0, 1.0)


def _label_masks(sl: _SceneLabels, window: Window, cfg: WeakConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(covered (h, w), absent (len(CLASSES), h, w))`` of a block's inner window."""
    h, w = int(window.height), int(window.width)
    covered = np.full((h, w), cfg.label_outside)
    absent = np.zeros((len(CLASSES), h, w), bool)
    for win, classes, _ in sl.windows:
        s = _slices(win, window)
        if s is None:
            continue
        covered[s] = True
        for k, c in enumerate(CLASSES):
            if classes.get(c) == ABSENT:
                absent[k][s] = True
    return covered, absent


def assign_labels(scores: np.ndarray, valid: np.ndarray, covered: np.ndarray, absent: np.ndarray,
                  classes: Sequence[str], margin: float) -> np.ndarray:
    """Pseudo masks from scores.

    Args:
        scores: ``(len(classes) + 1, h, w)`` background then class scores.
        valid: ``(h, w)`` bool.
        covered: ``(h, w)`` bool, pixels to label (inside labelled windows).
        absent: ``(len(CLASSES), h, w)`` bool, pixels known not to be each class.
        classes: class of each score after the background.
        margin: minimum lead of the best score over the runner-up.

    Returns:
        ``(len(CLASSES), h, w)`` uint8 in :data:`CLASSES` order: 1 / 0, 255 unsure, uncovered, unlabelled or nodata.
    """
    best = scores.argmax(0)
    top2 = np.sort(scores, axis=0)[-2:] if scores.shape[0] > 1 else np.stack([scores[0] * 0, scores[0]])
    sure = (top2[1] - top2[0]) >= margin
    out = np.full((len(CLASSES), *valid.shape), CLASS_NODATA, np.uint8)
    for k, name in enumerate(classes):
        band = out[CLASSES.index(name)]
        band[covered & sure] = (best == k + 1)[covered & sure]
    out[absent] = 0
    out[:, ~valid] = CLASS_NODATA
    return out


def _writers(stack: contextlib.ExitStack, paths: dict[str, Path], info: SceneInfo, models: WeakModels,
             cfg: WeakConfig) -> dict[str, TiledWriter]:
    method = "CAM + AffinityNet random walk" if cfg.method == "walk" else "CAM"
    tags = {"LABELLER": f"firemap pseudolabel ({method}, Ahn & Kwak 2018)",
            "VALUES": "1 = class, 0 = not the class, 255 = not labelled / unsure / nodata",
            "WALK": f"radius={cfg.radius} beta={cfg.beta:g} t={cfg.iterations} alpha={cfg.alpha:g} "
                    f"stride={cfg.walk_stride} margin={cfg.margin:g}"}
    band_tags = {i + 1: {"CLASS": n, "LABELLED": "yes" if n in models.classes else "absent-windows-only"}
                 for i, n in enumerate(CLASSES)}
    writers = {"labels": TiledWriter(stack.enter_context(atomic_output(paths["labels"], cfg.overwrite)), info.grid,
                                     len(CLASSES), "uint8", nodata=CLASS_NODATA, descriptions=list(CLASSES),
                                     tags=tags, band_tags=band_tags)}
    extra = {"cam": [f"cam_{c}" for c in models.classes],
             "walk": ["background", *(f"walk_{c}" for c in models.classes)]}
    for kind, names in extra.items():
        if kind in paths:
            writers[kind] = TiledWriter(stack.enter_context(atomic_output(paths[kind], cfg.overwrite)), info.grid,
                                        len(names), "float32", nodata=float("nan"), descriptions=names,
                                        tags={"UNITS": "normalized score 0-1"}, overview_resampling="average")
    for w in writers.values():
        stack.push(w.__exit__)
    return writers


def _blocks(info: SceneInfo, read: ReadBlock, models: WeakModels,
            cfg: WeakConfig) -> Iterator[tuple[Window, np.ndarray, np.ndarray]]:
    """``(inner window, scores (K + 1, h, w), cam (K, h, w))`` per block: walked, or CAM alone."""
    h, w = info.grid.height, info.grid.width
    if cfg.method == "walk" and models.affinity is not None:
        net = models.affinity

        def features(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return net(torch.from_numpy(x[None]))[0].numpy()

        yield from walk_tiles(h, w, read, features, cfg)
        return
    for block in blocks(h, w, cfg.block_size, 0):
        _, _, cam = read(block.inner)
        yield block.inner, np.concatenate([background(cam, cfg.alpha)[None], cam]), cam


def output_paths(scene: Path, out_dir: Path, cfg: WeakConfig) -> dict[str, Path]:
    """``labels`` (and ``cam``, ``walk`` on request) output paths of a scene."""
    stem = scene.name.split(".")[0] if scene.name.count(".") > 1 else scene.stem
    paths = {"labels": out_dir / f"{stem}.labels.tif"}
    if cfg.save_cam:
        paths["cam"] = out_dir / f"{stem}.cam.tif"
    if cfg.save_walk and cfg.method == "walk":
        paths["walk"] = out_dir / f"{stem}.walk.tif"
    return paths


def pseudolabel_scene(scene: Path, labels: Sequence[ImageLabel], models: WeakModels, out_dir: Path, cfg: WeakConfig,
                      progress: ProgressFactory | None = None) -> PseudoResult:
    """Write one scene's pseudo masks (and CAM / walk rasters on request) on its grid.

    Args:
        scene: the scene.
        labels: its image-level labels (windows); pixels outside them stay 255 unless ``cfg.label_outside``.
        models: trained networks.
        out_dir: output folder (must exist).
        cfg: options.
        progress: progress factory (scene, steps) -> callback.
    """
    t0 = time.perf_counter()
    info = open_scene(scene, cfg.allow_no_crs)
    sb = scene_bands(info.path, cfg, models.config)
    paths = output_paths(info.path, out_dir, cfg)
    n = tile_count(info.grid.height, info.grid.width, cfg.tile_size, cfg.overlap)
    n += len(list(blocks(info.grid.height, info.grid.width, cfg.block_size, 0)))
    tick = _progress(progress, info.path.name, n)
    scratch = out_dir / f".{info.path.stem}.{uuid.uuid4().hex[:8]}.cam-scratch.tif"
    result = PseudoResult(info.path, dict(paths))
    counts = np.zeros((2, len(CLASSES)), np.int64)
    try:
        _cam_pass(info, sb, models, cfg, scratch, tick)
        with contextlib.ExitStack() as stack:
            raw = stack.enter_context(rasterio.open(scratch))
            src = stack.enter_context(rasterio.open(info.path))
            sl = _scene_labels(labels, info, raw, models.classes)
            writers = _writers(stack, paths, info, models, cfg)

            def read(window: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
                x, valid = _input(src, window, sb, models.config)
                data = _read_padded(raw, window)
                valid &= data[-1] > 0.5
                return x, valid, _normalized(data[:-1], window, sl, models) * valid

            for window, scores, cam in _blocks(info, read, models, cfg):
                valid = _read_padded(raw, window)[-1] > 0.5
                covered, absent = _label_masks(sl, window, cfg)
                out = assign_labels(scores, valid, covered, absent, models.classes, cfg.margin)
                r, c = int(window.row_off), int(window.col_off)
                writers["labels"].write(out, r, c)
                counts[0] += (out == 1).sum((1, 2))
                counts[1] += ((out == CLASS_NODATA) & covered & valid).sum((1, 2))
                if "cam" in writers:
                    writers["cam"].write(np.where(valid, cam, np.nan).astype(np.float32), r, c)
                if "walk" in writers:
                    writers["walk"].write(np.where(valid, scores, np.nan).astype(np.float32), r, c)
                if tick:
                    tick(1)
    finally:
        scratch.unlink(missing_ok=True)
    for k, name in enumerate(CLASSES):
        result.pixels[name], result.unsure[name] = int(counts[0, k]), int(counts[1, k])
    result.seconds = time.perf_counter() - t0
    log.info("%s: pseudo masks in %.1f s (%s)", info.path.name, result.seconds, result.pixels)
    return result


def check_outputs(scenes: Sequence[Path], out_dir: Path, cfg: WeakConfig) -> None:
    """Refuse existing outputs (without ``overwrite``), outputs over inputs, and two scenes writing one name.

    Raises:
        OutputExistsError: with the fix.
    """
    seen: dict[Path, Path] = {}
    for scene in scenes:
        for p in output_paths(scene, out_dir, cfg).values():
            if p in seen:
                raise OutputExistsError(f"{scene} and {seen[p]} would both write {p.name}; rename one scene")
            seen[p] = scene
            check_writable(p, cfg.overwrite, scenes)


def pseudolabel(label_file: str | Path, out_dir: str | Path, cfg: WeakConfig | None = None,
                progress: ProgressFactory | None = None) -> list[PseudoResult]:
    """``firemap pseudolabel``: image-level labels -> pseudo masks for every labelled scene.

    Args:
        label_file: CSV or YAML of image-level labels (see :mod:`firemap.weak.labels`).
        out_dir: output folder (created if needed): ``<stem>.labels.tif`` per scene (+ ``.cam.tif``, ``.walk.tif``).
        cfg: options (default :class:`WeakConfig`).
        progress: progress factory (task name, total steps) -> advance callback.

    Returns:
        One :class:`PseudoResult` per scene, in label-file order.

    Raises:
        FiremapError subclasses: bad label file, missing scenes or bands, outputs that exist without overwrite.
    """
    cfg = cfg or WeakConfig()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    labels = read_labels(label_file)
    scenes = list(dict.fromkeys(lab.scene for lab in labels))
    out = Path(out_dir)
    check_outputs(scenes, out, cfg)
    for scene in scenes:  # bands before any training
        scene_bands(scene, cfg)
    models = train_weak(labels, cfg, progress)
    out.mkdir(parents=True, exist_ok=True)
    return [pseudolabel_scene(s, [lab for lab in labels if lab.scene == s], models, out, cfg, progress)
            for s in scenes]


__all__ = ["PseudoResult", "WeakModels", "assign_labels", "check_outputs", "output_paths", "pseudolabel",
           "pseudolabel_scene", "train_weak"]
