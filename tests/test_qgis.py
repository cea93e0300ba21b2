"""QGIS styles, and the outputs opened in real QGIS (Debian python3-qgis under /usr/bin/python3) and GDAL."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin

from firemap.config import DEFAULT_CLASSES, ClassInfo
from firemap.errors import OutputExistsError
from firemap.raster import CLASS_NODATA, GeoGrid
from firemap.style import FILL_ALPHA, combined_qml, raster_qml, vector_qml, write_qml, write_styles

SYSTEM_PYTHON = "/usr/bin/python3"
CHECK_SCRIPT = Path(__file__).with_name("qgis_check.py")
UTM = CRS.from_epsg(32633)
WIDTH, HEIGHT = 600, 520  # > one 256 block: the COG gets overviews
GRID = GeoGrid(WIDTH, HEIGHT, UTM, from_origin(500_000, 4_500_000, 30, 30))
STEM = "scene"


@cache
def qgis_available() -> bool:
    """True if the system Python can import QGIS's bindings."""
    if not Path(SYSTEM_PYTHON).exists():
        return False
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import qgis.core"], capture_output=True, timeout=120)
    return probe.returncode == 0


needs_qgis = pytest.mark.skipif("not qgis_available()", reason="QGIS bindings missing: run `make qgis`")


