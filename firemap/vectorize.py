"""Class masks -> polygons with attributes -> GeoJSON / GeoPackage, streamed by bands of rows.

:class:`PolygonCollector` receives the class masks of a scene band by band (full-width rows, top to bottom)
and never holds a whole-scene mask. Each band is labelled into 4-connected components (the connectivity
``rasterio.features.shapes`` uses), each component is polygonized in pixel coordinates and its statistics
(pixels, sum and max of probability) are kept. Components that touch across a band boundary are joined with
a union-find on the boundary row, and at :meth:`PolygonCollector.finish` the pieces of each component are
dissolved into one polygon, so bands leave no seams. Working in integer pixel coordinates until the end
keeps shared edges exact; the scene's affine transform is applied once, after dissolving.

Memory is the band being processed plus the pieces found so far, stored as int32 ring coordinates (about
8 bytes per vertex) with a few numbers per piece; ``scripts/bench_vectorize.py`` measures it
(``docs/vectorize.md``).

Scenes without a CRS (``--allow-no-crs``): polygons are in the grid's coordinates (pixel coordinates for
an ungeoreferenced file), ``area_m2`` is NaN, and ``min_area_m2`` / ``simplify_m`` are applied in grid units
(square units / units) with a warning.

The predict path needs neither pandas, geopandas, pyogrio nor scipy (about 0.5 s of imports, a third of
``import torch``: issue 14's start-up): components are labelled by OpenCV, their statistics are numpy
reductions, :meth:`PolygonCollector.finish_table` returns a :class:`PolygonTable` (numpy columns and shapely
geometries) and GeoJSON is written directly. geopandas / pyogrio are imported only for a GeoDataFrame
(:meth:`PolygonCollector.finish`, :meth:`PolygonTable.to_geodataframe`), a GeoPackage, or GeoJSON that crosses
the antimeridian (GDAL's RFC 7946 writer splits it).
"""

from __future__ import annotations

import json
import logging
import os
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio.features
import shapely
from affine import Affine
from pyproj import CRS, Geod, Transformer

from firemap.config import ClassInfo, VectorFormat
from firemap.raster import GeoGrid, atomic_output

if TYPE_CHECKING:
    import geopandas as gpd

log = logging.getLogger(__name__)

VECTOR_FORMATS: tuple[str, ...] = typing.get_args(VectorFormat)
"""Vector output formats (``--vector-format``): the one list, from the config type."""

COLUMNS: tuple[str, ...] = ("class", "class_id", "area_m2", "pixels", "mean_prob", "max_prob", "scene", "model")
"""Attribute columns of the vector output, in order (``geometry`` follows)."""

_GEOD = Geod(ellps="WGS84")
_GEOGRAPHIC_SEGMENT_DEG = 0.01
"""Densify lon/lat edges to this length (~1 km) before geodesic area, so long edges follow parallels."""
GPKG_VERSION = "1.3"
"""GeoPackage version written: GDAL >= 3.10 defaults to 1.4, which QGIS 3.22 / GDAL 3.6 warn about."""


