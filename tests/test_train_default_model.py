"""The shipped default model: loads, declares what it needs, runs without swir1, refuses scenes without swir2,
maps real burn scars better than NBR on its held-out scene, and puts no fire on a fire-free scene."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from firemap.config import PredictConfig
from firemap.errors import MissingBandsError
from firemap.models import DEFAULT_BUNDLES, Bundle, default_bundle_path, load_bundle, sensor_family
from firemap.predict import iter_predictions, model_for_scene, predict_scenes
from firemap.raster import open_scene
from firemap.train.config import SceneSource
from firemap.train.evaluate import evaluate_source
from tests._train_helpers import write
from tests.conftest import background, requires_shared


@pytest.fixture(scope="module")
def default() -> Bundle:
    return load_bundle()


def test_bundle_is_small_and_documents_itself(default: Bundle) -> None:
    assert default_bundle_path().stat().st_size <= 40e6  # weights (17 MB) + exported TorchScript network (16.5 MB)
    cfg = default.config
    assert set(cfg.bands) >= {"red", "nir", "swir2"} and "swir1" in cfg.optional_bands and cfg.band_presence
    prov = default.provenance
    assert prov["heldout_real_scene"] and "real_heldout" in prov["metrics"]
    assert prov["metrics"]["real_heldout"]["burn_scar_iou"] > prov["metrics"]["real_heldout"][
        "baseline_best_nbr_iou_pooled"]


def test_scene_without_a_required_band_is_refused(default: Bundle, tmp_path: Path) -> None:
    scene = write(tmp_path / "no_swir2.tif", background(64, 64)[:5], ("blue", "green", "red", "nir", "swir1"))
    with pytest.raises(MissingBandsError, match="swir2"):
        next(iter_predictions(open_scene(scene), default, PredictConfig(device="cpu")))


def test_fire_free_scene_gets_no_fire(default: Bundle, tmp_path: Path) -> None:
    from firemap.simulate import simulate_scene, write_scene

    scene = simulate_scene("sentinel2", 256, 256, seed=11, fire=False, smoke=False, clouds="few")
    path, _ = write_scene(scene, tmp_path / "nofire.tif")
    probs = np.concatenate([b.probs for b in iter_predictions(open_scene(path), default, PredictConfig(device="cpu"))],
                           axis=1)
    assert (probs[0] >= 0.5).sum() == 0


def test_real_heldout_scene_without_swir1_beats_nbr(default: Bundle) -> None:
    root = requires_shared("s2_calfire")
    name = default.provenance["heldout_real_scene"]
    src = SceneSource(images=[str(root / "images" / f"{name}.tif")], masks=str(root / "masks"),
                      labelled=["burn_scar"])
    s = evaluate_source(default, src, PredictConfig(device="cpu")).summary()
    assert s["burn_scar_iou"] > s["baseline_best_nbr_iou_pooled"] + 0.05
    assert s["burn_scar_iou"] > 0.7


# ----------------------------------------------------------------------------- one default per sensor family


@pytest.mark.parametrize(("sensor", "family"), [
    ("landsat8-l1", "landsat"), ("landsat9-l2", "landsat"), ("LANDSAT8-L2", "landsat"),
    ("sentinel2-l2a", "generic"), ("hls", "generic"), (None, "generic"),
])
def test_sensor_family_picks_the_default(sensor: str | None, family: str) -> None:
    assert sensor_family(sensor) == family
    assert default_bundle_path(sensor).name == DEFAULT_BUNDLES[family]


def test_every_default_is_small_and_says_how_it_was_made() -> None:
    generic, landsat = load_bundle(default_bundle_path()), load_bundle(default_bundle_path("landsat8-l1"))
    for sensor in (None, "landsat8-l1"):
        assert default_bundle_path(sensor).stat().st_size <= 40e6
    assert generic.name == "firemap-default" and landsat.name == "firemap-default-landsat"
    assert generic.config.bn_adapt == 0.5 and landsat.config.bn_adapt == 0.0
    assert generic.config.bands == landsat.config.bands  # one band contract for every default
    real = landsat.provenance["metrics"]["real_scenes"]  # held-out Corumba rows and fire-free land (eval_real.py)
    assert real["fire_f1"] > 0.8 and real["fire_free_fire_polygons_outside_lava"] == 0
    assert "--install-for landsat" in landsat.provenance["reproduce"]
    # both carry the full-resolution fire head, each gated by its own network's fire output
    assert generic.config.fire_head > 0 and landsat.config.fire_head > 0
    mine = generic.provenance["metrics"]["real_scenes"]  # the fire-free held-out land predict routes to it
    assert mine["fire_free_fire_polygons_outside_lava_generic_scenes"] == 0
    assert "--install-for generic" in generic.provenance["reproduce"]


def test_info_says_which_network_the_defaults_are_and_why(tmp_path: Path) -> None:
    """Each shipped default's description names its network and the reason; a copy elsewhere is not a default."""
    from firemap.models import DEFAULT_NETWORK_CHOICE, describe_bundle

    names = {"unet": "U-Net", "deeplabv3plus": "DeepLabv3+"}
    for sensor in (None, "landsat8-l1"):
        bundle = load_bundle(default_bundle_path(sensor))
        why = dict(describe_bundle(bundle))["why this network"]
        assert why == DEFAULT_NETWORK_CHOICE and why.startswith(names[bundle.config.arch])
    copy = tmp_path / "mine.firemap.pt"
    copy.write_bytes(default_bundle_path().read_bytes())
    assert "why this network" not in dict(describe_bundle(load_bundle(copy)))


