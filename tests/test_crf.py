"""The mean-field CRF and the row post-processing hooks it runs in."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import rasterio

import firemap.crf as crf_module
from firemap.bands import model_sources, resolve_bands
from firemap.config import PredictConfig
from firemap.crf import CrfHook, CrfParams, refine
from firemap.models import Bundle
from firemap.postprocess import RowBlock, SceneStream, apply_hooks
from firemap.predict import iter_predictions, predict_scene
from firemap.raster import open_scene
from tests.conftest import background, raw_config


def _edge_scene(height: int = 24, width: int = 64, edge: int = 32) -> np.ndarray:
    """Dark left of column ``edge``, bright right of it (reflectance, 6 bands, slight noise)."""
    x = np.arange(width)
    data = np.where(x < edge, 0.1, 0.4).astype(np.float32)[None, None, :].repeat(6, 0).repeat(height, 1)
    return data + np.random.default_rng(0).normal(0, 0.005, data.shape).astype(np.float32)


def _ramp(centre: float, scale: float, height: int = 24, width: int = 64) -> np.ndarray:
    x = np.arange(width)
    p = (1 / (1 + np.exp(-(x - centre) / scale))).astype(np.float32)
    return p[None, None, :].repeat(3, 0).repeat(height, 1)


@pytest.mark.parametrize(("centre", "scale"), [(29.5, 2.0), (28.5, 2.5)])
def test_blurred_boundary_snaps_to_the_image_edge(centre: float, scale: float) -> None:
    feat, probs = _edge_scene(), _ramp(centre, scale)
    valid = np.ones(feat.shape[1:], bool)
    assert (probs[2, :, 30:32] > 0.5).all()  # the blurred boundary is 2.5-3.5 px left of the edge at column 32
    out = refine(probs, feat, valid, CrfParams(), classes=[2])
    assert (out[2, :, :32] < 0.5).all() and (out[2, :, 32:] > 0.5).all()
    assert (out[2, :, 34:] > 0.95).all() and (out[2, :, :26] < 0.05).all()  # and sharpens
    np.testing.assert_array_equal(out[:2], probs[:2])  # classes not asked for pass through


def test_isolated_pixels_and_nodata() -> None:
    feat = np.full((6, 20, 20), 0.1, np.float32)
    probs = np.zeros((3, 20, 20), np.float32)
    probs[:, 10, 10] = 0.9
    valid = np.ones((20, 20), bool)
    valid[:, :3] = False
    out = refine(probs, feat, valid, CrfParams(classes=("smoke",)), classes=[1])
    assert out[0, 10, 10] == np.float32(0.9)  # fire (not refined) keeps its one-pixel detection
    assert out[1, 10, 10] < 0.5  # a smoothness prior removes an isolated pixel: why fire is left out by default
    assert (out[:, :, :3] == 0).all()


def _scene_stream(write_tif, data: np.ndarray) -> SceneStream:
    info = open_scene(write_tif(data))
    config = raw_config()
    sources, zero = model_sources(resolve_bands(info.descriptions, info.count), config.bands, (), "scene")
    return SceneStream(info, config, sources, zero)


def _random_probs(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    probs = rng.uniform(0, 1, (3, height, width)).astype(np.float32)
    valid = np.ones((height, width), bool)
    valid[5:9, :20] = False
    return probs * valid, valid


@pytest.mark.parametrize("cuts", [[1000], [7, 50, 51, 90], [45, 46, 47], [130]])
def test_row_blocks_give_the_whole_scene_result(write_tif, monkeypatch, cuts: list[int]) -> None:
    """Tiled == untiled: however the stream is cut into row (and column) blocks, the CRF output is the same."""
    data = background(130, 70, seed=2)
    data[:, 40:90, 10:50] += 0.15
    scene = _scene_stream(write_tif, data)
    probs, valid = _random_probs(130, 70)
    params = CrfParams(iterations=3, radius=4, step=2, classes=("smoke", "burn_scar"))
    whole = refine(probs, data, valid, params, classes=[1, 2])
    bounds = [0, *[c for c in cuts if c < 130], 130]
    blocks = [RowBlock(a, probs[:, a:b], valid[a:b]) for a, b in itertools.pairwise(bounds)]
    monkeypatch.setattr(crf_module, "CHUNK_COLS", 16)  # column chunks too
    out = list(apply_hooks(blocks, [CrfHook(scene, params)]))
    assert out[0].row_off == 0 and sum(b.probs.shape[1] for b in out) == 130
    np.testing.assert_array_equal(np.concatenate([b.valid for b in out]), valid)
    np.testing.assert_allclose(np.concatenate([b.probs for b in out], axis=1), whole, atol=1e-6)
    assert np.abs(whole[1:] - probs[1:]).max() > 0.1 and np.array_equal(whole[0], probs[0])


def test_no_hooks_pass_blocks_through() -> None:
    block = RowBlock(0, np.zeros((3, 2, 2), np.float32), np.ones((2, 2), bool))
    assert list(apply_hooks([block], [])) == [block]


def test_predict_with_crf_option(write_tif, threshold_bundle: Bundle, tmp_path: Path) -> None:
    data = background(96, 96)
    data[3, 20:60, 20:60] = 0.05  # nir < 0.1 -> burn scar square (the ThresholdNet's rule)
    scene = write_tif(data)
    info = open_scene(scene)
    plain = np.concatenate([b.probs for b in iter_predictions(info, threshold_bundle, PredictConfig(
        tile_size=64, overlap=16))], axis=1)
    cfg = PredictConfig(tile_size=64, overlap=16, crf=True)
    refined = np.concatenate([b.probs for b in iter_predictions(info, threshold_bundle, cfg)], axis=1)
    np.testing.assert_array_equal(refined[0], plain[0])  # fire untouched
    assert np.allclose(plain[2, 22:58, 22:58], 0.881, atol=0.01)  # logit 40 * (0.1 - 0.05) = 2
    assert (refined[2, 22:58, 22:58] > 0.97).all() and (refined[2, :15] < 0.01).all()  # agreeing neighbours
    predict_scene(scene, tmp_path / "o", threshold_bundle, cfg)
    with rasterio.open(tmp_path / "o" / "scene.classes.tif") as ds:
        classes = ds.read(1)
    assert (classes[20:60, 20:60] == 3).all() and (classes[:15] == 0).all()