class _UnionFind:
    """Sparse union-find over integer ids (only ids that were joined are stored)."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        root = x
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while x != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)  # the smallest id (first seen) stays the root

    def roots(self, n: int) -> np.ndarray:
        """Root of every id in ``range(n)``, int64 array."""
        out = np.arange(n, dtype=np.int64)
        for x in list(self.parent):
            out[x] = self.find(x)
        return out


@dataclass
class PolygonTable:
    """Polygons and their attributes as numpy arrays: what the vector writers take, without pandas.

    Attributes:
        geometry: ``(n,)`` object array of shapely polygons (or multipolygons) in ``crs``.
        columns: attribute name -> ``(n,)`` array, in output order (for the collector: :data:`COLUMNS`).
        crs: a :class:`pyproj.CRS`, or None for grid coordinates.
    """

    geometry: np.ndarray
    columns: dict[str, np.ndarray]
    crs: CRS | None

    def __len__(self) -> int:
        return len(self.geometry)

    def take(self, index: np.ndarray) -> PolygonTable:
        """The rows ``index`` (int positions or a boolean mask), in that order."""
        return PolygonTable(self.geometry[index], {k: v[index] for k, v in self.columns.items()}, self.crs)

    def class_totals(self, name: str) -> tuple[int, float]:
        """Polygons of class ``name`` and their summed ``area_m2`` in hectares (0 without a CRS)."""
        sel = self.columns["class"] == name
        return int(sel.sum()), float(np.nansum(self.columns["area_m2"][sel])) / 1e4 if sel.any() else 0.0

    def to_geodataframe(self) -> gpd.GeoDataFrame:
        """The same rows as a GeoDataFrame (columns, then ``geometry``; strings as ``object`` columns)."""
        import geopandas as gpd
        import pandas as pd

        data = {k: pd.Series(v, dtype=object) if v.dtype == object else v for k, v in self.columns.items()}
        return gpd.GeoDataFrame(data, geometry=gpd.GeoSeries(self.geometry, crs=self.crs))

    @classmethod
    def from_geodataframe(cls, gdf: gpd.GeoDataFrame) -> PolygonTable:
        """A GeoDataFrame's active geometry, its other columns in order, and its CRS."""
        name = gdf.geometry.name
        columns = {str(k): gdf[k].to_numpy() for k in gdf.columns if k != name}
        return cls(gdf.geometry.to_numpy(), columns, None if gdf.crs is None else CRS.from_user_input(gdf.crs))


def _table(polygons: PolygonTable | gpd.GeoDataFrame) -> PolygonTable:
    return polygons if isinstance(polygons, PolygonTable) else PolygonTable.from_geodataframe(polygons)


