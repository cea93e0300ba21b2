"""How far can a single-date model get on Corumba's held-out burn-scar reference? A ceiling, measured.

The reference of issue 9's scar target is bi-temporal (dNBR > 0.27 between 2019-08-09 and 2019-08-25, pixels
already burnt on 08-09 unscored); every firemap model sees the post-fire image alone. This script fits a small
full-resolution CNN (five 3x3 convolutions, dilations 1-8, a 33 px receptive field, 32 channels) to that reference
from the post-fire bands only, in three ways, and prints the best burn-scar IoU over thresholds on rows >= 600:

* ``in-sample``: fitted on the held-out rows' own reference and scored on the same pixels (cheating: an upper
  bound for what post-fire reflectance in a 33 px window can explain);
* ``cross-fit``: fitted on the west half of the held-out rows, scored on the east half, and the other way round;
* ``training rows``: fitted on rows 0-535 (the rows stage 3 trains on), scored on the held-out rows;

and the best single NBR threshold on the held-out rows (also cheating). docs/training.md quotes its output.

    python scripts/scar_ceiling.py [--steps 1500]      # about 25 min on one core
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import rasterio
import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import real_data  # noqa: E402
from eval_real import binary_scores, read_bands  # noqa: E402

from firemap.indices import nbr  # noqa: E402
from firemap.models import default_bundle_path, load_bundle  # noqa: E402
from firemap.nets import conv_bn_relu  # noqa: E402
from firemap.predict import normalize_  # noqa: E402

NAMES = ("blue", "green", "red", "nir", "swir1", "swir2")


def network() -> nn.Module:
    """Five 3x3 conv-BN-ReLU layers (dilations 1, 2, 4, 8, 1) and a 1x1 logit, full resolution."""
    dilations = (1, 2, 4, 8, 1)
    layers = [conv_bn_relu(len(NAMES) if i == 0 else 32, 32, dilation=d) for i, d in enumerate(dilations)]
    return nn.Sequential(*layers, nn.Conv2d(32, 1, 1))


def fit(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, steps: int, seed: int = 0) -> np.ndarray:
    """Fit on the pixels of ``mask`` (random 64 px crops inside its bounding box); probabilities of the scene."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    model = network()
    opt = torch.optim.AdamW(model.parameters(), 2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps)
    rows, cols = np.nonzero(mask.numpy())
    t = 64
    for _ in range(steps):
        corners = [(rng.integers(rows.min(), rows.max() - t + 2), rng.integers(cols.min(), cols.max() - t + 2))
                   for _ in range(16)]
        xb = torch.stack([x[:, r:r + t, c:c + t] for r, c in corners])
        yb = torch.stack([y[r:r + t, c:c + t] for r, c in corners])
        mb = torch.stack([mask[r:r + t, c:c + t] for r, c in corners]).float()
        loss = (F.binary_cross_entropy_with_logits(model(xb)[:, 0], yb, reduction="none") * mb).sum()
        loss = loss / mb.sum().clamp(min=1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        return torch.sigmoid(model(x[None]))[0, 0].numpy()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    recipe = real_data.load_recipe()
    work = REPO / "runs" / "eval_real"
    scene = next(s for s in real_data.scenes(recipe, work) if s.name == "corumba_20190825")
    cor = recipe["corumba"]
    ref_path = real_data.corumba_labels(recipe, work / scene.name / "reference", scene.path,
                                        real_data.data_path(recipe, cor["pre"]), cor["reference_labels"])
    with rasterio.open(ref_path) as src:
        ref = src.read(3)  # bands fire / smoke / burn_scar
    bands, valid = read_bands(scene, NAMES)
    cfg = load_bundle(default_bundle_path("landsat8-l1")).config  # its normalization statistics
    assert cfg.bands == NAMES
    x = np.nan_to_num(normalize_(np.stack([bands[n] for n in NAMES]).astype(np.float32), cfg))
    x[:, ~valid] = 0
    ok, truth = valid & (ref != 255), ref == 1
    width = truth.shape[1]
    held = np.zeros_like(ok)
    held[int(cor["heldout_row"]):] = True
    train_rows = np.zeros_like(ok)
    train_rows[:real_data.train_rows(scene, recipe)[1]] = True

    def iou(pred: np.ndarray) -> float:
        return binary_scores(pred, ref, ok & held)["iou"]

    def best(prob: np.ndarray) -> str:
        score, thr = max((iou(prob >= t), t) for t in np.arange(0.05, 0.96, 0.05))
        return f"best IoU {score:.3f} (threshold {thr:.2f})"

    index = nbr(bands["nir"], bands["swir2"])
    score, thr = max((iou(index < t), t) for t in np.arange(-0.3, 0.41, 0.02))
    print(f"held-out rows: {int((truth & ok & held).sum())} scar px of {int((ok & held).sum())} scored")
    print(f"NBR < t, t chosen on the held-out rows: best IoU {score:.3f} (t = {thr:.2f})")
    image, target = torch.from_numpy(x), torch.from_numpy(truth.astype(np.float32))

    def fitted(rows: np.ndarray) -> np.ndarray:
        return fit(image, target, torch.from_numpy(ok & rows), args.steps)

    print("in-sample (fitted and scored on the held-out rows):", best(fitted(held)))
    west = held.copy()
    west[:, width // 2:] = False
    east = held & ~west
    on_west, on_east = fitted(east), fitted(west)  # each half is scored by the fit on the other
    print("cross-fit (west <-> east halves of the held-out rows):", best(np.where(west, on_west, on_east)))
    print("fitted on the training rows:", best(fitted(train_rows)))


if __name__ == "__main__":
    main()