def test_model_for_scene_routes_by_sensor(write_tif) -> None:
    info = open_scene(write_tif(background(32, 32)))
    assert model_for_scene(None, info, PredictConfig(sensor="landsat8-l2")).name == DEFAULT_BUNDLES["landsat"]
    assert model_for_scene(None, info, PredictConfig(sensor="sentinel2")).name == DEFAULT_BUNDLES["generic"]
    assert model_for_scene(None, info, PredictConfig()).name == DEFAULT_BUNDLES["generic"]  # sensor unknown
    assert model_for_scene("mine.firemap.pt", info, PredictConfig(sensor="landsat8-l2")) == Path("mine.firemap.pt")


def test_predict_uses_each_scenes_default(tmp_path: Path) -> None:
    """Real provider products: the Landsat one is mapped by the Landsat default, the Sentinel-2 one by the
    generic default, in one job (the class raster's MODEL tag says which)."""
    root = requires_shared("real_scenes", "provider_formats")
    scenes = [root / "LC08_L2SP_001062_20201031_20201106_02_T2", root / "S2A_29RKH_20200219_0_L2A"]
    results = predict_scenes(scenes, tmp_path / "out", None, PredictConfig(device="cpu"))
    tags = []
    for r in results:
        with rasterio.open(r.outputs["classes"]) as ds:
            tags.append(ds.tags()["MODEL"])
    assert tags == ["firemap-default-landsat", "firemap-default"]


@pytest.mark.parametrize("sensor", ["sentinel2", "landsat8"])
def test_each_default_finds_simulated_fire_fronts(sensor: str, tmp_path: Path) -> None:
    """Each sensor's default, as predict routes it (BatchNorm adaptation, fire head and calibrated threshold
    included), finds the fire pixels of fresh simulated scenes of its sensor: fire F1 >= 0.85 pooled over four
    384 px scenes with fronts (seeds not used by calibration or training). The generic default before its fire
    output was retrained scored 0.57 here, the Landsat default before its fire head 0.80."""
    from firemap.train.config import SimulatorSource
    from firemap.train.data import simulated_scenes

    bundle = load_bundle(default_bundle_path(sensor))
    src = simulated_scenes(SimulatorSource(sensor=sensor, name="t", scenes=4, scene_size=384, p_fire=1.0),
                           tmp_path / "sim", seed=123_000)
    s = evaluate_source(bundle, src, PredictConfig(device="cpu")).summary()
    assert s["fire_f1"] >= 0.85, s