class PolygonCollector:
    """Polygonize per-class masks streamed in bands of full-width rows, without seams between bands.

    Classes are independent (multi-label): each class's mask is polygonized on its own, so polygons of
    different classes may overlap. Pixels with ``valid == False`` are never inside a polygon.

    Args:
        grid: the scene grid (size, CRS, transform); polygons come out in its CRS.
        classes: the classes, in the order of the first axis of ``masks``/``probs``.
    """

    def __init__(self, grid: GeoGrid, classes: Sequence[ClassInfo]) -> None:
        self.grid = grid
        self.classes = tuple(classes)
        self._next_row = 0
        self._uf = _UnionFind()
        self._pieces = _PieceStore()
        self._n_ids = 0  # component ids handed out: one per 4-connected component per class per band
        self._cls: list[np.ndarray] = []  # per band and class: class index, pixels, sum/max prob by id
        self._pixels: list[np.ndarray] = []
        self._sum_prob: list[np.ndarray] = []
        self._max_prob: list[np.ndarray] = []
        self._last_row = np.full((len(self.classes), grid.width), -1, dtype=np.int64)  # piece ids, -1 = none

    @property
    def nbytes(self) -> int:
        """Bytes held between bands: the stored pieces and their statistics (not the band being added)."""
        stats = (*self._cls, *self._pixels, *self._sum_prob, *self._max_prob, self._last_row)
        return self._pieces.nbytes + sum(a.nbytes for a in stats) + 100 * len(self._uf.parent)

    def add(self, row_off: int, masks: np.ndarray, probs: np.ndarray, valid: np.ndarray) -> None:
        """Add the next band of rows.

        Args:
            row_off: first row of the band in the scene; must equal the previous band's end.
            masks: ``(classes, rows, width)`` bool, True where a class is detected.
            probs: ``(classes, rows, width)`` float32 class probabilities in [0, 1].
            valid: ``(rows, width)`` bool, False for nodata.

        Raises:
            ValueError: shapes that do not match the grid/classes, or a band out of sequence.
        """
        self._check_band(row_off, masks, probs, valid)
        rows = masks.shape[1]
        if rows == 0:
            return
        for c in range(len(self.classes)):
            top, bottom = self._add_class_band(c, row_off, masks[c] & valid, probs[c])
            self._join(self._last_row[c], top)
            self._last_row[c] = bottom
        self._next_row = row_off + rows

    def _check_band(self, row_off: int, masks: np.ndarray, probs: np.ndarray, valid: np.ndarray) -> None:
        n, width = len(self.classes), self.grid.width
        if masks.ndim != 3 or masks.shape[0] != n or masks.shape[2] != width:
            raise ValueError(f"masks must be (classes={n}, rows, width={width}), got {masks.shape}")
        if probs.shape != masks.shape or valid.shape != masks.shape[1:]:
            raise ValueError(f"probs {probs.shape} / valid {valid.shape} do not match masks {masks.shape}")
        if row_off != self._next_row:
            raise ValueError(f"band starts at row {row_off}, expected {self._next_row} (bands must be consecutive)")
        if row_off + masks.shape[1] > self.grid.height:
            end = row_off + masks.shape[1]
            raise ValueError(f"band rows {row_off}..{end} pass the scene height {self.grid.height}")

    def _add_class_band(
        self, c: int, row_off: int, mask: np.ndarray, prob: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Label, polygonize and measure one class in one band.

        Returns:
            The component ids (int64, -1 = none) of the band's first and last rows, ``(width,)`` each.
        """
        if not mask.any():  # the usual case for most classes of most bands: nothing to label or polygonize
            none = np.full(mask.shape[1], -1, dtype=np.int64)
            return none, none.copy()
        labels, n = label_components(mask)
        first = self._n_ids
        top, bottom = (np.where(row > 0, row.astype(np.int64) + (first - 1), -1) for row in (labels[0], labels[-1]))
        self._n_ids += n
        to_pixels = Affine.translation(0, row_off)  # pixel coordinates: exact integers across bands
        self._pieces.add(
            rasterio.features.shapes(labels, mask=labels > 0, connectivity=4, transform=to_pixels), first - 1
        )
        inside = labels > 0
        ids, values = labels[inside], prob[inside].astype(np.float64)
        peak = np.zeros(n + 1)  # probabilities are >= 0, and every label 1..n has >= 1 pixel
        np.maximum.at(peak, ids, values)
        self._cls.append(np.full(n, c, dtype=np.int16))
        self._pixels.append(np.bincount(ids, minlength=n + 1)[1:].astype(np.int64))
        self._sum_prob.append(np.bincount(ids, weights=values, minlength=n + 1)[1:])
        self._max_prob.append(peak[1:])
        return top, bottom

    def _join(self, above: np.ndarray, below: np.ndarray) -> None:
        """Union the pieces that touch across a band boundary (vertical neighbours: 4-connectivity)."""
        both = (above >= 0) & (below >= 0)
        if not both.any():
            return
        for a, b in np.unique(np.stack([above[both], below[both]], axis=1), axis=0):
            self._uf.union(int(a), int(b))

    def finish(
        self, min_area_m2: float = 0.0, simplify_m: float = 0.0, scene: str = "", model: str = ""
    ) -> gpd.GeoDataFrame:
        """:meth:`finish_table` as a GeoDataFrame (same arguments, rows and columns)."""
        return self.finish_table(min_area_m2, simplify_m, scene, model).to_geodataframe()

    def finish_table(
        self, min_area_m2: float = 0.0, simplify_m: float = 0.0, scene: str = "", model: str = ""
    ) -> PolygonTable:
        """Dissolve the pieces into polygons, measure, filter and simplify them.

        Args:
            min_area_m2: drop polygons smaller than this (geodesic area of the unsimplified polygon).
            simplify_m: simplification tolerance in metres (topology preserving: valid, holes kept); 0 = none.
            scene: value of the ``scene`` column.
            model: value of the ``model`` column.

        Returns:
            One row per polygon per class, in the scene CRS, columns :data:`COLUMNS` + ``geometry``; sorted by
            class id, then by the polygon's first pixel in raster order. ``area_m2`` is the geodesic area on
            WGS84 of the pixels (before simplification), ``mean_prob``/``max_prob`` are over its pixels.

        Raises:
            ValueError: the bands added do not cover the whole scene.
        """
        if self._next_row != self.grid.height:
            raise ValueError(f"only rows 0..{self._next_row} of {self.grid.height} were added before finish()")
        table = self._dissolve(scene, model)
        if self.grid.crs is None and (min_area_m2 > 0 or simplify_m > 0):
            log.warning("scene has no CRS: --min-area and --simplify are applied in grid units, not metres")
        planar = shapely.area(table.geometry) if self.grid.crs is None else table.columns["area_m2"]
        table = table.take(planar >= min_area_m2)
        if simplify_m > 0:
            table.geometry = simplify(table.geometry, simplify_m, table.crs)
        log.debug("vectorized %d polygons from %d band components (%.1f MB stored)", len(table), self._n_ids,
                  self.nbytes / 2**20)
        return table

    def _dissolve(self, scene: str, model: str) -> PolygonTable:
        roots = self._uf.roots(self._n_ids)
        unique, first, inverse = np.unique(roots, return_index=True, return_inverse=True)
        pixels = np.bincount(inverse, weights=_concat(self._pixels, np.int64), minlength=len(unique)).astype(np.int64)
        sum_prob = np.bincount(inverse, weights=_concat(self._sum_prob, np.float64), minlength=len(unique))
        max_prob = np.zeros(len(unique))  # probabilities are >= 0
        np.maximum.at(max_prob, inverse, _concat(self._max_prob, np.float64))
        pieces, owners = self._pieces.polygons()
        geoms = _union_by_root(pieces, roots[owners], unique)
        geoms = shapely.transform(geoms, _affine_fn(self.grid.transform))
        classes = [self.classes[i] for i in _concat(self._cls, np.int16)[first]]
        crs = None if self.grid.crs is None else CRS.from_user_input(self.grid.crs)
        table = PolygonTable(geoms, {
            "class": np.array([c.name for c in classes], dtype=object),
            "class_id": np.array([c.id for c in classes], dtype=np.int32),
            "area_m2": area_m2(geoms, crs),
            "pixels": pixels,
            "mean_prob": sum_prob / np.maximum(pixels, 1),
            "max_prob": max_prob,
            "scene": np.array([scene] * len(unique), dtype=object),
            "model": np.array([model] * len(unique), dtype=object),
        }, crs)
        return table.take(np.argsort(table.columns["class_id"], kind="stable"))


class _PieceStore:
    """Polygon pieces kept compactly until the end: int32 pixel-corner coordinates and ring bookkeeping.

    About 8 bytes per vertex instead of a GEOS geometry per piece; the geometries are built in one
    vectorized call by :meth:`polygons`.
    """

    def __init__(self) -> None:
        self._coords: list[np.ndarray] = []  # per batch: (vertices, 2) int32
        self._sizes: list[np.ndarray] = []  # vertices per ring
        self._owner: list[np.ndarray] = []  # component id of each ring
        self._shell: list[np.ndarray] = []  # True for the first (outer) ring of a polygon

    @property
    def nbytes(self) -> int:
        """Bytes of the stored arrays."""
        return sum(a.nbytes for parts in (self._coords, self._sizes, self._owner, self._shell) for a in parts)

    def add(self, shapes: Iterator[tuple[dict[str, Any], float]], id_offset: int) -> None:
        """Store ``rasterio.features.shapes`` output; a shape of value v belongs to component ``id_offset + v``."""
        rings, owner, shell = [], [], []
        for geom, value in shapes:
            for i, ring in enumerate(geom["coordinates"]):
                rings.append(np.asarray(ring))
                owner.append(id_offset + int(value))
                shell.append(i == 0)
        if rings:
            self._coords.append(np.concatenate(rings).astype(np.int32))
            self._sizes.append(np.array([len(r) for r in rings], dtype=np.int64))
            self._owner.append(np.array(owner, dtype=np.int64))
            self._shell.append(np.array(shell, dtype=bool))

    def polygons(self) -> tuple[np.ndarray, np.ndarray]:
        """All pieces as shapely polygons (pixel coordinates) and the component id of each."""
        if not self._coords:
            return np.empty(0, dtype=object), np.zeros(0, dtype=np.int64)
        sizes, shell = np.concatenate(self._sizes), np.concatenate(self._shell)
        rings = shapely.linearrings(np.concatenate(self._coords).astype(np.float64),
                                    indices=np.repeat(np.arange(len(sizes)), sizes))
        polygons = shapely.polygons(rings, indices=np.cumsum(shell) - 1)
        return polygons, np.concatenate(self._owner)[shell]


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected components of ``mask`` ``(rows, cols)`` bool: int32 labels 1..n (0 outside), numbered in
    raster order of each component's first pixel, and n. OpenCV's labelling gives the same numbers as
    ``scipy.ndimage.label`` (tested) and imports in a third of the time (start-up: predict needs no scipy)."""
    import cv2

    n, labels = cv2.connectedComponents(mask.view(np.uint8), connectivity=4, ltype=cv2.CV_32S)
    return labels, n - 1


def _concat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)


