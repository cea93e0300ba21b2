"""Scene -> tiles -> batches -> network -> stitched probabilities -> class raster, probabilities, polygons.

The path touches each module once: bands (resolution), raster (windowed reads, COG writing), tiling (grid and
stitcher), models (the bundle), vectorize (streaming polygons) and style (QGIS). Memory is bounded by one row of
tiles: tiles are read one by one, batched, and stitched rows are written and vectorized as soon as they are final.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

from firemap.accel import CPU_BATCH_SIZE, GraphedForward, InFlight, batch_size_for_memory, free_device_memory, submit
from firemap.bands import THERMAL_BANDS, BandSource, check_reflectance_range, model_sources
from firemap.config import ClassInfo, ModelConfig, PredictConfig, validate_tiling
from firemap.errors import BandScalingWarning, ConfigError, OutputExistsError, OutputWriteError
from firemap.models import Bundle, load_bundle
from firemap.postprocess import HookFactory, RowBlock, SceneStream, apply_hooks
from firemap.raster import (
    CLASS_NODATA,
    GeoGrid,
    SceneInfo,
    StripReader,
    TiledWriter,
    bounded_gdal_cache,
    check_writable,
    claimed_outputs,
    colormap_for,
    open_scene,
    output_stem,
    read_error,
    read_window,
    staged_outputs,
    streaming_cache_megabytes,
)
from firemap.resources import available_memory, limit_malloc_arenas
from firemap.tiling import RELEASE_BYTES, RowStitcher, Tile, TileGrid

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
    flags = presence_flags(config, present)
    if not flags.size:
        return x
    return np.concatenate([x, np.broadcast_to(flags[:, None, None], (flags.size, *x.shape[1:]))])


def presence_flags(config: ModelConfig, present: Sequence[str] | None = None) -> np.ndarray:
    """The band-presence channel values, ``(optional bands,)`` float32 0/1 (empty without band presence)."""
    if not (config.band_presence and config.optional_bands):
        return np.zeros(0, np.float32)
    have = set(config.bands if present is None else present)
    return np.asarray([float(band in have) for band in config.optional_bands], np.float32)


class BatchBuffer:
    """Assemble network batches in one reused channels-last buffer: each tile is copied once.

    ``fill`` writes tiles' normalized bands ``(bands, H, W)`` float32 (views of a read chunk) and the
    band-presence channels straight into a ``(batch, H, W, channels)`` array and returns it as a
    ``(tiles, channels, H, W)`` channels-last tensor sharing that memory: the same values and layout as stacking
    :func:`with_presence` inputs and converting to channels-last, without the three intermediate copies. The
    tensor is valid until the next ``fill``: the forward pass must be done with it (on CUDA it is copied to
    pinned memory first).

    Args:
        batch: the largest number of tiles per batch.
        channels: network input channels (bands + presence channels).
        tile_size: tile edge, pixels.
    """

    def __init__(self, batch: int, channels: int, tile_size: int) -> None:
        self._array = np.empty((batch, tile_size, tile_size, channels), np.float32)

    def fill(self, tiles: Sequence[np.ndarray], flags: np.ndarray) -> torch.Tensor:
        """The batch of ``tiles`` (each ``(bands, H, W)``) followed by ``flags`` ``(presence channels,)``."""
        n = len(tiles)
        out = self._array[:n]
        bands = out.shape[-1] - flags.size
        for i, x in enumerate(tiles):
            out[i, :, :, :bands] = x.transpose(1, 2, 0)
        if flags.size:
            out[:, :, :, bands:] = flags
        return torch.from_numpy(out).permute(0, 3, 1, 2)


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


@dataclass(frozen=True)
class ScenePlan:
    """Everything decided about one scene before its pixels are read, computed once and passed down.

    Attributes:
        info: the scene's metadata and grid (CRS, transform, size).
        sources: source band of each model band, in ``bundle.config.bands`` order (None = absent optional band).
        present: the model bands the scene really has.
        zero_is_nodata: pixels that are 0 in every band are nodata (the sensor fills outside its swath with 0).
        grid: the tile grid (tile size and overlap resolved from the options and the bundle).
        outputs: output kind (``classes``, ``qml``, ``classes_qml``, ``vectors``, ``probs``) -> final path;
            empty when the plan is only for streaming predictions.
    """

    info: SceneInfo
    sources: tuple[BandSource | None, ...]
    present: tuple[str, ...]
    zero_is_nodata: bool
    grid: TileGrid
    outputs: Mapping[str, Path] = field(default_factory=dict)


def plan_scene(info: SceneInfo, bundle: Bundle, cfg: PredictConfig, out_dir: str | Path | None = None) -> ScenePlan:
    """Plan one scene: band sources and scaling, tile grid, output paths. Nothing is read or written.

    Raises:
        MissingBandsError: a required band is missing (the message lists what the file offers).
        BandResolutionError: bad ``--sensor``/``--bands``.
        ConfigError: bad tile size/overlap, or one that would need more memory than the machine has.
    """
    mc = bundle.config
    sources, zero_fill = scene_sources(info, mc, cfg)
    present = tuple(b for b, s in zip(mc.bands, sources, strict=True) if s is not None)
    absent = [b for b in mc.bands if b not in present]
    if absent:
        log.info("%s: optional band(s) %s absent; the model was trained to do without", info.path.name, absent)
    grid = tile_grid(info, bundle, cfg)
    outputs = output_paths(info.path, Path(out_dir), cfg) if out_dir is not None else {}
    return ScenePlan(info, tuple(sources), present, zero_fill, grid, outputs)


@dataclass
class _Context:
    """Per-scene state of the tile loop."""

    bundle: Bundle
    plan: ScenePlan
    fill: list[float]
    device: torch.device
    amp: torch.dtype | None
    cfg: PredictConfig
    batch_size: int
    forward: Callable[[torch.Tensor], torch.Tensor]
    batch: BatchBuffer
    flags: np.ndarray
    checked_scaling: bool = False

    @property
    def present(self) -> tuple[str, ...]:
        return self.plan.present


def scene_sources(info: SceneInfo, config: ModelConfig, cfg: PredictConfig) -> tuple[list[BandSource | None], bool]:
    """The source of each model band in a scene (None for an absent optional band), and whether 0 is fill.

    Raises:
        MissingBandsError: a required band is missing (the message lists what the file offers).
        BandResolutionError: bad ``--sensor``/``--bands``.
    """
    return model_sources(info.bandmap(cfg.sensor, cfg.bands), config.bands, config.optional_bands, info.path.name)


def _scene_context(plan: ScenePlan, bundle: Bundle, cfg: PredictConfig) -> _Context:
    device = select_device(cfg.device)
    amp = autocast_dtype(device, cfg.precision)

    def forward(x: torch.Tensor) -> torch.Tensor:
        return forward_probs(bundle.model, x, cfg.tta, amp, cfg.tta_scales, bundle.config.stride)

    plain = cfg.tta == "none" and tuple(cfg.tta_scales) == (1.0,)
    use = GraphedForward(forward) if cfg.cuda_graphs and device.type == "cuda" and plain else forward
    size = batch_size(cfg, bundle, device)
    buffer = BatchBuffer(size, bundle.config.in_channels, plan.grid.tile_size)
    flags = presence_flags(bundle.config, plan.present)
    return _Context(bundle, plan, list(bundle.config.mean), device, amp, cfg, size, use, buffer, flags)


def batch_size(cfg: PredictConfig, bundle: Bundle, device: torch.device | None = None) -> int:
    """Tiles per forward pass: ``cfg.batch_size``, or for ``auto`` the largest batch the free CUDA memory holds
    (:func:`firemap.accel.batch_size_for_memory`; 8 on the CPU)."""
    if cfg.batch_size != "auto":
        return cfg.batch_size
    device = device or select_device(cfg.device)
    free = free_device_memory(device)
    if free is None:
        return CPU_BATCH_SIZE
    tile = cfg.tile_size or bundle.config.tile_size
    chosen = batch_size_for_memory(free, tile, TILE_BYTES_PER_PIXEL, autocast_dtype(device, cfg.precision) is not None)
    log.info("--batch-size auto: %d tiles of %d px (%.1f GiB free on %s)", chosen, tile, free / 2**30, device)
    return chosen


def _check_scaling(ctx: _Context, data: np.ndarray, valid: np.ndarray, name: str) -> None:
    ctx.checked_scaling = True
    for band, values in zip(ctx.bundle.config.bands, data, strict=True):
        if band in ctx.present and band not in THERMAL_BANDS:
            text = check_reflectance_range(values[valid], band)
            if text:
                warnings.warn(f"{name}: {text}", BandScalingWarning, stacklevel=2)


CHUNK_TILES = 12
"""Tiles per read chunk along a tile row: bounds the read buffers however wide the scene is (12 tiles of 256 px
with 64 px overlap read 2368 columns at a time)."""


def chunk_width(grid: TileGrid) -> int:
    """Columns of the widest read chunk (:data:`CHUNK_TILES` tiles of a tile row)."""
    return grid.tile_size + (min(CHUNK_TILES, grid.shape[1]) - 1) * (grid.tile_size - grid.overlap)


def _chunks(grid: TileGrid) -> list[tuple[int, int, int]]:
    """``(tile_row, first tile col, end tile col)`` of each read chunk, in row-major order."""
    cols = grid.shape[1]
    return [(row, c, min(c + CHUNK_TILES, cols)) for row in range(grid.shape[0]) for c in range(0, cols, CHUNK_TILES)]


def _read_chunks(ctx: _Context) -> Iterator[tuple[int, int, int, np.ndarray, np.ndarray]]:
    """Read each row of tiles in chunks of up to :data:`CHUNK_TILES` tiles, prefetching the next chunk.

    One read per chunk instead of one per tile, through a :class:`firemap.raster.StripReader`: each block of the
    file is decoded once, the rows a tile row shares with the next are kept (raw) for it. A single worker
    thread reads chunk ``k + 1`` while the network works on chunk ``k`` (GDAL releases the GIL while it decodes),
    which pays off when the network runs on a GPU. The dataset is only ever used from that worker thread. Chunks,
    not whole-width strips, so that read buffers stay the same size on a 100 000 px wide mosaic.

    Yields:
        ``(tile_row, first tile col, end tile col, data, valid)``: ``data`` ``(bands, tile_size, chunk width)``
        float32 physical values filled with the band means where invalid, ``valid`` ``(tile_size, chunk width)``
        bool, starting at column ``grid.col_origins[first tile col]``.
    """
    info, grid = ctx.plan.info, ctx.plan.grid
    size = grid.tile_size
    chunks = _chunks(grid)
    with _open_input(info.path) as src, worker_thread("firemap-read") as pool:
        reader = StripReader(src, ctx.plan.sources, ctx.plan.zero_is_nodata, ctx.fill)

        def read(k: int) -> tuple[np.ndarray, np.ndarray]:
            row, c0, c1 = chunks[k]
            col0 = grid.col_origins[c0]
            window = Window(col0, grid.row_origins[row], grid.col_origins[c1 - 1] + size - col0, size)
            following = grid.row_origins[row + 1] if row + 1 < grid.shape[0] else None
            return reader.read(window, keep_from=following)

        pending = pool.submit(read, 0)
        for k, (row, c0, c1) in enumerate(chunks):
            data, valid = pending.result()
            if k + 1 < len(chunks):
                pending = pool.submit(read, k + 1)
            yield row, c0, c1, data, valid


def _open_input(path: Path) -> rasterio.io.DatasetReader:
    try:
        return rasterio.open(path)
    except rasterio.errors.RasterioError as exc:
        raise read_error(path, exc) from None


def _tiles(ctx: _Context) -> Iterator[tuple[Tile, np.ndarray | None, np.ndarray | None]]:
    """Every tile in row-major order: ``(tile, normalized bands or None when all nodata, validity or None when
    all nodata)``; the bands are a ``(bands, tile_size, tile_size)`` view of the read chunk (the band-presence
    channels are added by :class:`BatchBuffer`). A tile without valid pixels keeps no reference to its chunk."""
    info, grid = ctx.plan.info, ctx.plan.grid
    size = grid.tile_size
    for row, c0, c1, data, valid in _read_chunks(ctx):
        if not ctx.checked_scaling and valid.any():
            _check_scaling(ctx, data, valid, info.path.name)
        x = normalize_(data, ctx.bundle.config, ctx.present)  # in place: one chunk in memory, not two
        col0 = grid.col_origins[c0]
        for col in range(c0, c1):
            tile = grid.tile(row, col)
            start = int(tile.window.col_off) - col0
            tile_valid = valid[:, start : start + size]
            if not tile_valid.any():
                yield tile, None, None
                continue
            yield tile, x[:, :, start : start + size], tile_valid


QueueItem = tuple[Tile, np.ndarray | None, np.ndarray | None]


def _submit_queue(queue: list[QueueItem], ctx: _Context) -> InFlight:
    """Start the queued tiles' inputs through the network in one batch (see :func:`firemap.accel.submit`)."""
    tiles = [x for _, x, _ in queue if x is not None]
    return submit(ctx.forward, ctx.batch.fill(tiles, ctx.flags) if tiles else [], ctx.device, queue)


