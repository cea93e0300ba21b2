"""Raster I/O: open and validate scenes, read by window in physical units with nodata masks, write COGs.

Arrays are ``(bands, rows, cols)``. Geo metadata travels with arrays in :class:`GeoGrid`. Outputs are written
under a temporary name in the destination folder and renamed when complete (:func:`atomic_output`), so an
interrupted run never leaves a half-written file under a final name.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from firemap.bands import BandSource
from firemap.errors import InputFileError, MissingCRSError, NotARasterError, OutputExistsError

log = logging.getLogger(__name__)

CLASS_NODATA = 255
"""Value of nodata pixels in class and label rasters."""

GDAL_CACHE_MB = 32
"""GDAL's raster block cache while firemap streams a scene. GDAL's default (5% of RAM) would keep every block
read or written until it is full, so peak memory would grow with the scene; the tile loop reads each pixel about
once per tile row, in chunks, so a small cache is enough."""


def bounded_gdal_cache(megabytes: int = GDAL_CACHE_MB) -> rasterio.Env:
    """A ``rasterio.Env`` capping GDAL's block cache, for streaming jobs (``with bounded_gdal_cache(): ...``)."""
    return rasterio.Env(GDAL_CACHEMAX=megabytes)


@dataclass(frozen=True)
class GeoGrid:
    """The pixel grid of a raster: size, CRS and affine transform (pixel -> CRS coordinates).

    Attributes:
        width: columns.
        height: rows.
        crs: coordinate reference system (None only with ``allow_no_crs``).
        transform: affine transform of the grid's top-left corner.
    """

    width: int
    height: int
    crs: CRS | None
    transform: Affine

    @property
    def res(self) -> tuple[float, float]:
        """Pixel size (x, y) in CRS units, positive."""
        return abs(self.transform.a), abs(self.transform.e)

    def window_transform(self, window: Window) -> Affine:
        """Transform of a window's top-left pixel."""
        return rasterio.windows.transform(window, self.transform)


@dataclass(frozen=True)
class SceneInfo:
    """What firemap needs to know about an input scene before reading pixels.

    Attributes:
        path: the file.
        grid: its grid.
        count: number of bands.
        dtype: pixel data type of band 1.
        nodata: declared nodata value, or None.
        descriptions: band descriptions by position (None where absent).
        tags: dataset tags.
        has_mask: the file carries an internal/sidecar mask or alpha band.
        scales: GDAL scale per band (1.0 where unset): physical = raw * scale + offset.
        offsets: GDAL offset per band (0.0 where unset).
        source: the path the user gave when ``path`` is a VRT assembled from a product
            (a folder, MTL or STAC item, see :mod:`firemap.sources`); else None.
    """

    path: Path
    grid: GeoGrid
    count: int
    dtype: str
    nodata: float | None
    descriptions: tuple[str | None, ...]
    tags: Mapping[str, str]
    has_mask: bool
    scales: tuple[float, ...] = ()
    offsets: tuple[float, ...] = ()
    source: Path | None = None


def open_scene(
    path: str | os.PathLike[str], allow_no_crs: bool = False, resolution: float | None = None
) -> SceneInfo:
    """Read a scene's metadata (no pixels).

    ``path`` is a raster, or a product as providers ship it (a folder of per-band files, an ``*_MTL.txt``, a STAC
    Item JSON): that is assembled into a VRT on one grid (see :func:`firemap.sources.resolve_source`) and
    ``info.path`` is the VRT, named after the product.

    Args:
        path: the scene.
        allow_no_crs: accept a raster without CRS.
        resolution: resample to this pixel size (CRS units); None = the file's grid / the finest band's.

    Raises:
        InputFileError: the file does not exist.
        NotARasterError: GDAL cannot open it as a raster.
        MissingCRSError: it has no CRS and ``allow_no_crs`` is False.
        ProductError: an incomplete or inconsistent product.
    """
    from firemap.sources import resolve_source

    given = Path(path)
    if not given.exists():
        raise InputFileError(f"{given}: no such file")
    p = resolve_source(given, resolution)  # the one hook for provider layouts
    try:
        with rasterio.open(p) as src:
            flags = src.mask_flag_enums[0] if src.count else []
            has_mask = any(f in (MaskFlags.per_dataset, MaskFlags.alpha) for f in flags)
            info = SceneInfo(
                path=p,
                grid=GeoGrid(src.width, src.height, src.crs, src.transform),
                count=src.count,
                dtype=src.dtypes[0],
                nodata=src.nodata,
                descriptions=tuple(d or None for d in src.descriptions),
                tags=src.tags(),
                has_mask=has_mask,
                scales=tuple(1.0 if v is None else float(v) for v in src.scales),
                offsets=tuple(0.0 if v is None else float(v) for v in src.offsets),
                source=given if p != given else None,
            )
    except RasterioIOError as exc:
        raise NotARasterError(f"{p}: not a raster GDAL can read ({str(exc).splitlines()[0]})") from None
    if info.grid.crs is None and not allow_no_crs:
        raise MissingCRSError(
            f"{p}: the raster has no CRS, so outputs could not be georeferenced; fix the file (gdal_edit.py "
            "-a_srs EPSG:XXXX) or pass --allow-no-crs to work in pixel coordinates"
        )
    return info