def _union_by_root(pieces: np.ndarray, roots: np.ndarray, unique_roots: np.ndarray) -> np.ndarray:
    """One polygon per root (in ``unique_roots`` order): the piece itself, or the dissolved pieces."""
    order = np.argsort(roots, kind="stable")
    starts = np.searchsorted(roots[order], unique_roots)
    ends = np.append(starts[1:], len(order))[: len(starts)]
    out = pieces[order[starts]]
    multi = np.flatnonzero(ends - starts > 1)
    for i in multi:  # one component at a time: temporaries stay the size of the largest component
        merged = _dissolve_pieces(pieces[order[starts[i]:ends[i]]])
        out[i] = _drop_collinear(np.array([merged]))[0] if shapely.get_type_id(merged) == 3 else merged
    return out


def _dissolve_pieces(pieces: np.ndarray) -> shapely.Geometry:
    """Union the pieces of one component, which share edges on band boundaries (integer pixel coordinates).

    A piece's own holes never touch a band boundary, so they stay holes of the result unchanged: only the
    piece outlines are dissolved, and the holes are added back without GEOS having to assign thousands of
    holes to their shell. Splitting every outline edge at each pixel corner makes the outlines an exactly
    noded coverage, which GEOS dissolves much faster than a general overlay.
    """
    rings, owner = shapely.get_rings(pieces, return_index=True)
    is_hole = np.ones(len(rings), bool)
    is_hole[np.searchsorted(owner, np.arange(len(pieces)))] = False
    outlines = shapely.polygons(rings[~is_hole])
    noded = shapely.set_precision(shapely.segmentize(outlines, 1.0), 1.0, mode="pointwise")
    try:
        merged = shapely.coverage_union_all(noded)
    except shapely.errors.GEOSException:  # not expected on a pixel grid; the general overlay always works
        return shapely.union_all(pieces)
    if shapely.get_type_id(merged) != 3:  # not one polygon: let the general overlay sort it out
        return shapely.union_all(pieces)
    return shapely.Polygon(merged.exterior, [*merged.interiors, *rings[is_hole]])