def hex_color(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


# --- QML documents (no QGIS needed) ---------------------------------------------------------------------------


def test_raster_qml_is_a_palette_of_the_classes() -> None:
    root = ET.fromstring(raster_qml(DEFAULT_CLASSES).split("\n", 1)[1])
    renderer = root.find("pipe/rasterrenderer")
    assert renderer is not None and renderer.get("type") == "paletted" and renderer.get("band") == "1"
    entries = [e.attrib for e in renderer.iter("paletteEntry")]
    assert [(e["value"], e["label"], e["color"], e["alpha"]) for e in entries] == [
        ("1", "fire", "#ff2800", "255"), ("2", "smoke", "#96bee6", "255"), ("3", "burn_scar", "#5a2814", "255")]
    assert root.find("renderer-v2") is None


def test_vector_qml_categorizes_by_class() -> None:
    root = ET.fromstring(vector_qml(DEFAULT_CLASSES).split("\n", 1)[1])
    renderer = root.find("renderer-v2")
    assert renderer is not None and (renderer.get("type"), renderer.get("attr")) == ("categorizedSymbol", "class")
    cats = [(c.get("value"), c.get("label"), c.get("symbol")) for c in renderer.iter("category")]
    assert cats == [("fire", "fire", "0"), ("smoke", "smoke", "1"), ("burn_scar", "burn_scar", "2")]
    fill = {p.get("k"): p.get("v") for p in renderer.find("symbols/symbol[@name='1']/layer").iter("prop")}
    assert fill["color"] == f"150,190,230,{FILL_ALPHA}" and fill["outline_color"] == "150,190,230,255"
    assert root.find("pipe") is None


def test_names_are_escaped_and_combined_qml_has_both_parts() -> None:
    classes = (ClassInfo(name='a<b & "c"', id=7, color=(1, 2, 3)),)
    root = ET.fromstring(combined_qml(classes).split("\n", 1)[1])
    assert root.find("pipe/rasterrenderer/colorPalette/paletteEntry").get("label") == 'a<b & "c"'
    assert root.find("renderer-v2/categories/category").get("value") == 'a<b & "c"'


def test_write_styles_files_and_overwrite(tmp_path: Path) -> None:
    paths = write_styles(tmp_path, STEM, DEFAULT_CLASSES, "geojson")
    assert [p.name for p in paths] == [f"{STEM}.qml", f"{STEM}.classes.qml"]
    stem_qml, raster_only = (ET.fromstring(p.read_text(encoding="utf-8").split("\n", 1)[1]) for p in paths)
    palette = [("1", "fire", "#ff2800"), ("2", "smoke", "#96bee6"), ("3", "burn_scar", "#5a2814")]
    for root in (stem_qml, raster_only):  # both style the class raster with the class palette
        assert [(e.get("value"), e.get("label"), e.get("color")) for e in root.iter("paletteEntry")] == palette
    # <stem>.qml also styles the polygons (categorized on `class`); <stem>.classes.qml is raster-only
    renderer = stem_qml.find("renderer-v2")
    assert renderer is not None and renderer.get("attr") == "class"
    assert [c.get("value") for c in renderer.iter("category")] == ["fire", "smoke", "burn_scar"]
    assert raster_only.find("renderer-v2") is None
    with pytest.raises(OutputExistsError):
        write_styles(tmp_path, STEM, DEFAULT_CLASSES, "geojson")
    with pytest.raises(OutputExistsError):
        write_qml(paths[0], "x")
    write_qml(paths[0], "x", overwrite=True)
    assert paths[0].read_text() == "x"
    with pytest.raises(ValueError, match="geojson"):
        write_styles(tmp_path, "other", DEFAULT_CLASSES, "shp")  # type: ignore[arg-type]


# --- a scene's outputs ------------------------------------------------------------------------------------------


def scene_masks() -> tuple[np.ndarray, np.ndarray]:
    """Multi-label masks ``(3, rows, cols)`` and validity ``(rows, cols)`` of the test scene."""
    masks = np.zeros((3, HEIGHT, WIDTH), bool)
    masks[0, 100:140, 200:260] = True  # fire
    masks[1, 80:300, 180:400] = True  # smoke, over the fire
    masks[2, 350:480, 50:550] = True  # a burn scar with a hole, crossing many row bands
    masks[2, 380:420, 100:200] = False
    valid = np.ones((HEIGHT, WIDTH), bool)
    valid[:, :20] = False  # a nodata strip
    return masks, valid


def class_raster(masks: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The class raster: one class per pixel by priority, 255 = nodata."""
    out = np.zeros((HEIGHT, WIDTH), np.uint8)
    for info, mask in sorted(zip(DEFAULT_CLASSES, masks, strict=True), key=lambda x: -x[0].priority):
        out[mask] = info.id
    out[~valid] = CLASS_NODATA
    return out


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A scene's outputs as ``firemap predict`` writes them (a known-answer network): geojson set, gpkg set, and
    a gpkg alone."""
    from firemap.config import PredictConfig
    from firemap.models import Bundle
    from firemap.predict import predict_scene
    from tests.conftest import BANDS, ThresholdNet, raw_config

    masks, valid = scene_masks()
    data = np.tile(np.array([0.04, 0.07, 0.05, 0.30, 0.20, 0.10], np.float32)[:, None, None], (1, HEIGHT, WIDTH))
    data[5][masks[0]] = 0.9  # swir2: fire
    data[0][masks[1]] = 0.5  # blue: smoke
    data[3][masks[2]] = 0.05  # nir: burn scar
    data[:, ~valid] = -9999.0
    scene = tmp_path_factory.mktemp("scene") / f"{STEM}.tif"
    with rasterio.open(scene, "w", driver="GTiff", width=WIDTH, height=HEIGHT, count=6, dtype="float32", crs=UTM,
                       transform=GRID.transform, nodata=-9999.0) as dst:
        dst.write(data)
        dst.descriptions = BANDS
    bundle = Bundle(raw_config(), ThresholdNet().eval(), {"name": "test"})
    dirs: dict[str, Path] = {}
    for fmt in ("geojson", "gpkg"):
        dirs[fmt] = tmp_path_factory.mktemp(fmt)
        predict_scene(scene, dirs[fmt], bundle, PredictConfig(tile_size=128, overlap=32, vector_format=fmt))
    alone = dirs["gpkg_alone"] = tmp_path_factory.mktemp("alone")
    shutil.copy(dirs["gpkg"] / f"{STEM}.gpkg", alone)
    return dirs


def test_predict_outputs_match_the_known_masks(outputs: dict[str, Path]) -> None:
    masks, valid = scene_masks()
    with rasterio.open(outputs["geojson"] / f"{STEM}.classes.tif") as src:
        np.testing.assert_array_equal(src.read(1), class_raster(masks, valid))


def test_class_raster_is_a_cog_with_overviews(outputs: dict[str, Path]) -> None:
    path = outputs["geojson"] / f"{STEM}.classes.tif"
    with rasterio.open(path) as src:
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert src.overviews(1) == [2, 4]
        assert src.nodata == CLASS_NODATA and src.crs == UTM and src.transform == GRID.transform
        assert src.colormap(1)[1] == (255, 40, 0, 255)
    if shutil.which("gdalinfo") is None:
        pytest.skip("gdalinfo missing (gdal-bin)")
    info = json.loads(subprocess.run(["gdalinfo", "-json", str(path)], capture_output=True, check=True,
                                     text=True).stdout)
    assert info["metadata"]["IMAGE_STRUCTURE"]["LAYOUT"] == "COG"
    assert [o["size"] for o in info["bands"][0]["overviews"]] == [[300, 260], [150, 130]]
    assert info["bands"][0]["block"] == [256, 256]


def run_qgis(tmp_path: Path, layers: list[dict[str, Any]]) -> dict[str, Any]:
    """Run tests/qgis_check.py under the system Python; its JSON report by layer name."""
    spec = {"render": {"crs": "EPSG:32633", "extent": list(rasterio.transform.array_bounds(HEIGHT, WIDTH,
                                                                                          GRID.transform))[:4],
                       "size": [WIDTH, HEIGHT]},
            "layers": layers}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_RUNTIME_DIR": str(tmp_path)}
    env.pop("PYTHONPATH", None)
    result = subprocess.run([SYSTEM_PYTHON, str(CHECK_SCRIPT), str(tmp_path / "spec.json")], capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "partially supported" not in result.stderr  # GeoPackage version readable by QGIS 3.22's GDAL
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return report["layers"]


PROBES = {"fire": [230, 120], "smoke": [300, 200], "scar": [300, 450], "hole": [150, 400], "background": [100, 50],
          "nodata": [10, 200]}


def expected_palette() -> list[dict[str, Any]]:
    return [{"value": c.id, "label": c.name, "color": hex_color(c.color), "alpha": 255} for c in DEFAULT_CLASSES]


def expected_categories() -> list[dict[str, Any]]:
    return [{"value": c.name, "label": c.name, "color": hex_color(c.color), "fill_alpha": FILL_ALPHA}
            for c in DEFAULT_CLASSES]


@pytest.mark.qgis
@needs_qgis
def test_outputs_open_styled_in_qgis(outputs: dict[str, Path], tmp_path: Path) -> None:
    probe = list(PROBES.values())
    gj, gp = outputs["geojson"], outputs["gpkg"]
    layers = run_qgis(tmp_path, [
        {"name": "classes", "kind": "raster", "path": str(gj / f"{STEM}.classes.tif"), "probe": probe},
        {"name": "classes_stem_qml", "kind": "raster", "path": str(gj / f"{STEM}.classes.tif"),
         "style": str(gj / f"{STEM}.qml")},
        {"name": "geojson", "kind": "vector", "path": str(gj / f"{STEM}.geojson"), "probe": probe},
        {"name": "gpkg", "kind": "vector", "path": str(gp / f"{STEM}.gpkg"), "probe": probe},
        {"name": "gpkg_alone", "kind": "vector", "path": str(outputs["gpkg_alone"] / f"{STEM}.gpkg")},
    ])
    raster = layers["classes"]
    assert raster["crs"] == "EPSG:32633" and raster["size"] == [WIDTH, HEIGHT]
    assert raster["renderer"] == "paletted" and raster["classes"] == expected_palette()
    px = dict(zip(PROBES, raster["probe"], strict=True))
    assert px["fire"] == [255, 40, 0, 255] and px["smoke"] == [150, 190, 230, 255] and px["scar"] == [90, 40, 20, 255]
    assert px["background"][3] == px["nodata"][3] == px["hole"][3] == 0  # transparent
    # <stem>.qml, loaded by hand, is the class raster's style too
    assert layers["classes_stem_qml"]["style_loaded"] and layers["classes_stem_qml"]["classes"] == expected_palette()

    # polygons: fire, smoke, scar (nodata strip splits nothing here): one feature each, styled by class
    for name, crs in (("geojson", "EPSG:4326"), ("gpkg", "EPSG:32633"), ("gpkg_alone", "EPSG:32633")):
        layer = layers[name]
        assert layer["crs"] == crs, name
        assert layer["features"] == 3 and layer["geometry_type"] == 2, name  # polygons
        assert {"class", "class_id", "area_m2", "pixels", "mean_prob", "max_prob", "scene", "model"} <= set(
            layer["fields"])
        assert layer["renderer"] == "categorizedSymbol" and layer["attribute"] == "class", name
        assert layer["categories"] == expected_categories(), name
    for name in ("geojson", "gpkg"):
        px = dict(zip(PROBES, layers[name]["probe"], strict=True))
        assert px["background"][3] == px["hole"][3] == px["nodata"][3] == 0, name
        r, g, b, a = px["scar"]  # semi-transparent fill of the class colour
        assert abs(a - FILL_ALPHA) <= 2 and max(abs(r - 90), abs(g - 40), abs(b - 20)) <= 3, name
