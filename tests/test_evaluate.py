"""Evaluation: metrics against hand counts on toy masks, through the real predict path, with baselines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from firemap.config import PredictConfig
from firemap.models import Bundle
from firemap.raster import open_scene
from firemap.train.config import SceneSource
from firemap.train.data import find_pairs
from firemap.train.evaluate import EvalReport, SceneScore, _nbr_histogram, _nbr_iou, evaluate, evaluate_source
from firemap.train.metrics import Confusion, object_recall
from tests._train_helpers import write
from tests.conftest import background, requires_shared

CLASSES = ("fire", "smoke", "burn_scar")


def test_confusion_matches_hand_counts() -> None:
    target = np.array([[[1, 1, 0, 0, 255]], [[255] * 5], [[0, 1, 1, 0, 1]]], np.uint8)
    pred = np.array([[[1, 0, 1, 0, 1]], [[1] * 5], [[0, 1, 0, 0, 0]]], bool)
    c = Confusion(CLASSES)
    c.update(pred, target)
    assert c.tp.tolist() == [1, 0, 1] and c.fp.tolist() == [1, 0, 0]
    assert c.fn.tolist() == [1, 0, 2] and c.tn.tolist() == [1, 0, 2]
    s = c.summary()
    assert s["fire_iou"] == pytest.approx(1 / 3) and s["fire_f1"] == pytest.approx(0.5)
    assert s["burn_scar_precision"] == 1.0 and s["burn_scar_recall"] == pytest.approx(1 / 3)
    assert "smoke_iou" not in s  # not labelled: left out of the macro mean
    assert s["macro_iou"] == pytest.approx((1 / 3 + 1 / 3) / 2)


def test_object_recall_counts_clusters() -> None:
    truth = np.zeros((10, 10), bool)
    truth[1:3, 1:3] = True  # cluster 1: hit by one pixel
    truth[6, 6] = truth[7, 7] = True  # cluster 2: diagonal = one 8-connected cluster, missed
    pred = np.zeros_like(truth)
    pred[2, 2] = pred[0, 9] = True
    assert object_recall(truth, pred) == (1, 2)
    assert object_recall(truth, pred, connectivity=1) == (1, 3)
    assert object_recall(np.zeros_like(truth), pred) == (0, 0)


def test_best_nbr_threshold_from_histograms() -> None:
    from firemap.train.evaluate import NBR_BINS

    hist = np.zeros((2, len(NBR_BINS) - 1))
    hist[1, np.searchsorted(NBR_BINS, -0.3) - 1] = 10  # burned pixels around -0.3
    hist[0, np.searchsorted(NBR_BINS, 0.4) - 1] = 30  # unburned around 0.4
    hist[0, np.searchsorted(NBR_BINS, -0.3) - 1] = 5  # dark unburned pixels among the burned
    iou = _nbr_iou(hist)
    assert np.nanmax(iou) == pytest.approx(10 / 15)
    assert -0.3 < NBR_BINS[int(np.nanargmax(iou))] <= 0.4


def _toy_pair(tmp_path: Path) -> SceneSource:
    """A scene where ThresholdNet predicts burn_scar (nir < 0.1) on a 20x20 square and fire (swir2 > 0.5) on one
    of two labelled fire clusters; masks in the 3-band (fire, smoke, burn_scar) format."""
    image = background(64, 64)
    image[3, 10:30, 10:30] = 0.05  # predicted scar: 400 px
    image[5, 10:30, 10:30] = 0.2  # NBR -0.6 there: the NBR < -0.05 baseline finds the same square
    image[5, 40:42, 40:42] = 0.9  # predicted fire cluster (4 px; NBR -0.5: the NBR baseline takes it too)
    labels = np.zeros((3, 64, 64), np.uint8)
    labels[2, 20:40, 10:30] = 1  # true scar: 400 px, overlap 200 px with the prediction
    labels[0, 40:42, 40:42] = 1  # fire cluster 1: hit
    labels[0, 55, 5] = 1  # fire cluster 2: missed
    labels[1] = 255  # smoke not labelled
    labels[:, 0, :] = 255  # one unlabelled row
    (tmp_path / "img").mkdir()
    (tmp_path / "msk").mkdir()
    write(tmp_path / "img" / "toy.tif", image, ("blue", "green", "red", "nir", "swir1", "swir2"))
    write(tmp_path / "msk" / "toy.tif", labels)
    return SceneSource(images=str(tmp_path / "img"), masks=str(tmp_path / "msk"), mask_format="bands",
                       labelled=["fire", "burn_scar"])


def test_evaluate_matches_hand_computed_metrics(tmp_path: Path, threshold_bundle: Bundle) -> None:
    src = _toy_pair(tmp_path)
    report = evaluate_source(threshold_bundle, src, PredictConfig(tile_size=32, overlap=8, device="cpu"))
    s = report.summary()
    assert s["burn_scar_iou"] == pytest.approx(200 / 600)  # tp 200, fp 200, fn 200
    assert s["burn_scar_precision"] == pytest.approx(0.5) and s["burn_scar_recall"] == pytest.approx(0.5)
    assert s["fire_iou"] == pytest.approx(4 / 5) and s["fire_f1"] == pytest.approx(8 / 9)
    assert s["fire_object_recall"] == pytest.approx(0.5) and s["fire_objects"] == 2
    assert s["macro_iou"] == pytest.approx((1 / 3 + 4 / 5) / 2)
    assert "smoke_iou" not in s and s["predicted_fire_objects"] == 1
    # baselines: NBR < -0.05 finds the scar square and the fire pixels: tp 200, fp 200 + 4, fn 200
    assert s["baseline_nbr_burn_scar_iou"] == pytest.approx(200 / 604)
    assert s["baseline_nbr_burn_scar_precision"] == pytest.approx(200 / 404)
    # the best single threshold lies between the scar (NBR -0.6) and the fire pixels (-0.5): IoU 200 / 600
    assert s["baseline_best_nbr_iou_pooled"] == pytest.approx(1 / 3)
    assert -0.6 - 1e-9 <= s["baseline_best_nbr_threshold_pooled"] <= -0.5
    # the Landsat fire-rule vote finds the hot 2x2 cluster, not the unlit labelled pixel: tp 4, fn 1
    assert s["baseline_fire_rules_fire_iou"] == pytest.approx(4 / 5)
    assert s["baseline_fire_rules_fire_precision"] == 1.0


def test_evaluate_writes_json_with_scene_rows(
    tmp_path: Path, threshold_bundle: Bundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    from firemap.train import evaluate as module

    monkeypatch.setattr(module, "load_bundle", lambda path: threshold_bundle)
    src = _toy_pair(tmp_path)
    out = tmp_path / "eval.json"
    evaluate("threshold.firemap.pt", src, PredictConfig(tile_size=32, overlap=8, device="cpu"), json_path=out,
             baselines=False)
    data = json.loads(out.read_text())
    assert data["labelled"] == ["fire", "burn_scar"] and data["model"] == "threshold"
    assert data["summary"]["burn_scar_iou"] == pytest.approx(1 / 3) and data["summary"]["fire_objects"] == 2
    (scene,) = data["scenes"]
    assert scene["scene"] == "toy.tif" and scene["in_training"] is False
    assert scene["burn_scar_iou"] == pytest.approx(1 / 3) and scene["fire_iou"] == pytest.approx(4 / 5)
    assert (scene["fire_objects_hit"], scene["fire_objects"], scene["predicted_fire_objects"]) == (1, 2, 1)
    assert scene["predicted_pixels"] == {"fire": 4, "smoke": 0, "burn_scar": 400}
    assert "smoke_iou" not in scene and not any(k.startswith("baseline") for k in scene)


def test_per_scene_scores_and_pooled_scores(tmp_path: Path, threshold_bundle: Bundle) -> None:
    """Two scenes: one perfect for burn_scar, one with half the scar: per scene 1 and 1/3, pooled 600/1000."""
    (tmp_path / "img").mkdir()
    (tmp_path / "msk").mkdir()
    for name, truth_rows in (("a", slice(10, 30)), ("b", slice(20, 40))):
        image = background(64, 64)
        image[3, 10:30, 10:30] = 0.05
        labels = np.zeros((1, 64, 64), np.uint8)
        labels[0, truth_rows, 10:30] = 1
        write(tmp_path / "img" / f"{name}.tif", image, ("blue", "green", "red", "nir", "swir1", "swir2"))
        write(tmp_path / "msk" / f"{name}.tif", labels)
    src = SceneSource(images=str(tmp_path / "img"), masks=str(tmp_path / "msk"))
    report = evaluate_source(threshold_bundle, src, PredictConfig(tile_size=32, overlap=8, device="cpu"), False)
    per_scene = {s.scene: s.confusion.summary()["burn_scar_iou"] for s in report.scenes}
    assert per_scene == {"a.tif": pytest.approx(1.0), "b.tif": pytest.approx(1 / 3)}
    s = report.summary()
    assert s["burn_scar_iou"] == pytest.approx(600 / 1000)  # tp 400, fp 200, fn 200 pooled
    assert s["burn_scar_iou_scene_mean"] == pytest.approx((1 + 1 / 3) / 2)


def test_fire_objects_are_counted_like_predict_polygons(tmp_path: Path, threshold_bundle: Bundle) -> None:
    """Diagonal fire pixels are 2 polygons in predict (4-connected) and 2 objects in evaluate, not 1."""
    from firemap.predict import predict_scene

    image = background(64, 64)
    for r, c in ((10, 10), (11, 11), (40, 40), (30, 50)):
        image[5, r, c] = 0.9  # 4 hot pixels: a diagonal pair and two single ones
    labels = np.zeros((3, 64, 64), np.uint8)
    labels[0, 10, 10] = labels[0, 11, 11] = 1  # truth: the diagonal pair only, 2 objects when 4-connected
    labels[1:] = 255
    (tmp_path / "img").mkdir()
    (tmp_path / "msk").mkdir()
    scene = write(tmp_path / "img" / "hot.tif", image, ("blue", "green", "red", "nir", "swir1", "swir2"))
    write(tmp_path / "msk" / "hot.tif", labels)
    src = SceneSource(images=str(tmp_path / "img"), masks=str(tmp_path / "msk"), mask_format="bands",
                      labelled=["fire"])
    cfg = PredictConfig(tile_size=32, overlap=8, device="cpu")
    (score,) = evaluate_source(threshold_bundle, src, cfg, baselines=False).scenes
    result = predict_scene(scene, tmp_path / "out", threshold_bundle, cfg)
    assert result.polygons["fire"] == score.predicted_fire_objects == 4
    assert score.fire_objects == (2, 2)
    big = cfg.model_copy(update={"min_area": 1000.0})  # a 30 m pixel is 900 m2: every fire polygon dropped
    (small,) = evaluate_source(threshold_bundle, src, big, baselines=False).scenes
    assert small.predicted_fire_objects == 0


def test_fire_on_unlabelled_hot_spots_is_not_a_false_alarm(tmp_path: Path, threshold_bundle: Bundle) -> None:
    """Fire predicted where the fire labels are 255 (a simulated lava / industrial hot spot) is no false object;
    the same prediction over a 0 label is one."""
    image = background(64, 64)
    image[5, 20, 20] = image[5, 40, 40] = 0.9  # two hot pixels, both predicted fire
    labels = np.zeros((3, 64, 64), np.uint8)
    labels[0, 19:22, 19:22] = 255  # the first is an unlabelled hot spot (and 1 px around it)
    labels[1:] = 255
    (tmp_path / "img").mkdir()
    (tmp_path / "msk").mkdir()
    write(tmp_path / "img" / "hot.tif", image, ("blue", "green", "red", "nir", "swir1", "swir2"))
    write(tmp_path / "msk" / "hot.tif", labels)
    src = SceneSource(images=str(tmp_path / "img"), masks=str(tmp_path / "msk"), mask_format="bands",
                      labelled=["fire"])
    cfg = PredictConfig(tile_size=32, overlap=8, device="cpu")
    (score,) = evaluate_source(threshold_bundle, src, cfg, baselines=False).scenes
    assert score.predicted_fire_objects == 1  # the one over a "no fire" label
    assert score.confusion.fp[0] == 1 and score.predicted_pixels["fire"] == 2
    unlabelled = src.model_copy(update={"labelled": ["burn_scar"]})  # fire not labelled at all: every polygon
    (score,) = evaluate_source(threshold_bundle, unlabelled, cfg, baselines=False).scenes
    assert score.predicted_fire_objects == 2


@pytest.mark.parametrize(("provenance", "expected"), [
    ({"train_scenes": {"s2": ["toy.tif", "b.tif"]}}, True),
    ({"train_scenes": {"s2": ["b.tif"]}}, False),
    ({"data": {"train": [{"kind": "scenes", "images": "IMG"}]}}, True),  # the same folder
    ({"data": {"train": [{"kind": "scenes", "images": "../elsewhere/x/img"}]}}, True),  # same last two parts
    ({"data": {"train": [{"kind": "scenes", "images": "IMG", "exclude": ["toy"]}]}}, False),  # held out
    ({"data": {"train": [{"kind": "scenes", "images": "IMG/t*.tif"}]}}, True),
    ({"data": {"train": [{"kind": "scenes", "images": "IMG/a*.tif"}]}}, False),
    ({"data": {"train": [{"kind": "scenes", "images": ["/some/where/toy.tif"]}]}}, True),
    ({"data": {"train": [{"kind": "simulator", "sensor": "sentinel2"}]}}, False),
    ({}, False),
])
def test_in_training_data_from_provenance(tmp_path: Path, provenance: dict, expected: bool) -> None:
    from firemap.train.evaluate import in_training_data

    folder = tmp_path / "x" / "img"
    folder.mkdir(parents=True)
    image = folder / "toy.tif"
    data = provenance.get("data", {})
    for src in data.get("train", []):
        if isinstance(src.get("images"), str):
            src["images"] = src["images"].replace("IMG", str(folder))
    assert in_training_data(image, provenance) is expected


def test_in_training_scene_is_flagged_and_warned(
    tmp_path: Path, threshold_bundle: Bundle, caplog: pytest.LogCaptureFixture
) -> None:
    src = _toy_pair(tmp_path)
    trained = Bundle(threshold_bundle.config, threshold_bundle.model, {"name": "t", "train_scenes": {"x": ["toy.tif"]}})
    with caplog.at_level("WARNING", logger="firemap"):
        report = evaluate_source(trained, src, PredictConfig(tile_size=32, overlap=8, device="cpu"), False)
    assert report.scenes[0].in_training
    assert any("toy.tif is in the training data" in r.getMessage() for r in caplog.records)


def test_real_crops_nbr_baseline() -> None:
    """The best single NBR threshold on the six real Sentinel-2 crops is about -0.09 with mean IoU ~0.54."""
    root = requires_shared("s2_calfire")
    src = SceneSource(images=str(root / "images"), masks=str(root / "masks"), labelled=["burn_scar"])
    report = EvalReport("real", "none", CLASSES, ("burn_scar",))
    for pair in find_pairs(src):
        score = SceneScore(pair.image.name, Confusion(CLASSES))
        score.nbr_hist = _nbr_histogram(open_scene(pair.image), pair, src, CLASSES, PredictConfig())
        report.scenes.append(score)
    best = report.best_nbr()
    assert best is not None and len(report.scenes) == 6
    assert best["iou_scene_mean"] == pytest.approx(0.54, abs=0.02)
    assert -0.12 <= best["threshold_scene_mean"] <= -0.06


def test_threshold_sweep_equals_one_evaluation_per_threshold(tmp_path: Path, threshold_bundle: Bundle) -> None:
    """evaluate_thresholds predicts once and scores every candidate exactly as evaluate_source would."""
    from firemap.train.evaluate import evaluate_thresholds

    image = background(64, 64)
    image[3, 10:30, 10:30] = np.linspace(0.0, 0.2, 20)[None, :]  # scar probability falls across the square
    image[5, 40:42, 40:44] = np.array([0.49, 0.51, 0.53, 0.6])[None, :]  # fire probability 0.4 .. 1
    labels = np.zeros((3, 64, 64), np.uint8)
    labels[2, 10:30, 10:20] = 1
    labels[0, 40:42, 42:44] = 1
    labels[1] = 255
    (tmp_path / "img").mkdir()
    (tmp_path / "msk").mkdir()
    write(tmp_path / "img" / "ramp.tif", image, ("blue", "green", "red", "nir", "swir1", "swir2"))
    write(tmp_path / "msk" / "ramp.tif", labels)
    src = SceneSource(images=str(tmp_path / "img"), masks=str(tmp_path / "msk"), mask_format="bands",
                      labelled=["fire", "burn_scar"])
    cfg = PredictConfig(tile_size=32, overlap=8, device="cpu")
    candidates = [{"fire": 0.3, "burn_scar": 0.9}, {"fire": 0.5}, {"fire": 0.7, "burn_scar": 0.2}]
    threshold_bundle.model.tiles = 0
    swept = evaluate_thresholds(threshold_bundle, src, cfg, candidates)
    tiles_once = threshold_bundle.model.tiles
    summaries = []
    for cand, report in zip(candidates, swept, strict=True):
        one = evaluate_source(threshold_bundle, src, cfg.model_copy(update={"thresholds": cand}), baselines=False)
        assert report.summary() == one.summary()
        summaries.append(report.summary())
    assert threshold_bundle.model.tiles == tiles_once * (1 + len(candidates))  # the sweep ran the network once
    assert len({s["burn_scar_iou"] for s in summaries}) == 3  # the candidates really differ
    assert len({s["fire_f1"] for s in summaries}) == 3