def _drop_collinear(polygons: np.ndarray) -> np.ndarray:
    """Remove the vertices in the middle of straight runs from pixel-edge polygons (axis-parallel edges).

    Exact and vectorized: a vertex goes when its two neighbours share its x (vertical run) or its y.
    """
    if len(polygons) == 0:
        return polygons
    rings, ring_poly = shapely.get_rings(polygons, return_index=True)
    coords, ring_of = shapely.get_coordinates(rings, return_index=True)
    open_ = np.ones(len(coords), bool)  # drop each ring's closing vertex, re-close after filtering
    open_[np.flatnonzero(np.diff(ring_of))] = False
    open_[-1] = False
    coords, ring_of = coords[open_], ring_of[open_]
    start = np.searchsorted(ring_of, ring_of)  # index of each vertex's ring start
    count = np.bincount(ring_of, minlength=len(rings))[ring_of]
    pos = np.arange(len(coords)) - start
    prev = coords[start + (pos - 1) % count]
    nxt = coords[start + (pos + 1) % count]
    straight = ((prev[:, 0] == coords[:, 0]) & (nxt[:, 0] == coords[:, 0])) | (
        (prev[:, 1] == coords[:, 1]) & (nxt[:, 1] == coords[:, 1]))
    coords, ring_of = coords[~straight], ring_of[~straight]
    first = np.searchsorted(ring_of, np.arange(len(rings)))
    closed = np.insert(coords, np.append(first[1:], len(coords)), coords[first], axis=0)
    closed_of = np.insert(ring_of, np.append(first[1:], len(coords)), np.arange(len(rings)))
    return shapely.polygons(shapely.linearrings(closed, indices=closed_of), indices=ring_poly)


