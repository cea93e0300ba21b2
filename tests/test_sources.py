"""Scenes as providers ship them: every layout predicts like its stacked GeoTIFF; scaling precedence; bad products."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from firemap.bands import MIN_REFLECTANCE, model_sources, resolve_bands
from firemap.config import PredictConfig
from firemap.errors import MissingBandsError, ProductError
from firemap.models import Bundle
from firemap.predict import predict_scene
from firemap.raster import describe_scene, open_scene, read_window
from firemap.sources import band_token, read_mtl
from tests import _providers as pv
from tests.conftest import BANDS, requires_shared

CFG = PredictConfig(tile_size=32, overlap=8)

LAYOUTS: dict[str, tuple[Callable[[Path], Path], Callable[[Path], Path], str]] = {
    # name: (product factory, stacked equivalent, output stem)
    "landsat-c2-l2-folder": (pv.landsat_l2, pv.l2_stack, pv.L2_ID),
    "landsat-c2-l2-mtl-file": (lambda r: pv.landsat_l2(r) / f"{pv.L2_ID}_MTL.txt", pv.l2_stack, pv.L2_ID),
    "landsat-c2-l1-folder": (pv.landsat_l1, pv.l1_stack, pv.L1_ID),
    "landsat-pre-collection-l1t": (lambda r: pv.landsat_l1(r, collection=1), pv.l1_stack, pv.PRE_ID),
    "sentinel2-cogs-10-20-60m": (pv.sentinel2_cogs, pv.s2_stack, pv.S2_ID),
    "sentinel2-safe": (pv.sentinel2_safe, pv.s2_stack, pv.SAFE_NAME[: -len(".SAFE")]),
    "hls-s30": (pv.hls_folder, pv.hls_stack, pv.HLS_ID.replace(".", "_")),
    "stac-item-scale-offset": (pv.stac_item, pv.stac_stack, "fake-sat-20200901-T10SEG"),
}


def _classes(path: Path) -> tuple[np.ndarray, rasterio.Affine, object]:
    with rasterio.open(path) as ds:
        return ds.read(1), ds.transform, ds.crs


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_each_layout_predicts_like_its_stacked_geotiff(layout: str, threshold_bundle: Bundle, tmp_path: Path) -> None:
    make, stack, stem = LAYOUTS[layout]
    product = make(tmp_path / "products")
    stacked = stack(tmp_path / "stack.tif")
    predict_scene(product, tmp_path / "out", threshold_bundle, CFG)
    predict_scene(stacked, tmp_path / "ref", threshold_bundle, CFG)
    got, got_transform, got_crs = _classes(tmp_path / "out" / f"{stem}.classes.tif")  # named after the product
    want, want_transform, want_crs = _classes(tmp_path / "ref" / "stack.classes.tif")
    assert got_transform == want_transform and got_crs == want_crs
    np.testing.assert_array_equal(got, want)
    assert (got == 1).sum() == 144 and (got == 2).sum() > 0 and (got == 3).sum() > 0  # fire, smoke, scar all there


def _physical(scene: Path, bands: tuple[str, ...] = BANDS, **kw: object) -> tuple[np.ndarray, object]:
    info = open_scene(scene, **kw)  # type: ignore[arg-type]
    bandmap = resolve_bands(info.descriptions, info.count, None, None, info.tags, info.scales, info.offsets)
    sources, zero = model_sources(bandmap, bands)
    with rasterio.open(info.path) as src:
        data, _ = read_window(src, Window(0, 0, info.grid.width, info.grid.height), sources, zero)
    return data, info


def test_landsat_l1_mtl_gives_sun_corrected_toa_and_thermal_from_k1_k2(tmp_path: Path) -> None:
    folder = pv.landsat_l1(tmp_path)
    data, info = _physical(folder, (*BANDS, "thermal"))
    np.testing.assert_allclose(data[:6], pv.scene_reflectance()[1:], atol=2e-4)  # (M DN + A) / sin(52 deg)
    radiance = 3.342e-4 * 25000 + 0.1
    assert data[6, 0, 0] == pytest.approx(1329.2405 / math.log(799.0284 / radiance + 1), rel=1e-5)  # Landsat-9 K1/K2
    assert info.tags["FIREMAP_SENSOR"] == "landsat9-l1" and info.tags["SUN_ELEVATION"] == str(pv.SUN_ELEVATION)
    assert info.count == 9  # coastal..swir2, thermal, thermal2: the 15 m panchromatic B8 is left out
    assert info.grid.res == (30.0, 30.0)


def test_mixed_10_20_60m_bands_resampled_to_the_finest_grid_or_resolution(tmp_path: Path) -> None:
    folder = pv.sentinel2_cogs(tmp_path)
    data, info = _physical(folder, ("coastal", *BANDS))
    assert (info.grid.width, info.grid.height, info.grid.res) == (64, 64, (10.0, 10.0))
    raw = pv.s2_raw()
    np.testing.assert_allclose(data[0], np.repeat(np.repeat(raw["coastal"], 6, 0), 6, 1)[:64, :64] * 1e-4, rtol=1e-6)
    np.testing.assert_allclose(data[6], np.repeat(np.repeat(raw["swir2"], 2, 0), 2, 1) * 1e-4, rtol=1e-6)
    coarse, info20 = _physical(folder, BANDS, resolution=20.0)
    assert (info20.grid.width, info20.grid.height, info20.grid.res) == (32, 32, (20.0, 20.0))
    np.testing.assert_allclose(coarse[5], raw["swir2"] * 1e-4, rtol=1e-6)  # native 20 m band untouched
    blue = raw["blue"].astype(np.float64).reshape(32, 2, 32, 2).mean(axis=(1, 3)) * 1e-4  # 10 m band averaged
    np.testing.assert_allclose(coarse[0], blue, atol=1.01e-4)


def test_sentinel2_folder_without_swir2_names_missing_and_found(threshold_bundle: Bundle, tmp_path: Path) -> None:
    folder = pv.sentinel2_cogs(tmp_path, drop=["swir2"])
    with pytest.raises(MissingBandsError) as err:
        predict_scene(folder, tmp_path / "out", threshold_bundle, CFG)
    text = str(err.value)
    assert "\n" not in text and "swir2" in text and pv.S2_ID in text and "swir1=band 6 'B11'" in text


def test_mtl_contradicting_the_files_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ProductError, match=r"UTM_ZONE 11 but .*SR_B1.TIF is in EPSG:32610"):
        open_scene(pv.landsat_l2(tmp_path / "a", utm_zone=11))
    with pytest.raises(ProductError) as err:
        open_scene(pv.landsat_l2(tmp_path / "b", drop=["nir"]))
    text = str(err.value)
    assert f"{pv.L2_ID}_SR_B5.TIF (nir)" in text and "found:" in text and f"{pv.L2_ID}_SR_B4.TIF" in text
    folder = pv.landsat_l2(tmp_path / "c")
    mtl = folder / f"{pv.L2_ID}_MTL.txt"
    mtl.write_text(mtl.read_text().replace("4200000.0 - 15", "4100000").replace(
        "CORNER_UL_PROJECTION_Y_PRODUCT = 4199985.0", "CORNER_UL_PROJECTION_Y_PRODUCT = 3000000.0"))
    with pytest.raises(ProductError, match="the MTL belongs to another scene"):
        open_scene(folder)


def test_stac_item_without_bands_lists_its_assets(tmp_path: Path) -> None:
    item = pv.stac_item(tmp_path, with_bands=False)
    with pytest.raises(ProductError, match=r"no data asset .* found assets: thumbnail$"):
        open_scene(item)


def test_folder_without_band_files(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(ProductError, match=r"no band files firemap can use .* found: notes.txt"):
        open_scene(tmp_path / "empty")


def test_l2_mtl_ignores_the_l1_record_it_carries(tmp_path: Path) -> None:
    mtl = read_mtl(pv.landsat_l2(tmp_path) / f"{pv.L2_ID}_MTL.txt")
    assert mtl["LANDSAT_PRODUCT_ID"] == pv.L2_ID and mtl["REFLECTANCE_MULT_BAND_1"] == "2.75e-05"
    assert "FILE_NAME_BAND_9" not in mtl


@pytest.mark.parametrize(("name", "token"), [
    ("LC08_L2SP_044034_20200808_20200918_02_T1_SR_B4.TIF", "SR_B4"), ("LC08_X_ST_B10.TIF", "ST_B10"),
    ("l8_B11.tif", "B11"), ("T29RKH_20200219T112111_B8A_20m.jp2", "B8A"), ("B02.tif", "B02"),
    ("HLS.S30.T10SEG.2020245T184109.v2.0.B12.tif", "B12"), ("l8_BQA.tif", None), ("SCL.tif", None),
    ("LC08_X_QA_PIXEL.TIF", None), ("TCI.tif", None),
])
def test_band_token(name: str, token: str | None) -> None:
    assert band_token(name) == token


# --------------------------------------------------------------------------------- scale/offset precedence


def test_scaling_precedence_bands_over_file_over_preset(tmp_path: Path) -> None:
    raw = np.full((6, 4, 4), 10000, np.uint16)
    names = [f"SR_B{i}" for i in range(2, 8)]
    scene = pv.write_stack(tmp_path / "s.tif", raw, names, nodata=0, scales=[1e-5] * 6, offsets=[0.01] * 6)
    info = open_scene(scene)
    file_map = resolve_bands(info.descriptions, info.count, None, None, info.tags, info.scales, info.offsets)
    assert file_map.sensor == "landsat8-l2"
    red = file_map.sources["red"]
    assert (red.encoding.scale, red.encoding.offset, red.scaling) == (1e-5, 0.01, "file")  # file beats preset
    spec = resolve_bands(info.descriptions, info.count, None, "red=SR_B4:0.5:1", info.tags, info.scales, info.offsets)
    assert (spec.sources["red"].encoding.scale, spec.sources["red"].scaling) == (0.5, "--bands")
    assert spec.sources["nir"].scaling == "file"
    preset = resolve_bands(info.descriptions, info.count, None, None, info.tags)
    assert (preset.sources["red"].encoding.scale, preset.sources["red"].scaling) == (2.75e-5, "preset")


def test_file_scale_offset_resolves_a_stack_with_a_landsat_product_id(tmp_path: Path) -> None:
    """Like the real Corumba L1 stacks: B2..B7, a PRODUCT_ID tag and sun-corrected GDAL scale/offset."""
    raw = np.full((6, 4, 4), 20000, np.uint16)
    scene = pv.write_stack(tmp_path / "s.tif", raw, [f"B{i}" for i in range(2, 8)], nodata=0,
                           scales=[2.7e-5] * 6, offsets=[-0.13] * 6,
                           tags={"PRODUCT_ID": "LC08_L1TP_227074_20190825_20200826_02_T1", "SUN_ELEVATION": "40"})
    _i, fields, rows = describe_scene(scene)
    assert dict(fields)["sensor"] == "landsat8-l1"
    assert rows[2] == ("3", "B4", "red", "raw * 2.7e-05 + -0.13", "file")  # no second sun-elevation correction
    assert "--bands > file metadata" in dict(fields)["scaling"]


def test_info_cli_on_a_product_folder(tmp_path: Path) -> None:
    folder = pv.sentinel2_cogs(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "firemap", "info", str(folder)], capture_output=True, text=True,
                          env={"PYTHONPATH": str(Path(__file__).parents[1]), "COLUMNS": "200", "PATH": ""})
    assert proc.returncode == 0, proc.stderr
    assert "layout: sentinel2" in proc.stdout and f"product: {pv.S2_ID}" in proc.stdout
    assert "B12" in proc.stdout and "swir2" in proc.stdout and "preset" in proc.stdout


def test_cli_bad_product_one_line_exit_1(tmp_path: Path) -> None:
    item = pv.stac_item(tmp_path, with_bands=False)
    proc = subprocess.run([sys.executable, "-m", "firemap", "info", str(item)], capture_output=True, text=True,
                          env={"PYTHONPATH": str(Path(__file__).parents[1]), "COLUMNS": "400", "PATH": ""})
    assert proc.returncode == 1
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "found assets: thumbnail" in lines[0]


# --------------------------------------------------------------------------------- real provider folders


PROVIDER = ("real_scenes", "provider_formats")


@pytest.mark.parametrize(("name", "stem", "sensor", "count", "blue_median"), [
    ("LC08_L2SP_001062_20201031_20201106_02_T2", "LC08_L2SP_001062_20201031_20201106_02_T2", "landsat8-l2", 8,
     (0.0, 1.0)),  # cloudy
    ("S2A_29RKH_20200219_0_L2A", "S2A_29RKH_20200219_0_L2A", "sentinel2-l2a", 7, (0.1, 0.4)),
    ("landsat8_LC80200392015216LGN00_crop", "LC80200392015216LGN00", "landsat8-l1", 10, (0.03, 0.3)),
])
def test_real_provider_folders(name: str, stem: str, sensor: str, count: int, blue_median: tuple[float, float],
                               threshold_bundle: Bundle, tmp_path: Path) -> None:
    folder = requires_shared(*PROVIDER, name)
    data, info = _physical(folder)
    assert info.tags["FIREMAP_SENSOR"] == sensor and info.count == count and info.path.stem == stem
    valid = data[0] != 0
    assert blue_median[0] < float(np.median(data[0][valid])) < blue_median[1]  # reflectance, not DN
    with rasterio.open(info.path) as vrt:
        finest = min(rasterio.open(f).res[0] for f in vrt.files[1:])
        assert vrt.res[0] == pytest.approx(finest)
    result = predict_scene(folder, tmp_path / "o", threshold_bundle, PredictConfig(tile_size=256, overlap=16))
    assert result.outputs["classes"] == tmp_path / "o" / f"{stem}.classes.tif"
    with rasterio.open(result.outputs["classes"]) as ds:
        assert ds.crs == info.grid.crs and ds.transform == info.grid.transform


def test_real_l1_crop_matches_mtl_formula(tmp_path: Path) -> None:
    folder = requires_shared(*PROVIDER, "landsat8_LC80200392015216LGN00_crop")
    mtl = read_mtl(folder / "l8_MTL.txt")
    data, _info = _physical(folder, ("red",))
    with rasterio.open(folder / "l8_B4.tif") as src:
        dn = src.read(1, window=Window(100, 100, 1, 1))[0, 0]
    sin = math.sin(math.radians(float(mtl["SUN_ELEVATION"])))
    expected = (float(mtl["REFLECTANCE_MULT_BAND_4"]) * dn + float(mtl["REFLECTANCE_ADD_BAND_4"])) / sin
    assert data[0, 100, 100] == pytest.approx(expected, rel=1e-5)


def test_real_stac_items_beside_their_files(tmp_path: Path) -> None:
    item = requires_shared(*PROVIDER, "S2A_29RKH_20200219_0_L2A", "S2A_29RKH_20200219_0_L2A.json")
    data, info = _physical(item)
    assert info.path.stem == "S2A_29RKH_20200219_0_L2A" and info.tags["FIREMAP_LAYOUT"] == "stac"
    with rasterio.open(info.path) as vrt:
        assert all(not f.startswith("/vsi") for f in vrt.files)  # remote hrefs, local copies used
    assert 0.3 < float(np.median(data[5][data[5] > 0])) < 0.6  # Sahara SWIR2 median ~0.46


@pytest.mark.parametrize("layout", ["landsat-c2-l2-folder", "sentinel2-cogs-10-20-60m", "stac-item-scale-offset"])
def test_label_and_indices_take_products(layout: str, tmp_path: Path) -> None:
    from firemap.label import label_config, label_scene, write_indices

    make, stack, stem = LAYOUTS[layout]
    product, stacked = make(tmp_path / "p"), stack(tmp_path / "stack.tif")
    for scene, out in ((product, tmp_path / "a"), (stacked, tmp_path / "b")):
        label_scene(scene, out, label_config())
        write_indices(scene, out, ["nbr", "ndvi"])
    for suffix in ("labels.tif", "nbr.tif", "ndvi.tif"):
        a_path, b_path = tmp_path / "a" / f"{stem}.{suffix}", tmp_path / "b" / f"stack.{suffix}"
        with rasterio.open(a_path) as a, rasterio.open(b_path) as b:
            np.testing.assert_array_equal(a.read(), b.read())
            assert a.transform == b.transform
    with rasterio.open(tmp_path / "a" / f"{stem}.labels.tif") as ds:
        assert ds.read(3).sum() > 0  # the burn scar is labelled


def test_safe_baseline_4_offset_from_its_metadata(tmp_path: Path) -> None:
    folder = pv.sentinel2_safe(tmp_path)
    (folder / "MTD_MSIL2A.xml").write_text(
        '<n1:Level-2A_User_Product><BOA_ADD_OFFSET_VALUES_LIST><BOA_ADD_OFFSET band_id="0">-1000</BOA_ADD_OFFSET>'
        "</BOA_ADD_OFFSET_VALUES_LIST></n1:Level-2A_User_Product>")
    data, info = _physical(folder, ("red",))
    expected = pv.s2_raw()["red"] * 1e-4 - 0.1
    ok, bad = expected > MIN_REFLECTANCE + 1e-6, expected < MIN_REFLECTANCE - 1e-6  # float32 rounding between
    assert ok.any() and bad.any()  # the toy's darkest pixels fall below MIN_REFLECTANCE: nodata (filled with 0)
    np.testing.assert_allclose(data[0][ok], expected[ok], atol=1e-6)
    assert (data[0][bad] == 0).all()
    assert info.tags["BOA_ADD_OFFSET"] == "-1000" and info.path.stem == pv.SAFE_NAME[: -len(".SAFE")]