def read_window(
    src: rasterio.io.DatasetReader,
    window: Window,
    sources: Sequence[BandSource | None],
    zero_is_nodata: bool = False,
    fill: Sequence[float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Read bands of a window in physical units, with reflect padding where the window leaves the scene.

    Args:
        src: an open dataset.
        window: the window to read (may extend past the scene edges; the outside is mirrored).
        sources: the source of each output band; None gives a band of zeros (absent optional band).
        zero_is_nodata: treat pixels whose raw values are 0 in every read band as nodata (L1 swath fill).
        fill: value per output band for nodata pixels and absent bands (e.g. the normalization means, so
            they become 0 after normalization); default 0. Padding mirrors the filled data.

    Returns:
        ``(data, valid)``: ``data`` is ``(len(sources), rows, cols)`` float32 (reflectance, or K for thermal),
        ``valid`` is ``(rows, cols)`` bool, False for nodata (declared nodata, NaN, the file's mask, zero
        fill) and for the mirrored padding. Invalid pixels of ``data`` hold ``fill``.
    """
    inner = window.intersection(Window(0, 0, src.width, src.height))
    present = [s for s in sources if s is not None]
    indexes = [s.index for s in present]
    raw = src.read(indexes, window=inner) if indexes else np.zeros((0, int(inner.height), int(inner.width)))
    valid = _valid_mask(src, raw, indexes, inner, zero_is_nodata)
    fill_values = np.zeros(len(sources), np.float32) if fill is None else np.asarray(fill, np.float32)
    data = np.empty((len(sources), *raw.shape[1:]), dtype=np.float32)
    raw_bands = iter(raw)
    integer = np.issubdtype(raw.dtype, np.integer)
    for i, source in enumerate(sources):  # band by band, in place: no whole-window temporaries
        if source is None:
            data[i] = fill_values[i]
            continue
        source.encoding.to_physical(next(raw_bands), out=data[i])
        if not integer or source.encoding.planck is not None:  # scaled integers are always finite
            valid &= np.isfinite(data[i])
    del raw
    if not valid.all():
        invalid = ~valid
        for i in range(len(sources)):
            data[i][invalid] = fill_values[i]
    pads = _pads(window, inner)
    if any(pads):
        data = np.pad(data, ((0, 0), *pads), mode="reflect" if min(valid.shape) > 1 else "edge")
        valid = np.pad(valid, pads, mode="constant", constant_values=False)
    return data, valid


def _pads(window: Window, inner: Window) -> tuple[tuple[int, int], tuple[int, int]]:
    top = int(inner.row_off - window.row_off)
    left = int(inner.col_off - window.col_off)
    bottom = int(window.height - inner.height - top)
    right = int(window.width - inner.width - left)
    return (top, bottom), (left, right)


def _valid_mask(
    src: rasterio.io.DatasetReader, raw: np.ndarray, indexes: list[int], window: Window, zero_is_nodata: bool
) -> np.ndarray:
    valid = np.ones(raw.shape[1:], dtype=bool)
    if not indexes:
        return valid
    for k, index in enumerate(indexes):  # per-band nodata (bands of a product may differ)
        nodata = src.nodatavals[index - 1]
        if nodata is not None and not np.isnan(nodata):
            valid &= raw[k] != np.asarray(nodata, dtype=raw.dtype)
    if np.issubdtype(raw.dtype, np.floating):
        valid &= np.isfinite(raw).all(axis=0)
    flags = src.mask_flag_enums[indexes[0] - 1]
    if any(f in (MaskFlags.per_dataset, MaskFlags.alpha) for f in flags):
        valid &= src.dataset_mask(window=window) > 0
    if zero_is_nodata:
        valid &= (raw != 0).any(axis=0)
    return valid


def check_writable(path: Path, overwrite: bool, inputs: Sequence[Path] = ()) -> None:
    """Refuse to write ``path`` if it exists (without ``overwrite``) or is one of the inputs.

    Raises:
        OutputExistsError: with the fix in the message.
    """
    resolved = path.resolve()
    if any(resolved == Path(i).resolve() for i in inputs):
        raise OutputExistsError(f"{path}: output would overwrite an input scene; choose another --out folder")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass --overwrite to replace it or choose another --out folder")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds.

    The temporary name starts with ``.`` and ends with ``.partial`` so no reader mistakes it for a result.
    On error (or KeyboardInterrupt) the temporary file and its sidecars are removed and the final name is
    untouched.
    """
    final = Path(path)
    check_writable(final, overwrite)
    tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.partial{final.suffix}")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        for leftover in tmp.parent.glob(tmp.name + "*"):
            leftover.unlink(missing_ok=True)


def colormap_for(colors: Mapping[int, tuple[int, int, int]]) -> dict[int, tuple[int, int, int, int]]:
    """A 256-entry RGBA colour table: the class colours opaque, everything else (background 0, nodata 255)
    transparent, so viewers without the QGIS style still show only the classes."""
    cmap = {i: (0, 0, 0, 0) for i in range(256)}
    cmap.update({k: (*v, 255) for k, v in colors.items()})
    cmap[CLASS_NODATA] = (0, 0, 0, 0)
    return cmap


class TiledWriter:
    """Write a raster block by block (rows in any order), then turn it into a Cloud-Optimized GeoTIFF.

    Use as a context manager around :func:`atomic_output`'s temporary path::

        with atomic_output(final) as tmp, TiledWriter(tmp, grid, count=1, dtype="uint8") as w:
            w.write(block, row_off=0)

    Pixels go to a tiled GTiff scratch file next to ``path``; on a clean exit the scratch file is copied to
    ``path`` with GDAL's COG driver (internal overviews, DEFLATE) and removed.

    Args:
        path: destination (normally a temporary name from :func:`atomic_output`).
        grid: the output grid (CRS, transform, size).
        count: bands.
        dtype: numpy/GDAL data type name.
        nodata: nodata value written in the file, or None.
        colormap: colour table for band 1 (single-band byte rasters only), see :func:`colormap_for`.
        descriptions: band descriptions.
        tags: dataset tags (e.g. class names, scale).
        band_tags: per-band tags, by 1-based band index.
        overview_resampling: ``nearest`` for classes, ``average`` for continuous values.
        scales: per-band GDAL scale (physical = raw * scale + offset), e.g. 1/255 for probabilities.
        offsets: per-band GDAL offset.
    """

    def __init__(
        self,
        path: Path,
        grid: GeoGrid,
        count: int,
        dtype: str,
        nodata: float | None = None,
        colormap: Mapping[int, tuple[int, int, int, int]] | None = None,
        descriptions: Sequence[str] | None = None,
        tags: Mapping[str, Any] | None = None,
        band_tags: Mapping[int, Mapping[str, Any]] | None = None,
        overview_resampling: str = "nearest",
        scales: Sequence[float] | None = None,
        offsets: Sequence[float] | None = None,
    ) -> None:
        self.path = Path(path)
        self.scratch = self.path.with_name(self.path.name + ".scratch.tif")
        self.grid = grid
        self.overview_resampling = overview_resampling
        profile = {
            "driver": "GTiff",
            "width": grid.width,
            "height": grid.height,
            "count": count,
            "dtype": dtype,
            "crs": grid.crs,
            "transform": grid.transform,
            "nodata": nodata,
            "tiled": True,
            "blockxsize": 256,
            "blockysize": 256,
            "compress": "deflate",
            "BIGTIFF": "IF_SAFER",
        }
        self._ds = rasterio.open(self.scratch, "w", **profile)
        if colormap is not None:
            self._ds.write_colormap(1, colormap)
            self._ds.colorinterp = [ColorInterp.palette]
        for i, desc in enumerate(descriptions or (), start=1):
            self._ds.set_band_description(i, desc)
        if tags:
            self._ds.update_tags(**{k: str(v) for k, v in tags.items()})
        for band, btags in (band_tags or {}).items():
            self._ds.update_tags(band, **{k: str(v) for k, v in btags.items()})
        if scales is not None:
            self._ds.scales = tuple(scales)
        if offsets is not None:
            self._ds.offsets = tuple(offsets)

    def write(self, block: np.ndarray, row_off: int, col_off: int = 0) -> None:
        """Write ``(count, rows, cols)`` (or ``(rows, cols)`` for one band) at the given pixel offset."""
        if block.ndim == 2:
            block = block[None]
        self._ds.write(block, window=Window(col_off, row_off, block.shape[2], block.shape[1]))

    def write_mask(self, valid: np.ndarray, row_off: int, col_off: int = 0) -> None:
        """Write the dataset mask (``(rows, cols)`` bool, True = valid) at a pixel offset (internal mask band)."""
        window = Window(col_off, row_off, valid.shape[1], valid.shape[0])
        self._ds.write_mask(np.where(valid, 255, 0).astype(np.uint8), window=window)

    def close(self, finalize: bool = True) -> None:
        """Close the scratch file and, if ``finalize``, convert it to a COG at ``path``."""
        if self._ds.closed:
            return
        self._ds.close()
        try:
            if finalize:
                rasterio.shutil.copy(
                    self.scratch,
                    self.path,
                    driver="COG",
                    COMPRESS="DEFLATE",
                    BLOCKSIZE=256,
                    OVERVIEW_RESAMPLING=self.overview_resampling.upper(),
                    BIGTIFF="IF_SAFER",
                )
        finally:
            self.scratch.unlink(missing_ok=True)
            Path(str(self.scratch) + ".aux.xml").unlink(missing_ok=True)

    def __enter__(self) -> TiledWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close(finalize=exc_type is None)


def write_raster(
    path: str | os.PathLike[str],
    data: np.ndarray,
    grid: GeoGrid,
    nodata: float | None = None,
    descriptions: Sequence[str] | None = None,
    tags: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    colormap: Mapping[int, tuple[int, int, int, int]] | None = None,
) -> Path:
    """Write a whole in-memory ``(bands, rows, cols)`` array atomically as a COG.

    For rasters that fit in memory (simulated scenes, labels, tests). Streaming outputs use
    :class:`TiledWriter` directly.
    """
    final = Path(path)
    if data.ndim == 2:
        data = data[None]
    with atomic_output(final, overwrite) as tmp:
        writer = TiledWriter(
            tmp,
            grid,
            data.shape[0],
            str(data.dtype),
            nodata=nodata,
            colormap=colormap,
            descriptions=descriptions,
            tags=tags,
        )
        with writer:
            writer.write(data, 0)
    return final


def describe_scene(
    path: str | os.PathLike[str],
    sensor: str | None = None,
    bands: str | None = None,
    allow_no_crs: bool = True,
    resolution: float | None = None,
) -> tuple[SceneInfo, list[tuple[str, str]], list[tuple[str, str, str, str, str]]]:
    """Everything ``firemap info`` shows: metadata rows and how each file band resolves.

    Returns:
        ``(info, fields, band_rows)``: ``fields`` are (name, value) pairs (layout and product for assembled
        products, CRS, size, resolution, dtype, nodata, sensor, scaling precedence); ``band_rows`` are (index,
        description, canonical band or '-', physical = raw * scale + offset, where that scaling came from).
    """
    from firemap.bands import resolve_bands
    from firemap.sources import describe_product

    info = open_scene(path, allow_no_crs, resolution)
    bandmap = resolve_bands(info.descriptions, info.count, sensor, bands, info.tags, info.scales, info.offsets)
    crs = info.grid.crs
    units = crs.linear_units if crs is not None and crs.is_projected else ("degrees" if crs else "pixels")
    fields = describe_product(info.path) if info.source is not None else []
    fields += [
        ("CRS", crs.to_string() if crs else "none"),
        ("size", f"{info.grid.width} x {info.grid.height} px, {info.count} bands"),
        ("resolution", f"{info.grid.res[0]:.6g} x {info.grid.res[1]:.6g} {units}"),
        ("dtype", info.dtype),
        ("nodata", "none" if info.nodata is None else str(info.nodata)),
        ("mask", "yes" if info.has_mask else "no"),
        ("sensor", bandmap.sensor or "unknown (pass --sensor or --bands)"),
        ("scaling", "--bands > file metadata (GDAL scale/offset) > sensor preset"),
    ]
    by_index = {s.index: s for s in bandmap.sources.values()}
    rows = []
    for i, desc in enumerate(info.descriptions, start=1):
        src = by_index.get(i)
        enc = src.encoding if src else None
        conv = "" if enc is None else f"raw * {enc.scale:.6g} + {enc.offset:.6g}" + (" -> K" if enc.planck else "")
        rows.append((str(i), desc or "", src.canonical if src else "-", conv, src.scaling if src else ""))
    return info, fields, rows
