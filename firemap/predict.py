"""Scene -> tiles -> batches -> network -> stitched probabilities -> class raster, probabilities, polygons.

The path touches each module once: bands (resolution), raster (windowed reads, COG writing), tiling (grid and
stitcher), models (the bundle), vectorize (streaming polygons) and style (QGIS). Memory is bounded by one row of
tiles: tiles are read one by one, batched, and stitched rows are written and vectorized as soon as they are final.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

from firemap.bands import THERMAL_BANDS, BandSource, check_reflectance_range, model_sources, resolve_bands
from firemap.config import ClassInfo, ModelConfig, PredictConfig, validate_tiling
from firemap.errors import BandScalingWarning, ConfigError, OutputExistsError
from firemap.models import Bundle, fuse_batchnorm, load_bundle
from firemap.postprocess import HookFactory, RowBlock, SceneStream, apply_hooks
from firemap.raster import (
    CLASS_NODATA,
    GeoGrid,
    SceneInfo,
    TiledWriter,
    atomic_output,
    bounded_gdal_cache,
    check_writable,
    colormap_for,
    open_scene,
    read_window,
)
from firemap.tiling import RowStitcher, Tile, TileGrid

log = logging.getLogger(__name__)

Progress = Callable[[int], None]
"""Callback advanced by the number of tiles just processed."""


def select_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU.

    Raises:
        ConfigError: ``cuda`` asked for but not available.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but torch sees no CUDA device; use --device cpu or auto")
    return torch.device(name)


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype for ``precision`` (``auto`` = fp16 on CUDA, full fp32 on CPU), or None for fp32."""
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def prepare_input(
    data: np.ndarray, valid: np.ndarray | None, config: ModelConfig, present: Sequence[str] | None = None
) -> np.ndarray:
    """Normalize bands and append band-presence channels: exactly what the network was trained on.

    Args:
        data: ``(len(config.bands), rows, cols)`` float32 physical values in ``config.bands`` order.
        valid: ``(rows, cols)`` bool; invalid pixels become 0 (the band mean) after normalization. Pass None
            when ``data`` was read with ``fill=config.mean`` (nodata already holds the mean; the mirrored
            padding at scene borders, marked invalid by ``read_window``, must keep its values).
        config: the model config (bands, mean/std, optional bands, band_presence).
        present: names of the bands the scene really has (default: all); absent ones become 0.

    Returns:
        ``(config.in_channels, rows, cols)`` float32.
    """
    x = normalize_(data.astype(np.float32, copy=True), config, present)
    if valid is not None:
        x[:, ~valid] = 0.0
    return with_presence(x, config, present)


def normalize_(data: np.ndarray, config: ModelConfig, present: Sequence[str] | None = None) -> np.ndarray:
    """Normalize ``(len(config.bands), rows, cols)`` float32 physical values in place; absent bands become 0."""
    have = set(config.bands if present is None else present)
    for i, band in enumerate(config.bands):
        if band in have:
            data[i] -= np.float32(config.mean[i])
            data[i] /= np.float32(config.std[i])
        else:
            data[i] = 0.0
    return data


def with_presence(x: np.ndarray, config: ModelConfig, present: Sequence[str] | None = None) -> np.ndarray:
    """Append the 0/1 band-presence channels (one per optional band) to normalized ``(bands, rows, cols)``."""
    if not (config.band_presence and config.optional_bands):
        return x
    have = set(config.bands if present is None else present)
    flags = np.empty((len(config.optional_bands), *x.shape[1:]), np.float32)
    for i, band in enumerate(config.optional_bands):
        flags[i] = float(band in have)
    return np.concatenate([x, flags])


_D4 = [(k, f) for f in (False, True) for k in range(4)]


def _tta_views(mode: str) -> list[tuple[int, bool]]:
    """(rot90 count, horizontal flip) pairs for a TTA mode."""
    return {"none": [(0, False)], "flip": [(0, False), (0, True)], "d4": _D4}[mode]


def scaled_size(size: int, scale: float, multiple: int) -> int:
    """``size * scale`` rounded to the nearest positive multiple of ``multiple`` (the network stride)."""
    return max(multiple, round(size * scale / multiple) * multiple)


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)


