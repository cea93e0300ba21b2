"""The CLI: one-line errors with exit code 1 for every bad input, and working predict/info."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from firemap.bands import MIN_REFLECTANCE
from firemap.cli import app
from tests.conftest import background, requires_shared

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.fixture
def scene(write_tif) -> Path:
    return write_tif(background(80, 90))


def test_predict_with_bundle_writes_all_outputs(scene: Path, smp_bundle_path: Path, tmp_path: Path) -> None:
    code, out = run("predict", scene, "--out", tmp_path / "o", "--model", smp_bundle_path, "--save-probs",
                    "--vector-format", "gpkg", "--tta", "flip", "-q")
    assert code == 0, out
    names = sorted(p.name for p in (tmp_path / "o").iterdir())
    assert names == ["scene.classes.qml", "scene.classes.tif", "scene.gpkg", "scene.probs.tif", "scene.qml"]
    folder = tmp_path / "o"
    with rasterio.open(folder / "scene.classes.tif") as ds, rasterio.open(folder / "scene.probs.tif") as pr:
        assert ds.shape == (80, 90) and ds.dtypes[0] == "uint8"
        classes, probs = ds.read(1), pr.read()
    # the class raster is the stored probabilities thresholded at 0.5 (round(p * 255) >= 128 <=> p >= 0.5),
    # one class per pixel by priority fire > smoke > burn_scar
    expected = np.zeros((80, 90), np.uint8)
    for class_id in (3, 2, 1):
        expected[probs[class_id - 1] >= 128] = class_id
    np.testing.assert_array_equal(classes, expected)
    assert "scene.tif" in out  # the summary names the scene


def test_no_crs_is_refused_unless_allowed(write_tif, smp_bundle_path, tmp_path) -> None:
    path = write_tif(background(64, 64), crs=None)
    code, out = run("predict", path, "--out", tmp_path / "o", "--model", smp_bundle_path)
    assert code == 1 and "no CRS" in out and "--allow-no-crs" in out
    assert not (tmp_path / "o").exists()
    code, out = run("predict", path, "--out", tmp_path / "o", "--model", smp_bundle_path, "--allow-no-crs", "-q")
    assert code == 0, out
    fc = json.loads((tmp_path / "o" / "scene.geojson").read_text())
    assert fc["type"] == "FeatureCollection"


@pytest.mark.parametrize(
    ("setup", "extra", "message"),
    [
        ("missing", [], "no such file"),
        ("text", [], "not a raster"),
        ("scene", ["--tile-size", "72"], "not divisible by the network stride 16; use 64 or 80"),
        ("scene", ["--overlap", "64"], "overlap 64 must be >= 0 and smaller than the tile size 64"),
        ("scene", ["--threshold", "lava=0.3"], "bad --threshold 'lava=0.3'"),
        ("scene", ["--threshold", "fire=1.5"], "probability must be in (0, 1)"),
        ("scene", ["--sensor", "modis"], "unknown sensor 'modis'"),
        ("scene", ["--tta", "rotate"], "tta"),
        ("fewbands", [], "lacks band(s) swir1, swir2"),
        ("scene", ["--bands", "swir2=9"], "file has bands 1..6"),
    ],
)
def test_bad_input_one_line_error_exit_1(setup, extra, message, write_tif, smp_bundle_path, tmp_path) -> None:
    paths = {
        "missing": tmp_path / "nope.tif",
        "text": tmp_path / "notes.tif",
        "scene": write_tif(background(64, 64)),
        "fewbands": write_tif(background(64, 64)[:4], name="four.tif", descriptions=("blue", "green", "red", "nir")),
    }
    paths["text"].write_text("not a raster")
    code, out = run("predict", paths[setup], "--out", tmp_path / "o", "--model", smp_bundle_path, *extra)
    assert code == 1
    assert message in out.replace("\n", " ")
    assert "Traceback" not in out
    assert not list((tmp_path / "o").glob("*")) if (tmp_path / "o").exists() else True


def test_unreadable_and_foreign_bundles(scene, tmp_path) -> None:
    junk = tmp_path / "junk.firemap.pt"
    junk.write_bytes(b"\x00garbage")
    code, out = run("predict", scene, "--out", tmp_path / "o", "--model", junk)
    assert code == 1 and "not a readable firemap model bundle" in out
    import torch

    torch.save({"hello": 1}, tmp_path / "foreign.pt")
    code, out = run("predict", scene, "--out", tmp_path / "o", "--model", tmp_path / "foreign.pt")
    assert code == 1 and "not a firemap model bundle" in out
    code, out = run("predict", scene, "--out", tmp_path / "o", "--model", tmp_path / "absent.pt")
    assert code == 1 and "no such model bundle" in out


def test_existing_outputs_need_overwrite(scene, smp_bundle_path, tmp_path) -> None:
    args = ["predict", scene, "--out", tmp_path / "o", "--model", smp_bundle_path, "-q"]
    assert run(*args)[0] == 0
    code, out = run(*args)
    assert code == 1 and "exists; pass --overwrite" in out
    assert run(*args, "--overwrite")[0] == 0


def test_predict_config_yaml_is_closed(scene, smp_bundle_path, tmp_path) -> None:
    cfg = tmp_path / "predict.yaml"
    cfg.write_text("tile_size: 64\ntile_sise: 32\n")
    code, out = run("predict", scene, "--out", tmp_path / "o", "--model", smp_bundle_path, "--config", cfg)
    assert code == 1 and "tile_sise" in out and len(out.strip().splitlines()) == 1  # the unknown key is named
    cfg.write_text("tile_size: 64\noverlap: 16\nmin_area: 1000\n")
    assert run("predict", scene, "--out", tmp_path / "o", "--model", smp_bundle_path, "--config", cfg, "-q")[0] == 0


def test_info_shows_metadata_and_band_resolution(write_tif) -> None:
    path = write_tif(background(10, 12), descriptions=("B02", "B03", "B04", "B08", "B11", "B12"))
    code, out = run("info", path)
    assert code == 0, out
    assert "EPSG:32610" in out and "12 x 10 px, 6 bands" in out and "sentinel2-l2a" in out
    assert "swir2" in out and "raw * 0.0001 + 0" in out


def test_info_model_describes_the_bundle(smp_bundle_path) -> None:
    code, out = run("info", "--model", smp_bundle_path)
    assert code == 0, out
    from firemap.models import load_bundle

    cfg = load_bundle(smp_bundle_path).config
    assert f"{cfg.arch} / {cfg.encoder}" in out and "1=fire" in out and "fire=0.5" in out
    code, out = run("info")
    assert code != 0 and "--model" in out


def test_real_sentinel2_and_hls_scenes_run_end_to_end(smp_bundle_path, tmp_path) -> None:
    s2 = requires_shared("s2_calfire", "images", "KENNETH_20250109.tif")
    hls = requires_shared("hls_chip", "regression_test_0_input.tif")
    from firemap.config import ModelConfig
    from firemap.models import build_model, save_bundle

    cfg = ModelConfig(arch="unet", encoder="resnet18", tile_size=64, overlap=16, optional_bands=("swir1",),
                      band_presence=True)
    bundle = save_bundle(tmp_path / "opt.firemap.pt", build_model(cfg).eval(), cfg)
    code, out = run("predict", s2, "--out", tmp_path / "o", "--model", bundle, "-q")
    assert code == 0, out  # S2 crop lacks swir1: an optional band of this model
    code, out = run("predict", s2, "--out", tmp_path / "o2", "--model", smp_bundle_path)
    assert code == 1 and "lacks band(s) swir1" in out  # ... but required by this one
    # the HLS chip: declared nodata -9999; plant some to check it is carried through
    with rasterio.open(hls) as src:
        data, profile = src.read(), src.profile
    data[:, :30, :] = -9999
    chip = tmp_path / "hls.tif"
    with rasterio.open(chip, "w", **profile) as dst:
        dst.write(data)
    code, out = run("predict", chip, "--sensor", "hls", "--out", tmp_path / "o3", "--model", smp_bundle_path, "-q")
    assert code == 0, out
    with rasterio.open(tmp_path / "o3" / "hls.classes.tif") as ds, rasterio.open(s2) as src:
        classes = ds.read(1)
        assert ds.crs.to_epsg() == 32614 and ds.transform == profile["transform"]
    unphysical = ((data[:, 30:] != -9999) & (data[:, 30:] * 1e-4 < MIN_REFLECTANCE)).any(axis=0)
    assert 0 < unphysical.sum() <= 7  # the real chip has a few over-corrected pixels (blue down to -0.16): nodata
    assert (classes[:30] == 255).all() and ((classes[30:] == 255) <= unphysical).all()
    assert (classes[30:] != 255).sum() >= unphysical.size - unphysical.sum()
    with rasterio.open(tmp_path / "o" / "KENNETH_20250109.classes.tif") as ds, rasterio.open(s2) as src:
        assert ds.crs == src.crs and ds.transform == src.transform and ds.shape == src.shape


def test_shipped_predict_config_is_valid() -> None:
    from firemap.config import PredictConfig, load_yaml

    cfg = load_yaml(Path(__file__).resolve().parents[1] / "configs" / "predict.yaml", PredictConfig)
    assert cfg == PredictConfig()


def test_group_quiet_and_verbose_apply_to_the_command(scene, smp_bundle_path, tmp_path) -> None:
    import logging

    code, out = run("-q", "predict", scene, "--out", tmp_path / "o", "--model", smp_bundle_path)
    assert code == 0, out
    assert "tiles/s" not in out and "0:00" not in out  # no progress bar with the group's -q
    assert logging.getLogger("firemap").getEffectiveLevel() == logging.ERROR
    code, out = run("-vv", "info", scene)
    assert code == 0 and logging.getLogger("firemap").getEffectiveLevel() == logging.DEBUG


def test_help_lists_every_sensor_preset_and_vector_format() -> None:
    from firemap.bands import SENSORS

    code, out = run("predict", "--help")
    assert code == 0
    text = " ".join(out.split())
    for name in SENSORS:
        assert name in text
    assert "geojson | gpkg" in text
