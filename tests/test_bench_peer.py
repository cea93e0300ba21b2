"""The pure helpers of scripts/bench_peer.py: output agreement and firemap's blending bands (no timing)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
sys.path.insert(0, str(SCRIPTS))

import bench_peer  # noqa: E402


def test_agreement_counts_differences_and_identical_classes():
    a = np.zeros((2, 2, 4), np.float32)
    b = a.copy()
    b[0, 0, 0] = 0.25  # one pixel off by 0.25 in one class
    b[1, 1, 3] = 0.0005  # one pixel off by less than the tolerance
    ca = np.zeros((2, 4), np.uint8)
    cb = ca.copy()
    cb[0, 0] = 1
    res = bench_peer.agreement(a, b, ca, cb)
    assert res["max_abs_diff"] == pytest.approx(0.25)
    assert res["mean_abs_diff"] == pytest.approx((0.25 + 0.0005) / 16)
    assert res["pct_pixels_over_tol"] == pytest.approx(100 / 8)
    assert res["pct_identical_classes"] == pytest.approx(700 / 8)
    assert res["pixels"] == 8


def test_agreement_restricted_to_pixels():
    a = np.zeros((1, 2, 2), np.float32)
    b = a.copy()
    b[0, 0, 0] = 0.5
    c = np.zeros((2, 2), np.uint8)
    where = np.array([[False, True], [True, True]])
    res = bench_peer.agreement(a, b, c, c, where)
    assert res["max_abs_diff"] == 0.0 and res["pct_identical_classes"] == 100.0 and res["pixels"] == 3
    with pytest.raises(ValueError, match="shapes differ"):
        bench_peer.agreement(a, b[:, :1], c, c)
    with pytest.raises(ValueError, match="no pixel"):
        bench_peer.agreement(a, b, c, c, np.zeros((2, 2), bool))


def test_blend_zone_is_where_two_tile_cores_overlap():
    # tile 256, overlap 64: origins -32, 160 and 288 (the last moved back to end 32 px past the edge); 16 px
    # cropped per side: cores [0, 208), [176, 400), [304, 512)
    zone = bench_peer.blend_zone(512, 256, 64)
    assert np.flatnonzero(zone).tolist() == [*range(176, 208), *range(304, 400)]
    mask = bench_peer.seams(512, 300, 256, 64)
    assert mask.shape == (512, 300)
    assert mask[200, 0] and mask[0, 200] and not mask[0, 0] and not mask[250, 50]  # columns blend in [92, 208)
