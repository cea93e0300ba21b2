"""Dense-CRF refinement of class probabilities (DeepLab v1/v2), as a local mean-field CRF on the reflectance bands.

Each class is an independent binary CRF (firemap's classes are multi-label sigmoids) with a Potts pairwise term
made of two Gaussian kernels, as in Krähenbühl & Koltun's dense CRF used by DeepLab:

* appearance: ``w_appearance * exp(-|p_i - p_j|^2 / 2 theta_position^2 - |I_i - I_j|^2 / 2 theta_reflectance^2)``
  with ``I`` the scene's reflectance bands (so labels stop at spectral edges);
* smoothness: ``w_smooth * exp(-|p_i - p_j|^2 / 2 theta_smooth^2)``.

Unlike the fully connected CRF, the kernels are truncated to a ``(2 radius + 1)^2`` window. That is what makes it
streamable: after ``iterations`` mean-field updates a pixel depends on pixels at most ``iterations * radius`` away
(:attr:`CrfParams.halo`), so processing row blocks with that many halo rows on each side gives exactly the
whole-scene result. Each kernel is divided by its value summed over a full window, so a weight is in logit
units: a pixel whose neighbours all agree (and look alike) moves by ``w`` logits. Written in torch rather than
on pydensecrf2 / SimpleCRF: both are source-only on PyPI (a C++ build on every machine), their permutohedral
lattice is fully connected (a result that depends on the whole scene, so no exact row streaming) and their
bilateral term expects 8-bit RGB, not N reflectance bands.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

from firemap.bands import THERMAL_BANDS
from firemap.postprocess import RowBlock, SceneStream
from firemap.raster import read_window

log = logging.getLogger(__name__)

CHUNK_COLS = 1024
"""Columns refined at a time (plus halo columns): bounds the kernel memory however wide the scene is."""


@dataclass(frozen=True)
class CrfParams:
    """Mean-field CRF settings (defaults: see docs/benchmarks.md for what they do to each class).

    Attributes:
        iterations: mean-field updates.
        radius: kernel window radius, pixels.
        step: spacing of the window's sampled offsets (2 = every other pixel: a wider window for the same cost).
        w_appearance: appearance (bilateral) kernel weight, logits.
        theta_position: appearance kernel spatial scale, pixels.
        theta_reflectance: appearance kernel reflectance scale (Euclidean distance over the bands, reflectance).
        w_smooth: smoothness kernel weight, logits.
        theta_smooth: smoothness kernel spatial scale, pixels.
        classes: class names refined; the others pass through unchanged. Fire is left out by default: most
            fires are one pixel, and any smoothness prior pulls an isolated pixel towards its neighbours.
    """

    iterations: int = 5
    radius: int = 8
    step: int = 2
    w_appearance: float = 5.0
    theta_position: float = 6.0
    theta_reflectance: float = 0.05
    w_smooth: float = 0.5
    theta_smooth: float = 1.0
    classes: tuple[str, ...] = ("smoke", "burn_scar")

    def offsets(self) -> list[tuple[int, int]]:
        """The window offsets ``(dy, dx)`` of a pixel's neighbours."""
        span = range(-self.radius, self.radius + 1, self.step) if self.step == 1 else sorted(
            {*range(0, self.radius + 1, self.step), *range(0, -self.radius - 1, -self.step)})
        return [(dy, dx) for dy in span for dx in span if dy or dx]

    @property
    def halo(self) -> int:
        """Rows (and columns) of context each side that make a block's result equal the whole-scene one."""
        return self.iterations * self.radius


def _kernels(features: torch.Tensor, valid: torch.Tensor, params: CrfParams) -> list[torch.Tensor]:
    """Pairwise weight to the neighbour at each window offset, ``(rows, cols)`` each; 0 outside / on nodata."""
    r = params.radius
    rows, cols = valid.shape
    feat = torch.nn.functional.pad(features / params.theta_reflectance, (r, r, r, r))
    ok = torch.nn.functional.pad(valid, (r, r, r, r))
    offsets = params.offsets()
    z_app = sum(np.exp(-(dy * dy + dx * dx) / (2 * params.theta_position**2)) for dy, dx in offsets)
    z_smooth = sum(np.exp(-(dy * dy + dx * dx) / (2 * params.theta_smooth**2)) for dy, dx in offsets)
    kernels = []
    for dy, dx in offsets:
        d2 = dy * dy + dx * dx
        window = (slice(r + dy, r + dy + rows), slice(r + dx, r + dx + cols))
        spectral = ((feat[(slice(None), *window)] - feat[:, r:r + rows, r:r + cols]) ** 2).sum(0)
        app = torch.exp(-spectral / 2 - d2 / (2 * params.theta_position**2)) * (params.w_appearance / z_app)
        smooth = params.w_smooth * np.exp(-d2 / (2 * params.theta_smooth**2)) / z_smooth
        kernels.append((app + smooth) * (ok[window] & valid))
    return kernels


