"""Scene-level rule jobs (``firemap label`` / ``firemap indices``) on synthetic Landsat and real Sentinel-2 scenes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from typer.testing import CliRunner

from firemap import label as label_module
from firemap.bands import get_sensor
from firemap.cli import app
from firemap.errors import GridMismatchError, MissingBandsError, OutputExistsError
from firemap.indices import dnbr, nbr
from firemap.label import LabelConfig, label_config, label_scene, write_indices
from firemap.raster import open_scene
from firemap.rules import (
    combine,
    kumar_roy2018,
    murphy2016,
    murphy_unambiguous,
    neighbours,
    schroeder2016,
    schroeder_unambiguous,
)

L8 = "landsat8-l1"
BANDS = ("coastal", "blue", "green", "red", "nir", "swir1", "swir2")
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "s2_calfire"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="shared/data/s2_calfire not present")


def synthetic_landsat(seed: int = 0, shape: tuple[int, int] = (150, 170)) -> dict[str, np.ndarray]:
    """Vegetation and soil patches with noise, hot fire clusters and marginal candidates in every block."""
    rng = np.random.default_rng(seed)
    rows, cols = shape
    soil = (np.add.outer(np.sin(np.arange(rows) / 9.0), np.cos(np.arange(cols) / 7.0)) > 0.6)
    veg = np.array([0.10, 0.08, 0.07, 0.05, 0.30, 0.20, 0.10], np.float32)
    dirt = np.array([0.12, 0.13, 0.16, 0.20, 0.22, 0.30, 0.26], np.float32)
    bands = {b: np.where(soil, dirt[i], veg[i]) + rng.normal(0, 0.012, shape) for i, b in enumerate(BANDS)}
    for r, c in rng.integers(5, (rows - 5, cols - 5), (12, 2)):  # unambiguous fire clusters (3x3)
        bands["swir2"][r - 1 : r + 2, c - 1 : c + 2] = rng.uniform(0.6, 1.1, (3, 3))
        bands["swir1"][r - 1 : r + 2, c - 1 : c + 2] = rng.uniform(0.3, 0.6, (3, 3))
        bands["nir"][r - 1 : r + 2, c - 1 : c + 2] = 0.2
    for r, c in rng.integers(0, (rows, cols), (120, 2)):  # marginal candidates: context decides
        bands["swir2"][r, c] = rng.uniform(0.2, 0.45)
        bands["nir"][r, c] = bands["swir2"][r, c] / rng.uniform(1.9, 3.5)
        bands["swir1"][r, c] = bands["swir2"][r, c] / rng.uniform(1.3, 2.2)
    return {b: np.clip(v, 0.001, 1.2).astype(np.float32) for b, v in bands.items()}


def write_landsat_l1(path: Path, bands: dict[str, np.ndarray], nodata_corner: int = 0) -> Path:
    """Encode reflectance as Landsat Collection-2 L1 DN (B1..B7), zero fill in the top-left corner."""
    enc = get_sensor("landsat8-l1").encodings["red"]
    raw = np.stack([np.clip(np.round(enc.to_raw(bands[b])), 1, 65535) for b in BANDS]).astype(np.uint16)
    raw[:, :nodata_corner, :nodata_corner] = 0
    profile = dict(driver="GTiff", width=raw.shape[2], height=raw.shape[1], count=7, dtype="uint16",
                   crs="EPSG:32611", transform=from_origin(500000, 4000000, 30, 30))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(raw)
        for i in range(7):
            dst.set_band_description(i + 1, f"B{i + 1}")
    return path


def labels_of(scene: Path, out: Path, cfg: LabelConfig) -> np.ndarray:
    return read_labels(label_scene(scene, out, cfg).outputs["labels"])


def read_labels(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        assert src.count == 3 and src.dtypes[0] == "uint8" and src.nodata == 255
        assert src.descriptions == ("fire", "smoke", "burn_scar")
        return src.read()


@pytest.fixture(scope="module")
def landsat_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_landsat_l1(tmp_path_factory.mktemp("l8") / "LC08_test.tif", synthetic_landsat(), nodata_corner=12)


def decoded(path: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    enc = get_sensor("landsat8-l1").encodings["red"]
    with rasterio.open(path) as src:
        raw = src.read()
    return {b: enc.to_physical(raw[i]) for i, b in enumerate(BANDS)}, (raw != 0).any(axis=0)


def test_label_writes_training_mask_equal_to_the_rules_on_the_whole_scene(landsat_scene, tmp_path):
    result = label_scene(landsat_scene, tmp_path, LabelConfig(block_size=512, sensor=L8))
    labels = read_labels(result.outputs["labels"])
    bands, valid = decoded(landsat_scene)
    masks = [schroeder2016(bands, valid), murphy2016(bands, valid), kumar_roy2018(bands, valid)]
    expected = np.where(valid, combine(masks, "voting"), 255)
    np.testing.assert_array_equal(labels[0], expected)
    assert result.rules == ("schroeder", "murphy", "kumar-roy")
    assert 12 * 9 * 0.6 < result.pixels["fire"] < 12 * 9 + 120  # the planted clusters (some overlap)
    assert (labels[:, :12, :12] == 255).all() and set(np.unique(labels[:, valid])) <= {0, 1}
    with rasterio.open(result.outputs["labels"]) as src:
        assert src.crs.to_epsg() == 32611 and src.transform == from_origin(500000, 4000000, 30, 30)
        assert src.tags(1)["RULE"] == "schroeder+murphy+kumar-roy (voting)"
    assert result.polygons["fire"] > 0 and result.outputs["vectors"].exists() and result.outputs["style"].exists()


@pytest.mark.parametrize("block_size", [16, 40, 64])
def test_tiled_labels_equal_whole_scene_labels(landsat_scene, tmp_path, block_size):
    whole = labels_of(landsat_scene, tmp_path / "whole", LabelConfig(block_size=512, sensor=L8))
    tiled = labels_of(landsat_scene, tmp_path / "tiled", LabelConfig(block_size=block_size, sensor=L8))
    np.testing.assert_array_equal(tiled, whole)


def test_without_halo_blocks_would_differ(landsat_scene, tmp_path, monkeypatch):
    # Shows the tiled == whole test can fail: with no halo the contextual tests see cut windows.
    whole = labels_of(landsat_scene, tmp_path / "a", LabelConfig(block_size=512, sensor=L8))
    monkeypatch.setattr(label_module, "RULE_HALO", dict.fromkeys(label_module.RULE_HALO, 0))
    cut = labels_of(landsat_scene, tmp_path / "b", LabelConfig(block_size=16, sensor=L8))
    assert (cut[0] != whole[0]).sum() > 0


def test_rule_choice_and_combination(landsat_scene, tmp_path):
    inter = label_scene(landsat_scene, tmp_path / "i", label_config(combine="intersection", sensor=L8))
    union = label_scene(landsat_scene, tmp_path / "u", label_config(combine="union", rules=("murphy",), sensor=L8))
    vote = label_scene(landsat_scene, tmp_path / "v", label_config(sensor=L8))
    assert inter.pixels["fire"] <= vote.pixels["fire"]
    bands, valid = decoded(landsat_scene)
    assert union.pixels["fire"] == int(murphy2016(bands, valid).sum())


def test_missing_bands_are_clear_errors(tmp_path):
    bands = synthetic_landsat(shape=(40, 40))
    path = tmp_path / "no_coastal.tif"
    with rasterio.open(path, "w", driver="GTiff", width=40, height=40, count=3, dtype="float32",
                       crs="EPSG:32611", transform=from_origin(0, 0, 30, -30)) as dst:
        for i, b in enumerate(("nir", "swir1", "swir2")):
            dst.write(bands[b], i + 1)
            dst.set_band_description(i + 1, b)
    with pytest.raises(MissingBandsError, match=r"'schroeder' needs band\(s\) coastal, blue, green, red"):
        label_scene(path, tmp_path / "o", label_config(rules=("schroeder",)))
    result = label_scene(path, tmp_path / "o", label_config())  # default rules: the tests that fit
    assert result.rules == ("schroeder", "murphy") and not result.labelled["smoke"]
    assert "schroeder Eqs. 3-9 (candidates, water mask, 61x61 contextual test): needs coastal, blue, green, red" \
        in result.skipped
    assert "kumar-roy Eqs. 12-13 (unambiguous): needs blue, green, red" in result.skipped
    with rasterio.open(result.outputs["labels"]) as src:
        assert src.tags()["RULE_FIRE"] == "schroeder[Eq. 1 (unambiguous)]+murphy (voting)"
        assert "schroeder Eq. 2 (saturated/folded SWIR): needs coastal" in src.tags()["FIRE_TESTS_SKIPPED"]
    assert (read_labels(result.outputs["labels"])[1] == 255).all()
    with pytest.raises(MissingBandsError, match="index 'ndvi' needs band"):
        write_indices(path, tmp_path / "x", ["ndvi"])


def test_outputs_are_not_overwritten_without_flag(landsat_scene, tmp_path):
    label_scene(landsat_scene, tmp_path, label_config(rules=("murphy",), sensor=L8))
    with pytest.raises(OutputExistsError, match="--overwrite"):
        label_scene(landsat_scene, tmp_path, label_config(rules=("murphy",), sensor=L8))
    label_scene(landsat_scene, tmp_path, label_config(rules=("murphy",), overwrite=True, sensor=L8))
    assert not list(tmp_path.glob(".*partial*"))


def test_pre_fire_scene_must_share_the_grid(landsat_scene, tmp_path):
    other = tmp_path / "shifted.tif"
    with rasterio.open(landsat_scene) as src:
        profile = src.profile | {"transform": from_origin(500030, 4000000, 30, 30)}
        with rasterio.open(other, "w", **profile) as dst:
            dst.write(src.read())
    with pytest.raises(GridMismatchError, match="not on the grid"):
        label_scene(landsat_scene, tmp_path / "o", label_config(sensor=L8), pre_fire=other)


def test_dnbr_burn_scar_with_a_pre_fire_scene(tmp_path):
    pre = synthetic_landsat(seed=1, shape=(60, 60))
    post = {b: v.copy() for b, v in pre.items()}
    post["nir"][20:40, 10:30] = 0.08  # a fresh scar: nir drops, swir2 rises -> dNBR ~ 0.9
    post["swir2"][20:40, 10:30] = 0.25
    a, b = write_landsat_l1(tmp_path / "pre.tif", pre), write_landsat_l1(tmp_path / "post.tif", post)
    result = label_scene(b, tmp_path / "o", label_config(rules=("murphy",), sensor=L8), pre_fire=a)
    scar = read_labels(result.outputs["labels"])[2] == 1
    truth = np.zeros((60, 60), bool)
    truth[20:40, 10:30] = True
    assert (scar & truth).sum() / (scar | truth).sum() > 0.9
    with rasterio.open(result.outputs["labels"]) as src:
        assert src.tags()["RULE_BURN_SCAR"] == "dNBR >= 0.1"


def test_indices_cogs(landsat_scene, tmp_path):
    paths = write_indices(landsat_scene, tmp_path, ["nbr", "nbr2", "ndvi", "smoke"], sensor=L8, block_size=48)
    bands, valid = decoded(landsat_scene)
    with rasterio.open(paths["nbr2"]) as src:
        assert src.dtypes[0] == "float32" and src.overviews(1) is not None and src.profile["tiled"]
        values = src.read(1)
    expected = np.where(valid, (bands["swir1"] - bands["swir2"]) / (bands["swir1"] + bands["swir2"]), np.nan)
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-6)
    assert np.isnan(values[:12, :12]).all()
    assert set(paths) == {"nbr", "nbr2", "ndvi", "smoke"}


# ------------------------------------------------------------------------------------- real data


def _reflectance(path: Path, names: tuple[str, ...]) -> list[np.ndarray]:
    with rasterio.open(path) as src:
        return [src.read(list(src.descriptions).index(n) + 1).astype(np.float32) / 10000 for n in names]


@needs_data
def test_real_nbr_end_to_end(tmp_path):
    scene = DATA / "images" / "KENNETH_20250109.tif"
    paths = write_indices(scene, tmp_path)
    assert set(paths) == {"nbr", "ndvi"}  # no swir1 in these crops: nbr2 skipped
    nir, swir2 = _reflectance(scene, ("B8", "B12"))
    with rasterio.open(paths["nbr"]) as src, rasterio.open(scene) as ref:
        assert src.crs == ref.crs and src.transform == ref.transform
        np.testing.assert_allclose(src.read(1), (nir - swir2) / (nir + swir2), rtol=1e-5, atol=1e-6)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@needs_data
def test_real_kenneth_dnbr_overlaps_the_perimeter(tmp_path):
    folder = DATA / "kenneth_pre_post"
    files = [folder / "KENNETH_20250109_pre_fire.tif", folder / "KENNETH_20250109_post_fire.tif"]
    with rasterio.open(folder / "KENNETH_20250109_mask.tif") as src:
        perimeter = src.read(1).astype(bool)
    # Order the pair by evidence, not by file name: the post-fire image is the one whose NBR is lower inside
    # the perimeter than outside (docs/rules.md: the shared pair's names look swapped).
    contrast = [np.median(nbr(*_reflectance(f, ("B8", "B12")))[perimeter]) -
                np.median(nbr(*_reflectance(f, ("B8", "B12")))[~perimeter]) for f in files]
    pre_file, post_file = (files[1], files[0]) if contrast[0] < contrast[1] else files
    paths = write_indices(post_file, tmp_path / "i", ["dnbr"], pre_fire=pre_file)
    with rasterio.open(paths["dnbr"]) as src:
        got = src.read(1)
    expected = dnbr(nbr(*_reflectance(pre_file, ("B8", "B12"))), nbr(*_reflectance(post_file, ("B8", "B12"))))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    result = label_scene(post_file, tmp_path / "l", label_config(), pre_fire=pre_file)
    burned = read_labels(result.outputs["labels"])[2] == 1
    assert _iou(burned, perimeter) > 0.25  # measured 0.31 (docs/rules.md); chance level is ~0.09
    assert not result.labelled["fire"]  # no swir1: no fire rule fits, fire is 255 (not labelled)


@needs_data
def test_real_cli_label_and_indices(tmp_path):
    scene = DATA / "images" / "DOVE_20241019.tif"
    runner = CliRunner()
    res = runner.invoke(app, ["label", str(scene), "--out", str(tmp_path), "-q"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "DOVE_20241019.labels.tif").exists() and (tmp_path / "DOVE_20241019.geojson").exists()
    res = runner.invoke(app, ["label", str(scene), "--out", str(tmp_path), "-q"])
    assert res.exit_code == 1 and "--overwrite" in res.output
    res = runner.invoke(app, ["label", str(scene), "--out", str(tmp_path / "x"), "--rules", "schroeder"])
    assert res.exit_code == 1 and "coastal" in res.output
    res = runner.invoke(app, ["indices", str(scene), "--out", str(tmp_path), "--index", "nbr", "-q"])
    assert res.exit_code == 0, res.output
    assert open_scene(tmp_path / "DOVE_20241019.nbr.tif").dtype == "float32"


def _without_coastal(path: Path, bands: dict[str, np.ndarray]) -> Path:
    """A Landsat-8 L1 stack of B2-B7 only (as the Corumba scenes): Schroeder's Eq. 2 and contextual test cannot run."""
    enc = get_sensor("landsat8-l1").encodings["red"]
    names = BANDS[1:]
    raw = np.stack([np.clip(np.round(enc.to_raw(bands[b])), 1, 65535) for b in names]).astype(np.uint16)
    profile = dict(driver="GTiff", width=raw.shape[2], height=raw.shape[1], count=6, dtype="uint16",
                   crs="EPSG:32611", transform=from_origin(500000, 4000000, 30, 30))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(raw)
        for i in range(6):
            dst.set_band_description(i + 1, f"B{i + 2}")
    return path


