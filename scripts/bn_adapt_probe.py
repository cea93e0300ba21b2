"""Score a bundle on the real scenes at several test-time BatchNorm adaptation weights (``--bn-adapt``).

For each weight W: burn-scar IoU of the six California crops (the bundle's thresholds), and the held-out numbers
of ``scripts/eval_real.py`` (Corumba rows >= 600, fire-free held-out land). Prints one JSON line per weight and
writes them all to ``--json``. This made the table of docs/training.md, "Test-time BatchNorm adaptation":

    python scripts/bn_adapt_probe.py --model runs/v4e/final.firemap.pt --weights 0,0.25,0.5,1 --json runs/probe.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import eval_real  # noqa: E402
import real_data  # noqa: E402
import train_default as td  # noqa: E402

from firemap.config import PredictConfig  # noqa: E402
from firemap.models import load_bundle  # noqa: E402
from firemap.train.config import SceneSource  # noqa: E402
from firemap.train.evaluate import evaluate_source  # noqa: E402

log = logging.getLogger("bn_adapt_probe")


def probe(model: str, weight: float, work: Path) -> dict[str, Any]:
    """Scores of ``model`` with ``bn_adapt = weight``."""
    bundle = load_bundle(None if model == "default" else model)
    bundle.config = bundle.config.model_copy(update={"bn_adapt": weight})
    out: dict[str, Any] = {"bn_adapt": weight}
    for crop in td.SCENES:
        src = SceneSource(**td._heldout(crop, td.DATA))
        out[crop] = evaluate_source(bundle, src, PredictConfig(device="cpu"), baselines=False).summary()[
            "burn_scar_iou"]
    recipe = real_data.load_recipe(real_data.RECIPE)
    for scene in real_data.scenes(recipe, work):
        r = eval_real.evaluate_scene(bundle, scene, recipe, work)
        h = r.get("heldout") or r["all"]
        out[scene.name] = ({"scar": h["scar"]["iou"], "scar_low": h["scar_low"]["iou"], "fire_f1": h["fire"]["f1"]}
                           if "scar" in h else
                           {"scar_pct": h["scar_pct_land"], "fire_out": h["fire_clusters"][0],
                            "smoke_pct": h["smoke_pct"]})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="default", help="bundle path or 'default' (the generic default)")
    p.add_argument("--weights", default="0,0.25,0.5,1", help="comma list of bn_adapt weights in [0, 1]")
    p.add_argument("--work", type=Path, default=REPO / "runs" / "bn_adapt_probe")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    rows = []
    for w in (float(x) for x in args.weights.split(",")):
        rows.append(probe(args.model, w, args.work))
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
