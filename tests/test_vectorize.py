"""Streaming polygonization: seamless across row bands, correct geodesic areas, RFC 7946 GeoJSON, GPKG."""

from __future__ import annotations

import json
import math
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio.features
import shapely
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.transform import from_origin
from scipy import ndimage

from firemap.config import DEFAULT_CLASSES, ClassInfo
from firemap.errors import OutputExistsError
from firemap.raster import GeoGrid
from firemap.vectorize import COLUMNS, PolygonCollector, area_m2, simplify, write_vectors

UTM = CRS.from_epsg(32633)
WGS84 = CRS.from_epsg(4326)
PIXEL = 30.0


def utm_grid(width: int = 40, height: int = 30) -> GeoGrid:
    """UTM 33N grid of 30 m pixels near the zone's central meridian (15 E, ~40.6 N)."""
    return GeoGrid(width, height, UTM, from_origin(500_000, 4_500_000, PIXEL, PIXEL))


def collect(
    grid: GeoGrid, masks: np.ndarray, probs: np.ndarray | None = None, valid: np.ndarray | None = None,
    band: int | None = None, classes: tuple[ClassInfo, ...] = DEFAULT_CLASSES, **finish: float,
) -> gpd.GeoDataFrame:
    """Feed (classes, rows, cols) masks to a collector in bands of ``band`` rows (whole array if None)."""
    probs = np.where(masks, 0.9, 0.1).astype(np.float32) if probs is None else probs
    valid = np.ones(masks.shape[1:], bool) if valid is None else valid
    step = band or masks.shape[1]
    collector = PolygonCollector(grid, classes)
    for r in range(0, masks.shape[1], step):
        collector.add(r, masks[:, r:r + step], probs[:, r:r + step], valid[r:r + step])
    return collector.finish(scene="scene", model="model", **finish)


def one_class(mask: np.ndarray, cls: int = 0) -> np.ndarray:
    """Stack a (rows, cols) mask into (3 classes, rows, cols) with only class ``cls`` set."""
    out = np.zeros((len(DEFAULT_CLASSES), *mask.shape), bool)
    out[cls] = mask
    return out


