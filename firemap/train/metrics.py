"""Segmentation metrics pooled over pixels, per class, for multi-label masks with unlabelled elements.

Counts are accumulated over any number of blocks (tiles, row blocks, scenes) and metrics computed once at
the end, so "pooled" means every labelled pixel of every scene counts once. A class is *labelled* when at
least one of its pixels carries a label; macro means run over labelled classes only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from firemap.train.losses import IGNORE


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.maximum(den, 1), np.nan)


@dataclass
class Confusion:
    """Per-class pixel confusion counts.

    Attributes:
        classes: class names, in the order of the ``(classes, rows, cols)`` arrays passed to :meth:`update`.
        tp, fp, fn, tn: ``(classes,)`` int64 counts over labelled pixels.
    """

    classes: tuple[str, ...]
    tp: np.ndarray = field(init=False)
    fp: np.ndarray = field(init=False)
    fn: np.ndarray = field(init=False)
    tn: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.classes)
        self.tp, self.fp, self.fn, self.tn = (np.zeros(n, np.int64) for _ in range(4))

    def update(self, pred: np.ndarray, target: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Add a block.

        Args:
            pred: ``(classes, rows, cols)`` bool predicted masks.
            target: ``(classes, rows, cols)`` uint8: 1 present, 0 absent, 255 not labelled.
            valid: optional ``(rows, cols)`` bool; False pixels are skipped.
        """
        labelled = target != IGNORE
        if valid is not None:
            labelled &= valid[None]
        truth = target == 1
        axes = tuple(range(1, pred.ndim))
        self.tp += (pred & truth & labelled).sum(axes)
        self.fp += (pred & ~truth & labelled).sum(axes)
        self.fn += (~pred & truth & labelled).sum(axes)
        self.tn += (~pred & ~truth & labelled).sum(axes)

    def merge(self, other: Confusion) -> None:
        """Add another object's counts (same classes)."""
        for name in ("tp", "fp", "fn", "tn"):
            getattr(self, name).__iadd__(getattr(other, name))

    @property
    def labelled(self) -> np.ndarray:
        """``(classes,)`` bool: the class has labelled pixels."""
        return (self.tp + self.fp + self.fn + self.tn) > 0

    def iou(self) -> np.ndarray:
        """``(classes,)`` float IoU ``tp / (tp + fp + fn)``; NaN where undefined (nothing true nor predicted)."""
        return _ratio(self.tp, self.tp + self.fp + self.fn)

    def precision(self) -> np.ndarray:
        """``(classes,)`` float ``tp / (tp + fp)``; NaN where nothing was predicted."""
        return _ratio(self.tp, self.tp + self.fp)

    def recall(self) -> np.ndarray:
        """``(classes,)`` float ``tp / (tp + fn)``; NaN where nothing is true."""
        return _ratio(self.tp, self.tp + self.fn)

    def f1(self) -> np.ndarray:
        """``(classes,)`` float ``2 tp / (2 tp + fp + fn)``; NaN where undefined."""
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    def summary(self) -> dict[str, float]:
        """Flat metrics: ``<class>_{iou,f1,precision,recall}`` for labelled classes, ``macro_iou``, ``macro_f1``.

        Macro means are over labelled classes with a defined value.
        """
        out: dict[str, float] = {}
        per = {"iou": self.iou(), "f1": self.f1(), "precision": self.precision(), "recall": self.recall()}
        for k, name in enumerate(self.classes):
            if self.labelled[k]:
                out.update({f"{name}_{m}": float(v[k]) for m, v in per.items()})
        for m in ("iou", "f1"):
            values = per[m][self.labelled]
            out[f"macro_{m}"] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
        return out


def object_recall(truth: np.ndarray, pred: np.ndarray, connectivity: int = 2) -> tuple[int, int]:
    """Object-level recall: how many connected clusters of ``truth`` contain at least one ``pred`` pixel.

    Args:
        truth: ``(rows, cols)`` bool true mask (e.g. active fire).
        pred: ``(rows, cols)`` bool predicted mask.
        connectivity: 1 = 4-connected, 2 = 8-connected clusters.

    Returns:
        ``(hit, total)`` cluster counts.
    """
    structure = ndimage.generate_binary_structure(2, connectivity)
    labels, total = ndimage.label(truth, structure=structure)
    if total == 0:
        return 0, 0
    hit = np.unique(labels[pred & truth])
    return int((hit > 0).sum()), int(total)


def mean_of(values: Sequence[float]) -> float:
    """Mean of the finite values, NaN when there are none."""
    arr = np.asarray([v for v in values if np.isfinite(v)], dtype=np.float64)
    return float(arr.mean()) if arr.size else float("nan")


__all__ = ["Confusion", "mean_of", "object_recall"]
