"""Cut a scene into overlapping tiles and stitch per-tile predictions back, streaming by rows of tiles.

Geometry (all in pixels, along each axis; ``T`` tile size, ``O`` overlap, stride ``S = T - O``):

* Tiles start ``m = O // 2`` pixels before the scene edge (the outside is read with reflect padding), so scene
  borders get the same context as the interior: no dead rows at the edges.
* Of each tile's prediction the outer ``c = O // 4`` pixels are discarded (they saw zero padding inside the
  network); the remaining *core* overlaps its neighbours' cores by ``O - 2c`` pixels and is blended with a Hann
  window that never reaches zero (``floor``), normalized by the summed weights. A network whose receptive-field
  radius is at most ``c`` therefore gives exactly the whole-image result; a real network gives no seams.
* The last tile of an axis is moved back to end ``m`` pixels past the scene edge, so no pixel is predicted twice
  more than needed.

Memory is bounded by the tile grid, not the scene: :class:`RowStitcher` holds one band of rows
(at most ``T`` rows x scene width x channels) and hands back finished rows as soon as no later tile touches them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window

RELEASE_BYTES = 64 * 2**20
"""Largest block :meth:`RowStitcher.release` hands out at once (float32 values): finished rows of a scene wider
than about 4 000 000 / channels px are released in several thinner bands, so that the consumers' per-band
temporaries (class masks, labels, writers) stay small on a 200 000 px wide mosaic."""

WEIGHT_FLOOR = 1e-2
"""Smallest blending weight relative to the core centre (never zero)."""


def axis_origins(length: int, tile_size: int, overlap: int) -> list[int]:
    """Tile start positions along one axis of ``length`` pixels (the first is ``-(overlap // 2)``)."""
    margin, stride = overlap // 2, tile_size - overlap
    origins = [-margin]
    while origins[-1] + tile_size - margin < length:
        origins.append(min(origins[-1] + stride, length + margin - tile_size))
    return origins


@dataclass(frozen=True)
class Tile:
    """One tile: its window in scene pixels (may extend past the scene) and the core it contributes.

    Attributes:
        row: tile-row number (0-based).
        col: tile-column number.
        window: the pixels fed to the network, ``tile_size`` square.
        core_rows: (start, stop) scene rows this tile contributes to, clipped to the scene.
        core_cols: (start, stop) scene columns this tile contributes to, clipped to the scene.
    """

    row: int
    col: int
    window: Window
    core_rows: tuple[int, int]
    core_cols: tuple[int, int]

    def core_slices(self) -> tuple[slice, slice]:
        """Slices of the tile array ``(..., tile_size, tile_size)`` that hold the core."""
        r0, c0 = int(self.window.row_off), int(self.window.col_off)
        return slice(self.core_rows[0] - r0, self.core_rows[1] - r0), slice(
            self.core_cols[0] - c0, self.core_cols[1] - c0
        )


class TileGrid:
    """The overlapping tile grid over a ``height x width`` scene.

    Args:
        height: scene rows.
        width: scene columns.
        tile_size: tile edge, pixels.
        overlap: pixels shared by neighbouring tiles, ``0 <= overlap < tile_size``.
    """

    def __init__(self, height: int, width: int, tile_size: int, overlap: int) -> None:
        if not 0 <= overlap < tile_size:
            raise ValueError(f"overlap {overlap} must be in [0, tile_size={tile_size})")
        self.height, self.width = height, width
        self.tile_size, self.overlap = tile_size, overlap
        self.crop = overlap // 4
        self.row_origins = axis_origins(height, tile_size, overlap)
        self.col_origins = axis_origins(width, tile_size, overlap)

    def __len__(self) -> int:
        return len(self.row_origins) * len(self.col_origins)

    @property
    def shape(self) -> tuple[int, int]:
        """(tile rows, tile columns)."""
        return len(self.row_origins), len(self.col_origins)

    def _core(self, origin: int, length: int) -> tuple[int, int]:
        return max(origin + self.crop, 0), min(origin + self.tile_size - self.crop, length)

    def tile(self, row: int, col: int) -> Tile:
        """The tile at tile-row ``row`` and tile-column ``col``."""
        r0, c0 = self.row_origins[row], self.col_origins[col]
        return Tile(
            row,
            col,
            Window(c0, r0, self.tile_size, self.tile_size),
            self._core(r0, self.height),
            self._core(c0, self.width),
        )

    def __iter__(self) -> Iterator[Tile]:
        """Tiles in row-major order (the order :class:`RowStitcher` expects)."""
        for row in range(len(self.row_origins)):
            for col in range(len(self.col_origins)):
                yield self.tile(row, col)

    def row_core(self, row: int) -> tuple[int, int]:
        """Scene rows (start, stop) touched by the cores of tile-row ``row``."""
        return self._core(self.row_origins[row], self.height)

    def weights(self) -> np.ndarray:
        """Blending weights of a full tile core, ``(core, core)`` float32, Hann-shaped, never below ``WEIGHT_FLOOR``."""
        n = self.tile_size - 2 * self.crop
        ramp = np.sin(np.pi * (np.arange(n) + 0.5) / n) ** 2
        w1 = WEIGHT_FLOOR + (1.0 - WEIGHT_FLOOR) * ramp
        return np.outer(w1, w1).astype(np.float32)


class RowStitcher:
    """Blend tile predictions into full-width rows and release rows once final.

    Feed tiles in row-major order with :meth:`add`; after the last tile of each tile-row call
    :meth:`release`, which yields ``(row_off, values)`` blocks, ``values`` being ``(channels, rows, width)``
    float32 weighted means (fresh arrays, at most :data:`RELEASE_BYTES` each). After the last tile-row every
    scene row has been released exactly once.

    With ``track_valid`` the stitcher also keeps each pixel's validity, given per tile to :meth:`add` (a pixel's
    validity is the same in every tile that covers it, so the last one is kept), and :meth:`release_valid`
    yields it with the values: cheaper than stitching validity as a weighted channel.

    With ``channels_last`` the sums are kept pixel-interleaved ``(rows, width, channels)``: the fast layout for
    predictions that are views of a channels-last network batch (each tile is then added without a copy). The
    released values are the same, to the bit, in either layout.

    Args:
        grid: the tile grid.
        channels: prediction channels (classes).
        track_valid: keep per-pixel validity (see above).
        channels_last: keep the sums pixel-interleaved (see above).
    """

    def __init__(self, grid: TileGrid, channels: int, track_valid: bool = False, channels_last: bool = False) -> None:
        self.grid, self.channels = grid, channels
        self.channels_last = channels_last
        self._weights = grid.weights()
        # channels-last: the weights repeated per channel, for a contiguous multiply (broadcasting over 1-3
        # interleaved channels is several times slower)
        self._weights_c = np.repeat(self._weights[:, :, None], channels, axis=2) if channels_last else None
        self._top = 0  # first scene row held in the buffers
        rows = grid.tile_size
        shape = (rows, grid.width, channels) if channels_last else (channels, rows, grid.width)
        self._sum = np.zeros(shape, dtype=np.float32)
        self._wsum = np.zeros((rows, grid.width), dtype=np.float32)
        self._valid = np.zeros((rows, grid.width), dtype=bool) if track_valid else None

    def add(self, tile: Tile, pred: np.ndarray | None, valid: np.ndarray | None = None) -> None:
        """Accumulate one tile's ``(channels, tile_size, tile_size)`` float32 prediction (None = all zeros) and,
        with ``track_valid``, its ``(tile_size, tile_size)`` bool validity (None = all invalid)."""
        (r0, r1), (c0, c1) = tile.core_rows, tile.core_cols
        if r1 <= r0 or c1 <= c0:
            return
        rs, cs = tile.core_slices()
        offset = self.grid.crop
        core = slice(rs.start - offset, rs.stop - offset), slice(cs.start - offset, cs.stop - offset)
        w = self._weights[core]
        b0, b1 = r0 - self._top, r1 - self._top
        self._wsum[b0:b1, c0:c1] += w
        if pred is not None and self._weights_c is not None:
            self._sum[b0:b1, c0:c1] += pred.transpose(1, 2, 0)[rs, cs] * self._weights_c[core]
        elif pred is not None:
            self._sum[:, b0:b1, c0:c1] += pred[:, rs, cs] * w
        if self._valid is not None:
            self._valid[b0:b1, c0:c1] = False if valid is None else valid[rs, cs]

    def release(self, tile_row: int) -> Iterator[tuple[int, np.ndarray]]:
        """Yield the rows that tile-rows after ``tile_row`` will not touch, and drop them from the buffers."""
        for row_off, rows in self._finished(tile_row):
            yield row_off, self._mean(rows)

    def release_valid(self, tile_row: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """:meth:`release` with the rows' validity: ``(row_off, values, valid)``, ``valid`` ``(rows, width)`` bool
        (a fresh array). Needs ``track_valid``."""
        if self._valid is None:
            raise ValueError("release_valid needs RowStitcher(..., track_valid=True)")
        valid = self._valid
        for row_off, rows in self._finished(tile_row):
            yield row_off, self._mean(rows), valid[rows].copy()

    def _mean(self, rows: slice) -> np.ndarray:
        weights = np.maximum(self._wsum[rows], np.float32(1e-12))
        if not self.channels_last:
            return self._sum[:, rows] / weights
        out = np.empty((self.channels, *weights.shape), np.float32)
        return np.divide(self._sum[rows].transpose(2, 0, 1), weights, out=out)

    def _finished(self, tile_row: int) -> Iterator[tuple[int, slice]]:
        """``(scene row, buffer rows)`` of each band of finished rows; then drops them from the buffers."""
        last = tile_row + 1 >= len(self.grid.row_origins)
        done = self.grid.height if last else self.grid.row_core(tile_row + 1)[0]
        n = done - self._top
        if n <= 0:
            return
        step = max(1, min(n, RELEASE_BYTES // (4 * self.channels * self.grid.width)))
        for r in range(0, n, step):  # a very wide scene is handed out in thinner bands: bounded temporaries
            yield self._top + r, slice(r, min(r + step, n))
        _drop_rows(self._sum, n, 0 if self.channels_last else 1)
        _drop_rows(self._wsum, n, 0)
        if self._valid is not None:
            _drop_rows(self._valid, n, 0)
        self._top = done


def _drop_rows(buf: np.ndarray, n: int, axis: int) -> None:
    """Move the rows (along ``axis``) after the first ``n`` to the top, in place, and zero the rest."""
    rows = np.moveaxis(buf, axis, 0)
    kept = rows.shape[0] - n
    if kept > 0:
        rows[:kept] = rows[n:]  # numpy copies through a temporary when the two overlap
    rows[max(kept, 0) :] = 0


@dataclass(frozen=True)
class Block:
    """A block of a scene with a halo, for contextual (neighbourhood) computations.

    Attributes:
        outer: the window to read: inner grown by the halo on every side (may extend past the scene).
        inner: the window whose results are kept.
    """

    outer: Window
    inner: Window

    @property
    def inner_slices(self) -> tuple[slice, slice]:
        """Slices of an ``outer``-shaped array that give the ``inner`` part."""
        r = int(self.inner.row_off - self.outer.row_off)
        c = int(self.inner.col_off - self.outer.col_off)
        return slice(r, r + int(self.inner.height)), slice(c, c + int(self.inner.width))


def blocks(height: int, width: int, block_size: int, halo: int) -> Iterator[Block]:
    """Non-overlapping ``block_size`` blocks covering a ``height x width`` scene, each with a ``halo`` margin.

    Inner windows partition the scene (row-major order); outer windows add ``halo`` pixels per side. Read the
    outer window with :func:`firemap.raster.read_window` (outside the scene is padded and marked invalid),
    compute, and keep ``result[..., *block.inner_slices]``.
    """
    if block_size <= 0 or halo < 0:
        raise ValueError(f"block_size must be > 0 and halo >= 0, got {block_size}, {halo}")
    for r in range(0, height, block_size):
        for c in range(0, width, block_size):
            h, w = min(block_size, height - r), min(block_size, width - c)
            yield Block(Window(c - halo, r - halo, w + 2 * halo, h + 2 * halo), Window(c, r, w, h))


def tile_count(height: int, width: int, tile_size: int, overlap: int) -> int:
    """Number of tiles :class:`TileGrid` uses for a scene (for progress bars and planning)."""
    return len(axis_origins(height, tile_size, overlap)) * len(axis_origins(width, tile_size, overlap))


__all__ = ["Block", "RowStitcher", "Tile", "TileGrid", "axis_origins", "blocks", "tile_count"]