def _mean_field(probs: torch.Tensor, kernels: list[torch.Tensor], params: CrfParams) -> torch.Tensor:
    r = params.radius
    rows, cols = probs.shape[-2:]
    unary = torch.logit(probs.clamp(1e-6, 1 - 1e-6))
    q = probs
    offsets = params.offsets()
    for _ in range(params.iterations):
        agree = torch.nn.functional.pad(2 * q - 1, (r, r, r, r))
        message = torch.zeros_like(q)
        for (dy, dx), k in zip(offsets, kernels, strict=True):
            message += k * agree[:, r + dy:r + dy + rows, r + dx:r + dx + cols]
        q = torch.sigmoid(unary + message)
    return q


def refine(probs: np.ndarray, features: np.ndarray, valid: np.ndarray, params: CrfParams,
           classes: Sequence[int] | None = None) -> np.ndarray:
    """Mean-field CRF refinement of a block of probabilities (whole-block result, computed in column chunks).

    Args:
        probs: ``(classes, rows, cols)`` float32 probabilities.
        features: ``(bands, rows, cols)`` float32 reflectance (pairwise appearance term).
        valid: ``(rows, cols)`` bool; nodata pixels are nobody's neighbour and come back as 0.
        params: CRF settings.
        classes: indices of the classes to refine (default all); the others are returned unchanged.

    Returns:
        ``(classes, rows, cols)`` float32 refined probabilities. Pixels within ``params.halo`` of the block's
        edges only see the block: give the block that much context to get the whole-scene result.
    """
    out = probs.astype(np.float32, copy=True)
    chosen = list(range(len(probs)) if classes is None else classes)
    if not chosen or not valid.any():
        return out * valid
    halo, width = params.halo, valid.shape[1]
    with torch.inference_mode():
        for c0 in range(0, width, CHUNK_COLS):
            c1 = min(c0 + CHUNK_COLS, width)
            lo, hi = max(0, c0 - halo), min(width, c1 + halo)
            v = torch.from_numpy(np.ascontiguousarray(valid[:, lo:hi]))
            kernels = _kernels(torch.from_numpy(np.ascontiguousarray(features[:, :, lo:hi], np.float32)), v, params)
            q = _mean_field(torch.from_numpy(np.ascontiguousarray(probs[chosen, :, lo:hi], np.float32)), kernels,
                            params)
            out[chosen, :, c0:c1] = q[:, :, c0 - lo:c1 - lo].numpy()
    return out * valid


class CrfHook:
    """The CRF as a :class:`~firemap.postprocess.RowHook`: refines the row stream, holding back ``halo`` rows.

    Reads the scene's reflectance bands (the model's non-thermal bands present in the file) for each block plus
    its halo, so the result is independent of how the stream is cut into blocks.
    """

    def __init__(self, scene: SceneStream, params: CrfParams | None = None) -> None:
        self.params = params or CrfParams()
        self.scene = scene
        config = scene.config
        self.classes = [i for i, c in enumerate(config.classes) if c.name in self.params.classes]
        self.bands = [s for b, s in zip(config.bands, scene.sources, strict=True)
                      if s is not None and b not in THERMAL_BANDS]
        self.height, self.width = scene.info.grid.height, scene.info.grid.width
        self.off = 0  # first buffered scene row
        self.done = 0  # rows handed on
        self.probs = np.zeros((len(config.classes), 0, self.width), np.float32)
        self.valid = np.zeros((0, self.width), bool)

    def process(self, block: RowBlock) -> Iterable[RowBlock]:
        """Buffer ``block``; hand on the rows whose halo below has arrived."""
        self.probs = np.concatenate([self.probs, block.probs], 1)
        self.valid = np.concatenate([self.valid, block.valid])
        end = self.off + self.valid.shape[0]
        ready = end if end >= self.height else end - self.params.halo
        return [self._emit(ready)] if ready > self.done else []

    def finish(self) -> Iterable[RowBlock]:
        """Hand on what is left."""
        end = self.off + self.valid.shape[0]
        return [self._emit(end)] if end > self.done else []

    def _emit(self, stop: int) -> RowBlock:
        start, halo = self.done, self.params.halo
        lo, hi = max(self.off, start - halo), min(self.off + self.valid.shape[0], stop + halo)
        rows = slice(lo - self.off, hi - self.off)
        features = self._read(lo, hi)
        refined = refine(self.probs[:, rows], features, self.valid[rows], self.params, self.classes)
        keep = slice(start - lo, stop - lo)
        block = RowBlock(start, refined[:, keep], self.valid[rows][keep])
        self.done = stop
        cut = max(0, stop - halo - self.off)  # rows no later block needs as context
        self.probs, self.valid, self.off = self.probs[:, cut:], self.valid[cut:], self.off + cut
        return block

    def _read(self, lo: int, hi: int) -> np.ndarray:
        if not self.bands:
            return np.zeros((0, hi - lo, self.width), np.float32)
        with rasterio.open(self.scene.info.path) as src:
            data, _ = read_window(src, Window(0, lo, self.width, hi - lo), self.bands, self.scene.zero_is_nodata)
        return data


def crf_hook(scene: SceneStream) -> CrfHook:
    """The default-parameter CRF hook for a scene (a :class:`~firemap.postprocess.HookFactory`)."""
    return CrfHook(scene)


__all__ = ["CHUNK_COLS", "CrfHook", "CrfParams", "crf_hook", "refine"]
