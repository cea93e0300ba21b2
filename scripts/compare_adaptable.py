"""Check that BatchNorm adaptation with torch alone predicts what the eager (smp) adaptation predicts.

For each real crop (../shared/data/s2_calfire by default) the bundle is adapted to the crop (``--bn-adapt``,
default the bundle's) twice: through smp (the eager network, as firemap did before the bundle carried its
BatchNorm-adaptable graphs) and with the bundle's exported :class:`firemap.export.AdaptableNetwork` (torch
alone). Prints the largest probability difference and the share of identical class pixels per crop. With
``--reference OLD``, also compares the folded exported networks (``--bn-adapt 0``) of OLD and the bundle: what
``firemap export --overwrite`` must leave unchanged when it re-exports a shipped bundle.

    python scripts/compare_adaptable.py                                   # the shipped default, batch 8
    python scripts/compare_adaptable.py --batch-size 2 --reference old.firemap.pt
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from firemap.config import PredictConfig  # noqa: E402
from firemap.models import Bundle, load_bundle  # noqa: E402
from firemap.predict import classify, iter_predictions  # noqa: E402
from firemap.raster import open_scene  # noqa: E402

CROPS = REPO.parent / "shared" / "data" / "s2_calfire" / "images"


def predict(path: Path, bundle: Bundle, cfg: PredictConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(probs (classes, rows, cols) float32, class raster (rows, cols) uint8)`` of one scene."""
    blocks = list(iter_predictions(open_scene(path), bundle, cfg))
    probs = np.concatenate([b.probs for b in blocks], axis=1)
    valid = np.concatenate([b.valid for b in blocks], axis=0)
    return probs, classify(probs, valid, bundle.config.classes, bundle.config.class_thresholds())[1]


def compare(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    return {"max_abs_prob_diff": float(np.abs(a[0] - b[0]).max()),
            "identical_class_pixels": float((a[1] == b[1]).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="bundle (default: the shipped generic default)")
    parser.add_argument("--reference", default=None, help="another export of the same weights (folded networks "
                        "compared at --bn-adapt 0)")
    parser.add_argument("--bn-adapt", type=float, default=None, help="adaptation weight (default: the bundle's)")
    parser.add_argument("--batch-size", type=int, default=8, help="tiles per batch (several batches: the "
                        "statistics are averaged over batches)")
    parser.add_argument("--crops", type=Path, default=CROPS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    cfg = PredictConfig(device="cpu", precision="fp32", batch_size=args.batch_size, bn_adapt=args.bn_adapt)
    fast = load_bundle(args.model, inference=True, keep_batchnorm=True)
    eager = load_bundle(args.model, inference=True, exported=False, keep_batchnorm=True)
    if fast.runtime != "torchscript-adaptable":
        raise SystemExit(f"{fast.path}: no BatchNorm-adaptable export (runtime {fast.runtime}); "
                         "add it with: firemap export MODEL --overwrite")
    folded = [load_bundle(m, inference=True, keep_batchnorm=False) for m in (args.model, args.reference)
              if args.reference]
    worst = {"max_abs_prob_diff": 0.0, "identical_class_pixels": 1.0}
    for path in sorted(args.crops.glob("*.tif")):
        row = {"crop": path.name, "adapted": compare(predict(path, fast, cfg), predict(path, eager, cfg))}
        if args.reference:
            plain = cfg.model_copy(update={"bn_adapt": 0.0})
            row["folded_vs_reference"] = compare(predict(path, folded[0], plain), predict(path, folded[1], plain))
        for key in ("adapted", "folded_vs_reference"):
            if key in row:
                worst["max_abs_prob_diff"] = max(worst["max_abs_prob_diff"], row[key]["max_abs_prob_diff"])
                worst["identical_class_pixels"] = min(worst["identical_class_pixels"],
                                                      row[key]["identical_class_pixels"])
        print(json.dumps(row))
    print(json.dumps({"worst": worst, "batch_size": args.batch_size, "model": str(fast.path)}))


if __name__ == "__main__":
    main()