def forward_probs(
    model: torch.nn.Module,
    x: torch.Tensor,
    tta: str = "none",
    amp: torch.dtype | None = None,
    scales: Sequence[float] = (1.0,),
    multiple: int = 1,
) -> torch.Tensor:
    """Sigmoid probabilities of a batch, averaged over test-time augmentation views and scales.

    Args:
        model: network in eval mode, on ``x``'s device.
        x: ``(batch, channels, H, W)`` float32 normalized input (channels_last is fine).
        tta: ``none``, ``flip`` (identity + horizontal flip, as in DeepLabv3) or ``d4`` (4 rotations x 2 flips).
        amp: autocast dtype or None for fp32.
        scales: multi-scale inference (DeepLabv3): at each scale ``s != 1`` the batch is resized (bilinear) to
            ``H * s`` by ``W * s`` rounded to ``multiple``, predicted with every view, and the probabilities are
            resized back; all (scale, view) pairs are averaged. ``(1.0,)`` is plain inference.
        multiple: the network stride (resized sizes are multiples of it).

    Returns:
        ``(batch, classes, H, W)`` float32 probabilities.
    """
    views = _tta_views(tta)
    size = (x.shape[-2], x.shape[-1])
    total = torch.zeros(())
    with torch.autocast(x.device.type, dtype=amp or torch.float32, enabled=amp is not None):
        for scale in scales:
            xs = x if scale == 1 else _resize(x, (scaled_size(size[0], scale, multiple),
                                                  scaled_size(size[1], scale, multiple)))
            for k, flip in views:
                v = torch.rot90(xs, k, (2, 3)) if k else xs
                v = torch.flip(v, (3,)) if flip else v
                p = torch.sigmoid(model(v).float())
                p = torch.flip(p, (3,)) if flip else p
                p = torch.rot90(p, -k, (2, 3)) if k else p
                total = total + (p if scale == 1 else _resize(p, size))
    return total / (len(views) * len(scales))


@dataclass
class _Context:
    """Per-scene state of the tile loop."""

    bundle: Bundle
    sources: list[BandSource | None]
    present: list[str]
    fill: list[float]
    zero_is_nodata: bool
    device: torch.device
    amp: torch.dtype | None
    cfg: PredictConfig
    checked_scaling: bool = False


def scene_sources(info: SceneInfo, config: ModelConfig, cfg: PredictConfig) -> tuple[list[BandSource | None], bool]:
    """The source of each model band in a scene (None for an absent optional band), and whether 0 is fill.

    Raises:
        MissingBandsError: a required band is missing (the message lists what the file offers).
        BandResolutionError: bad ``--sensor``/``--bands``.
    """
    bandmap = resolve_bands(info.descriptions, info.count, cfg.sensor, cfg.bands, info.tags)
    return model_sources(bandmap, config.bands, config.optional_bands, info.path.name)


def _scene_context(info: SceneInfo, bundle: Bundle, cfg: PredictConfig) -> _Context:
    mc = bundle.config
    sources, zero_fill = scene_sources(info, mc, cfg)
    present = [b for b, s in zip(mc.bands, sources, strict=True) if s is not None]
    missing = [b for b in mc.bands if b not in present]
    if missing:
        log.info("%s: optional band(s) %s absent; the model was trained to do without", info.path.name, missing)
    device = select_device(cfg.device)
    return _Context(
        bundle, sources, present, list(mc.mean), zero_fill, device, autocast_dtype(device, cfg.precision), cfg
    )


def _check_scaling(ctx: _Context, data: np.ndarray, valid: np.ndarray, name: str) -> None:
    ctx.checked_scaling = True
    for band, values in zip(ctx.bundle.config.bands, data, strict=True):
        if band in ctx.present and band not in THERMAL_BANDS:
            text = check_reflectance_range(values[valid], band)
            if text:
                warnings.warn(f"{name}: {text}", BandScalingWarning, stacklevel=2)