def _affine_fn(t: Affine) -> Callable[[np.ndarray], np.ndarray]:
    """A ``shapely.transform`` callback applying ``t`` to ``(n, 2)`` coordinates."""
    def apply(xy: np.ndarray) -> np.ndarray:
        x, y = xy[:, 0], xy[:, 1]
        return np.column_stack([t.a * x + t.b * y + t.c, t.d * x + t.e * y + t.f])

    return apply


def _crs_of(geoms: Any, crs: Any) -> CRS | None:
    """``crs``, or the CRS a GeoSeries carries, as a :class:`pyproj.CRS` (None when there is none)."""
    crs = getattr(geoms, "crs", None) if crs is None else crs
    return None if crs is None else CRS.from_user_input(crs)


def _to_crs(geoms: np.ndarray, src: CRS, dst: CRS) -> np.ndarray:
    """Reproject an array of geometries (x/y order whatever the CRS's axis order, as geopandas does)."""
    transformer = Transformer.from_crs(src, dst, always_xy=True)

    def apply(xy: np.ndarray) -> np.ndarray:
        return np.column_stack(transformer.transform(xy[:, 0], xy[:, 1]))

    return shapely.transform(geoms, apply)


def area_m2(geoms: gpd.GeoSeries | np.ndarray, crs: Any = None) -> np.ndarray:
    """Geodesic area of polygons on the WGS84 ellipsoid, square metres.

    Correct for any CRS (UTM, EPSG:4326, ...): geometries are transformed to lon/lat and measured with
    :meth:`pyproj.Geod.geometry_area_perimeter` (exterior rings counter-clockwise, holes subtracted). Edges
    of geographic-CRS polygons are densified to ~1 km first, so long edges along parallels are measured
    along the parallel rather than along the geodesic.

    Args:
        geoms: polygons: a GeoSeries (its CRS is used) or an array of shapely geometries.
        crs: the CRS of an array (anything :meth:`pyproj.CRS.from_user_input` takes); overrides a GeoSeries's.

    Returns:
        float64 array, one area per geometry; NaN for all when there is no CRS.
    """
    crs = _crs_of(geoms, crs)
    values = np.asarray(geoms, dtype=object)
    if crs is None:
        return np.full(len(values), np.nan)
    lonlat = _to_crs(values, crs, CRS.from_epsg(4326))
    if crs.is_geographic:
        lonlat = shapely.segmentize(lonlat, _GEOGRAPHIC_SEGMENT_DEG)
    # exteriors counter-clockwise (positive area), holes clockwise (negative): the sum per polygon is its area
    parts, part_of = shapely.get_parts(shapely.orient_polygons(lonlat, exterior_cw=False), return_index=True)
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    owner = part_of[ring_part]
    coords, ring_of = shapely.get_coordinates(rings, return_index=True)
    bounds = np.searchsorted(ring_of, np.arange(len(rings) + 1))
    ring_area = [_GEOD.polygon_area_perimeter(coords[s:e, 0], coords[s:e, 1])[0] for s, e in pairwise(bounds)]
    return np.abs(np.bincount(owner, weights=np.asarray(ring_area, dtype=np.float64), minlength=len(values)))


_Geoms = typing.TypeVar("_Geoms")