def test_default_rules_run_the_tests_the_bands_allow_and_report_the_skipped(tmp_path, caplog):
    bands = synthetic_landsat()
    scene = _without_coastal(tmp_path / "no_coastal.tif", bands)
    with caplog.at_level("INFO", logger="firemap.label"):
        result = label_scene(scene, tmp_path / "o", label_config(sensor=L8))
    assert result.rules == ("schroeder", "murphy", "kumar-roy")
    assert result.skipped == (
        "schroeder Eq. 2 (saturated/folded SWIR): needs coastal",
        "schroeder Eqs. 3-9 (candidates, water mask, 61x61 contextual test): needs coastal",
    )
    assert "fire test skipped: schroeder Eq. 2" in caplog.text
    eq1 = (bands["swir2"] > 2.5 * bands["nir"]) & (bands["swir2"] - bands["nir"] > 0.3) & (bands["swir2"] > 0.5)
    decoded_bands = decoded_no_coastal(scene)
    expected = combine([schroeder_unambiguous(decoded_bands), murphy2016(decoded_bands),
                        kumar_roy2018(decoded_bands)], "voting")
    labels = read_labels(result.outputs["labels"])
    np.testing.assert_array_equal(labels[0] == 1, expected)
    assert abs(int(schroeder_unambiguous(decoded_bands).sum()) - int(eq1.sum())) <= 3  # DN rounding only
    with rasterio.open(result.outputs["labels"]) as src:
        tags = src.tags()
    assert tags["RULE_FIRE"] == "schroeder[Eq. 1 (unambiguous)]+murphy+kumar-roy (voting)"
    assert tags["FIRE_TESTS_SKIPPED"].startswith("schroeder Eq. 2 (saturated/folded SWIR): needs coastal | ")