def _run_batch(ctx: _Context, batch: list[np.ndarray]) -> np.ndarray:
    x = torch.from_numpy(np.stack(batch))
    if ctx.device.type == "cuda":
        x = x.pin_memory().to(ctx.device, non_blocking=True)
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        return forward_probs(ctx.bundle.model, x, ctx.cfg.tta, ctx.amp, ctx.cfg.tta_scales,
                             ctx.bundle.config.stride).cpu().numpy()


CHUNK_TILES = 12
"""Tiles per read chunk along a tile row: bounds the read buffers however wide the scene is (12 tiles of 256 px
with 64 px overlap read 2368 columns at a time)."""


def _chunks(grid: TileGrid) -> list[tuple[int, int, int]]:
    """``(tile_row, first tile col, end tile col)`` of each read chunk, in row-major order."""
    cols = grid.shape[1]
    return [(row, c, min(c + CHUNK_TILES, cols)) for row in range(grid.shape[0]) for c in range(0, cols, CHUNK_TILES)]


def _read_chunks(
    info: SceneInfo, grid: TileGrid, ctx: _Context
) -> Iterator[tuple[int, int, int, np.ndarray, np.ndarray]]:
    """Read each row of tiles in chunks of up to :data:`CHUNK_TILES` tiles, prefetching the next chunk.

    One read per chunk instead of one per tile: each pixel is decoded about once per tile row, and a single worker
    thread reads chunk ``k + 1`` while the network works on chunk ``k`` (GDAL releases the GIL while it decodes),
    which pays off when the network runs on a GPU. The dataset is only ever used from that worker thread. Chunks,
    not whole-width strips, so that read buffers stay the same size on a 100 000 px wide mosaic.

    Yields:
        ``(tile_row, first tile col, end tile col, data, valid)``: ``data`` ``(bands, tile_size, chunk width)``
        float32 physical values filled with the band means where invalid, ``valid`` ``(tile_size, chunk width)``
        bool, starting at column ``grid.col_origins[first tile col]``.
    """
    size = grid.tile_size
    chunks = _chunks(grid)
    with rasterio.open(info.path) as src, ThreadPoolExecutor(1, thread_name_prefix="firemap-read") as pool:

        def read(k: int) -> tuple[np.ndarray, np.ndarray]:
            row, c0, c1 = chunks[k]
            col0 = grid.col_origins[c0]
            window = Window(col0, grid.row_origins[row], grid.col_origins[c1 - 1] + size - col0, size)
            return read_window(src, window, ctx.sources, ctx.zero_is_nodata, ctx.fill)

        pending = pool.submit(read, 0)
        for k, (row, c0, c1) in enumerate(chunks):
            data, valid = pending.result()
            if k + 1 < len(chunks):
                pending = pool.submit(read, k + 1)
            yield row, c0, c1, data, valid


def _tiles(info: SceneInfo, grid: TileGrid, ctx: _Context) -> Iterator[tuple[Tile, np.ndarray | None, np.ndarray]]:
    """Every tile in row-major order: ``(tile, network input or None when all nodata, validity)``."""
    size = grid.tile_size
    for row, c0, c1, data, valid in _read_chunks(info, grid, ctx):
        if not ctx.checked_scaling and valid.any():
            _check_scaling(ctx, data, valid, info.path.name)
        x = normalize_(data, ctx.bundle.config, ctx.present)  # in place: one chunk in memory, not two
        col0 = grid.col_origins[c0]
        for col in range(c0, c1):
            tile = grid.tile(row, col)
            start = int(tile.window.col_off) - col0
            tile_valid = valid[:, start : start + size]
            if not tile_valid.any():
                yield tile, None, tile_valid
                continue
            yield tile, with_presence(x[:, :, start : start + size], ctx.bundle.config, ctx.present), tile_valid


def _predict_queue(
    queue: list[tuple[Tile, np.ndarray | None, np.ndarray]], ctx: _Context
) -> Iterator[tuple[Tile, np.ndarray]]:
    """Run the queued tiles' inputs through the network in one batch; yield ``(tile, classes + 1 channels)``.

    The extra last channel is the tile's validity, stitched along with the probabilities.
    """
    inputs = [x for _, x, _ in queue if x is not None]
    probs = iter(_run_batch(ctx, inputs)) if inputs else iter(())
    n = len(ctx.bundle.config.classes)
    for tile, x, valid in queue:
        pred = np.empty((n + 1, *valid.shape), np.float32)
        pred[:n] = next(probs) if x is not None else 0.0
        pred[n] = valid
        yield tile, pred


