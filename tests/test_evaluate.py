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
    image[5, 40:42, 40:42] = 0.9  # predicted fire cluster (4 px)
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
    # baselines: NBR < -0.05 and the best single threshold in hindsight
    assert "baseline_nbr_burn_scar_iou" in s and 0 <= s["baseline_nbr_burn_scar_iou"] <= 1
    assert s["baseline_best_nbr_iou_pooled"] >= s["baseline_nbr_burn_scar_iou"] - 1e-9


def test_evaluate_with_saved_bundle_writes_json(tmp_path: Path, smp_bundle_path: Path) -> None:
    src = _toy_pair(tmp_path)
    out = tmp_path / "eval.json"
    report = evaluate(smp_bundle_path, src, PredictConfig(device="cpu"), json_path=out, baselines=False)
    data = json.loads(out.read_text())
    assert data["summary"]["burn_scar_iou"] == pytest.approx(report.summary()["burn_scar_iou"], nan_ok=True)
    assert data["labelled"] == ["fire", "burn_scar"]


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