def _collect(flight: InFlight) -> Iterator[tuple[Tile, np.ndarray | None, np.ndarray | None]]:
    """A submitted batch's tiles as ``(tile, (classes, H, W) probabilities, (H, W) validity)``, waiting for the
    device if needed. A tile without valid pixels yields ``(tile, None, None)`` (all zeros: it only adds its
    blending weights); the probabilities are views of the batch result (no copy)."""
    result = flight.result()
    probs = iter(result) if result is not None else iter(())
    for tile, x, valid in flight.items:
        yield tile, (next(probs) if x is not None else None), valid


def _row_blocks(released: Iterator[tuple[int, np.ndarray, np.ndarray]]) -> Iterator[RowBlock]:
    for row_off, probs, valid in released:  # ``probs`` is a fresh array: zero the invalid pixels in place
        np.copyto(probs, np.float32(0.0), where=~valid)
        yield RowBlock(row_off, probs, valid)


PIPELINE_DEPTH = {"cuda": 1}
"""Batches left computing on the device (per device type) while the tile loop reads, normalizes and stitches:
on CUDA one, so the GPU always has the next batch queued; on the CPU none (the same cores would do both)."""

MAX_QUEUED_BATCHES = 4
"""The tile loop runs the network when ``batch_size`` tiles with data are queued, or when
``MAX_QUEUED_BATCHES * batch_size`` tiles are queued at all (tiles without data skip the network), so the tiles
held in flight are bounded whatever the nodata layout (a 200 000 px wide, mostly empty mosaic streams)."""


