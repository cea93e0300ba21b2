"""Score bundles on fresh simulated scenes: fire F1 / precision / recall, burn-scar IoU, and the classic rules.

The scenes are written once to ``--out`` (the simulator of this tree, seeds ``--seed`` .. ``--seed + n - 1``) and
reused; each bundle is scored at its own thresholds, as ``firemap evaluate`` does.

    python scripts/eval_sim.py --sensor landsat8 --scenes 16 --seed 95000 firemap/assets/default-landsat.firemap.pt

docs/simulator.md ("Fires in cloud shadow") and docs/training.md quote this command's figures.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from firemap.config import PredictConfig
from firemap.models import load_bundle
from firemap.train.config import SimulatorSource
from firemap.train.data import simulated_scenes
from firemap.train.evaluate import evaluate_source

KEYS = ("fire_f1", "fire_precision", "fire_recall", "fire_object_recall", "burn_scar_iou",
        "baseline_fire_rules_fire_f1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="+", type=Path)
    parser.add_argument("--sensor", default="landsat8")
    parser.add_argument("--scenes", type=int, default=16)
    parser.add_argument("--size", type=int, default=384, help="scene size, pixels")
    parser.add_argument("--seed", type=int, default=95_000)
    parser.add_argument("--out", type=Path, default=None, help="scene folder (default runs/eval_sim_<sensor>_...)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out = args.out or Path("runs") / f"eval_sim_{args.sensor}_{args.scenes}x{args.size}_{args.seed}"
    src = SimulatorSource(sensor=args.sensor, name=f"evalsim-{args.sensor}", scenes=args.scenes,
                          scene_size=args.size)
    scenes = simulated_scenes(src, out, seed=args.seed)
    for path in args.bundles:
        summary = evaluate_source(load_bundle(path), scenes, PredictConfig(device="cpu")).summary()
        print(json.dumps({"bundle": str(path), **{k: round(summary[k], 3) for k in KEYS if k in summary}}))


if __name__ == "__main__":
    main()