def decoded_no_coastal(path: Path) -> dict[str, np.ndarray]:
    enc = get_sensor("landsat8-l1").encodings["red"]
    with rasterio.open(path) as src:
        raw = src.read()
    return {b: enc.to_physical(raw[i]) for i, b in enumerate(BANDS[1:])}


def test_unambiguous_fire_labels_leave_doubtful_pixels_unlabelled(tmp_path):
    scene = _without_coastal(tmp_path / "no_coastal.tif", synthetic_landsat())
    cfg = label_config(sensor=L8, rules=("schroeder", "murphy"), fire_tests="unambiguous", combine="union")
    result = label_scene(scene, tmp_path / "o", cfg)
    fire = read_labels(result.outputs["labels"])[0]
    b = decoded_no_coastal(scene)
    sure = schroeder_unambiguous(b) | murphy_unambiguous(b)
    np.testing.assert_array_equal(fire == 1, sure)
    ring = neighbours(sure) & ~sure
    assert (fire[ring] == 255).all() and ring.any()  # the 3x3 surroundings of a fire: not labelled
    loose = (b["swir2"] > 1.8 * b["nir"]) & (b["swir2"] - b["nir"] > 0.17) & ~sure
    assert (fire[loose] == 255).all() and loose.any()  # Schroeder's candidates: not labelled
    assert (fire[~neighbours(sure) & ~loose] == 0).all()
    assert "murphy Eq. 3 (hot 3x3 neighbours): not unambiguous" in result.skipped
    with pytest.raises(MissingBandsError, match="--fire-tests unambiguous"):
        label_scene(scene, tmp_path / "x", label_config(sensor=L8, rules=("schroeder",)))


