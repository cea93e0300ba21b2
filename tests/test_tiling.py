"""Tile grid geometry and exact, seam-free stitching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from firemap.config import PredictConfig
from firemap.models import Bundle
from firemap.predict import iter_predictions, prepare_input
from firemap.raster import open_scene
from firemap.tiling import WEIGHT_FLOOR, RowStitcher, TileGrid, axis_origins, blocks
from tests.conftest import background


@pytest.mark.parametrize(("length", "tile", "overlap"), [(100, 32, 16), (64, 32, 0), (10, 64, 16), (257, 64, 24)])
def test_axis_origins_cover_with_margin(length: int, tile: int, overlap: int) -> None:
    origins = axis_origins(length, tile, overlap)
    m = overlap // 2
    assert origins[0] == -m
    assert origins[-1] + tile >= length + m  # last tile reaches past the scene edge by the margin
    steps = np.diff(origins)
    assert (steps <= tile - overlap).all() and (steps > 0).all()


def test_cores_cover_every_pixel_with_nonzero_weight() -> None:
    grid = TileGrid(70, 90, 32, 12)
    stitcher = RowStitcher(grid, 1)
    covered = np.zeros((70, 90))
    for r in range(grid.shape[0]):
        for c in range(grid.shape[1]):
            stitcher.add(grid.tile(r, c), np.ones((1, 32, 32), np.float32))
        for off, values in stitcher.release(r):
            covered[off : off + values.shape[1]] += 1
            np.testing.assert_allclose(values, 1.0, rtol=1e-6)  # weighted mean of ones is one: no dead pixels
    assert (covered == 1).all()  # every row released exactly once
    assert grid.weights().min() >= WEIGHT_FLOOR * WEIGHT_FLOOR * 0.99


def test_blocks_partition_scene_with_halo() -> None:
    seen = np.zeros((23, 17), int)
    for b in blocks(23, 17, 8, 3):
        assert b.outer.width == b.inner.width + 6
        rs, cs = b.inner_slices
        assert rs.start == 3 and cs.start == 3
        seen[int(b.inner.row_off) : int(b.inner.row_off + b.inner.height),
             int(b.inner.col_off) : int(b.inner.col_off + b.inner.width)] += 1
    assert (seen == 1).all()


def _whole_image(bundle: Bundle, data: np.ndarray, margin: int) -> np.ndarray:
    """Reference: the network on the whole reflect-padded image."""
    x = prepare_input(data, np.ones(data.shape[1:], bool), bundle.config)
    pad = margin + 64
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad)), mode="reflect")
    with torch.no_grad():
        p = torch.sigmoid(bundle.model(torch.from_numpy(x)[None]))[0].numpy()
    return p[:, pad:-pad, pad:-pad]


@pytest.mark.parametrize(
    ("height", "width", "tile", "overlap"),
    [(96, 96, 32, 16), (100, 130, 32, 16), (61, 75, 48, 24), (64, 200, 64, 12), (40, 30, 64, 16)],
)
@pytest.mark.parametrize("chunk_tiles", [1, 3, 12])
def test_stitched_equals_whole_image(
    write_tif, conv_bundle: Bundle, monkeypatch, height, width, tile, overlap, chunk_tiles
) -> None:
    """Receptive-field radius 3 <= discarded margin overlap//4: the stitched result is the whole-image one,
    however many tiles each read chunk holds (chunks touching either scene edge are reflect-padded alike)."""
    import firemap.predict

    monkeypatch.setattr(firemap.predict, "CHUNK_TILES", chunk_tiles)
    data = background(height, width, seed=height)
    data[5] += np.linspace(0, 0.5, width, dtype=np.float32)[None]  # structure across tiles
    info = open_scene(write_tif(data))
    cfg = PredictConfig(tile_size=tile, overlap=overlap, batch_size=3)
    blocks_out = list(iter_predictions(info, conv_bundle, cfg))
    got = np.concatenate([b.probs for b in blocks_out], axis=1)
    assert [b.row_off for b in blocks_out] == sorted(b.row_off for b in blocks_out)
    assert got.shape == (3, height, width)
    np.testing.assert_allclose(got, _whole_image(conv_bundle, data, overlap // 2), atol=1e-5)


def test_wide_rows_are_released_in_thin_bands_with_the_same_values(write_tif, conv_bundle, monkeypatch) -> None:
    import firemap.tiling

    info = open_scene(write_tif(background(100, 130, seed=5)))
    cfg = PredictConfig(tile_size=32, overlap=16, batch_size=3)
    whole = list(iter_predictions(info, conv_bundle, cfg))
    monkeypatch.setattr(firemap.tiling, "RELEASE_BYTES", 4 * 3 * 130 * 3)  # 3 rows of 3 class channels
    thin = list(iter_predictions(info, conv_bundle, cfg))
    assert max(b.probs.shape[1] for b in thin) == 3 < max(b.probs.shape[1] for b in whole)
    ends = np.cumsum([b.probs.shape[1] for b in thin])
    assert [b.row_off for b in thin] == [0, *ends[:-1]] and ends[-1] == 100
    np.testing.assert_array_equal(np.concatenate([b.probs for b in thin], 1),
                                  np.concatenate([b.probs for b in whole], 1))


def test_channels_last_stitcher_releases_the_same_bits_and_validity() -> None:
    """The pixel-interleaved layout (fed views of a channels-last batch) gives bit-identical means, and the kept
    validity is each pixel's own (None tiles: invalid)."""
    grid = TileGrid(70, 90, 32, 12)
    rng = np.random.default_rng(0)
    valid_scene = rng.random((70, 90)) > 0.2
    plain, fast = RowStitcher(grid, 3), RowStitcher(grid, 3, track_valid=True, channels_last=True)
    got_plain, got_fast, got_valid = [], [], []
    for r in range(grid.shape[0]):
        for c in range(grid.shape[1]):
            tile = grid.tile(r, c)
            pred = rng.random((3, 32, 32), dtype=np.float32)
            interleaved = np.ascontiguousarray(pred.transpose(1, 2, 0)).transpose(2, 0, 1)  # a channels-last view
            rows = np.clip(np.arange(32) + int(tile.window.row_off), 0, 69)
            cols = np.clip(np.arange(32) + int(tile.window.col_off), 0, 89)
            empty = (r + c) % 5 == 0
            plain.add(tile, None if empty else pred)
            fast.add(tile, None if empty else interleaved, None if empty else valid_scene[np.ix_(rows, cols)])
            if empty:
                valid_scene[tile.core_rows[0]:tile.core_rows[1], tile.core_cols[0]:tile.core_cols[1]] = False
        got_plain += [v for _, v in plain.release(r)]
        for _, v, ok in fast.release_valid(r):
            got_fast.append(v)
            got_valid.append(ok)
    np.testing.assert_array_equal(np.concatenate(got_fast, 1), np.concatenate(got_plain, 1))
    assert np.concatenate(got_fast, 1).flags.c_contiguous
    np.testing.assert_array_equal(np.concatenate(got_valid), valid_scene)
    with pytest.raises(ValueError, match="track_valid"):
        next(plain.release_valid(0))
