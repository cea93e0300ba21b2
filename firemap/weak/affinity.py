"""AffinityNet (Ahn & Kwak, CVPR 2018): per-pixel features whose L1 distance gives semantic affinities.

The network is the project's smp encoder (first three stages, random init) with the paper's head: 1x1
convolutions on the stride-2, -4 and -8 features, ELU, resized to the walk stride and concatenated, then a 1x1
fusion convolution and ELU. The affinity of nodes i and j within radius gamma is ``exp(-mean_d |f_i - f_j|)``
(the authors' code averages the L1 distance over channels, which only rescales the paper's L1 norm).

Training uses confident CAM labels only (authors' ``infer_cls.py`` / ``train_aff.py``): with background
``(1 - max CAM) ** alpha``, nodes whose argmax is a class at alpha_low = 4 are confident foreground, nodes whose
argmax is background at alpha_high = 32 are confident background, the rest are unsure (255). Pairs within the
radius are positive-background (both background), positive-foreground (same class) or negative (different), and
pairs touching an unsure node are ignored. The loss balances the three sets:
``(L_fg+ + L_bg+) / 2 + L_-`` with ``L_+ = -mean log a``, ``L_- = -mean log(1 - a)`` (the code's
``bg/4 + fg/4 + neg/2``, times 2).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from firemap.models import _smp
from firemap.weak.cam import background, optimise
from firemap.weak.config import WeakConfig
from firemap.weak.samples import WindowSample, augment, pick_batch, shape_groups

log = logging.getLogger(__name__)

UNSURE = 255
"""Label of nodes that are neither confident foreground nor confident background."""


def pair_offsets(radius: int) -> list[tuple[int, int]]:
    """One-sided neighbour offsets ``(dy, dx)`` with ``dy^2 + dx^2 < radius^2`` (the authors' search set).

    Each unordered pair of nodes appears once; :func:`neighbour_offsets` adds the opposite directions.
    """
    offsets = [(0, dx) for dx in range(1, radius)]
    offsets += [(dy, dx) for dy in range(1, radius) for dx in range(-radius + 1, radius)
                if dy * dy + dx * dx < radius**2]
    return offsets


def neighbour_offsets(radius: int) -> list[tuple[int, int]]:
    """Both directions of :func:`pair_offsets`: every neighbour of a node within the radius."""
    one = pair_offsets(radius)
    return one + [(-dy, -dx) for dy, dx in one]


def shifted(a: torch.Tensor, dy: int, dx: int, pad: int, fill: float = 0.0) -> torch.Tensor:
    """``out[..., y, x] = a[..., y + dy, x + dx]`` with ``fill`` outside (``|dy|, |dx| <= pad``)."""
    h, w = a.shape[-2:]
    p = F.pad(a, (pad, pad, pad, pad), value=fill)
    return p[..., pad + dy : pad + dy + h, pad + dx : pad + dx + w]


def pair_affinities(features: torch.Tensor, offsets: Sequence[tuple[int, int]]) -> torch.Tensor:
    """Affinities ``exp(-mean_d |f_i - f_{i+offset}|)``.

    Args:
        features: ``(B, D, h, w)``.
        offsets: ``(dy, dx)`` per output channel.

    Returns:
        ``(B, len(offsets), h, w)``; 0 where the neighbour lies outside the array.
    """
    pad = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
    inside = torch.ones((1, 1, *features.shape[-2:]), dtype=features.dtype)
    out = []
    for dy, dx in offsets:
        dist = (features - shifted(features, dy, dx, pad)).abs().mean(1)
        out.append(torch.exp(-dist) * shifted(inside, dy, dx, pad)[:, 0])
    return torch.stack(out, 1)


class AffinityNet(nn.Module):
    """Per-node features at ``stride`` pixels for affinities.

    Args:
        in_channels: input channels.
        feature_dim: output feature channels.
        stride: output stride (1, 2, 4 or 8).
        encoder: smp encoder name (random init).
    """

    def __init__(self, in_channels: int, feature_dim: int = 64, stride: int = 4, encoder: str = "resnet18") -> None:
        super().__init__()
        self.stride = stride
        self.encoder = _smp().encoders.get_encoder(encoder, in_channels=in_channels, depth=3, weights=None)
        ch = self.encoder.out_channels
        widths = (feature_dim // 4, feature_dim // 4, feature_dim // 2)
        self.heads = nn.ModuleList(nn.Conv2d(c, w, 1, bias=False) for c, w in zip(ch[1:4], widths, strict=True))
        self.fuse = nn.Conv2d(sum(widths), feature_dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` (H, W multiples of 8) -> ``(B, feature_dim, H / stride, W / stride)``."""
        size = (x.shape[-2] // self.stride, x.shape[-1] // self.stride)
        parts = []
        for head, f in zip(self.heads, self.encoder(x)[1:4], strict=True):
            f = F.elu(head(f))
            if f.shape[-1] > size[1]:
                f = F.adaptive_avg_pool2d(f, size)
            elif f.shape[-1] < size[1]:
                f = F.interpolate(f, size=size, mode="bilinear", align_corners=False)
            parts.append(f)
        return F.elu(self.fuse(torch.cat(parts, 1)))


def pool_nodes(a: np.ndarray, stride: int) -> np.ndarray:
    """Average ``(..., H, W)`` over ``stride x stride`` cells (H, W multiples of stride)."""
    if stride == 1:
        return a.astype(np.float32)
    h, w = a.shape[-2:]
    return a.reshape(*a.shape[:-2], h // stride, stride, w // stride, stride).mean((-3, -1)).astype(np.float32)


def confident_labels(cam: np.ndarray, inside: np.ndarray, cfg: WeakConfig) -> np.ndarray:
    """Confident node labels of a window from its normalized CAMs.

    Args:
        cam: ``(classes, H, W)`` normalized CAMs in [0, 1] (H, W multiples of ``cfg.walk_stride``).
        inside: ``(H, W)`` bool, the labelled window's valid pixels.
        cfg: alpha_low, alpha_high, walk_stride.

    Returns:
        ``(H / s, W / s)`` uint8: 0 confident background, ``c + 1`` confident class c, :data:`UNSURE` otherwise
        (and on nodes with less than half of their pixels inside).
    """
    s = cfg.walk_stride
    low = pool_nodes(np.concatenate([background(cam, cfg.alpha_low)[None], cam]), s).argmax(0)
    high = pool_nodes(np.concatenate([background(cam, cfg.alpha_high)[None], cam]), s).argmax(0)
    label = low.astype(np.uint8)
    label[low == 0] = UNSURE
    label[high == 0] = 0
    label[pool_nodes(inside.astype(np.float32), s) < 0.5] = UNSURE
    return label


def affinity_loss(aff: torch.Tensor, labels: torch.Tensor, offsets: Sequence[tuple[int, int]]) -> torch.Tensor:
    """The balanced loss ``(L_fg+ + L_bg+) / 2 + L_-`` over confident pairs.

    Args:
        aff: ``(B, len(offsets), h, w)`` affinities in (0, 1].
        labels: ``(B, h, w)`` int64 node labels (:data:`UNSURE` ignored).
        offsets: the pair offsets of ``aff``'s channels.
    """
    pad = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
    sums = torch.zeros(3)
    counts = torch.zeros(3)
    for k, (dy, dx) in enumerate(offsets):
        other = shifted(labels, dy, dx, pad, fill=UNSURE)
        ok = (labels != UNSURE) & (other != UNSURE)
        same = ok & (labels == other)
        sets = (same & (labels == 0), same & (labels > 0), ok & (labels != other))
        a = aff[:, k]
        terms = (-torch.log(a + 1e-5), -torch.log(a + 1e-5), -torch.log(1.0 + 1e-5 - a))
        for i, (sel, term) in enumerate(zip(sets, terms, strict=True)):
            sums[i] = sums[i] + term[sel].sum()
            counts[i] = counts[i] + sel.sum()
    bg, fg, neg = sums / counts.clamp_min(1.0)
    return (fg + bg) / 2 + neg


def train_affinity(
    samples: Sequence[WindowSample], labels: Sequence[np.ndarray], in_channels: int, cfg: WeakConfig,
    progress: Callable[[int], None] | None = None,
) -> AffinityNet:
    """Train AffinityNet on confident node labels (one ``(H/s, W/s)`` uint8 map per sample).

    Returns:
        The network in eval mode.
    """
    torch.manual_seed(cfg.seed + 1)
    rng = np.random.default_rng(cfg.seed + 1)
    net = AffinityNet(in_channels, cfg.feature_dim, cfg.walk_stride, cfg.encoder)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    offsets = pair_offsets(cfg.radius)
    groups = shape_groups(samples)

    def step_loss(step: int) -> torch.Tensor:
        idx = pick_batch(groups, rng, cfg.batch_size)
        k, flip = int(rng.integers(4)), bool(rng.integers(2))
        pairs = [augment([samples[i].x, labels[i]], k, flip) for i in idx]
        x = torch.from_numpy(np.stack([p[0] for p in pairs]))
        y = torch.from_numpy(np.stack([p[1] for p in pairs]).astype(np.int64))
        return affinity_loss(pair_affinities(net(x), offsets), y, offsets)

    optimise(net, opt, cfg.aff_steps, step_loss, "AffinityNet (loss)", progress)
    return net


__all__ = ["UNSURE", "AffinityNet", "affinity_loss", "confident_labels", "neighbour_offsets", "pair_affinities",
           "pair_offsets", "pool_nodes", "shifted", "train_affinity"]