def test_partial_dnbr_labels(tmp_path):
    values = (0.1, 0.08, 0.07, 0.05, 0.30, 0.20, 0.10)  # vegetation, NBR 0.5
    pre = {b: np.full((60, 60), v, np.float32) for b, v in zip(BANDS, values, strict=True)}
    pre["nir"][0:10, 0:10], pre["swir2"][0:10, 0:10] = 0.10, 0.12  # already burnt before: NBR < 0.1
    post = {b: v.copy() for b, v in pre.items()}
    post["nir"][0:40, 0:30], post["swir2"][0:40, 0:30] = 0.08, 0.25  # fresh scar: dNBR ~ 0.9 (0.6 where pre-burnt)
    post["nir"][45:55, 40:55], post["swir2"][45:55, 40:55] = 0.26, 0.12  # slight change: dNBR 0.18
    a, b = write_landsat_l1(tmp_path / "pre.tif", pre), write_landsat_l1(tmp_path / "post.tif", post)
    cfg = label_config(rules=("murphy",), sensor=L8, min_dnbr=0.27, unburnt_dnbr=0.1, pre_burnt_nbr=0.1)
    result = label_scene(b, tmp_path / "o", cfg, pre_fire=a)
    scar = read_labels(result.outputs["labels"])[2]
    expected = np.zeros((60, 60), np.uint8)
    expected[0:40, 0:30] = 1
    expected[0:10, 0:10] = 255  # burnt before the pre-fire date: neither positive nor negative
    expected[45:55, 40:55] = 255  # 0.1 <= dNBR < 0.27: doubtful, not labelled
    np.testing.assert_array_equal(scar, expected)
    assert "255 where pre-fire NBR < 0.1" in result.rule_text["burn_scar"]
    plain = label_scene(b, tmp_path / "p", label_config(rules=("murphy",), sensor=L8, min_dnbr=0.27), pre_fire=a)
    assert set(np.unique(read_labels(plain.outputs["labels"])[2])) == {0, 1}  # without the options: all labelled
