"""Options of the weakly supervised pipeline (``firemap pseudolabel``), typed and closed.

Defaults follow Ahn & Kwak, "Learning Pixel-level Semantic Affinity with Image-level Supervision for Weakly
Supervised Semantic Segmentation", CVPR 2018, and the authors' code (github.com/jiwoon-ahn/psa): background
from the CAMs as ``(1 - max_c CAM_c) ** alpha`` with alpha = 4 / 32 for confident foreground / background
(``infer_cls.py --low_alpha 4 --high_alpha 32``) and alpha = 16 for the walk (``infer_aff.py --alpha 16``);
affinity radius gamma = 5, beta = 8 and t = 2**8 = 256 walk iterations (``--beta 8 --logt 8``).
Our only departure: the walk runs at ``walk_stride`` 4 pixels instead of the paper's 8, because burn scars and
fires in 20-30 m scenes are small (see docs/weak_supervision.md).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from firemap.config import Closed

FEATURE_STRIDE = 8
"""Stride of the classifier's CAM and of the coarsest AffinityNet features (encoder depth 3)."""


class WeakConfig(Closed):
    """Options of :func:`firemap.weak.pseudolabel.pseudolabel`.

    Attributes:
        bands: canonical input bands, in network order.
        optional_bands: bands the networks can do without (band-presence channels tell whether present).
        encoder: smp encoder of the classifier and of AffinityNet (first three stages, stride 8, random init).
        context: pixels of scene read around each labelled window (the networks see them; labels do not).
        cam_steps: classifier optimizer steps.
        aff_steps: AffinityNet optimizer steps.
        batch_size: windows per step.
        lr: Adam learning rate of both networks.
        feature_dim: AffinityNet feature channels.
        walk_stride: pixels per random-walk node (CAMs are average-pooled to it, walks upsampled back).
        radius: affinity radius gamma, in walk nodes (neighbours with dy^2 + dx^2 < radius^2).
        beta: affinity power in the transition matrix ``T = D^-1 A^beta``.
        iterations: walk iterations t (``CAM x T^t``).
        alpha: background power for the walk and the CAM-only masks.
        alpha_low: background power for confident foreground (AffinityNet training).
        alpha_high: background power for confident background (AffinityNet training).
        margin: a pixel's label is 255 (unsure) when its best score beats the runner-up by less than this.
        method: ``walk`` (CAM + random walk) or ``cam`` (CAM alone, no AffinityNet).
        label_outside: also label pixels outside every labelled window (else they are 255).
        block_size: pixels per walk block (memory ~ block + 2 halo squared), multiple of 8.
        halo: pixels of context per block side, multiple of 8; the walk is exact (tiled == untiled) when
            ``halo >= iterations * radius * walk_stride`` plus the networks' reach, close to it far below that
            because affinities decay fast (measured in docs/weak_supervision.md).
        tile_size: CAM tiles over a scene, multiple of 8.
        overlap: CAM tile overlap.
        save_cam: also write ``<stem>.cam.tif`` (normalized CAMs, float32).
        save_walk: also write ``<stem>.walk.tif`` (walked scores, background first, float32).
        sensor: sensor preset for band resolution.
        band_spec: ``--bands`` spec.
        seed: random seed.
        threads: torch CPU threads (0 = torch's default).
        overwrite: replace existing outputs.
        allow_no_crs: accept scenes without CRS.
    """

    bands: tuple[str, ...] = ("blue", "green", "red", "nir", "swir1", "swir2")
    optional_bands: tuple[str, ...] = ("swir1",)
    encoder: str = "resnet18"
    context: int = Field(default=16, ge=0, le=256)
    cam_steps: int = Field(default=300, ge=1)
    aff_steps: int = Field(default=300, ge=1)
    batch_size: int = Field(default=16, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    feature_dim: int = Field(default=64, ge=4)
    walk_stride: Literal[1, 2, 4, 8] = 4
    radius: int = Field(default=5, ge=2, le=16)
    beta: float = Field(default=8.0, gt=0)
    iterations: int = Field(default=256, ge=0)
    alpha: float = Field(default=16.0, gt=0)
    alpha_low: float = Field(default=4.0, gt=0)
    alpha_high: float = Field(default=32.0, gt=0)
    margin: float = Field(default=0.05, ge=0, lt=1)
    method: Literal["walk", "cam"] = "walk"
    label_outside: bool = False
    block_size: int = Field(default=512, ge=FEATURE_STRIDE)
    halo: int = Field(default=128, ge=0)
    tile_size: int = Field(default=256, ge=FEATURE_STRIDE)
    overlap: int = Field(default=64, ge=0)
    save_cam: bool = False
    save_walk: bool = False
    sensor: str | None = None
    band_spec: str | None = None
    seed: int = 0
    threads: int = Field(default=0, ge=0)
    overwrite: bool = False
    allow_no_crs: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> WeakConfig:
        for name in ("block_size", "halo", "tile_size", "overlap"):
            value = getattr(self, name)
            if value % FEATURE_STRIDE:
                lo = value // FEATURE_STRIDE * FEATURE_STRIDE
                raise ValueError(f"{name} {value} must be a multiple of {FEATURE_STRIDE}; use {lo or 8} or {lo + 8}")
        if self.overlap >= self.tile_size:
            raise ValueError(f"overlap {self.overlap} must be smaller than tile_size {self.tile_size}")
        if self.alpha_low >= self.alpha_high:
            raise ValueError(f"alpha_low {self.alpha_low} must be below alpha_high {self.alpha_high} (paper: 4, 32)")
        missing = [b for b in self.optional_bands if b not in self.bands]
        if missing:
            raise ValueError(f"optional_bands {missing} are not in bands {list(self.bands)}")
        return self


__all__ = ["FEATURE_STRIDE", "WeakConfig"]