def _row_blocks(released: Iterator[tuple[int, np.ndarray]]) -> Iterator[RowBlock]:
    for row_off, values in released:
        valid = values[-1] > 0.5
        yield RowBlock(row_off, np.where(valid, values[:-1], 0.0).astype(np.float32), valid)


def row_hooks(cfg: PredictConfig) -> list[HookFactory]:
    """The post-processing hooks ``cfg`` asks for, in order (see :mod:`firemap.postprocess`)."""
    hooks: list[HookFactory] = []
    if cfg.crf:
        from firemap.crf import crf_hook

        hooks.append(crf_hook)
    return hooks


def iter_predictions(
    info: SceneInfo, bundle: Bundle, cfg: PredictConfig, progress: Progress | None = None
) -> Iterator[RowBlock]:
    """Stream a scene's stitched probabilities, top to bottom, through the post-processing hooks of ``cfg``.

    Tiles with no valid pixel skip the network. Validity is stitched along with the probabilities (it is the
    same in every tile that covers a pixel), so no second read is needed.

    Args:
        info: the scene (see :func:`firemap.raster.open_scene`).
        bundle: the model.
        cfg: tile size/overlap (None = bundle defaults), batch size, device, precision, TTA, band resolution.
        progress: called with the number of tiles done after each batch.

    Yields:
        :class:`RowBlock` bands of rows covering the scene exactly once, in order.

    Raises:
        MissingBandsError, BandResolutionError, ConfigError: bands or tiling do not fit the model.
    """
    ctx = _scene_context(info, bundle, cfg)
    scene = SceneStream(info, bundle.config, ctx.sources, ctx.zero_is_nodata)
    yield from apply_hooks(_stitched_rows(info, ctx, progress), [make(scene) for make in row_hooks(cfg)])


def _stitched_rows(info: SceneInfo, ctx: _Context, progress: Progress | None) -> Iterator[RowBlock]:
    bundle, cfg, mc = ctx.bundle, ctx.cfg, ctx.bundle.config
    bundle.model.to(ctx.device).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    grid = tile_grid(info, bundle, cfg)
    stitcher = RowStitcher(grid, len(mc.classes) + 1)
    queue: list[tuple[Tile, np.ndarray | None, np.ndarray]] = []
    last_col = grid.shape[1] - 1
    for i, item in enumerate(_tiles(info, grid, ctx)):
        queue.append(item)
        if sum(q[1] is not None for q in queue) < cfg.batch_size and i + 1 < len(grid):
            continue
        for done, pred in _predict_queue(queue, ctx):
            stitcher.add(done, pred)
            if done.col == last_col:  # tile-row complete: its final rows can go
                yield from _row_blocks(stitcher.release(done.row))
        if progress:
            progress(len(queue))
        queue.clear()


def tile_grid(info: SceneInfo, bundle: Bundle, cfg: PredictConfig) -> TileGrid:
    """The tile grid for a scene: ``cfg`` tile size/overlap, else the bundle's defaults.

    Raises:
        ConfigError: tile size not divisible by the network stride, or overlap >= tile size.
    """
    tile_size = cfg.tile_size or bundle.config.tile_size
    overlap = cfg.overlap if cfg.overlap is not None else bundle.config.overlap
    validate_tiling(tile_size, overlap, bundle.config.stride)
    return TileGrid(info.grid.height, info.grid.width, tile_size, overlap)


