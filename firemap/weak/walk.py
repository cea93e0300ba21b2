"""Random walk with AffinityNet affinities: ``vec(CAM*) = T^t vec(CAM)``, ``T = D^-1 A^beta`` (Ahn & Kwak 2018).

``A`` holds the affinities between nodes within radius gamma (zero beyond it, and for any pair touching a nodata
node) plus self-loops of affinity 1 (as the authors' code adds the identity), ``D`` is its row sums. One step
replaces every node's scores by the ``A^beta``-weighted mean of its neighbourhood, so after t steps a node has
only heard from nodes within ``t * gamma``. The matrix is never built: each step is a sum over the
neighbourhood's shifted arrays (``O(t * nodes * gamma^2)``, memory ``O(nodes * gamma^2)``).

Scenes are walked in blocks with a halo (:func:`walk_tiles`): nodes live on a grid of ``walk_stride`` pixels
aligned to the scene origin, each block walks its inner part plus the halo, and keeps the inner part. With
``halo >= t * gamma * stride`` (plus the feature network's reach) tiles equal the untiled walk exactly; in practice
affinities fall off fast, so far smaller halos join without visible seams (measured in docs/weak_supervision.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import scipy.sparse
import torch
import torch.nn.functional as F
from rasterio.windows import Window

from firemap.tiling import Block, blocks
from firemap.weak.affinity import neighbour_offsets, pair_affinities, pool_nodes, shifted
from firemap.weak.cam import background
from firemap.weak.config import FEATURE_STRIDE, WeakConfig

log = logging.getLogger(__name__)

Offsets = Sequence[tuple[int, int]]
ReadBlock = Callable[[Window], tuple[np.ndarray, np.ndarray, np.ndarray]]
"""Window -> ``(x (C, H, W) network input, valid (H, W) bool, cam (classes, H, W) normalized CAMs)``."""
FeatureFn = Callable[[np.ndarray], np.ndarray]
"""Network input ``(C, H, W)`` -> node features ``(D, H / stride, W / stride)``."""


def transition_weights(features: np.ndarray, valid: np.ndarray, radius: int, beta: float) -> tuple[Offsets, np.ndarray]:
    """Neighbour weights ``a_ij ** beta`` of every node, zero for pairs touching an invalid node.

    Args:
        features: ``(D, h, w)`` node features.
        valid: ``(h, w)`` bool node validity.
        radius: gamma, in nodes.
        beta: affinity power.

    Returns:
        ``(offsets, weights)``: ``weights[k, y, x]`` is the weight of neighbour ``(y, x) + offsets[k]``,
        ``(len(offsets), h, w)`` float32.
    """
    offsets = neighbour_offsets(radius)
    aff = pair_affinities(torch.from_numpy(np.ascontiguousarray(features, np.float32))[None], offsets)[0]
    ok = torch.from_numpy(valid.astype(np.float32))
    both = torch.stack([ok * shifted(ok, dy, dx, radius) for dy, dx in offsets])
    return offsets, (aff.pow(beta) * both).numpy()


def random_walk(values: np.ndarray, weights: np.ndarray, offsets: Offsets, iterations: int) -> np.ndarray:
    """``T^t`` applied to node scores: each step, every node becomes the weighted mean of itself (weight 1) and
    its neighbours (``weights``).

    Args:
        values: ``(K, h, w)`` node scores.
        weights: ``(len(offsets), h, w)`` from :func:`transition_weights`.
        offsets: neighbour offsets of ``weights``.
        iterations: t.

    Returns:
        ``(K, h, w)`` float32.
    """
    pad = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
    w = torch.from_numpy(weights)
    inv_degree = 1.0 / (1.0 + w.sum(0))
    v = torch.from_numpy(np.ascontiguousarray(values, np.float32))
    h, wd = v.shape[-2:]
    with torch.inference_mode():
        for _ in range(iterations):
            vp = F.pad(v, (pad, pad, pad, pad))
            acc = v.clone()
            for k, (dy, dx) in enumerate(offsets):
                acc.addcmul_(w[k], vp[:, pad + dy : pad + dy + h, pad + dx : pad + dx + wd])
            v = acc.mul_(inv_degree)
    return v.numpy()


def transition_matrix(weights: np.ndarray, offsets: Offsets) -> scipy.sparse.csr_matrix:
    """The explicit ``T = D^-1 (I + A^beta)`` (``nodes x nodes``, row-major node order), for checks and small graphs."""
    _, h, w = weights.shape
    n = h * w
    rows, cols, vals = [np.arange(n)], [np.arange(n)], [np.ones(n, np.float32)]
    yy, xx = np.mgrid[0:h, 0:w]
    for k, (dy, dx) in enumerate(offsets):
        sel = weights[k] > 0
        rows.append((yy * w + xx)[sel])
        cols.append(((yy + dy) * w + xx + dx)[sel])
        vals.append(weights[k][sel])
    a = scipy.sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    return scipy.sparse.diags(1.0 / np.asarray(a.sum(1)).ravel()) @ a


def _upsample(nodes: np.ndarray, valid: np.ndarray, stride: int) -> np.ndarray:
    """Bilinear upsampling by ``stride`` that ignores invalid nodes (normalized convolution)."""
    if stride == 1:
        return nodes
    v = torch.from_numpy(nodes * valid)[None]
    m = torch.from_numpy(valid.astype(np.float32))[None, None]
    num = F.interpolate(v, scale_factor=stride, mode="bilinear", align_corners=False)[0]
    den = F.interpolate(m, scale_factor=stride, mode="bilinear", align_corners=False)[0]
    return (num / den.clamp_min(1e-6)).numpy()


def node_scores(cam: np.ndarray, valid: np.ndarray, cfg: WeakConfig) -> tuple[np.ndarray, np.ndarray]:
    """Background (alpha) and class scores pooled to walk nodes over valid pixels.

    Returns:
        ``(scores (K + 1, h, w) float32, node validity (h, w) bool)``; a node is valid when at least half of its
        pixels are.
    """
    s = cfg.walk_stride
    scores = np.concatenate([background(cam, cfg.alpha)[None], cam]) * valid
    frac = pool_nodes(valid.astype(np.float32), s)
    pooled = pool_nodes(scores, s) / np.maximum(frac, 1e-6)
    return pooled.astype(np.float32), frac >= 0.5


def walk_block(x: np.ndarray, valid: np.ndarray, cam: np.ndarray, features: FeatureFn, cfg: WeakConfig) -> np.ndarray:
    """Walk one block: scores at nodes, ``T^t``, back to pixels.

    Args:
        x: ``(C, H, W)`` network input (H, W multiples of 8).
        valid: ``(H, W)`` bool.
        cam: ``(K, H, W)`` normalized CAMs.
        features: node feature function (AffinityNet).
        cfg: radius, beta, iterations, alpha, walk_stride.

    Returns:
        ``(K + 1, H, W)`` float32 walked scores, background first.
    """
    scores, nodes_ok = node_scores(cam, valid, cfg)
    offsets, weights = transition_weights(features(x), nodes_ok, cfg.radius, cfg.beta)
    walked = random_walk(scores, weights, offsets, cfg.iterations)
    return _upsample(walked, nodes_ok, cfg.walk_stride)


def _outer(block: Block, height: int, width: int) -> Window:
    """The block's halo window, clipped to the scene (outside it every node is nodata: nothing to walk) on the
    8-pixel grid, its size rounded up to a multiple of 8."""
    o, f = block.outer, FEATURE_STRIDE
    r0, c0 = max(int(o.row_off), 0), max(int(o.col_off), 0)
    r1 = min(int(o.row_off + o.height), -(-height // f) * f)
    c1 = min(int(o.col_off + o.width), -(-width // f) * f)
    return Window(c0, r0, -(-(c1 - c0) // f) * f, -(-(r1 - r0) // f) * f)


def walk_tiles(
    height: int, width: int, read: ReadBlock, features: FeatureFn, cfg: WeakConfig,
) -> Iterator[tuple[Window, np.ndarray, np.ndarray]]:
    """Walk a ``height x width`` scene block by block (``cfg.block_size`` plus ``cfg.halo`` per side).

    Yields:
        ``(inner window, walked (K + 1, h, w), cam (K, h, w))`` for each block in row-major order: walked
        scores (background first) and the normalized CAMs of the block's own pixels.
    """
    for block in blocks(height, width, cfg.block_size, cfg.halo):
        outer = _outer(block, height, width)
        x, valid, cam = read(outer)
        walked = walk_block(x, valid, cam, features, cfg)
        rows, cols = Block(outer, block.inner).inner_slices
        yield block.inner, walked[:, rows, cols], cam[:, rows, cols]


__all__ = ["FeatureFn", "ReadBlock", "node_scores", "random_walk", "transition_matrix", "transition_weights",
           "walk_block", "walk_tiles"]
