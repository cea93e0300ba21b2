"""Multi-label segmentation losses masked by label availability.

Targets are ``(batch, classes, H, W)`` uint8: 1 = the class is present, 0 = absent, :data:`IGNORE` (255) = not
labelled (nodata, or a class the pixel's dataset does not label). Ignored elements contribute neither loss nor
gradient, so one model learns from datasets that each label a different phenomenon (partial labels). The
network's logits are at full resolution (smp upsamples before the head output), so labels are never
downsampled, as the DeepLabv3 paper stresses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from firemap.raster import CLASS_NODATA

IGNORE = CLASS_NODATA
"""Target value of elements that are not labelled (the one nodata/not-labelled value of every label raster)."""


def sigmoid_focal(logits: torch.Tensor, target: torch.Tensor, gamma: float, alpha: float | None) -> torch.Tensor:
    """Element-wise focal loss (Lin et al. 2017) ``-alpha_t (1 - p_t)^gamma log(p_t)`` for sigmoid outputs.

    Args:
        logits: any shape, float.
        target: same shape, 0/1 float.
        gamma: focusing parameter (0 = BCE).
        alpha: weight of positives (negatives get ``1 - alpha``); None = 1 for both.

    Returns:
        Element-wise loss, same shape as ``logits``.
    """
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = torch.exp(-bce)
    loss = (1.0 - p_t) ** gamma * bce
    if alpha is not None:
        loss = loss * (alpha * target + (1.0 - alpha) * (1.0 - target))
    return loss


def masked_dice(
    probs: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, smooth: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft Dice loss per class over the labelled elements of a batch.

    Args:
        probs: ``(B, C, H, W)`` sigmoid probabilities.
        target: ``(B, C, H, W)`` 0/1 float.
        mask: ``(B, C, H, W)`` float, 1 where labelled.
        smooth: additive smoothing.

    Returns:
        ``(loss, counted)``: ``(C,)`` Dice losses and a ``(C,)`` bool telling which classes have positive labelled
        pixels in the batch (the others get no Dice term, as in smp's DiceLoss; BCE still penalises their false
        positives).
    """
    dims = (0, 2, 3)
    p = probs * mask
    y = target * mask
    inter = (p * y).sum(dims)
    denom = p.sum(dims) + y.sum(dims)
    return 1.0 - (2.0 * inter + smooth) / (denom + smooth), y.sum(dims) > 0


class MaskedMultiLabelLoss(nn.Module):
    """BCE (or focal) + Dice over labelled elements, with class weights.

    ``loss = sum_c w_c * mean_labelled(pixel_loss_c) * n_c / n + dice_weight * mean_c'(w_c' * dice_c')`` where the
    pixel term is averaged over all labelled (pixel, class) elements and the Dice mean runs over classes with
    positive labelled pixels in the batch.

    Args:
        classes: class names in network output order.
        kind: ``bce_dice``, ``focal_dice``, ``bce`` or ``focal``.
        dice_weight: weight of the Dice term.
        focal_gamma: focal focusing parameter.
        focal_alpha: focal positive weight.
        class_weights: class name -> weight (default 1).
        pos_weights: class name -> extra weight of positive pixels in the pixel term (default 1). A decoder that
            predicts at stride 4 (DeepLabv3+) sees a 1-pixel fire as 1/16 of a cell, so its BCE optimum there is
            p ~ 1/16; weighting positives by ~16 moves it back towards 0.5.
    """

    def __init__(
        self,
        classes: Sequence[str],
        kind: str = "bce_dice",
        dice_weight: float = 1.0,
        focal_gamma: float = 2.0,
        focal_alpha: float | None = None,
        class_weights: Mapping[str, float] | None = None,
        pos_weights: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        if kind not in ("bce_dice", "focal_dice", "bce", "focal"):
            raise ValueError(f"unknown loss {kind!r}; choose bce_dice, focal_dice, bce or focal")
        self.focal = kind.startswith("focal")
        self.dice_weight = dice_weight if kind.endswith("_dice") else 0.0
        self.gamma, self.alpha = focal_gamma, focal_alpha
        weights = [float((class_weights or {}).get(c, 1.0)) for c in classes]
        self.register_buffer("weights", torch.tensor(weights, dtype=torch.float32))
        pos = [float((pos_weights or {}).get(c, 1.0)) for c in classes]
        self.register_buffer("pos_weights", torch.tensor(pos, dtype=torch.float32))

    weights: torch.Tensor
    pos_weights: torch.Tensor

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar loss of ``(B, C, H, W)`` logits against ``(B, C, H, W)`` uint8 targets (255 = ignored)."""
        logits = logits.float()
        mask = (target != IGNORE).float()
        y = (target == 1).float()
        w = self.weights.view(1, -1, 1, 1)
        if self.focal:
            per = sigmoid_focal(logits, y, self.gamma, self.alpha)
        else:
            per = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
        w = w * (1.0 + (self.pos_weights.view(1, -1, 1, 1) - 1.0) * y)
        loss = (per * mask * w).sum() / mask.sum().clamp_min(1.0)
        if self.dice_weight > 0:
            dice, counted = masked_dice(torch.sigmoid(logits), y, mask)
            if counted.any():
                loss = loss + self.dice_weight * (dice * self.weights)[counted].mean()
        return loss


__all__ = ["IGNORE", "MaskedMultiLabelLoss", "masked_dice", "sigmoid_focal"]
