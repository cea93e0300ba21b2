#!/usr/bin/env python
"""Can a network resolve one-pixel fires? A small, controlled probe of the DeepLabv3+ variants against U-Net.

Every variant is trained from scratch with the same budget on the same synthetic 64 px tiles: a smooth random
reflectance background (six bands) with one-pixel hot spots whose swir2 (and half as much swir1) rise by
0.05-0.6 reflectance above it, labelled fire at exactly those pixels. Only the fire logit is trained (BCE with
fire positives weighted 10x, as in scripts/train_default.py). Reported on 96 fresh tiles: fire pixel F1 at 0.5
and fire object recall (hot spots with the pixel itself predicted). It isolates the architectural question of
issue 10 (does the decoder resolve single pixels?) at a cost the shared CPU can pay; the full recipe comparison
is scripts/compare_architectures.py.

Usage (from the repository root; a few minutes per variant on 2 loaded cores)::

    .venv/bin/python scripts/one_pixel_probe.py --steps 150 --json runs/one_pixel.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from firemap.config import ModelConfig  # noqa: E402
from firemap.models import build_model  # noqa: E402

VARIANTS: dict[str, dict[str, Any]] = {
    "deeplabv3plus-mobilenet_v2": {"encoder": "mobilenet_v2"},
    "deeplabv3plus-fr-mobilenet_v2": {"encoder": "mobilenet_v2", "refine": "full"},
    "unet-mobilenet_v2": {"arch": "unet", "encoder": "mobilenet_v2"},
    "deeplabv3plus-fr-sanet-mobilenet_v2": {"encoder": "mobilenet_v2", "refine": "full", "sanet": True},
    "deeplabv3plus-stride2-mobilenet_v2": {"encoder": "mobilenet_v2", "refine": "stride2"},
    "deeplabv3plus-fr-mg-resnet18": {"encoder": "resnet18", "refine": "full", "multi_grid": (1, 2, 4)},
}
SIZE = 64
BASE = np.array([0.04, 0.07, 0.05, 0.30, 0.20, 0.10], np.float32)


def tiles(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` synthetic tiles: ``(n, 6, 64, 64)`` normalized float32 and ``(n, 64, 64)`` uint8 fire labels."""
    smooth = ndimage.gaussian_filter(rng.normal(0, 1, (n, 6, SIZE, SIZE)), (0, 0, 4, 4)) * 0.4
    x = BASE[None, :, None, None] * (1 + smooth) + rng.normal(0, 0.01, (n, 6, SIZE, SIZE))
    y = np.zeros((n, SIZE, SIZE), np.uint8)
    for i in range(n):
        for _ in range(rng.poisson(4)):
            r, c = rng.integers(0, SIZE, 2)
            heat = rng.uniform(0.05, 0.6)
            x[i, 5, r, c] += heat
            x[i, 4, r, c] += heat / 2
            y[i, r, c] = 1
    x = (x - BASE[None, :, None, None]) / 0.05
    return x.astype(np.float32), y


def train_and_score(fields: dict[str, Any], steps: int, batch: int, seed: int) -> dict[str, Any]:
    cfg = ModelConfig(**{"decoder_channels": 64, "tile_size": SIZE, "overlap": 16, **fields})
    torch.manual_seed(seed)
    model = build_model(cfg)
    opt = torch.optim.AdamW(model.parameters(), 2e-3)
    rng = np.random.default_rng(seed)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(10.0))
    t0 = time.perf_counter()
    model.train()
    for step in range(steps):
        x, y = tiles(batch, rng)
        lr = 2e-3 * (1 - step / steps) ** 0.9  # poly schedule
        for group in opt.param_groups:
            group["lr"] = lr
        loss = loss_fn(model(torch.from_numpy(x))[:, 0], torch.from_numpy(y).float())
        opt.zero_grad()
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - t0
    x, y = tiles(96, np.random.default_rng(10_000))
    model.eval()
    with torch.inference_mode():
        pred = torch.sigmoid(model(torch.from_numpy(x))[:, 0]).numpy() >= 0.5
    tp, fp, fn = int((pred & (y == 1)).sum()), int((pred & (y == 0)).sum()), int((~pred & (y == 1)).sum())
    return {"fire_f1": 2 * tp / max(2 * tp + fp + fn, 1), "fire_precision": tp / max(tp + fp, 1),
            "fire_object_recall": tp / max(tp + fn, 1), "final_loss": round(float(loss.detach()), 4),
            "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2), "train_seconds": round(seconds)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=1, help="1 on a loaded machine: two OpenMP threads that wait "
                   "for each other at every barrier were 10x slower there")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma list (see VARIANTS)")
    p.add_argument("--json", type=Path, default=REPO / "runs" / "one_pixel.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    results = json.loads(args.json.read_text()) if args.json.exists() else {}
    for name in args.variants.split(","):
        if name not in results:
            results[name] = train_and_score(VARIANTS[name], args.steps, args.batch_size, args.seed)
            print(name, results[name], flush=True)
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=2))
    print("| model | fire F1 | fire precision | fire object recall | params (M) | train s |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['fire_f1']:.3f} | {r['fire_precision']:.3f} | {r['fire_object_recall']:.3f} | "
              f"{r['params_m']} | {r['train_seconds']} |")


if __name__ == "__main__":
    main()
