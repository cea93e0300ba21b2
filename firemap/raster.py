"""Raster I/O: open and validate scenes, read by window in physical units with nodata masks, write COGs.

Arrays are ``(bands, rows, cols)``. Geo metadata travels with arrays in :class:`GeoGrid`. Outputs are written
under a temporary name in the destination folder and renamed when complete (:func:`atomic_output`), so an
interrupted run never leaves a half-written file under a final name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import socket
import time
import uuid
import warnings
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
from rasterio.errors import NotGeoreferencedWarning, RasterioError, RasterioIOError
from rasterio.windows import Window

from firemap.bands import MIN_REFLECTANCE, BandMap, BandSource, resolve_bands
from firemap.errors import (
    GridMismatchError,
    InputFileError,
    InputReadError,
    MissingCRSError,
    NotARasterError,
    OutputExistsError,
    OutputLockedError,
    OutputWriteError,
    first_line,
    os_error_text,
)

log = logging.getLogger(__name__)

CLASS_NODATA = 255
"""Value of nodata pixels in class and label rasters (and of "not labelled" in training masks)."""

RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img", ".nc", ".h5", ".hdf")
"""Raster file extensions stripped from a scene's name to make its output stem."""


def output_stem(scene: str | os.PathLike[str]) -> str:
    """Output file stem of a scene: its file name minus the final raster extension(s).

    ``HLS.L30.T10SEG.2020250T184921.v2.0.tif`` -> ``HLS.L30.T10SEG.2020250T184921.v2.0``; ``a.tif.vrt`` -> ``a``;
    a name without a raster extension keeps its last suffix off (``scene.dat`` -> ``scene``).
    """
    name = Path(scene).name
    stripped = name
    while Path(stripped).suffix.lower() in RASTER_SUFFIXES and Path(stripped).stem:
        stripped = Path(stripped).stem
    return stripped if stripped != name else (Path(name).stem or name)

GDAL_CACHE_MB = 32
"""GDAL's raster block cache while firemap streams a scene. GDAL's default (5% of RAM) would keep every block
read or written until it is full, so peak memory would grow with the scene; the tile loop reads each pixel about
once per tile row, in chunks, so a small cache is enough."""


def bounded_gdal_cache(megabytes: float = GDAL_CACHE_MB) -> rasterio.Env:
    """A ``rasterio.Env`` capping GDAL's block cache, for streaming jobs (``with bounded_gdal_cache(): ...``)."""
    return rasterio.Env(GDAL_CACHEMAX=int(megabytes * 2**20))  # rasterio passes an int to GDALSetCacheMax: bytes