def row_hooks(cfg: PredictConfig) -> list[HookFactory]:
    """The post-processing hooks ``cfg`` asks for, in order (see :mod:`firemap.postprocess`)."""
    hooks: list[HookFactory] = []
    if cfg.crf:
        from firemap.crf import crf_hook

        hooks.append(crf_hook)
    return hooks


def iter_predictions(
    scene: SceneInfo | ScenePlan, bundle: Bundle, cfg: PredictConfig, progress: Progress | None = None
) -> Iterator[RowBlock]:
    """Stream a scene's stitched probabilities, top to bottom, through the post-processing hooks of ``cfg``.

    Tiles with no valid pixel skip the network. The stitcher keeps each pixel's validity from the tiles (it is the
    same in every tile that covers a pixel), so no second read is needed. At most
    ``MAX_QUEUED_BATCHES * batch_size`` tiles are held between reading and stitching (twice that on CUDA, where one
    batch computes on the device while the next is read).

    Args:
        scene: the scene (see :func:`firemap.raster.open_scene`) or its plan (:func:`plan_scene`).
        bundle: the model.
        cfg: tile size/overlap (None = bundle defaults), batch size, device, precision, TTA, band resolution.
        progress: called with the number of tiles done after each batch.

    Yields:
        :class:`RowBlock` bands of rows covering the scene exactly once, in order.

    Raises:
        MissingBandsError, BandResolutionError, ConfigError: bands or tiling do not fit the model.
        InputReadError: the scene's pixels cannot be read (truncated or corrupt file).
    """
    plan = scene if isinstance(scene, ScenePlan) else plan_scene(scene, bundle, cfg)
    bundle = adapt_to_scene(plan, bundle, cfg)
    ctx = _scene_context(plan, bundle, cfg)
    stream = SceneStream(plan.info, bundle.config, plan.sources, plan.zero_is_nodata)
    yield from apply_hooks(_stitched_rows(plan, ctx, progress), [make(stream) for make in row_hooks(cfg)])