def simplify(geoms: _Geoms, tolerance_m: float, crs: Any = None) -> _Geoms:
    """Simplify polygons with a tolerance in metres, preserving topology (valid output, holes kept).

    Geographic CRSs are simplified in their local UTM zone (as ``GeoSeries.estimate_utm_crs`` picks it; an
    azimuthal equidistant projection on the data beyond UTM's latitudes) and transformed back;
    projected CRSs use their own linear unit (converted from metres). Without a CRS the tolerance is in
    grid units.

    Args:
        geoms: polygons: a GeoSeries or an array of shapely geometries.
        tolerance_m: Douglas-Peucker tolerance, metres.
        crs: the CRS of an array (a GeoSeries carries its own).

    Returns:
        The simplified polygons, of the type given (a GeoSeries keeps its CRS and index); ``geoms`` itself when
        there is nothing to do.
    """
    values = np.asarray(geoms, dtype=object)
    if len(values) == 0 or tolerance_m <= 0:
        return geoms
    crs = _crs_of(geoms, crs)
    if crs is not None and crs.is_geographic:
        local = _local_metric_crs(values)
        out = _to_crs(shapely.simplify(_to_crs(values, crs, local), tolerance_m, preserve_topology=True), local, crs)
    else:
        factor = crs.axis_info[0].unit_conversion_factor if crs is not None else 1.0
        out = shapely.simplify(values, tolerance_m / factor, preserve_topology=True)
    bad = ~shapely.is_valid(out)
    if bad.any():  # a reprojection round trip can leave a self-touching ring
        out[bad] = shapely.make_valid(out[bad], method="structure", keep_collapsed=False)
    if isinstance(geoms, np.ndarray):
        return out  # type: ignore[return-value]
    return type(geoms)(out, index=geoms.index, crs=geoms.crs)  # type: ignore[attr-defined,call-arg]


def _local_metric_crs(lonlat: np.ndarray) -> CRS:
    """A metric CRS around lon/lat geometries: the UTM zone of their bounds' centre (what geopandas'
    ``estimate_utm_crs`` returns), or azimuthal equidistant beyond UTM's latitudes (84 N / 80 S)."""
    from pyproj.aoi import AreaOfInterest
    from pyproj.database import query_utm_crs_info

    lon0, lat0, lon1, lat1 = shapely.total_bounds(lonlat)
    x, y = (lon0 + lon1) / 2, (lat0 + lat1) / 2
    zones = query_utm_crs_info(datum_name="WGS 84", area_of_interest=AreaOfInterest(x, y, x, y))
    if zones:
        return CRS.from_epsg(zones[0].code)
    return CRS.from_proj4(f"+proj=aeqd +lat_0={y} +lon_0={x} +datum=WGS84")


def write_vectors(
    polygons: PolygonTable | gpd.GeoDataFrame,
    path: str | os.PathLike[str],
    fmt: VectorFormat,
    classes: Sequence[ClassInfo],
    overwrite: bool = False,
) -> Path:
    """Write polygons atomically as GeoJSON (RFC 7946) or GeoPackage (scene CRS, with an embedded QGIS style).

    See :func:`write_vector_file` for the formats; this wrapper writes under a temporary name and renames.

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
        ValueError: unknown ``fmt``.
    """
    final = Path(path)
    with atomic_output(final, overwrite) as tmp:
        write_vector_file(polygons, tmp, fmt, classes, layer=final.stem)
    log.info("wrote %d polygons to %s", len(polygons), final)
    return final


