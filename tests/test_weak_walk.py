"""Random walk with affinities: closed form, growth bounded by an affinity edge, tiled == untiled."""

from __future__ import annotations

import numpy as np
import pytest
from rasterio.windows import Window

from firemap.weak.affinity import neighbour_offsets, pair_offsets
from firemap.weak.config import WeakConfig
from firemap.weak.walk import random_walk, transition_matrix, transition_weights, walk_block, walk_tiles


def test_offsets_match_the_authors_search_set() -> None:
    one = pair_offsets(5)
    assert len(one) == 34 and len(set(one)) == 34  # 4 on the row + 30 below (dy^2 + dx^2 < 25)
    assert all(dy > 0 or (dy == 0 and dx > 0) for dy, dx in one)
    both = neighbour_offsets(5)
    assert len(set(both)) == 68 and (0, 0) not in both


def test_walk_equals_closed_form_propagation() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(3, 6, 7)).astype(np.float32)
    valid = np.ones((6, 7), bool)
    valid[2, 3] = valid[5, 0] = False  # nodata nodes: no edges
    offsets, weights = transition_weights(features, valid, radius=3, beta=2.0)
    t_mat = transition_matrix(weights, offsets).toarray()
    assert np.allclose(t_mat.sum(1), 1.0)
    assert np.allclose(t_mat[2 * 7 + 3], np.eye(42)[2 * 7 + 3])  # an isolated node keeps its value
    values = rng.random((2, 6, 7)).astype(np.float32)
    walked = random_walk(values, weights, offsets, iterations=7)
    closed = np.linalg.matrix_power(t_mat.astype(np.float64), 7) @ values.reshape(2, -1).T.astype(np.float64)
    np.testing.assert_allclose(walked.reshape(2, -1).T, closed, atol=1e-5)


def _region(h: int, w: int) -> np.ndarray:
    region = np.zeros((h, w), bool)
    region[6:30, 4:22] = True
    return region


def test_walk_grows_seed_to_region_bounded_by_affinity_edge() -> None:
    h, w = 40, 40
    region = _region(h, w)
    yy, xx = np.mgrid[0:h, 0:w]
    cam = np.exp(-((yy - 12) ** 2 + (xx - 16) ** 2) / (2 * 5.0**2)).astype(np.float32)[None]  # spills out to the right
    cfg = WeakConfig(walk_stride=1, radius=5, beta=8, iterations=256, alpha=16)
    features = lambda x: region[None].astype(np.float32) * 20.0  # noqa: E731  the edge: affinity exp(-20) across it
    x = np.zeros((1, h, w), np.float32)
    walked = walk_block(x, np.ones((h, w), bool), cam, features, cfg)
    grown = walked.argmax(0) == 1
    before = (np.concatenate([(1 - cam) ** 16, cam]).argmax(0) == 1)
    assert (before & ~region).sum() > 20  # the CAM alone leaks over the edge ...
    assert not (grown & ~region).any()  # ... the walk never crosses it
    iou = (grown & region).sum() / (grown | region).sum()
    assert iou > 0.95 and iou > (before & region).sum() / (before | region).sum() + 0.3


def _scene(h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    image = rng.normal(size=(2, h, w)).astype(np.float32)
    valid = np.ones((h, w), bool)
    valid[10:14, 30:50] = False
    cam = rng.random((1, h, w)).astype(np.float32)
    return image, valid, cam


@pytest.mark.parametrize("block", [24, 32, 48])
def test_tiled_walk_equals_untiled(block: int) -> None:
    h, w, stride = 70, 83, 2
    image, valid, cam = _scene(h, w)

    def read(win: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r0, c0 = int(win.row_off), int(win.col_off)
        rows, cols = np.arange(r0, r0 + int(win.height)), np.arange(c0, c0 + int(win.width))
        inside = ((rows >= 0) & (rows < h))[:, None] & ((cols >= 0) & (cols < w))[None]
        rr, cc = np.clip(rows, 0, h - 1), np.clip(cols, 0, w - 1)
        ok = valid[np.ix_(rr, cc)] & inside
        return image[:, rr][:, :, cc], ok, cam[:, rr][:, :, cc] * ok

    def features(x: np.ndarray) -> np.ndarray:  # pointwise: no receptive field beyond the node
        return x.reshape(2, x.shape[1] // stride, stride, x.shape[2] // stride, stride).mean((2, 4))

    common = {"walk_stride": stride, "radius": 3, "beta": 4, "iterations": 6}
    halo = 6 * 3 * stride + 8 - (6 * 3 * stride) % 8  # >= t * gamma * stride, multiple of 8
    def run(block_size: int, halo: int) -> np.ndarray:
        out = np.full((2, h, w), np.nan, np.float32)
        for win, walked, _ in walk_tiles(h, w, read, features, WeakConfig(block_size=block_size, halo=halo, **common)):
            r, c = int(win.row_off), int(win.col_off)
            assert np.isnan(out[:, r : r + int(win.height), c : c + int(win.width)]).all()  # each pixel once
            out[:, r : r + int(win.height), c : c + int(win.width)] = walked
        return out

    untiled, tiled = run(512, 8), run(block, halo)
    assert not np.isnan(tiled).any()
    np.testing.assert_allclose(tiled[:, valid], untiled[:, valid], atol=1e-5)