def bn_adapt_weight(bundle: Bundle, cfg: PredictConfig) -> float:
    """Weight of a scene's own BatchNorm statistics: ``--bn-adapt``, else the bundle's (:mod:`firemap.adapt`)."""
    return float(cfg.bn_adapt if cfg.bn_adapt is not None else bundle.config.bn_adapt)


def _sample_batches(
    plan: ScenePlan, bundle: Bundle, cfg: PredictConfig, device: torch.device
) -> Iterator[torch.Tensor]:
    """Network inputs ``(batch, in_channels, tile, tile)`` float32 of up to :data:`firemap.adapt.ADAPT_MAX_TILES`
    tiles spread evenly over the scene, read and normalized as the tile loop does; tiles without data skipped.
    A last lone tile joins the batch before it (BatchNorm in training mode needs more than one value per channel
    after global pooling, as in DeepLabv3+'s ASPP)."""
    from firemap.adapt import sample_indices

    grid, config = plan.grid, bundle.config
    cols = grid.shape[1]
    size = batch_size(cfg, bundle, device)
    pending: list[np.ndarray] = []  # a full batch leaves only once two more tiles follow it
    with _open_input(plan.info.path) as src:
        for i in sample_indices(len(grid)):
            tile = grid.tile(i // cols, i % cols)
            data, valid = read_window(src, tile.window, plan.sources, plan.zero_is_nodata, list(config.mean))
            if not valid.any():
                continue
            pending.append(with_presence(normalize_(data, config, plan.present), config, plan.present))
            if len(pending) == size + 2:
                yield _pixel_interleaved(pending[:size], device)
                pending = pending[size:]
    if pending:  # at most size + 1 tiles: one batch, so a lone last tile joins the batch before it
        yield _pixel_interleaved(pending, device)


def _pixel_interleaved(tiles: Sequence[np.ndarray], device: torch.device) -> torch.Tensor:
    """``(batch, channels, H, W)`` float32 in channels-last memory, as the tile loop feeds the network (the
    BatchNorm measuring pass runs about 1.8x faster on the CPU than on the default layout)."""
    x = torch.from_numpy(np.stack(tiles)).to(device)
    return x.contiguous(memory_format=torch.channels_last)


def adapt_to_scene(plan: ScenePlan, bundle: Bundle, cfg: PredictConfig) -> Bundle:
    """The bundle with its network's BatchNorm statistics adapted to the scene (:mod:`firemap.adapt`), folded for
    inference; the bundle itself when the weight is 0, the scene has no valid pixel, or the network has no
    BatchNorm layers left to adapt (the folded exported network: a warning says so). The network is the eager
    one (runtime ``eager-adapted``) or the bundle's exported :class:`~firemap.export.AdaptableNetwork`
    (``torchscript-adapted``: torch alone), with the same statistics and outputs."""
    weight = bn_adapt_weight(bundle, cfg)
    if weight == 0.0:
        return bundle
    from firemap.adapt import adapted_network, can_adapt
    from firemap.export import AdaptableNetwork

    if not can_adapt(bundle.model):
        log.warning("%s: the %s network has no BatchNorm layers to adapt to the scene; predicting with its "
                    "training statistics (load the bundle with keep_batchnorm=True)", bundle.name, bundle.runtime)
        return bundle
    device = select_device(cfg.device)
    t0 = time.perf_counter()
    batches = _sample_batches(plan, bundle, cfg, device)  # read lazily: one batch in memory at a time
    first = next(batches, None)
    if first is None:
        return bundle
    tiles: list[int] = []

    def counted() -> Iterator[torch.Tensor]:
        for b in itertools.chain([first], batches):
            tiles.append(len(b))
            yield b

    try:
        network = adapted_network(bundle.model.to(device), counted(), weight)
    except ValueError as exc:  # e.g. a one-tile scene: one value per channel after DeepLabv3+'s image pooling
        log.warning("%s: BatchNorm statistics cannot be measured on this scene (%s); predicting with the training "
                    "statistics", plan.info.path.name, " ".join(str(exc).split()))
        return bundle
    log.info("%s: BatchNorm adapted to the scene (weight %.2f, %d tiles, %.1f s)", plan.info.path.name, weight,
             sum(tiles), time.perf_counter() - t0)
    runtime = "torchscript-adapted" if isinstance(bundle.model, AdaptableNetwork) else "eager-adapted"
    return replace(bundle, model=network, runtime=runtime)


def _stitched_rows(plan: ScenePlan, ctx: _Context, progress: Progress | None) -> Iterator[RowBlock]:
    bundle = ctx.bundle
    bundle.model.to(ctx.device).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    grid = plan.grid
    stitcher = RowStitcher(grid, len(bundle.config.classes), track_valid=True, channels_last=True)
    queue: list[QueueItem] = []
    last_col = grid.shape[1] - 1
    max_queued = MAX_QUEUED_BATCHES * ctx.batch_size
    in_flight: list[InFlight] = []
    depth = PIPELINE_DEPTH.get(ctx.device.type, 0)
    with_data = 0

    def stitch(flight: InFlight) -> Iterator[RowBlock]:
        for done, pred, valid in _collect(flight):
            stitcher.add(done, pred, valid)
            if done.col == last_col:  # tile-row complete: its final rows can go
                yield from _row_blocks(stitcher.release_valid(done.row))
        if progress:
            progress(len(flight.items))

    for i, item in enumerate(_tiles(ctx)):
        queue.append(item)
        with_data += item[1] is not None
        if with_data < ctx.batch_size and len(queue) < max_queued and i + 1 < len(grid):
            continue
        in_flight.append(_submit_queue(queue, ctx))
        while len(in_flight) > depth:
            yield from stitch(in_flight.pop(0))
        queue, with_data = [], 0
    for flight in in_flight:
        yield from stitch(flight)


TILE_BYTES_PER_PIXEL = 256
"""Working memory of the network per tile pixel at inference, measured for the default U-Net/MobileNetV2
(254 bytes/px at 256^2 and 1024^2 tiles, peak RSS): used to refuse tile sizes that cannot fit before allocating."""




def memory_estimate(grid: TileGrid, bundle: Bundle, batch_size: int) -> int:
    """Approximate peak bytes the tile loop needs: network batch, read chunk and stitcher band of rows."""
    mc = bundle.config
    tiles = min(batch_size, len(grid))
    network = tiles * grid.tile_size**2 * TILE_BYTES_PER_PIXEL
    read = 2 * (len(mc.bands) + 1) * 4 * grid.tile_size * chunk_width(grid)  # this chunk and the prefetched next one
    stitch = (len(mc.classes) + 2) * 4 * grid.tile_size * grid.width + 4 * RELEASE_BYTES  # sums, weights, bands out
    return int(network + read + stitch)


def tile_grid(info: SceneInfo, bundle: Bundle, cfg: PredictConfig) -> TileGrid:
    """The tile grid for a scene: ``cfg`` tile size/overlap, else the bundle's defaults.

    Raises:
        ConfigError: tile size not a positive multiple of the network stride, overlap >= tile size, or a tile
            size whose working memory exceeds the memory available (refused before allocating).
    """
    tile_size = cfg.tile_size if cfg.tile_size is not None else bundle.config.tile_size
    overlap = cfg.overlap if cfg.overlap is not None else bundle.config.overlap
    validate_tiling(tile_size, overlap, bundle.config.stride)
    grid = TileGrid(info.grid.height, info.grid.width, tile_size, overlap)
    batch = batch_size(cfg, bundle)
    need, have = memory_estimate(grid, bundle, batch), available_memory()
    if need > have:
        raise ConfigError(
            f"--tile-size {tile_size} with --batch-size {batch} would need about {need / 2**30:.1f} GiB "
            f"of memory on {info.path.name} but {have / 2**30:.1f} GiB are available; use a smaller --tile-size "
            f"(the model's default is {bundle.config.tile_size}) or --batch-size"
        )
    return grid


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
    """The final output paths of a scene (stem: :func:`firemap.raster.output_stem`)."""
    stem = output_stem(scene)
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


@contextlib.contextmanager
def worker_thread(name: str) -> Iterator[ThreadPoolExecutor]:
    """One worker thread whose running job is always finished before the block is left, even when Ctrl-C or
    SIGTERM interrupts the wait for it: the caller goes on to close datasets and remove files the worker may still
    be using in GDAL (leaving early crashed the process under load). Jobs not started yet are cancelled. An
    interrupting exception is dropped here; the one already unwinding, if any, carries on."""
    pool = ThreadPoolExecutor(1, thread_name_prefix=name)
    try:
        yield pool
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        joined = False
        while not joined:
            with contextlib.suppress(BaseException):
                pool.shutdown(wait=True)
                joined = True


def predict_scene(
    scene: str | Path | SceneInfo | ScenePlan,
    out_dir: str | Path,
    bundle: Bundle,
    cfg: PredictConfig,
    progress: Progress | None = None,
    claimed: bool = False,
) -> SceneResult:
    """Predict one scene and write its outputs (class COG, QGIS styles, vectors, optional probability COG).

    All outputs are claimed first (a concurrent run into the same folder fails fast), written under hidden
    temporary names and renamed together only when the scene is complete: an error, Ctrl-C, SIGTERM or a full
    disk leaves no file under a final name. ``claimed``: the caller holds the claims already
    (:func:`firemap.raster.claimed_outputs`, as :func:`predict_scenes` does for all scenes at the start).

    Raises:
        FiremapError subclasses: bad scene, bands, tiling, outputs that exist without ``overwrite`` or are
            being written by another run, disk full, permission denied.
    """
    from firemap.style import combined_qml, raster_qml
    from firemap.vectorize import PolygonCollector, write_vector_file

    t0 = time.perf_counter()
    plan = _as_plan(scene, bundle, cfg, out_dir)
    info, paths, classes = plan.info, plan.outputs, bundle.config.classes
    collector = PolygonCollector(info.grid, classes)
    thresholds = bundle.config.class_thresholds(cfg.thresholds)
    with staged_outputs(paths, cfg.overwrite, [info.path], claimed) as tmp, contextlib.ExitStack() as stack:
        writers = {"classes": stack.enter_context(
            _class_writer(tmp["classes"], info.grid, classes, bundle.name, thresholds))}
        if cfg.save_probs:
            writers["probs"] = stack.enter_context(_probs_writer(tmp["probs"], info.grid, classes))
        for block in iter_predictions(plan, bundle, cfg, progress):
            masks, class_raster = classify(block.probs, block.valid, classes, thresholds)
            writers["classes"].write(class_raster, block.row_off)
            if "probs" in writers:
                writers["probs"].write(np.round(block.probs * 255).astype(np.uint8), block.row_off)
                writers["probs"].write_mask(block.valid, block.row_off)
            collector.add(block.row_off, masks, block.probs, block.valid)
        # every row is in: GDAL builds the COGs (overviews, compression; no GIL) in a worker thread while
        # this one dissolves and writes the polygons, so the two overlap on a machine with a core to spare
        with worker_thread("firemap-cog") as pool:
            cogs = pool.submit(_close_writers, list(writers.values()))
            polygons = collector.finish_table(cfg.min_area, cfg.simplify, scene=info.path.name, model=bundle.name)
            tmp["qml"].write_text(combined_qml(classes), encoding="utf-8")
            tmp["classes_qml"].write_text(raster_qml(classes), encoding="utf-8")
            write_vector_file(polygons, tmp["vectors"], cfg.vector_format, classes, layer=paths["vectors"].stem)
            cogs.result()
    result = SceneResult(info.path, dict(paths), tiles=len(plan.grid))
    for c in classes:
        result.polygons[c.name], result.area_ha[c.name] = polygons.class_totals(c.name)
    result.seconds = time.perf_counter() - t0
    log.info("%s: done in %.1f s", info.path.name, result.seconds)
    return result


def _close_writers(writers: Sequence[TiledWriter]) -> None:
    for writer in writers:
        writer.close()


def _as_plan(
    scene: str | Path | SceneInfo | ScenePlan, bundle: Bundle, cfg: PredictConfig, out_dir: str | Path
) -> ScenePlan:
    if isinstance(scene, ScenePlan):
        return scene
    info = scene if isinstance(scene, SceneInfo) else open_scene(scene, cfg.allow_no_crs, cfg.resolution)
    check_thresholds(cfg, bundle)
    return plan_scene(info, bundle, cfg, out_dir)


def check_thresholds(cfg: PredictConfig, bundle: Bundle) -> None:
    """Require every ``--threshold`` class to be one of the model's classes.

    Raises:
        ConfigError: naming the class and the model's classes.
    """
    names = [c.name for c in bundle.config.classes]
    for name, p in cfg.thresholds.items():
        if name not in names:
            raise ConfigError(
                f"bad --threshold '{name}={p:g}': the model {bundle.name} has classes {', '.join(names)}; "
                "use CLASS=P with one of them, e.g. fire=0.4"
            )


def plan_scenes(
    scenes: Sequence[str | Path | SceneInfo], out_dir: str | Path, bundle: Bundle | Sequence[Bundle],
    cfg: PredictConfig,
) -> list[ScenePlan]:
    """Open and plan every scene, and check every output name, before any work (fail fast, nothing half done).

    ``bundle`` is the model of every scene, or one per scene.

    Raises:
        InputFileError, NotARasterError, MissingCRSError, MissingBandsError, BandResolutionError, ConfigError,
        OutputExistsError, OutputWriteError.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputWriteError(f"--out {out} is a file, not a folder; give a folder path (it is created if missing)")
    bundles = [bundle] * len(scenes) if isinstance(bundle, Bundle) else list(bundle)
    for b in {id(b): b for b in bundles}.values():
        check_thresholds(cfg, b)
    select_device(cfg.device)
    infos = [s if isinstance(s, SceneInfo) else open_scene(s, cfg.allow_no_crs, cfg.resolution) for s in scenes]
    plans = [plan_scene(info, b, cfg, out) for info, b in zip(infos, bundles, strict=True)]
    seen: dict[Path, Path] = {}
    for plan in plans:
        for p in plan.outputs.values():
            if p in seen:
                raise OutputExistsError(
                    f"{plan.info.path} and {seen[p]} would both write {p.name}; predict them into different "
                    "--out folders"
                )
            seen[p] = plan.info.path
            check_writable(p, cfg.overwrite, [i.path for i in infos])
    return plans


def load_inference_bundle(model: str | Path | None, cfg: PredictConfig) -> Bundle:
    """The bundle with its network ready for inference on ``cfg.device``: on the CPU the exported TorchScript
    network when the bundle has one (torch alone: no smp, timm or torchvision; the BatchNorm-adaptable one when
    the scene's BatchNorm statistics are to be mixed in, ``--bn-adapt`` > 0), else the smp network with its
    BatchNorm folded, or kept for adaptation (see :func:`firemap.models.load_bundle`).

    Raises:
        BundleError: the bundle cannot be loaded. ConfigError: ``--device cuda`` without CUDA.
    """
    device = select_device(cfg.device)
    keep = None if cfg.bn_adapt is None else cfg.bn_adapt > 0
    bundle = load_bundle(model, inference=True, exported=device.type == "cpu", keep_batchnorm=keep)
    log.info("model %s: %s network", bundle.name, bundle.runtime)
    return bundle


def with_runtime(bundle: Bundle, cfg: PredictConfig, tiles: int) -> Bundle:
    """The bundle on the runtime ``cfg.runtime`` picks for a job of ``tiles`` tiles (:mod:`firemap.runtimes`).

    Raises:
        ConfigError: ``--runtime openvino`` without the package, on CUDA or with a reduced precision.
    """
    from firemap.runtimes import choose_runtime, to_openvino

    device = select_device(cfg.device)
    if bn_adapt_weight(bundle, cfg) > 0:
        if cfg.runtime == "openvino":
            raise ConfigError("--runtime openvino runs one fixed network, but this model adapts its BatchNorm to "
                              "each scene: use --runtime torch, or --bn-adapt 0 to predict with the training "
                              "statistics")
        return bundle
    if choose_runtime(cfg.runtime, device, autocast_dtype(device, cfg.precision), tiles) == "openvino":
        return to_openvino(bundle)
    return bundle


def predict_scenes(
    scenes: Sequence[str | Path],
    out_dir: str | Path,
    model: str | Path | None,
    cfg: PredictConfig,
    progress_factory: Callable[[Path, int], Progress] | None = None,
) -> list[SceneResult]:
    """Predict several scenes with one model (``None`` = the shipped default).

    Every scene is planned (bands, tile grid, output names) before the first is predicted.

    Args:
        scenes: input GeoTIFFs.
        out_dir: output folder (created if needed).
        model: bundle path or None.
        cfg: predict options.
        progress_factory: called with (scene, tile count) before each scene; returns its progress callback.

    Returns:
        One :class:`SceneResult` per scene, in input order.
    """
    infos = [open_scene(s, cfg.allow_no_crs, cfg.resolution) for s in scenes]  # input errors before loading the model
    limit_malloc_arenas()  # before the reader and OpenMP threads allocate: peak memory independent of run length
    paths = [model_for_scene(model, info, cfg) for info in infos]
    loaded = {p: load_inference_bundle(p, cfg) for p in dict.fromkeys(paths)}
    plans = plan_scenes(infos, out_dir, [loaded[p] for p in paths], cfg)
    ready = {p: with_runtime(b, cfg, sum(len(plan.grid) for plan, q in zip(plans, paths, strict=True) if q == p))
             for p, b in loaded.items()}
    results = []
    with claimed_outputs([p for plan in plans for p in plan.outputs.values()]), bounded_gdal_cache(
            max(_cache_megabytes(plan, ready[p], cfg) for plan, p in zip(plans, paths, strict=True))):
        for plan, path in zip(plans, paths, strict=True):  # outputs claimed at the start: a concurrent run into
            progress = progress_factory(plan.info.path, len(plan.grid)) if progress_factory else None  # this
            results.append(predict_scene(plan, out_dir, ready[path], cfg, progress, claimed=True))  # folder fails now
    return results


def _cache_megabytes(plan: ScenePlan, bundle: Bundle, cfg: PredictConfig) -> float:
    """The GDAL block cache streaming ``plan`` needs (:func:`firemap.raster.streaming_cache_megabytes`): its input
    blocks, the class raster and, with ``--save-probs``, the probability raster."""
    out = 1 + (len(bundle.config.classes) if cfg.save_probs else 0)
    return streaming_cache_megabytes(plan.info.path, plan.grid.tile_size, chunk_width(plan.grid), plan.grid.overlap,
                                     out)


def scene_sensor(info: SceneInfo, cfg: PredictConfig) -> str | None:
    """The sensor preset of a scene: ``--sensor``, else the one band resolution recognizes (None if none).

    Raises:
        BandResolutionError: bad ``--sensor``/``--bands``.
    """
    return info.bandmap(cfg.sensor, cfg.bands).sensor


def model_for_scene(model: str | Path | None, info: SceneInfo, cfg: PredictConfig) -> Path:
    """The bundle to predict a scene with: ``model``, or for None the shipped default of the scene's sensor
    family (:data:`firemap.models.DEFAULT_BUNDLES`).

    Raises:
        BundleError: no default model is installed. BandResolutionError: bad ``--sensor``/``--bands``.
    """
    if model is not None:
        return Path(model)
    from firemap.models import default_bundle_path

    return default_bundle_path(scene_sensor(info, cfg))