def write_vector_file(
    polygons: PolygonTable | gpd.GeoDataFrame, path: Path, fmt: VectorFormat, classes: Sequence[ClassInfo],
    layer: str,
) -> None:
    """Write polygons to ``path`` (normally a temporary name) as GeoJSON or GeoPackage.

    GeoJSON: transformed to EPSG:4326 lon/lat, right-hand-rule winding, 7 decimals (~1 cm), one feature per
    line, written here (GDAL's ``RFC7946=YES`` writer, through pyogrio, when a polygon crosses the
    antimeridian: it splits them). A layer without CRS (``--allow-no-crs``) is written in grid coordinates,
    which RFC 7946 does not allow (logged). GeoPackage: one layer named ``layer``, in the layer's CRS, plus the
    categorized QGIS style of :func:`firemap.style.vector_qml` as the layer's default in the ``layer_styles``
    table, so QGIS styles it on open. An empty table gives a valid empty FeatureCollection / an empty layer
    with the full schema.

    Args:
        polygons: output of :meth:`PolygonCollector.finish_table` (or a GeoDataFrame).
        path: file to write.
        fmt: one of :data:`VECTOR_FORMATS`.
        classes: the classes (for the embedded style).
        layer: layer name (the final file's stem).

    Raises:
        ValueError: unknown ``fmt``.
    """
    if fmt not in VECTOR_FORMATS:
        raise ValueError(f"unknown vector format {fmt!r}; use one of {', '.join(VECTOR_FORMATS)}")
    table = _table(polygons)
    geom_type = "Polygon" if shapely.get_type_id(table.geometry).max(initial=3) == 3 else "MultiPolygon"
    if fmt == "geojson":
        _write_geojson(table, path, layer, geom_type)
        return
    import pyogrio

    from firemap.style import embed_gpkg_style

    pyogrio.write_dataframe(
        table.to_geodataframe(), path, layer=layer, driver="GPKG", geometry_type=geom_type,
        promote_to_multi=geom_type != "Polygon", dataset_options={"VERSION": GPKG_VERSION},
    )
    embed_gpkg_style(path, layer, classes)


GEOJSON_DECIMALS = 7
"""Coordinate decimals of the GeoJSON output: 1e-7 degree is at most 1.1 cm."""


def _write_geojson(table: PolygonTable, path: Path, layer: str, geom_type: str) -> None:
    geoms = table.geometry
    if table.crs is None:
        log.warning("%s: no CRS, GeoJSON written in grid coordinates (not RFC 7946 lon/lat)", path.name)
    else:
        geoms = _to_crs(geoms, table.crs, CRS.from_epsg(4326))
        bounds = shapely.bounds(geoms)
        if len(geoms) and np.any(bounds[:, 2] - bounds[:, 0] > 180):  # crosses the antimeridian: GDAL splits it
            _write_geojson_gdal(table, path, layer, geom_type)
            return
        geoms = shapely.orient_polygons(geoms, exterior_cw=False)  # RFC 7946 right-hand rule
    geoms = shapely.transform(geoms, lambda xy: np.round(xy, GEOJSON_DECIMALS))
    if geom_type == "MultiPolygon":
        single = np.flatnonzero(shapely.get_type_id(geoms) == 3)
        geoms[single] = shapely.multipolygons(geoms[single], indices=np.arange(len(single)))
    values = {k: [None if isinstance(x, float) and not np.isfinite(x) else x for x in v.tolist()]
              for k, v in table.columns.items()}
    with open(path, "w", encoding="utf-8") as f:
        resolution = f'"xy_coordinate_resolution": {10.0 ** -GEOJSON_DECIMALS!r},\n'  # as GDAL >= 3.9 writes it
        f.write(f'{{\n"type": "FeatureCollection",\n"name": {json.dumps(layer)},\n{resolution}"features": [\n')
        for i, geometry in enumerate(shapely.to_geojson(geoms)):
            properties = json.dumps({k: v[i] for k, v in values.items()}, ensure_ascii=False, allow_nan=False)
            sep = ",\n" if i + 1 < len(geoms) else "\n"
            f.write(f'{{ "type": "Feature", "properties": {properties}, "geometry": {geometry} }}{sep}')
        f.write("]\n}\n")


def _write_geojson_gdal(table: PolygonTable, path: Path, layer: str, geom_type: str) -> None:
    import pyogrio

    pyogrio.write_dataframe(
        table.to_geodataframe().to_crs(4326), path, layer=layer, driver="GeoJSON", geometry_type=geom_type,
        promote_to_multi=geom_type != "Polygon",
        layer_options={"COORDINATE_PRECISION": str(GEOJSON_DECIMALS), "RFC7946": "YES"},
    )
