"""The shipped default model: loads, declares what it needs, runs without swir1, refuses scenes without swir2,
maps real burn scars better than NBR on its held-out scene, and puts no fire on a fire-free scene."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from firemap.config import PredictConfig
from firemap.errors import MissingBandsError
from firemap.models import Bundle, default_bundle_path, load_bundle
from firemap.predict import iter_predictions
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