def streaming_cache_megabytes(path: str | os.PathLike[str], tile_size: int, chunk_width: int, overlap: int,
                              out_bytes_per_px: int = 1) -> float:
    """The GDAL block cache, in MB (at most :data:`GDAL_CACHE_MB`), that streaming a GeoTIFF by rows of tiles needs.

    Rows of tiles (``tile_size`` rows, overlapping by ``overlap``) are read in chunks of ``chunk_width`` columns
    (overlapping by ``overlap`` too) by a :class:`StripReader`, which decodes each block row once and keeps the rows
    the next row of tiles shares. So the cache only needs the blocks two neighbouring chunks of a read share (the
    block columns under the overlap); a larger one would hold blocks that are never read again. Blocks taller than
    :data:`STRIP_MAX_BLOCK_ROWS` (which the reader does not align to) are reused by the next row of tiles only if
    their whole band stays cached: then the band if it fits, else one chunk's blocks. Adds the output rasters'
    blocks of one row of tiles (``out_bytes_per_px`` bytes per pixel). Files other than GeoTIFF (e.g. a product's
    VRT, whose sources have their own blocks) keep :data:`GDAL_CACHE_MB`.
    """
    cap = GDAL_CACHE_MB * 2**20
    with rasterio.open(path) as src:
        if src.driver != "GTiff":
            return float(GDAL_CACHE_MB)
        block_h, block_w = src.block_shapes[0]
        per_px = sum(np.dtype(d).itemsize for d in src.dtypes)
        width = src.width
    rows = ((tile_size - 1) // block_h + 2) * block_h  # the block rows one read can touch
    across = -(-width // block_w) * block_w
    if block_h <= STRIP_MAX_BLOCK_ROWS:
        inputs = rows * min(across, ((max(overlap, 1) - 1) // block_w + 2) * block_w) * per_px
    else:
        row_band = rows * across * per_px
        chunk = rows * min(across, ((chunk_width - 1) // block_w + 2) * block_w) * per_px
        inputs = row_band if row_band <= cap else chunk
    return min(cap, inputs + width * tile_size * out_bytes_per_px) / 2**20


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

    def bandmap(self, sensor: str | None = None, bands: str | None = None) -> BandMap:
        """How this scene's bands resolve to canonical bands (:func:`firemap.bands.resolve_bands` with the file's
        descriptions, tags and GDAL scale/offset), for ``--sensor`` and ``--bands``.

        Raises:
            BandResolutionError: bad ``sensor``/``bands``.
        """
        return resolve_bands(self.descriptions, self.count, sensor, bands, self.tags, self.scales, self.offsets)


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
    p = resolve_source(given, resolution)  # the one hook for provider layouts (folders, MTL, STAC items)
    if p.is_dir():
        raise NotARasterError(f"{p}: is a folder, not a raster; give the scene file(s) inside it")
    if not os.access(p, os.R_OK):
        raise InputFileError(f"{p}: permission denied; make the file readable (chmod +r) or copy it")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
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
        raise NotARasterError(
            f"{p}: not a raster GDAL can read ({first_line(exc)}); if it is a GeoTIFF it is truncated or corrupt: "
            "re-download or re-export it"
        ) from None
    if info.grid.crs is not None and info.grid.transform.is_identity:
        if not allow_no_crs:
            raise MissingCRSError(
                f"{p}: the raster has a CRS ({info.grid.crs}) but no geotransform, so outputs would land at the "
                "CRS origin with 1-unit pixels; fix the file (gdal_edit.py -a_ullr ULX ULY LRX LRY, or gdalwarp "
                "if it has GCPs) or pass --allow-no-crs to work in pixel coordinates"
            )
        info = dataclasses.replace(info, grid=dataclasses.replace(info.grid, crs=None))
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
        fill, reflectance below :data:`firemap.bands.MIN_REFLECTANCE`) and for the mirrored padding.
        Invalid pixels of ``data`` hold ``fill``.
    """
    inner = window.intersection(Window(0, 0, src.width, src.height))
    return _physical(*_read_raw(src, inner, sources, zero_is_nodata), window, inner, sources, fill)


STRIP_MAX_BLOCK_ROWS = 512
""":class:`StripReader` extends its reads to whole block rows only for blocks up to this height (taller blocks,
e.g. a JPEG 2000's, would make it hold too many rows); it still keeps the rows that windows share."""


@dataclass
class _Carry:
    start: int  # first scene row held
    raw: np.ndarray  # (present bands, rows, cols) file values
    valid: np.ndarray  # (rows, cols) validity of the file values (nodata, mask)

    @property
    def end(self) -> int:
        return self.start + self.raw.shape[1]


class StripReader:
    """:func:`read_window` for windows that walk down a scene, each at a fixed column span (predict's rows of tiles,
    read in chunks), decoding every block of the file once.

    Successive rows of tiles overlap (by the tile overlap) and straddle the file's block rows. Read one window at a
    time, GDAL decodes each block row two or three times on a scene whose band of blocks does not fit its block
    cache (7 decodes per 3 block rows with 256 px tiles and blocks; the reader thread's CPU at 8192 x 8192 fell from
    7.6 to 4.8 s with this reader, ``scripts/profile_predict.py``, ``docs/benchmarks.md``). This
    reader extends each read down to the end of a block row and keeps, per column span, the file's raw values
    (not the float32 ones: half the memory) from the row the next window starts at (``keep_from``), so the next
    window only reads the rows below them. Results are identical to :func:`read_window`'s. Memory: at most
    ``overlap + block height`` rows of the whole scene width, in the file's dtype. Not thread-safe: one reader per
    thread.

    Args:
        src: an open dataset.
        sources, zero_is_nodata, fill: as for :func:`read_window`.
    """

    def __init__(self, src: rasterio.io.DatasetReader, sources: Sequence[BandSource | None],
                 zero_is_nodata: bool = False, fill: Sequence[float] | None = None) -> None:
        self.src, self.sources, self.zero_is_nodata, self.fill = src, list(sources), zero_is_nodata, fill
        present = [s.index for s in self.sources if s is not None]
        block_rows = src.block_shapes[present[0] - 1][0] if present else 1
        self.block_rows = block_rows if block_rows <= STRIP_MAX_BLOCK_ROWS else 1
        self._carry: dict[tuple[int, int], _Carry] = {}

    def read(self, window: Window, keep_from: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """:func:`read_window` of ``window``; keeps the raw rows from scene row ``keep_from`` on (the next window
        of the same column span starts there; None: this span is done)."""
        inner = window.intersection(Window(0, 0, self.src.width, self.src.height))
        col, width = int(inner.col_off), int(inner.width)
        top, bottom = int(inner.row_off), int(inner.row_off + inner.height)
        carry = self._carry.pop((col, width), None)
        if carry is not None and not carry.start <= top <= carry.end:
            carry = None  # not this span's next window: read it whole
        have = top if carry is None else carry.end  # rows [top, have) are held
        end = have
        if carry is None or bottom > have:  # read the rest, down to the end of a block row
            end = min(-(-bottom // self.block_rows) * self.block_rows, self.src.height)
            raw, valid = _read_raw(self.src, Window(col, have, width, end - have), self.sources, self.zero_is_nodata)
            if carry is not None:
                raw = np.concatenate([carry.raw[:, top - carry.start:], raw], axis=1)
                valid = np.concatenate([carry.valid[top - carry.start:], valid])
        else:  # the window is all held
            raw, valid = carry.raw[:, top - carry.start:], carry.valid[top - carry.start:]
        if keep_from is not None and keep_from < end:
            k = max(keep_from, top) - top
            self._carry[(col, width)] = _Carry(top + k, raw[:, k:].copy(), valid[k:].copy())
        rows = bottom - top
        return _physical(raw[:, :rows], valid[:rows].copy(), window, inner, self.sources, self.fill)


def _read_raw(src: rasterio.io.DatasetReader, inner: Window, sources: Sequence[BandSource | None],
              zero_is_nodata: bool) -> tuple[np.ndarray, np.ndarray]:
    """The file's values of the bands ``sources`` read, ``(present bands, rows, cols)`` in its dtype, and their
    ``(rows, cols)`` validity, for a window inside the scene."""
    indexes = [s.index for s in sources if s is not None]
    try:
        raw = src.read(indexes, window=inner) if indexes else np.zeros((0, int(inner.height), int(inner.width)))
        return raw, _valid_mask(src, raw, indexes, inner, zero_is_nodata)
    except RasterioError as exc:
        raise read_error(src.name, exc) from None


def _physical(raw: np.ndarray, valid: np.ndarray, window: Window, inner: Window,
              sources: Sequence[BandSource | None], fill: Sequence[float] | None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`read_window`'s result from the raw values of ``inner`` (``window`` clipped to the scene)."""
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
        if source.encoding.planck is None:  # reflectance: an over-corrected pixel is no measurement
            valid &= ~(data[i] < MIN_REFLECTANCE)
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


def read_error(path: str | os.PathLike[str], exc: BaseException) -> InputReadError:
    """The one-line error for pixels GDAL could not read from ``path`` (truncated or corrupt file)."""
    cause = first_line(exc.__cause__ or exc.__context__ or exc) if "previous exception" in str(exc) else first_line(exc)
    return InputReadError(
        f"{path}: cannot read its pixels ({cause}); the file is truncated or corrupt: re-download or re-export it"
    )


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
    """Refuse to write ``path`` if it exists (without ``overwrite``), is a folder, or is one of the inputs.

    Raises:
        OutputExistsError: with the fix in the message.
    """
    resolved = path.resolve()
    if any(resolved == Path(i).resolve() for i in inputs):
        raise OutputExistsError(f"{path}: output would overwrite an input scene; choose another --out folder")
    if path.is_dir():
        raise OutputExistsError(f"{path} is a folder; remove it or choose another --out folder")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass --overwrite to replace it or choose another --out folder")


def ensure_folder(folder: str | os.PathLike[str]) -> Path:
    """Create an output folder (and its parents) if needed.

    Raises:
        OutputWriteError: the path is a file, or the folder cannot be created (permission, read-only, disk full).
    """
    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise OutputWriteError(f"--out {out} is a file, not a folder; give a folder path (it is created if missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputWriteError(os_error_text(exc, out)) from None
    return out


LOCK_SUFFIX = ".firemap-lock"
"""A final output ``DIR/NAME`` is claimed by the hidden file ``DIR/.NAME.firemap-lock`` while a run writes it."""

_STALE_UNREADABLE_LOCK_S = 30.0


def _lock_path(final: Path) -> Path:
    return final.with_name(f".{final.name}{LOCK_SUFFIX}")


def _temporaries(final: Path) -> list[Path]:
    """Temporary files (and their sidecars) of ``final`` left in its folder by any run."""
    return list(final.parent.glob(f".{final.name}.*.partial*"))


def _owner_alive(lock: Path) -> tuple[bool, str]:
    """Whether the run that wrote ``lock`` still runs (unknowable for another host: assumed alive)."""
    try:
        text = lock.read_text().strip()
        pid_text, _, host = text.partition("@")
        pid = int(pid_text)
    except (OSError, ValueError):
        try:
            young = time.time() - lock.stat().st_mtime < _STALE_UNREADABLE_LOCK_S
        except OSError:
            return False, "?"
        return young, "?"  # being written right now, or left half-written by a killed run
    if host != socket.gethostname():
        return True, f"pid {pid} on {host}"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False, f"pid {pid}"
    except PermissionError:
        return True, f"pid {pid}"
    return True, f"pid {pid}"


def claim_output(final: Path) -> Path:
    """Claim ``final`` for this run by exclusively creating its lock file; clean stale temporaries.

    A lock left by a run that is gone (killed: same host, dead pid) is taken over, and that run's temporaries
    are removed.

    Returns:
        The lock file (remove it when done).

    Raises:
        OutputLockedError: another live run holds the lock (fail fast, nothing written).
        OutputWriteError: the folder is not writable.
    """
    lock = _lock_path(final)
    for attempt in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            alive, owner = _owner_alive(lock)
            if alive or attempt:
                raise OutputLockedError(
                    f"{final}: another firemap run ({owner}) is writing it right now; wait for it to finish or "
                    f"choose another --out folder (if no such run exists, delete {lock.name})"
                ) from None
            log.info("%s: taking over the lock of a run that is gone (%s)", final, owner)
            lock.unlink(missing_ok=True)
            continue
        except OSError as exc:
            raise OutputWriteError(os_error_text(exc, final.parent)) from None
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}@{socket.gethostname()}\n")
        break
    for stale in _temporaries(final):
        log.info("removing %s, left by an interrupted run", stale)
        stale.unlink(missing_ok=True)
    return lock


def _remove_temporary(tmp: Path) -> None:
    for leftover in tmp.parent.glob(glob_escape(tmp.name) + "*"):
        leftover.unlink(missing_ok=True)


def glob_escape(name: str) -> str:
    """``name`` with glob metacharacters escaped."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def _publish(pairs: Sequence[tuple[Path, Path]], overwrite: bool) -> None:
    """Move each temporary to its final name; without ``overwrite`` never replace a file (hard link + unlink,
    which fails if the final name appeared meanwhile). On failure the finals published so far are removed."""
    done: list[Path] = []
    try:
        for tmp, final in pairs:
            if overwrite:
                os.replace(tmp, final)
            else:
                try:
                    os.link(tmp, final)
                except FileExistsError:
                    raise OutputExistsError(
                        f"{final} appeared while this run was writing it; pass --overwrite to replace it"
                    ) from None
                except OSError as exc:
                    if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
                        raise
                    if final.exists():  # a file system without hard links: check, then rename
                        raise OutputExistsError(f"{final} exists; pass --overwrite to replace it") from None
                    os.replace(tmp, final)
                else:
                    tmp.unlink()
            done.append(final)
    except BaseException:
        for final in done:
            final.unlink(missing_ok=True)
        raise


def _write_error(exc: BaseException, folder: Path) -> OutputWriteError | None:
    """The one-line error for an OS/GDAL/OGR failure while writing into ``folder``, or None."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return OutputWriteError(os_error_text(exc, folder))
    module = type(exc).__module__ or ""
    if isinstance(exc, RasterioError) or module.startswith("pyogrio"):
        text = first_line(exc.__cause__ or exc) if "previous exception" in str(exc) else first_line(exc)
        if "space" in text.lower():
            return OutputWriteError(f"{folder}: disk full ({text}); free some space or choose another --out folder")
        return OutputWriteError(f"{folder}: writing an output failed ({text}); check space and permissions")
    return None


@contextlib.contextmanager
def claimed_outputs(finals: Sequence[Path]) -> Iterator[None]:
    """Hold the claim (lock file) on every path of ``finals`` for the duration of the block.

    Folders are created. Claims are taken in sorted order and all released at the end, whatever happens.

    Raises:
        OutputLockedError: another live run holds one of them (nothing written).
        OutputWriteError: a folder cannot be created or written.
    """
    unique = sorted(set(finals))
    for folder in {p.parent for p in unique}:
        ensure_folder(folder)
    locks: list[Path] = []
    try:
        for p in unique:
            locks.append(claim_output(p))
        yield
    finally:
        for lock in locks:
            lock.unlink(missing_ok=True)


@contextlib.contextmanager
def staged_outputs(
    finals: Mapping[str, str | os.PathLike[str]],
    overwrite: bool = False,
    inputs: Sequence[Path] = (),
    claimed: bool = False,
) -> Iterator[dict[str, Path]]:
    """Write a set of outputs that appear together or not at all.

    Claims every final path first (exclusive lock files, :func:`claimed_outputs`: a concurrent run into the same
    folder fails fast), yields a temporary path beside each (hidden: ``.NAME.<random>.partial.EXT``), and only
    when the block succeeds moves them all to their final names. On any error, Ctrl-C or SIGTERM the
    temporaries and locks are removed and no final name is touched. Temporaries of a killed run are removed by
    the next run that claims the same output.

    Args:
        finals: output kind -> final path (one folder or several; folders are created).
        overwrite: replace existing finals.
        inputs: input files that no output may replace.
        claimed: the caller already holds the claims (e.g. taken for all scenes of a run at its start).

    Yields:
        output kind -> temporary path to write.

    Raises:
        OutputExistsError: a final exists without ``overwrite`` or is an input.
        OutputLockedError: another run is writing one of the finals.
        OutputWriteError: disk full, permission denied, ``--out`` is a file (one line, nothing left behind).
    """
    paths = {k: Path(v) for k, v in finals.items()}
    for p in paths.values():
        check_writable(p, overwrite, inputs)
    claim = contextlib.nullcontext() if claimed else claimed_outputs(list(paths.values()))
    temps: dict[str, Path] = {}
    with claim:
        try:
            for p in paths.values():  # again, now that they are ours: a run may have finished meanwhile
                check_writable(p, overwrite, inputs)
            temps = {k: p.with_name(f".{p.name}.{uuid.uuid4().hex[:8]}.partial{p.suffix}") for k, p in paths.items()}
            yield temps
            _publish([(temps[k], paths[k]) for k in paths], overwrite)
        except Exception as exc:
            mapped = _write_error(exc, next(iter(paths.values())).parent)
            if mapped is None:
                raise
            raise mapped from None
        finally:
            for tmp in temps.values():
                _remove_temporary(tmp)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds.

    One-output form of :func:`staged_outputs` (same claiming, cleanup and error mapping).
    """
    with staged_outputs({"out": path}, overwrite) as temps:
        yield temps["out"]


def check_same_grid(a: SceneInfo, b: SceneInfo, what: str = "") -> None:
    """Require two rasters to share size, CRS and transform (``what`` names ``b``'s role in the message).

    Raises:
        GridMismatchError: naming what differs and how to fix it.
    """
    ga, gb = a.grid, b.grid
    diffs = []
    if (ga.width, ga.height) != (gb.width, gb.height):
        diffs.append(f"size {ga.width}x{ga.height} vs {gb.width}x{gb.height}")
    if ga.crs != gb.crs:
        diffs.append(f"CRS {ga.crs} vs {gb.crs}")
    if not ga.transform.almost_equals(gb.transform, precision=1e-9):
        ta, tb = ga.transform, gb.transform
        diffs.append(f"origin ({ta.c:.6g}, {ta.f:.6g}) vs ({tb.c:.6g}, {tb.f:.6g}), pixel {ta.a:.6g} vs {tb.a:.6g}")
    if diffs:
        raise GridMismatchError(
            f"{what or b.path.name} is not on the grid of {a.path.name} ({'; '.join(diffs)}); resample it first, e.g. "
            f"gdalwarp -te <bounds of {a.path.name}> -ts {ga.width} {ga.height} -t_srs <its CRS>"
        )


BACKGROUND_COLOR: tuple[int, int, int] = (255, 255, 255)
"""Colour of background (0) in the class raster's embedded colour table."""


def colormap_for(colors: Mapping[int, tuple[int, int, int]]) -> dict[int, tuple[int, int, int, int]]:
    """A 256-entry RGBA colour table for a class raster: each class in its colour, background 0 white.

    GeoTIFF colour tables carry no transparency (GDAL reads every entry back as opaque), so the table itself
    cannot hide the background. The QGIS style written beside the raster (``<stem>.classes.qml``) draws
    background and nodata transparent; viewers that use only the embedded table show background white (not
    black, which reads as data) and nodata (255, the file's declared nodata value) transparent.
    """
    cmap = {i: (0, 0, 0, 0) for i in range(256)}
    cmap[0] = (*BACKGROUND_COLOR, 0)
    cmap.update({k: (*v, 255) for k, v in colors.items()})
    cmap[CLASS_NODATA] = (0, 0, 0, 0)
    return cmap


RAW_SCRATCH_BYTES = 512 * 2**20
"""Largest :class:`TiledWriter` scratch file written uncompressed: the COG copy re-encodes every block anyway, so
compressing the scratch is wasted work (about 0.5 s per 8192^2 byte band); larger rasters (a 30 000 px mosaic)
keep DEFLATE so the scratch does not take gigabytes of disk."""


class TiledWriter:
    """Write a raster block by block (rows in any order), then turn it into a Cloud-Optimized GeoTIFF.

    Use as a context manager around :func:`atomic_output`'s temporary path::

        with atomic_output(final) as tmp, TiledWriter(tmp, grid, count=1, dtype="uint8") as w:
            w.write(block, row_off=0)

    Pixels go to a tiled GTiff scratch file next to ``path`` (uncompressed up to :data:`RAW_SCRATCH_BYTES`, else
    DEFLATE); on a clean exit the scratch file is copied to ``path`` with GDAL's COG driver (internal overviews,
    DEFLATE, compressed on all cores) and removed.

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
            "compress": "none" if grid.width * grid.height * count * np.dtype(dtype).itemsize <= RAW_SCRATCH_BYTES
            else "deflate",
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
                    NUM_THREADS="ALL_CPUS",  # the last step of a scene: the network is done, the cores are free
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


def _crs_without_transform(path: Path) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            return f"{src.crs.to_string()}, but no geotransform (pixel coordinates)" if src.crs else "none"


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
    from firemap.sources import describe_product

    info = open_scene(path, allow_no_crs, resolution)
    bandmap = info.bandmap(sensor, bands)
    crs = info.grid.crs
    units = crs.linear_units if crs is not None and crs.is_projected else ("degrees" if crs else "pixels")
    fields = describe_product(info.path) if info.source is not None else []
    fields += [
        ("CRS", crs.to_string() if crs else _crs_without_transform(info.path)),
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