def blobs(shape: tuple[int, int], seed: int, n: int = 3) -> np.ndarray:
    """Random smooth blobs with holes and thin parts: (n, rows, cols) bool."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.normal(size=(n, *shape)), sigma=(0, 2.5, 2.5))
    return field > 0.05


def rasterized(gdf: gpd.GeoDataFrame, grid: GeoGrid, class_id: int) -> np.ndarray:
    """Pixels whose centre lies in a polygon of ``class_id``."""
    geoms = gdf.geometry[gdf["class_id"] == class_id]
    if len(geoms) == 0:
        return np.zeros((grid.height, grid.width), bool)
    return rasterio.features.rasterize(geoms, out_shape=(grid.height, grid.width), transform=grid.transform) > 0


def quadrangle_area(lon0: float, lon1: float, lat0: float, lat1: float) -> float:
    """Area of a lon/lat quadrangle on the WGS84 ellipsoid (Snyder 1987, eq. 3-12), m2."""
    a, f = 6378137.0, 1 / 298.257223563
    e2 = f * (2 - f)
    e = math.sqrt(e2)

    def q(lat: float) -> float:
        s = math.sin(math.radians(lat))
        return (1 - e2) * (s / (1 - e2 * s * s) - math.log((1 - e * s) / (1 + e * s)) / (2 * e))

    return a * a / 2 * math.radians(lon1 - lon0) * (q(lat1) - q(lat0))


# --- known squares: bounds and geodesic area -------------------------------------------------------------


def test_utm_square_bounds_and_area(tmp_path: Path) -> None:
    grid = utm_grid()
    mask = np.zeros((30, 40), bool)
    mask[5:15, 10:20] = True  # 10 x 10 pixels: x 500300..500600, y 4499550..4499850
    gdf = collect(grid, one_class(mask), band=4)
    assert len(gdf) == 1 and gdf["class"][0] == "fire" and gdf["pixels"][0] == 100
    assert gdf.crs == UTM
    assert gdf.geometry[0].bounds == (500_300.0, 4_499_550.0, 500_600.0, 4_499_850.0)
    # UTM scale factor ~0.9996 near the central meridian: ellipsoidal area = grid area / k^2
    assert gdf["area_m2"][0] == pytest.approx(100 * PIXEL**2 / 0.9996**2, rel=5e-4)

    path = write_vectors(gdf, tmp_path / "sq.geojson", "geojson", DEFAULT_CLASSES)
    fc = json.loads(path.read_text())
    ring = np.array(fc["features"][0]["geometry"]["coordinates"][0])
    to_ll = Transformer.from_crs(UTM, WGS84, always_xy=True)
    corners = np.array([to_ll.transform(x, y) for x in (500_300, 500_600) for y in (4_499_550, 4_499_850)])
    np.testing.assert_allclose(ring.min(axis=0), corners.min(axis=0), atol=2e-7)
    np.testing.assert_allclose(ring.max(axis=0), corners.max(axis=0), atol=2e-7)
    assert fc["features"][0]["properties"]["area_m2"] == pytest.approx(gdf["area_m2"][0])


def test_geographic_square_area_and_bounds(tmp_path: Path) -> None:
    res = 0.001  # ~111 m x ~56 m at 60 N
    grid = GeoGrid(50, 40, WGS84, from_origin(10.0, 60.04, res, res))
    mask = np.zeros((40, 50), bool)
    mask[10:30, 5:45] = True  # lon 10.005..10.045, lat 60.010..60.030
    gdf = collect(grid, one_class(mask, cls=2), band=7)
    assert len(gdf) == 1 and gdf["class"][0] == "burn_scar" and gdf["class_id"][0] == 3
    expected = quadrangle_area(10.005, 10.045, 60.010, 60.030)
    assert gdf["area_m2"][0] == pytest.approx(expected, rel=1e-4)
    np.testing.assert_allclose(gdf.geometry[0].bounds, (10.005, 60.010, 10.045, 60.030), atol=1e-9)

    fc = json.loads(write_vectors(gdf, tmp_path / "g.geojson", "geojson", DEFAULT_CLASSES).read_text())
    np.testing.assert_allclose(shapely.geometry.shape(fc["features"][0]["geometry"]).bounds,
                               (10.005, 60.010, 10.045, 60.030), atol=1e-7)


def test_area_m2_is_crs_independent_and_subtracts_holes() -> None:
    ring = shapely.Polygon([(0, 0), (3000, 0), (3000, 3000), (0, 3000)], [[(1000, 1000), (2000, 1000), (2000, 2000),
                                                                          (1000, 2000)]])
    utm = gpd.GeoSeries([shapely.affinity.translate(ring, 500_000, 4_500_000)], crs=UTM)
    a_utm = area_m2(utm)[0]
    assert a_utm == pytest.approx(8e6 / 0.9996**2, rel=5e-4)
    assert area_m2(utm.to_crs(WGS84))[0] == pytest.approx(a_utm, rel=1e-3)
    assert area_m2(utm.to_crs(3857))[0] == pytest.approx(a_utm, rel=1e-3)  # Web Mercator: planar area is ~1.7x
    assert np.isnan(area_m2(gpd.GeoSeries([ring]))).all()


# --- seamless streaming ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["U", "n", "S"])
def test_shape_spanning_bands_is_one_polygon(shape: str) -> None:
    """A U joins its arms in the last band, an n in the first, an S zig-zags: each must be one polygon."""
    mask = np.zeros((30, 40), bool)
    if shape in "Un":
        mask[2:28, 5:9] = mask[2:28, 25:29] = True
        mask[slice(24, 28) if shape == "U" else slice(2, 6), 5:29] = True
    else:  # horizontal bars joined alternately on the right and on the left
        for i, r in enumerate(range(2, 26, 5)):
            mask[r:r + 2, 5:30] = True
            mask[r:r + 7, slice(5, 7) if i % 2 else slice(28, 30)] = True
    grid = utm_grid()
    whole = collect(grid, one_class(mask))
    banded = collect(grid, one_class(mask), band=7)
    assert len(whole) == len(banded) == 1
    assert banded.geometry[0].equals(whole.geometry[0])
    assert banded["pixels"][0] == mask.sum() and banded.geometry[0].area == pytest.approx(mask.sum() * PIXEL**2)
    assert shapely.get_num_coordinates(banded.geometry[0]) == shapely.get_num_coordinates(whole.geometry[0])


@pytest.mark.parametrize("band", [1, 3, 7, 16])
def test_banded_equals_whole_and_rasterizes_back(band: int) -> None:
    grid = utm_grid(48, 45)
    masks = blobs((45, 48), seed=band)
    rng = np.random.default_rng(band)
    probs = rng.uniform(0, 1, masks.shape).astype(np.float32)
    valid = np.ones((45, 48), bool)
    valid[20, 10:30] = valid[5:40, 33] = False
    whole = collect(grid, masks, probs, valid)
    banded = collect(grid, masks, probs, valid, band=band)
    assert len(banded) == len(whole) > 5
    assert banded.geometry.geom_equals(whole.geometry).all()
    assert list(banded["class"]) == list(whole["class"])
    for col in ("pixels", "mean_prob", "max_prob", "area_m2"):
        np.testing.assert_allclose(banded[col].to_numpy(), whole[col].to_numpy(), rtol=1e-12)
    assert banded.geometry.is_valid.all()
    for c, info in enumerate(DEFAULT_CLASSES):
        np.testing.assert_array_equal(rasterized(banded, grid, info.id), masks[c] & valid)
        # one polygon per 4-connected component of the class mask
        n_components = ndimage.label(masks[c] & valid)[1]
        assert (banded["class_id"] == info.id).sum() == n_components


def test_ring_keeps_its_hole_across_bands() -> None:
    mask = np.zeros((30, 40), bool)
    mask[4:26, 6:30] = True
    mask[10:20, 12:24] = False
    gdf = collect(utm_grid(), one_class(mask), band=7)
    assert len(gdf) == 1
    poly = gdf.geometry[0]
    assert len(poly.interiors) == 1
    assert shapely.Polygon(poly.interiors[0]).area == pytest.approx(120 * PIXEL**2)
    assert gdf["pixels"][0] == 22 * 24 - 120 and poly.area == pytest.approx(gdf["pixels"][0] * PIXEL**2)


def test_nodata_splits_polygons() -> None:
    mask = np.zeros((30, 40), bool)
    mask[5:25, 5:35] = True
    valid = np.ones((30, 40), bool)
    valid[:, 20] = False  # a nodata column through the shape
    valid[12, :] = False  # and a nodata row
    gdf = collect(utm_grid(), one_class(mask), valid=valid, band=5)
    assert len(gdf) == 4
    assert gdf["pixels"].sum() == (mask & valid).sum()
    nodata_centres = shapely.points(*rasterio.transform.xy(utm_grid().transform, *np.nonzero(~valid)))
    assert not gdf.geometry.union_all().intersects(shapely.multipoints(nodata_centres))


def test_multilabel_overlap_gives_both_classes() -> None:
    masks = np.zeros((3, 30, 40), bool)
    masks[0, 5:15, 5:15] = True  # fire
    masks[1, 8:25, 8:30] = True  # smoke over the fire
    gdf = collect(utm_grid(), masks, band=6)
    assert list(gdf["class"]) == ["fire", "smoke"]
    assert list(gdf["class_id"]) == [1, 2]
    assert list(gdf["pixels"]) == [100, 17 * 22]
    assert gdf.geometry[0].intersection(gdf.geometry[1]).area == pytest.approx(7 * 7 * PIXEL**2)


def test_stats_match_hand_computed_values() -> None:
    mask = np.zeros((30, 40), bool)
    mask[6:9, 10:12] = True  # 3 x 2 pixels across the band boundary at row 8
    probs = np.zeros((3, 30, 40), np.float32)
    probs[0, 6:9, 10:12] = [[0.5, 0.6], [0.7, 0.8], [0.9, 1.0]]
    probs[0, 0, 0] = 0.99  # outside the mask: must not count
    gdf = collect(utm_grid(), one_class(mask), probs, band=8)
    assert len(gdf) == 1
    assert gdf["pixels"][0] == 6
    assert gdf["mean_prob"][0] == pytest.approx(0.75, abs=1e-6)
    assert gdf["max_prob"][0] == pytest.approx(1.0)
    assert list(gdf.columns) == [*COLUMNS, "geometry"]
    assert gdf["scene"][0] == "scene" and gdf["model"][0] == "model"


def test_diagonal_pixels_are_separate_polygons() -> None:
    """4-connectivity, as rasterio.features.shapes: pixels touching at a corner are two polygons."""
    mask = np.zeros((30, 40), bool)
    mask[6, 6] = mask[7, 7] = True
    gdf = collect(utm_grid(), one_class(mask), band=7)  # the corner lies on the band boundary
    assert len(gdf) == 2 and list(gdf["pixels"]) == [1, 1]


# --- filtering and simplification ---------------------------------------------------------------------------


def test_min_area_filters_after_merging() -> None:
    mask = np.zeros((30, 40), bool)
    mask[2:4, 2:4] = True  # 4 pixels = 3600 m2
    mask[10:20, 10:12] = True  # 20 pixels = 18000 m2, split in pieces of <= 5 pixels... by bands of 1 row
    gdf = collect(utm_grid(), one_class(mask), band=1, min_area_m2=10_000)
    assert len(gdf) == 1 and gdf["pixels"][0] == 20
    assert len(collect(utm_grid(), one_class(mask), band=1, min_area_m2=0)) == 2
    assert len(collect(utm_grid(), one_class(mask), band=1, min_area_m2=20_000)) == 0


@pytest.mark.parametrize("crs", ["utm", "geographic"])
def test_simplify_in_metres_keeps_validity_and_holes(crs: str) -> None:
    rows, cols = 40, 40
    if crs == "utm":
        grid = GeoGrid(cols, rows, UTM, from_origin(500_000, 4_500_000, PIXEL, PIXEL))
        pixel_m = PIXEL
    else:
        grid = GeoGrid(cols, rows, WGS84, from_origin(15.0, 40.6, 0.0003, 0.0003))
        pixel_m = 0.0003 * 111_000 * math.cos(math.radians(40.6))  # the shorter side, ~25 m
    yy, xx = np.mgrid[:rows, :cols]
    r = np.hypot(yy - 19.5, xx - 19.5)
    mask = (r < 17) & (r > 6)  # a pixelated annulus: staircase edges and a hole
    raw = collect(grid, one_class(mask), band=7)
    simple = collect(grid, one_class(mask), band=7, simplify_m=1.5 * pixel_m)
    assert len(raw) == len(simple) == 1
    g0, g1 = raw.geometry[0], simple.geometry[0]
    assert g1.is_valid and len(g1.interiors) == 1
    assert shapely.get_num_coordinates(g1) < shapely.get_num_coordinates(g0) / 2
    assert simple["area_m2"][0] == raw["area_m2"][0]  # area is that of the pixels
    local = raw.estimate_utm_crs()
    shift = raw.to_crs(local).geometry[0].hausdorff_distance(simple.to_crs(local).geometry[0])
    # Douglas-Peucker moves the outline by about the tolerance (GEOS's ring-start handling can add a bit):
    # a tolerance taken as degrees would collapse the annulus, one ignored would leave it unchanged
    assert 0.5 * 1.5 * pixel_m < shift <= 2 * 1.5 * pixel_m
    assert simple.crs == grid.crs


def test_simplify_zero_is_identity() -> None:
    s = gpd.GeoSeries([shapely.box(0, 0, 1, 1)], crs=UTM)
    assert simplify(s, 0.0) is s


# --- writing --------------------------------------------------------------------------------------------------


def test_geojson_is_rfc7946(tmp_path: Path) -> None:
    grid = utm_grid(48, 45)
    gdf = collect(grid, blobs((45, 48), seed=3), band=9)
    path = write_vectors(gdf, tmp_path / "b.geojson", "geojson", DEFAULT_CLASSES)
    fc = json.loads(path.read_text())
    assert fc["type"] == "FeatureCollection" and "crs" not in fc and fc["name"] == "b"
    assert len(fc["features"]) == len(gdf)
    for feat in fc["features"]:
        rings = feat["geometry"]["coordinates"]
        assert shapely.LinearRing(rings[0]).is_ccw  # right-hand rule: exterior counter-clockwise
        assert all(not shapely.LinearRing(h).is_ccw for h in rings[1:])  # holes clockwise
        coords = np.concatenate([np.asarray(r) for r in rings])
        assert np.all(np.abs(coords[:, 0] - 15) < 1) and np.all(np.abs(coords[:, 1] - 40.6) < 1)  # lon, lat
        assert np.allclose(coords, np.round(coords, 7), atol=1e-12, rtol=0)
        assert set(feat["properties"]) == set(COLUMNS)
    back = gpd.read_file(path)
    assert back.crs.to_epsg() == 4326
    # 7 decimals of a degree is <= 1.1 cm: areas agree to 1 cm times the perimeter
    assert np.all(np.abs(back.to_crs(UTM).area - gdf.area) <= 0.01 * gdf.length)


def test_gpkg_keeps_scene_crs_and_embeds_style(tmp_path: Path) -> None:
    gdf = collect(utm_grid(), one_class(np.pad(np.ones((4, 4), bool), ((3, 23), (3, 33)))))
    path = write_vectors(gdf, tmp_path / "s.gpkg", "gpkg", DEFAULT_CLASSES)
    layers = dict(pyogrio.list_layers(path))
    assert layers == {"s": "Polygon", "layer_styles": None}
    back = gpd.read_file(path, layer="s")
    assert back.crs == UTM and len(back) == 1 and back.geometry[0].equals(gdf.geometry[0])
    styles = pyogrio.read_dataframe(path, layer="layer_styles", read_geometry=False)
    assert list(styles["f_table_name"]) == ["s"] and bool(styles["useAsDefault"][0])
    assert 'attr="class"' in styles["styleQML"][0]


@pytest.mark.parametrize("fmt", ["geojson", "gpkg"])
def test_empty_result_is_valid_and_keeps_schema(tmp_path: Path, fmt: str) -> None:
    gdf = collect(utm_grid(), np.zeros((3, 30, 40), bool), band=7)
    assert len(gdf) == 0 and list(gdf.columns) == [*COLUMNS, "geometry"] and gdf.crs == UTM
    path = write_vectors(gdf, tmp_path / f"e.{fmt}", fmt, DEFAULT_CLASSES)  # type: ignore[arg-type]
    if fmt == "geojson":  # an empty FeatureCollection has no schema to keep
        fc = json.loads(path.read_text())
        assert (fc["type"], fc["name"], fc["features"]) == ("FeatureCollection", "e", [])
        assert gpd.read_file(path).empty
        return
    info = pyogrio.read_info(path, layer="e")
    assert info["features"] == 0 and list(info["fields"]) == list(COLUMNS)
    assert info["geometry_type"] == "Polygon"


def test_refuses_to_overwrite_and_leaves_no_partial_files(tmp_path: Path) -> None:
    gdf = collect(utm_grid(), np.zeros((3, 30, 40), bool))
    path = write_vectors(gdf, tmp_path / "x.geojson", "geojson", DEFAULT_CLASSES)
    before = path.read_bytes()
    with pytest.raises(OutputExistsError, match="--overwrite"):
        write_vectors(gdf, path, "geojson", DEFAULT_CLASSES)
    assert path.read_bytes() == before
    write_vectors(gdf, path, "geojson", DEFAULT_CLASSES, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.geojson"]


def test_no_crs_gives_grid_coordinates_and_nan_area() -> None:
    grid = GeoGrid(20, 10, None, rasterio.Affine.identity())
    mask = np.zeros((10, 20), bool)
    mask[2:5, 3:7] = True
    gdf = collect(grid, one_class(mask), band=3)
    assert gdf.crs is None and gdf.geometry[0].bounds == (3, 2, 7, 5)
    assert np.isnan(gdf["area_m2"][0]) and gdf["pixels"][0] == 12


def test_bad_band_sequence_is_refused() -> None:
    grid = utm_grid()
    c = PolygonCollector(grid, DEFAULT_CLASSES)
    m = np.zeros((3, 5, 40), bool)
    p = np.zeros((3, 5, 40), np.float32)
    v = np.ones((5, 40), bool)
    c.add(0, m, p, v)
    with pytest.raises(ValueError, match="expected 5"):
        c.add(10, m, p, v)
    with pytest.raises(ValueError, match="masks must be"):
        c.add(5, m[:2], p[:2], v)
    with pytest.raises(ValueError, match=r"only rows 0\.\.5 of 30"):
        c.finish()


def test_many_holes_inside_and_across_bands() -> None:
    """Holes inside one band are kept as they are, holes cut by band boundaries are re-formed."""
    mask = np.ones((60, 40), bool)
    mask[3::8, 3::6] = False  # single-pixel holes; rows 27 and 35 lie on 7-row band edges
    mask[40:50, 10:20] = False  # a larger hole across the boundary at row 42
    grid = utm_grid(40, 60)
    whole = collect(grid, one_class(mask))
    banded = collect(grid, one_class(mask), band=7)
    assert len(banded) == 1 and banded.geometry[0].is_valid
    holes, n = ndimage.label(~mask)
    border = set(np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]])))
    n_holes = n - len(border - {0})  # background regions not touching the scene border: 41 here
    assert len(banded.geometry[0].interiors) == n_holes == len(whole.geometry[0].interiors) == 41
    assert banded.geometry[0].equals(whole.geometry[0])
    np.testing.assert_array_equal(rasterized(banded, grid, 1), mask)


def test_simplify_beyond_utm_latitudes() -> None:
    grid = GeoGrid(40, 40, WGS84, from_origin(10.0, 85.04, 0.001, 0.001))  # no UTM zone at 85 N
    yy, xx = np.mgrid[:40, :40]
    mask = np.hypot(yy - 19.5, xx - 19.5) < 15
    raw = collect(grid, one_class(mask), band=7)
    simple = collect(grid, one_class(mask), band=7, simplify_m=20.0)  # pixels are ~111 m x ~10 m
    assert simple.geometry[0].is_valid
    assert 8 <= shapely.get_num_coordinates(simple.geometry[0]) < shapely.get_num_coordinates(raw.geometry[0])


def test_stored_bytes_follow_the_polygons_not_the_raster() -> None:
    """The same square in a 100-row and in a 4000-row scene: the memory the collector really keeps (measured with
    tracemalloc, not its own ``nbytes``) does not grow with the rows added."""
    import gc
    import tracemalloc

    retained = []
    for height in (100, 4000):
        grid = utm_grid(64, height)
        gc.collect()
        tracemalloc.start()
        c = PolygonCollector(grid, DEFAULT_CLASSES)
        for r in range(0, height, 50):
            m = np.zeros((3, 50, 64), bool)
            if r == 0:
                m[0, 10:20, 10:20] = True
            c.add(r, m, m.astype(np.float32), np.ones((50, 64), bool))
            del m
        gc.collect()
        retained.append(tracemalloc.get_traced_memory()[0])
        tracemalloc.stop()
        gdf = c.finish()
        assert len(gdf) == 1 and gdf["pixels"][0] == 100
    assert retained[1] - retained[0] < 16 * 1024  # 3900 more rows (0.75 MB of masks) kept < 16 kB more


# --- the lean path: labels without scipy, GeoJSON without GDAL -------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_components_are_numbered_as_scipy_numbers_them(seed: int) -> None:
    from firemap.vectorize import label_components

    mask = blobs((37, 53), seed=seed, n=1)[0]
    mask[::7, ::5] = True  # single pixels and diagonal neighbours (separate components with 4-connectivity)
    labels, n = label_components(mask)
    expected, count = ndimage.label(mask, structure=ndimage.generate_binary_structure(2, 1))
    assert n == count > 10 and labels.dtype == np.int32
    np.testing.assert_array_equal(labels, expected)


def test_table_writes_the_same_features_as_gdal(tmp_path: Path) -> None:
    gdf = collect(utm_grid(48, 45), blobs((45, 48), seed=5), band=11)
    ours = json.loads(write_vectors(gdf, tmp_path / "a.geojson", "geojson", DEFAULT_CLASSES).read_text())
    gdal = tmp_path / "b.geojson"
    pyogrio.write_dataframe(gdf.to_crs(4326), gdal, driver="GeoJSON",
                            layer_options={"COORDINATE_PRECISION": "7", "RFC7946": "YES"})
    theirs = json.loads(gdal.read_text())
    assert len(ours["features"]) == len(theirs["features"]) == len(gdf) > 3
    for a, b in zip(ours["features"], theirs["features"], strict=True):
        assert a["properties"] == pytest.approx(b["properties"])
        ga, gb = shapely.geometry.shape(a["geometry"]), shapely.geometry.shape(b["geometry"])
        assert ga.geom_type == gb.geom_type and shapely.hausdorff_distance(ga, gb) <= 1.01e-7


def test_geojson_across_the_antimeridian_is_split_by_gdal(tmp_path: Path) -> None:
    # UTM 60S (central meridian 177 E): 90 km east of the zone edge reaches past 180 E
    grid = GeoGrid(40, 10, CRS.from_epsg(32760), from_origin(700_000, 8_000_000, 3000, 3000))
    gdf = collect(grid, one_class(np.ones((10, 40), bool), cls=2))
    fc = json.loads(write_vectors(gdf, tmp_path / "am.geojson", "geojson", DEFAULT_CLASSES).read_text())
    geom = shapely.geometry.shape(fc["features"][0]["geometry"])
    assert geom.geom_type == "MultiPolygon" and len(geom.geoms) == 2
    lons = shapely.get_coordinates(geom)[:, 0]
    assert lons.max() <= 180 and lons.min() >= -180 and (lons > 179).any() and (lons < -179).any()


def test_geojson_promotes_to_multipolygon_and_writes_nan_as_null(tmp_path: Path) -> None:
    from firemap.vectorize import PolygonTable

    one, two = shapely.box(500_000, 4_499_000, 500_300, 4_499_300), shapely.MultiPolygon([
        shapely.box(500_600, 4_499_000, 500_900, 4_499_300), shapely.box(501_200, 4_499_000, 501_500, 4_499_300)])
    columns = {"class": np.array(["fire", "smoke"], dtype=object), "area_m2": np.array([9e4, np.nan])}
    table = PolygonTable(np.array([one, two], dtype=object), columns, UTM)
    fc = json.loads(write_vectors(table, tmp_path / "m.geojson", "geojson", DEFAULT_CLASSES).read_text())
    assert [f["geometry"]["type"] for f in fc["features"]] == ["MultiPolygon", "MultiPolygon"]
    assert fc["features"][0]["properties"] == {"class": "fire", "area_m2": 9e4}
    assert fc["features"][1]["properties"]["area_m2"] is None
    back = gpd.read_file(tmp_path / "m.geojson")
    assert back.crs.to_epsg() == 4326 and len(back.geometry[1].geoms) == 2
    np.testing.assert_allclose(back.to_crs(UTM).area, [9e4, 18e4], rtol=2e-5)  # 7 decimals: ~1 cm
