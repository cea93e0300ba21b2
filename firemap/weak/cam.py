"""Multi-label classifier on the project's smp encoders and its class activation maps (CAMs).

The classifier is an smp encoder cut after its third stage (stride :data:`FEATURE_STRIDE`), a bias-free 1x1
convolution giving one map per class, and global average pooling of those maps over the labelled window's valid
pixels (nodata and context excluded) plus a bias: the logits. The CAM of class c is ``relu(w_c . f)`` at stride 8,
upsampled bilinearly to full resolution (Zhou et al. 2016, as used by Ahn & Kwak 2018). Trained with BCE on the
present/absent labels; unknown labels give no loss.

Normalization (Ahn & Kwak divide each CAM by its maximum over an image known to hold the class): inside a window
labelled present, by the window's maximum; inside a window labelled absent the CAM is 0; elsewhere by a global
scale per class (the median of the present windows' maxima), clipped to [0, 1].
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from firemap.models import _smp
from firemap.weak.config import FEATURE_STRIDE, WeakConfig
from firemap.weak.samples import WindowSample, augment, pick_batch, shape_groups

log = logging.getLogger(__name__)


class CamNet(nn.Module):
    """Encoder (3 stages, stride 8) + 1x1 class maps + masked global average pooling.

    Args:
        in_channels: input channels (bands + band-presence channels).
        classes: number of classes (one sigmoid each).
        encoder: smp encoder name (random init: no download).
    """

    def __init__(self, in_channels: int, classes: int, encoder: str = "resnet18") -> None:
        super().__init__()
        self.encoder = _smp().encoders.get_encoder(encoder, in_channels=in_channels, depth=3, weights=None)
        self.classifier = nn.Conv2d(self.encoder.out_channels[-1], classes, 1, bias=False)
        self.bias = nn.Parameter(torch.zeros(classes))

    def class_maps(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, classes, H/8, W/8)`` class maps before ReLU."""
        return self.classifier(self.encoder(x)[-1])

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, classes)``: class maps averaged over ``mask`` ``(B, H, W)`` (window pixels), plus bias."""
        maps = self.class_maps(x)
        weight = F.avg_pool2d(mask[:, None].float(), FEATURE_STRIDE)
        pooled = (maps * weight).sum((2, 3)) / weight.sum((2, 3)).clamp_min(1e-6)
        return pooled + self.bias


def cams(net: CamNet, x: torch.Tensor) -> torch.Tensor:
    """Raw CAMs at full resolution: ``relu(class maps)`` upsampled bilinearly, ``(B, classes, H, W)`` float32."""
    with torch.inference_mode():
        maps = F.relu(net.class_maps(x))
        return F.interpolate(maps, size=x.shape[-2:], mode="bilinear", align_corners=False)


def _batch(samples: Sequence[WindowSample], idx: Sequence[int], rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
    k, flip = int(rng.integers(4)), bool(rng.integers(2))
    xs, masks = [], []
    for i in idx:
        x, inside = augment([samples[i].x, samples[i].inside], k, flip)
        xs.append(x)
        masks.append(inside)
    target = np.stack([samples[i].target for i in idx])
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(masks)), torch.from_numpy(target)


def optimise(
    net: nn.Module, opt: torch.optim.Optimizer, steps: int, step_loss: Callable[[int], torch.Tensor | None],
    what: str, progress: Callable[[int], None] | None = None,
) -> nn.Module:
    """Run ``steps`` optimizer steps of ``step_loss(step)`` (None = nothing to learn at that step, skipped),
    logging the mean loss every 100 steps as ``what``; returns the network in eval mode."""
    net.train()
    losses: list[float] = []
    for step in range(steps):
        loss = step_loss(step)
        if loss is None:
            continue
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if progress:
            progress(1)
        if (step + 1) % 100 == 0:
            log.info("%s step %d: %.4f", what, step + 1, float(np.mean(losses[-100:])))
    return net.eval()


def train_classifier(
    samples: Sequence[WindowSample], in_channels: int, classes: int, cfg: WeakConfig,
    progress: Callable[[int], None] | None = None,
) -> CamNet:
    """Train the multi-label classifier on the labelled windows (flips and 90-degree rotations).

    Returns:
        The network in eval mode.
    """
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    net = CamNet(in_channels, classes, cfg.encoder)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    groups = shape_groups(samples)

    def step_loss(step: int) -> torch.Tensor | None:
        x, mask, target = _batch(samples, pick_batch(groups, rng, cfg.batch_size), rng)
        known = ~torch.isnan(target)
        if not known.any():
            return None
        return F.binary_cross_entropy_with_logits(net(x, mask)[known], target[known])

    optimise(net, opt, cfg.cam_steps, step_loss, "classifier (BCE)", progress)
    return net


def window_cams(net: CamNet, samples: Sequence[WindowSample]) -> list[np.ndarray]:
    """Raw full-resolution CAMs ``(classes, rows, cols)`` float32 of each sample (0 on invalid pixels)."""
    out = []
    for s in samples:
        cam = cams(net, torch.from_numpy(s.x[None]))[0].numpy()
        out.append(np.where(s.valid, cam, 0.0).astype(np.float32))
    return out


def cam_scales(raw: Sequence[np.ndarray], samples: Sequence[WindowSample]) -> np.ndarray:
    """Global CAM scale per class: median over windows labelled present of the window's CAM maximum.

    Returns:
        ``(classes,)`` float32 (1 for a class with no present window).
    """
    k = samples[0].target.shape[0]
    scales = np.ones(k, np.float32)
    for c in range(k):
        peaks = [float(r[c][s.inside].max()) for r, s in zip(raw, samples, strict=True)
                 if s.target[c] == 1 and s.inside.any()]
        if peaks and np.median(peaks) > 0:
            scales[c] = np.median(peaks)
    return scales


def normalize_window(raw: np.ndarray, target: np.ndarray, inside: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Normalized CAMs of one labelled window, ``(classes, rows, cols)`` float32 in [0, 1].

    Present: divided by the maximum over ``inside``; absent: 0; unknown: divided by ``scales``.
    """
    out = np.empty_like(raw)
    for c in range(raw.shape[0]):
        if target[c] == 1:
            peak = float(raw[c][inside].max()) if inside.any() else 0.0
            out[c] = raw[c] / peak if peak > 0 else 0.0
        elif target[c] == 0:
            out[c] = 0.0
        else:
            out[c] = raw[c] / scales[c]
    return np.clip(out, 0.0, 1.0)


def background(cam: np.ndarray, alpha: float) -> np.ndarray:
    """Background score ``(1 - max_c CAM_c) ** alpha`` (Ahn & Kwak 2018, Eq. 1), ``(rows, cols)`` float32.

    Args:
        cam: ``(classes, rows, cols)`` normalized CAMs in [0, 1].
        alpha: the power (4 / 32 for confident foreground / background, 16 for the walk).
    """
    peak = cam.max(axis=0) if cam.shape[0] else np.zeros(cam.shape[1:], np.float32)
    return np.power(np.clip(1.0 - peak, 0.0, 1.0), alpha).astype(np.float32)


__all__ = ["CamNet", "background", "cam_scales", "cams", "normalize_window", "optimise", "train_classifier",
           "window_cams"]
