"""The predict path end to end: known answers, nodata, multi-label priority, outputs, safety."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from firemap.config import DEFAULT_CLASSES, PredictConfig
from firemap.errors import OutputExistsError
from firemap.models import Bundle
from firemap.predict import classify, forward_probs, iter_predictions, predict_scene
from firemap.raster import CLASS_NODATA, open_scene
from tests.conftest import GEO_TRANSFORM, UTM_TRANSFORM, background


def fire_square(height: int = 96, width: int = 96, rows=slice(40, 50), cols=slice(60, 70)) -> np.ndarray:
    data = background(height, width)
    data[5, rows, cols] = 0.9  # swir2 -> fire
    return data


def test_known_square_gives_class_raster_and_polygon(write_tif, threshold_bundle: Bundle, tmp_path: Path) -> None:
    scene = write_tif(fire_square())
    out = tmp_path / "out"
    result = predict_scene(scene, out, threshold_bundle, PredictConfig(tile_size=64, overlap=16))
    with rasterio.open(out / "scene.classes.tif") as ds:
        classes = ds.read(1)
        assert ds.crs.to_epsg() == 32610 and ds.transform == UTM_TRANSFORM
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert ds.colormap(1)[1][:3] == DEFAULT_CLASSES[0].color
        assert ds.nodata == CLASS_NODATA
    expected = np.zeros((96, 96), np.uint8)
    expected[40:50, 60:70] = 1
    np.testing.assert_array_equal(classes, expected)
    fc = json.loads((out / "scene.geojson").read_text())
    fires = [f for f in fc["features"] if f["properties"]["class"] == "fire"]
    assert len(fires) == 1
    props = fires[0]["properties"]
    assert props["pixels"] == 100 and props["class_id"] == 1 and props["model"] == "threshold"
    assert props["area_m2"] == pytest.approx(100 * 900, rel=0.01)  # 30 m pixels, UTM scale factor ~1
    assert props["mean_prob"] > 0.99
    assert result.polygons == {"fire": 1, "smoke": 0, "burn_scar": 0}
    assert result.area_ha["fire"] == pytest.approx(9.0, rel=0.01)
    assert (out / "scene.qml").exists() and (out / "scene.classes.qml").exists()


def test_geographic_scene_polygon_bounds_and_area(write_tif, threshold_bundle: Bundle, tmp_path: Path) -> None:
    from rasterio.crs import CRS

    scene = write_tif(fire_square(), crs=CRS.from_epsg(4326), transform=GEO_TRANSFORM)
    predict_scene(scene, tmp_path / "o", threshold_bundle, PredictConfig(tile_size=64, overlap=16))
    fc = json.loads((tmp_path / "o" / "scene.geojson").read_text())
    (feature,) = [f for f in fc["features"] if f["properties"]["class"] == "fire"]
    lons = [p[0] for p in feature["geometry"]["coordinates"][0]]
    lats = [p[1] for p in feature["geometry"]["coordinates"][0]]
    assert min(lons) == pytest.approx(-120 + 60 * 0.0003) and max(lons) == pytest.approx(-120 + 70 * 0.0003)
    assert max(lats) == pytest.approx(38 - 40 * 0.0003) and min(lats) == pytest.approx(38 - 50 * 0.0003)
    # 10x10 pixels of 0.0003 deg at 38 N: 33.3 m x 26.3 m each
    dy = 0.0003 * 110_996  # metres per degree of latitude near 38 N
    dx = 0.0003 * 111_320 * np.cos(np.radians(37.9865))
    assert feature["properties"]["area_m2"] == pytest.approx(100 * dx * dy, rel=0.01)


def test_multilabel_priority_and_independent_polygons(write_tif, threshold_bundle: Bundle, tmp_path: Path) -> None:
    data = fire_square()
    data[0, 30:60, 50:80] = 0.5  # smoke (blue) covering the fire square
    scene = write_tif(data)
    predict_scene(scene, tmp_path / "o", threshold_bundle, PredictConfig(tile_size=64, overlap=16))
    with rasterio.open(tmp_path / "o" / "scene.classes.tif") as ds:
        classes = ds.read(1)
    assert (classes[40:50, 60:70] == 1).all()  # fire wins over smoke
    assert (classes[30:40, 50:80] == 2).all()
    fc = json.loads((tmp_path / "o" / "scene.geojson").read_text())
    pixels = {f["properties"]["class"]: f["properties"]["pixels"] for f in fc["features"]}
    assert pixels == {"fire": 100, "smoke": 900}  # smoke polygon includes the pixels under the fire


def test_nodata_is_255_never_a_class_and_empty_tiles_skip_network(write_tif, threshold_bundle, tmp_path) -> None:
    data = fire_square(96, 200)
    data[:, :, 100:] = -9999  # right half nodata (three tile columns of 64 with overlap 16 are all nodata)
    data[5, :, 150:] = -9999
    scene = write_tif(data, nodata=-9999)
    predict_scene(scene, tmp_path / "o", threshold_bundle, PredictConfig(tile_size=64, overlap=16, batch_size=2))
    with rasterio.open(tmp_path / "o" / "scene.classes.tif") as ds:
        classes = ds.read(1)
    assert (classes[:, 100:] == CLASS_NODATA).all()
    assert (classes[:, :100] != CLASS_NODATA).all()
    assert classes[45, 65] == 1
    tiles = len(list(range(-8, 200, 48)))  # upper bound on tile columns
    assert threshold_bundle.model.tiles < 3 * tiles - 3  # some all-nodata tiles never reached the network


def test_zero_fill_is_nodata_for_sensors_that_fill_with_zero(write_tif, threshold_bundle, tmp_path) -> None:
    dn = np.full((6, 64, 64), 10000, np.uint16)  # Sentinel-2 DN: reflectance 1.0 in every band -> smoke
    dn[:, :20] = 0
    scene = write_tif(dn, descriptions=("B02", "B03", "B04", "B08", "B11", "B12"))
    predict_scene(scene, tmp_path / "o", threshold_bundle, PredictConfig(tile_size=64, overlap=16))
    with rasterio.open(tmp_path / "o" / "scene.classes.tif") as ds:
        classes = ds.read(1)
    assert (classes[:20] == CLASS_NODATA).all() and (classes[20:] == 1).all()


def test_unphysical_negative_reflectance_is_nodata(write_tif, threshold_bundle, tmp_path) -> None:
    """An over-corrected surface-reflectance pixel (a band below MIN_REFLECTANCE) is nodata, never a class; the
    small negative noise of ordinary dark pixels stays valid."""
    from firemap.bands import MIN_REFLECTANCE

    data = fire_square(64, 64)
    data[0, 5, 5] = MIN_REFLECTANCE - 0.14  # blue -0.19: as over the sea in the real L2 Momotombo scene
    data[3, 6, 6] = MIN_REFLECTANCE - 0.01
    data[0, 7, 7] = MIN_REFLECTANCE + 0.03  # -0.02: noise, valid
    predict_scene(write_tif(data), tmp_path / "o", threshold_bundle, PredictConfig(tile_size=64, overlap=16))
    with rasterio.open(tmp_path / "o" / "scene.classes.tif") as ds:
        classes = ds.read(1)
    assert classes[5, 5] == classes[6, 6] == CLASS_NODATA
    assert classes[7, 7] != CLASS_NODATA and (classes != CLASS_NODATA).sum() == 64 * 64 - 2


def test_classify_thresholds_and_priority() -> None:
    probs = np.array([[[0.6, 0.2]], [[0.7, 0.7]], [[0.9, 0.1]]], np.float32)
    valid = np.array([[True, False]])
    masks, raster = classify(probs, valid, DEFAULT_CLASSES, {"fire": 0.65})
    assert raster.tolist() == [[2, 255]]  # fire below its raised threshold; smoke beats burn_scar
    assert masks[:, 0, 0].tolist() == [False, True, True] and not masks[:, 0, 1].any()


def test_flip_tta_averages_flipped_predictions() -> None:
    torch.manual_seed(0)
    net = torch.nn.Conv2d(2, 1, (1, 3), padding=(0, 1)).eval()  # not flip-equivariant
    x = torch.randn(1, 2, 8, 8)
    with torch.no_grad():
        plain = torch.sigmoid(net(x))
        flipped = torch.flip(torch.sigmoid(net(torch.flip(x, (3,)))), (3,))
        got = forward_probs(net, x, "flip")
    torch.testing.assert_close(got, (plain + flipped) / 2)
    assert not torch.allclose(got, plain)


def _numpy_d4_mean(net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """Reference d4 TTA written independently with numpy: predict each of the 8 rotated/mirrored images,
    map each prediction back to the original orientation, average."""
    views = []
    for mirror in (False, True):
        for k in range(4):
            v = np.rot90(x, k, axes=(2, 3))
            v = v[..., ::-1] if mirror else v
            with torch.no_grad():
                p = torch.sigmoid(net(torch.from_numpy(np.ascontiguousarray(v)))).numpy()
            p = p[..., ::-1] if mirror else p
            views.append(np.rot90(p, -k, axes=(2, 3)))
    return np.mean(views, axis=0)


def test_d4_tta_is_the_mean_of_the_eight_views_and_rotation_equivariant() -> None:
    torch.manual_seed(1)
    net = torch.nn.Conv2d(2, 3, (1, 5), padding=(0, 2)).eval()  # horizontal kernel: neither flip- nor rot-symmetric
    x = torch.randn(2, 2, 12, 12)
    with torch.no_grad():
        got = forward_probs(net, x, "d4")
        plain = torch.sigmoid(net(x))
        rotated = forward_probs(net, torch.rot90(x, 1, (2, 3)), "d4")
        mirrored = forward_probs(net, torch.flip(x, (2,)), "d4")
    np.testing.assert_allclose(got.numpy(), _numpy_d4_mean(net, x.numpy()), atol=1e-6)
    assert (got - plain).abs().max() > 1e-3  # TTA changed the answer of this asymmetric network
    # d4 TTA makes any network equivariant to the d4 group: rotating or mirroring the input does the same to the output
    torch.testing.assert_close(rotated, torch.rot90(got, 1, (2, 3)), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(mirrored, torch.flip(got, (2,)), atol=1e-6, rtol=1e-5)


def test_absent_optional_band_is_zero_and_flagged(write_tif, tmp_path) -> None:
    from firemap.predict import prepare_input
    from tests.conftest import raw_config

    cfg = raw_config(optional_bands=("swir1",), band_presence=True)
    x = prepare_input(np.ones((6, 4, 4), np.float32), None, cfg, present=[b for b in cfg.bands if b != "swir1"])
    assert x.shape == (7, 4, 4)
    assert (x[4] == 0).all() and (x[6] == 0).all() and (x[5] == 1).all()


def test_batch_buffer_equals_stacked_inputs_in_channels_last() -> None:
    """The reused batch buffer holds what stacking :func:`with_presence` inputs and converting to channels-last
    gave, in the same memory layout, and a smaller batch reuses its first rows."""
    from firemap.predict import BatchBuffer, presence_flags, with_presence
    from tests.conftest import raw_config

    cfg = raw_config(optional_bands=("swir1",), band_presence=True)
    present = [b for b in cfg.bands if b != "swir1"]
    chunk = np.random.default_rng(1).random((6, 16, 40), dtype=np.float32)
    tiles = [chunk[:, :, s : s + 16] for s in (0, 12, 24)]
    buffer = BatchBuffer(4, cfg.in_channels, 16)
    for n in (3, 1):
        got = buffer.fill(tiles[:n], presence_flags(cfg, present))
        want = torch.from_numpy(np.stack([with_presence(x, cfg, present) for x in tiles[:n]]))
        want = want.contiguous(memory_format=torch.channels_last)
        assert got.shape == want.shape == (n, 7, 16, 16) and got.stride() == want.stride()
        assert torch.equal(got, want)
    assert presence_flags(raw_config()).size == 0


def test_interrupted_run_leaves_nothing_under_final_names(write_tif, threshold_bundle, tmp_path) -> None:
    class Boom(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            if self.calls > 2:
                raise KeyboardInterrupt
            return torch.zeros(x.shape[0], 3, *x.shape[2:])

    scene = write_tif(fire_square(200, 200))
    bundle = Bundle(threshold_bundle.config, Boom(), {"name": "boom"})
    out = tmp_path / "o"
    with pytest.raises(KeyboardInterrupt):
        predict_scene(scene, out, bundle, PredictConfig(tile_size=64, overlap=16, batch_size=1, save_probs=True))
    assert list(out.iterdir()) == []  # no final file, no temporary left behind


def test_existing_outputs_and_inputs_are_protected(write_tif, threshold_bundle, tmp_path) -> None:
    scene = write_tif(fire_square())
    cfg = PredictConfig(tile_size=64, overlap=16)
    predict_scene(scene, tmp_path / "o", threshold_bundle, cfg)
    before = (tmp_path / "o" / "scene.classes.tif").stat().st_mtime_ns
    with pytest.raises(OutputExistsError, match="--overwrite"):
        predict_scene(scene, tmp_path / "o", threshold_bundle, cfg)
    assert (tmp_path / "o" / "scene.classes.tif").stat().st_mtime_ns == before
    predict_scene(scene, tmp_path / "o", threshold_bundle, cfg.model_copy(update={"overwrite": True}))
    # a scene named like an output keeps its full name as the stem, so it is never an output's target ...
    clash = write_tif(fire_square(), name="x.classes.tif")
    before = clash.read_bytes()
    predict_scene(clash, tmp_path, threshold_bundle, cfg.model_copy(update={"overwrite": True}))
    assert clash.read_bytes() == before and (tmp_path / "x.classes.classes.tif").is_file()
    # ... and the last line of defence still refuses an output path that is an input, even with --overwrite
    from firemap.raster import check_writable

    with pytest.raises(OutputExistsError, match="overwrite an input"):
        check_writable(clash, True, [clash])


def test_probabilities_output_scaled_and_masked(write_tif, threshold_bundle, tmp_path) -> None:
    data = fire_square()
    data[:, :8] = -9999
    scene = write_tif(data, nodata=-9999)
    predict_scene(scene, tmp_path / "o", threshold_bundle, PredictConfig(tile_size=64, overlap=16, save_probs=True))
    with rasterio.open(tmp_path / "o" / "scene.probs.tif") as ds:
        probs = ds.read()
        mask = ds.read_masks(1)
        assert ds.scales == (1 / 255,) * 3 and ds.descriptions == ("p_fire", "p_smoke", "p_burn_scar")
    assert probs[0, 45, 65] == 255 and probs[0, 20, 20] == 0
    assert (mask[:8] == 0).all() and (mask[8:] == 255).all()


def test_row_blocks_cover_scene_once_in_order(write_tif, threshold_bundle) -> None:
    info = open_scene(write_tif(background(150, 70)))
    blocks = list(iter_predictions(info, threshold_bundle, PredictConfig(tile_size=64, overlap=32)))
    starts = [b.row_off for b in blocks]
    heights = [b.probs.shape[1] for b in blocks]
    assert starts[0] == 0 and all(s + h == n for s, h, n in zip(starts, heights, [*starts[1:], 150], strict=True))
    assert max(heights) <= 64  # the accumulator never holds more than one tile of rows


@pytest.mark.parametrize(("arch", "encoder"), [("deeplabv3plus", "mobilenet_v2"), ("unet", "resnet18")])
def test_batchnorm_folding_keeps_outputs(arch: str, encoder: str) -> None:
    from firemap.config import ModelConfig
    from firemap.models import build_model, fuse_batchnorm

    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=arch, encoder=encoder)).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # non-trivial statistics
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 6, 64, 64)

    def count_bn() -> int:
        return sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())

    bn_before = count_bn()
    with torch.no_grad():
        before = model(x)
        folded = fuse_batchnorm(model)
        after = model(x)
    assert folded > 5 and count_bn() == bn_before - folded
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="eval mode"):
        fuse_batchnorm(model.train())


def test_bundle_thresholds_are_defaults_and_cli_overrides_win(write_tif, tmp_path) -> None:
    from tests.conftest import ThresholdNet, raw_config

    data = background(64, 64)
    data[5, :, :32] = 0.52  # fire logit 40 * 0.02 = 0.8 -> p = 0.69
    data[5, :, 32:] = 0.60  # fire logit 4 -> p = 0.98
    scene = write_tif(data)
    bundle = Bundle(raw_config(thresholds={"fire": 0.9}), ThresholdNet().eval(), {"name": "calibrated"})
    predict_scene(scene, tmp_path / "a", bundle, PredictConfig(tile_size=64, overlap=16))
    predict_scene(scene, tmp_path / "b", bundle, PredictConfig(tile_size=64, overlap=16, thresholds={"fire": 0.5}))
    a_path, b_path = tmp_path / "a" / "scene.classes.tif", tmp_path / "b" / "scene.classes.tif"
    with rasterio.open(a_path) as a, rasterio.open(b_path) as b:
        calibrated, overridden = a.read(1), b.read(1)
        assert a.tags()["THRESHOLDS"] == "fire=0.9,smoke=0.5,burn_scar=0.5"
        assert b.tags()["THRESHOLDS"].startswith("fire=0.5,")
    assert (calibrated[:, :32] == 0).all() and (calibrated[:, 32:] == 1).all()
    assert (overridden == 1).all()


def test_bundle_thresholds_are_validated() -> None:
    from tests.conftest import raw_config

    with pytest.raises(ValueError, match="fyre"):
        raw_config(thresholds={"fyre": 0.7})
    with pytest.raises(ValueError, match="probability"):
        raw_config(thresholds={"fire": 1.5})