def classify(
    probs: np.ndarray, valid: np.ndarray, classes: Sequence[ClassInfo], thresholds: dict[str, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Threshold probabilities into per-class masks and a one-class-per-pixel raster.

    Args:
        probs: ``(classes, rows, cols)`` float32 probabilities.
        valid: ``(rows, cols)`` bool.
        classes: class definitions (ids, priorities), in ``probs`` order.
        thresholds: class name -> probability threshold (default 0.5).

    Returns:
        ``(masks, class_raster)``: ``(classes, rows, cols)`` bool (multi-label, False on nodata) and
        ``(rows, cols)`` uint8 with 0 background, class ids by priority (lowest priority value wins), 255 nodata.
    """
    thr = np.asarray([thresholds.get(c.name, 0.5) for c in classes], np.float32)[:, None, None]
    masks = (probs >= thr) & valid
    out = np.zeros(valid.shape, np.uint8)
    for k in sorted(range(len(classes)), key=lambda k: classes[k].priority, reverse=True):
        out[masks[k]] = classes[k].id
    out[~valid] = CLASS_NODATA
    return masks, out


@dataclass
class SceneResult:
    """What ``predict`` made of one scene.

    Attributes:
        scene: input path.
        outputs: output kind (``classes``, ``qml``, ``vectors``, ``probs``, ...) -> path.
        area_ha: class name -> mapped area in hectares (sum of polygon areas after ``min_area``).
        polygons: class name -> polygon count.
        seconds: wall time.
        tiles: tiles in the grid.
    """

    scene: Path
    outputs: dict[str, Path] = field(default_factory=dict)
    area_ha: dict[str, float] = field(default_factory=dict)
    polygons: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    tiles: int = 0


def output_paths(scene: Path, out_dir: Path, cfg: PredictConfig) -> dict[str, Path]:
    """The final output paths of a scene (stem = scene file stem)."""
    stem = scene.name.split(".")[0] if scene.name.count(".") > 1 else scene.stem
    paths = {
        "classes": out_dir / f"{stem}.classes.tif",
        "qml": out_dir / f"{stem}.qml",
        "classes_qml": out_dir / f"{stem}.classes.qml",
        "vectors": out_dir / f"{stem}.{cfg.vector_format}",
    }
    if cfg.save_probs:
        paths["probs"] = out_dir / f"{stem}.probs.tif"
    return paths


def _class_writer(
    tmp: Path, grid: GeoGrid, classes: Sequence[ClassInfo], model: str, thresholds: dict[str, float]
) -> TiledWriter:
    tags = {f"CLASS_{c.id}": c.name for c in classes} | {
        "CLASS_0": "background",
        "CLASS_255": "nodata",
        "MODEL": model,
        "THRESHOLDS": ",".join(f"{k}={v:g}" for k, v in thresholds.items()),
        "MULTILABEL_PRIORITY": ">".join(c.name for c in sorted(classes, key=lambda c: c.priority)),
    }
    return TiledWriter(
        tmp,
        grid,
        1,
        "uint8",
        nodata=CLASS_NODATA,
        colormap=colormap_for({c.id: c.color for c in classes}),
        descriptions=["class"],
        tags=tags,
    )


def _probs_writer(tmp: Path, grid: GeoGrid, classes: Sequence[ClassInfo]) -> TiledWriter:
    n = len(classes)
    return TiledWriter(
        tmp,
        grid,
        n,
        "uint8",
        descriptions=[f"p_{c.name}" for c in classes],
        tags={"PROBABILITY_SCALE": "1/255", "UNITS": "probability x 255"},
        scales=[1 / 255] * n,
        offsets=[0.0] * n,
        overview_resampling="average",
    )


def predict_scene(
    scene: str | Path | SceneInfo,
    out_dir: str | Path,
    bundle: Bundle,
    cfg: PredictConfig,
    progress: Progress | None = None,
) -> SceneResult:
    """Predict one scene and write its outputs (class COG, QGIS styles, vectors, optional probability COG).

    All outputs are written under temporary names and renamed only when the scene is complete.

    Raises:
        FiremapError subclasses: bad scene, bands, tiling, or outputs that exist without ``overwrite``.
    """
    from firemap.style import write_styles
    from firemap.vectorize import PolygonCollector, write_vectors

    t0 = time.perf_counter()
    info = scene if isinstance(scene, SceneInfo) else open_scene(scene, cfg.allow_no_crs)
    out = Path(out_dir)
    paths = output_paths(info.path, out, cfg)
    for p in paths.values():
        check_writable(p, cfg.overwrite, [info.path])
    out.mkdir(parents=True, exist_ok=True)
    classes = bundle.config.classes
    collector = PolygonCollector(info.grid, classes)
    result = SceneResult(info.path, dict(paths))
    thresholds = bundle.config.class_thresholds(cfg.thresholds)
    with contextlib.ExitStack() as stack:
        writers = {
            "classes": _class_writer(
                stack.enter_context(atomic_output(paths["classes"], cfg.overwrite)),
                info.grid, classes, bundle.name, thresholds,
            )
        }
        if cfg.save_probs:
            writers["probs"] = _probs_writer(
                stack.enter_context(atomic_output(paths["probs"], cfg.overwrite)), info.grid, classes
            )
        for w in writers.values():
            stack.push(w.__exit__)
        for block in iter_predictions(info, bundle, cfg, progress):
            masks, class_raster = classify(block.probs, block.valid, classes, thresholds)
            writers["classes"].write(class_raster, block.row_off)
            if "probs" in writers:
                writers["probs"].write(np.round(block.probs * 255).astype(np.uint8), block.row_off)
                writers["probs"].write_mask(block.valid, block.row_off)
            collector.add(block.row_off, masks, block.probs, block.valid)
        gdf = collector.finish(cfg.min_area, cfg.simplify, scene=info.path.name, model=bundle.name)
        stem = paths["classes"].name[: -len(".classes.tif")]
        write_styles(out, stem, classes, cfg.vector_format, cfg.overwrite)
        write_vectors(gdf, paths["vectors"], cfg.vector_format, classes, overwrite=cfg.overwrite)
    for c in classes:
        sel = gdf[gdf["class"] == c.name] if len(gdf) else gdf
        result.polygons[c.name] = len(sel)
        result.area_ha[c.name] = float(np.nansum(sel["area_m2"])) / 1e4 if len(sel) else 0.0
    result.seconds = time.perf_counter() - t0
    result.tiles = len(tile_grid(info, bundle, cfg))
    log.info("%s: done in %.1f s", info.path.name, result.seconds)
    return result


def check_scenes(scenes: Sequence[str | Path], out_dir: Path, cfg: PredictConfig) -> list[SceneInfo]:
    """Validate all inputs and output names before any work (fail fast, nothing half done).

    Raises:
        InputFileError, NotARasterError, MissingCRSError, OutputExistsError.
    """
    infos = [open_scene(s, cfg.allow_no_crs) for s in scenes]
    seen: dict[Path, Path] = {}
    for info in infos:
        for p in output_paths(info.path, out_dir, cfg).values():
            if p in seen:
                raise OutputExistsError(
                    f"{info.path} and {seen[p]} would both write {p.name}; predict them into different --out folders"
                )
            seen[p] = info.path
            check_writable(p, cfg.overwrite, [i.path for i in infos])
    return infos


def predict_scenes(
    scenes: Sequence[str | Path],
    out_dir: str | Path,
    model: str | Path | None,
    cfg: PredictConfig,
    progress_factory: Callable[[Path, int], Progress] | None = None,
) -> list[SceneResult]:
    """Predict several scenes with one model (``None`` = the shipped default).

    Args:
        scenes: input GeoTIFFs.
        out_dir: output folder (created if needed).
        model: bundle path or None.
        cfg: predict options.
        progress_factory: called with (scene, tile count) before each scene; returns its progress callback.

    Returns:
        One :class:`SceneResult` per scene, in input order.
    """
    out = Path(out_dir)
    infos = check_scenes(scenes, out, cfg)
    bundle = load_bundle(model)
    log.debug("folded %d BatchNorm layers into convolutions", fuse_batchnorm(bundle.model))
    for info in infos:  # band and tiling errors before any output
        scene_sources(info, bundle.config, cfg)
        tile_grid(info, bundle, cfg)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    with bounded_gdal_cache():
        for info in infos:
            progress = progress_factory(info.path, len(tile_grid(info, bundle, cfg))) if progress_factory else None
            results.append(predict_scene(info, out, bundle, cfg, progress))
    return results
