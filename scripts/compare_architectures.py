#!/usr/bin/env python
"""DeepLabv3+ vs U-Net with the same recipe, data and budget; writes the table into docs/benchmarks.md.

Each architecture is trained exactly like the default model (scripts/train_default.py) with a smaller budget:
simulator pretraining, then fine-tuning on the real Sentinel-2 burn-scar crops in two folds (three scenes held
out in each, so every real scene is scored once by a model that never saw it). Reported per architecture:

* IoU / F1 per class on fresh simulated hold-out scenes (Sentinel-2 and Landsat-8, all three classes labelled);
* burn-scar IoU / F1 on the six real crops, each predicted by the fold model that held it out (pixels pooled,
  and the mean of per-scene IoUs), next to the best single NBR threshold chosen in hindsight;
* parameters, CPU milliseconds per 256 px tile for inference (batch 8) and for a training step (batch 8).
* when ``../shared/data/real_scenes`` is present, the real scenes of other biomes scored by scripts/eval_real.py
  (Corumba's held-out rows against dNBR and the fire tests; % of land called burn scar and fire polygons on the
  fire-free scenes) with each row's second-fold model.

``--inference NAME[,NAME...]`` (after training; ``default`` = the shipped models) adds the DeepLab toolkit at
inference time: plain, flip, flip + multi-scale (0.75, 1, 1.25) and CRF, each on the simulated hold-outs, the
real Sentinel-2 folds (trained variants only) and the real scenes, scored as above.

Usage (from the repository root; ~10 min per architecture on 2 cores)::

    .venv/bin/python scripts/compare_architectures.py --out runs/compare
    .venv/bin/python scripts/compare_architectures.py --out runs/compare --archs NAME,... --inference NAME,default
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "scripts")]

import train_default as td  # noqa: E402

from firemap.config import ModelConfig, PredictConfig  # noqa: E402
from firemap.models import build_model, load_bundle  # noqa: E402
from firemap.train.config import SceneSource, SimulatorSource, train_config_from_dict  # noqa: E402
from firemap.train.data import simulated_scenes  # noqa: E402
from firemap.train.evaluate import EvalReport, evaluate_source  # noqa: E402
from firemap.train.loop import fit  # noqa: E402
from firemap.train.losses import MaskedMultiLabelLoss  # noqa: E402

log = logging.getLogger("compare")

ARCHS: dict[str, dict[str, Any]] = td.VARIANTS
FOLDS = (("FRENCH_20240704", "KENNETH_20250109", "LIDIA_20250108"),
         ("CAMPBELL_20241028", "CANAL_20240530", "DOVE_20241019"))
SECTION = "## Architecture comparison"
INFERENCE: dict[str, dict[str, Any]] = {
    "plain": {},
    "flip": {"tta": "flip"},
    "flip + scales 0.75,1,1.25": {"tta": "flip", "tta_scales": (0.75, 1.0, 1.25)},
    "CRF": {"crf": True},
}
"""Inference settings compared by ``--inference`` (PredictConfig fields)."""
REAL_SCENES = REPO.parent / "shared" / "data" / "real_scenes"
CORUMBA = "landsat8_corumba_2019/xlandsat__LC08_L1TP_227074_20190825_20200826_02_T1.tif"


def model_fields(name: str) -> dict[str, Any]:
    """The default model's fields with the architecture swapped."""
    return {**td.BASE_MODEL, **ARCHS[name]}


def stage1(name: str, args: argparse.Namespace) -> Path:
    cfg = td.stage1_config(args)
    cfg.update({"name": f"cmp-{name}-stage1", "model": model_fields(name), "out": str(args.out / name / "stage1"),
                "select_metric": "macro_iou"})
    cfg["data"]["val"] = []
    return fit(train_config_from_dict(cfg)).last


def fold_bundle(name: str, args: argparse.Namespace, k: int = len(FOLDS) - 1) -> Path:
    """The fine-tuned bundle of row ``name``'s fold ``k`` (default: the last fold, the row's model)."""
    return args.out / name / f"fold{k}" / "last.firemap.pt"


def stage2(name: str, args: argparse.Namespace, init: Path, fold: tuple[str, ...], k: int) -> Path:
    cfg = td.stage2_config(args, init, None, args.out / name / f"fold{k}")
    cfg["model"] = model_fields(name)
    cfg["data"]["train"][0]["exclude"] = list(fold)
    return fit(train_config_from_dict(cfg)).last


def _real(fold: tuple[str, ...], data: Path) -> SceneSource:
    return SceneSource(name="real", images=[str(data / "images" / f"{s}.tif") for s in fold],
                       masks=str(data / "masks"), labelled=["burn_scar"])


def score(name: str, args: argparse.Namespace, sims: dict[str, SceneSource]) -> dict[str, Any]:
    """Train one architecture and score it on the simulated and real hold-outs."""
    t0 = time.perf_counter()
    pre = stage1(name, args)
    pcfg = PredictConfig(device="cpu")
    real = EvalReport("real", name, ("fire", "smoke", "burn_scar"), ("burn_scar",))
    last = pre
    for k, fold in enumerate(FOLDS):
        last = stage2(name, args, pre, fold, k)
        real.scenes += evaluate_source(load_bundle(last), _real(fold, args.data), pcfg).scenes
    seconds = time.perf_counter() - t0
    out: dict[str, Any] = {"train_seconds": round(seconds), "real": real.summary()}
    bundle = load_bundle(last)
    for sensor, src in sims.items():
        out[f"sim_{sensor}"] = evaluate_source(bundle, src, pcfg, baselines=False).summary()
    out.update(timing(bundle.config, args.threads))
    return out


def real_scenes(model: Path | str, out: Path, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The real-scene scores of scripts/eval_real.py for one bundle (the same references as for the shipped
    models; no row of this script saw any of these scenes): Corumba 2019-08-25 on its scored rows (>= 600), burn
    scars against dNBR and fire against the unambiguous fire tests; each fire-free scene whole (every part it is
    split into summed): % of land called burn scar and fire polygons away from lava. ``model``: a bundle path or
    ``default`` (each scene's shipped default, as predict picks it); ``options``: predict options (TTA, CRF)."""
    import eval_real
    import real_data

    _, res = eval_real.evaluate(str(model), real_data.RECIPE, out / "eval_real", None, options)
    row: dict[str, Any] = {"fire_free": {}}
    for scene, r in res.items():
        if scene.startswith("_"):
            continue
        if "scar" in r.get("heldout", {}):
            h = r["heldout"]
            row["corumba"] = {"scar_iou": h["scar"]["iou"], "scar_nbr_iou": h["scar_nbr"]["iou"],
                              **{f"fire_{k}": h["fire"][k] for k in ("f1", "precision", "recall")}}
            continue
        parts = [r[k] for k in ("heldout", "train", "all") if k in r]
        land = sum(q["land_px"] for q in parts)
        scar = sum(q["scar_pct_land"] * q["land_px"] / 100 for q in parts)
        row["fire_free"][scene] = {"scar_pct_land": 100 * scar / max(land, 1),
                                   "fire_clusters": sum(q["fire_clusters"][0] for q in parts)}
    return row


def inference_rows(name: str, args: argparse.Namespace, sims: dict[str, SceneSource]) -> dict[str, Any]:
    """Each :data:`INFERENCE` setting on one trained variant (``default``: the shipped models)."""
    folds = [] if name == "default" else [fold_bundle(name, args, k) for k in range(len(FOLDS))]
    bundle = load_bundle(None if name == "default" else folds[-1])
    rows: dict[str, Any] = {}
    for label, options in INFERENCE.items():
        t0 = time.perf_counter()
        pcfg = PredictConfig(device="cpu", **options)
        row: dict[str, Any] = {f"sim_{s}": evaluate_source(bundle, src, pcfg, baselines=False).summary()
                               for s, src in sims.items()}
        if folds:
            real = EvalReport("real", name, ("fire", "smoke", "burn_scar"), ("burn_scar",))
            for fold, path in zip(FOLDS, folds, strict=True):
                real.scenes += evaluate_source(load_bundle(path), _real(fold, args.data), pcfg, baselines=False).scenes
            row["real"] = real.summary()
        if real_scenes_present():
            row["real_scenes"] = real_scenes("default" if name == "default" else folds[-1], args.out, options)
        row["seconds"] = round(time.perf_counter() - t0)
        rows[label] = row
        log.info("%s / %s: %s", name, label, row)
    return rows


def real_scenes_present() -> bool:
    """Whether ``../shared/data/real_scenes`` (the scenes of scripts/eval_real.py) is here."""
    return (REAL_SCENES / CORUMBA).exists()


def _ms_per_tile(fn: Any, batch: int, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return 1000 * best / batch


def timing(mc: ModelConfig, threads: int, batch: int = 8, size: int = 256,
           precisions: tuple[str, ...] = ("fp32", "bf16")) -> dict[str, Any]:
    """Parameters and best-of-3 CPU ms per tile (inference and training step), fp32 and/or bf16 autocast."""
    torch.set_num_threads(threads)
    model = build_model(mc).to(memory_format=torch.channels_last)
    x = torch.randn(batch, mc.in_channels, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (batch, len(mc.classes), size, size), dtype=torch.uint8)
    loss_fn = MaskedMultiLabelLoss([c.name for c in mc.classes])
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    out: dict[str, Any] = {"params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2)}
    for label, amp in (("fp32", None), ("bf16", torch.bfloat16)):
        if label not in precisions:
            continue
        def infer(amp: torch.dtype | None = amp) -> None:
            model.eval()
            with torch.inference_mode(), torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
                model(x)

        def step(amp: torch.dtype | None = amp) -> None:
            model.train()
            with torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
                logits = model(x)
            loss = loss_fn(logits.float(), y)
            opt.zero_grad()
            loss.backward()
            opt.step()

        out[f"infer_ms_{label}"] = round(_ms_per_tile(infer, batch, 3), 1)
        out[f"train_ms_{label}"] = round(_ms_per_tile(step, batch, 3), 1)
    return out


def _f(v: Any) -> str:
    return "-" if v is None or v != v else f"{v:.3f}"


def markdown(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    """The docs section."""
    out = args.out.resolve()
    shown = out.relative_to(REPO) if out.is_relative_to(REPO) else out
    argv = " ".join(a if a != str(args.out) else str(shown) for a in sys.argv[1:]) or f"--out {shown}"
    lines = [SECTION, "", f"Written by `python scripts/compare_architectures.py {argv}` on "
             f"{time.strftime('%Y-%m-%d')} ({platform.machine()}, {args.threads} CPU threads, torch "
             f"{torch.__version__}, no GPU; timings are the best of 3 and move by about 10% between runs).", "",
             f"Same recipe, data and budget for every row (the default model's recipe, scripts/train_default.py, "
             f"with {args.epochs1}x{args.steps1} pretraining steps and {args.epochs2}x{args.steps2} fine-tuning "
             f"steps per fold, batch {args.batch_size}, 256 px tiles, precision {args.precision}).", "",
             "**Real Sentinel-2 burn scars** (six CAL FIRE crops; two folds, each scene scored by the model that "
             "held it out; perimeters include unburned islands, so 1.0 is out of reach):", "",
             "| model | burn-scar IoU (pooled) | F1 | IoU, mean of scenes | best NBR threshold in hindsight, "
             "pooled / mean of scenes |", "|---|---|---|---|---|"]
    for name, r in results.items():
        s = r["real"]
        lines.append(f"| {name} | {_f(s.get('burn_scar_iou'))} | {_f(s.get('burn_scar_f1'))} | "
                     f"{_f(s.get('burn_scar_iou_scene_mean'))} | {_f(s.get('baseline_best_nbr_iou_pooled'))} / "
                     f"{_f(s.get('baseline_best_nbr_iou_scene_mean'))} |")
    lines += ["", f"**Simulated hold-out scenes** ({args.test_scenes} per sensor, 384 px, all classes labelled; "
              "IoU / F1):", "", "| model | sensor | fire | smoke | burn scar | fire object recall |",
              "|---|---|---|---|---|---|"]
    for name, r in results.items():
        for sensor in ("sentinel2", "landsat8"):
            s = r[f"sim_{sensor}"]
            cells = [f"{_f(s.get(f'{c}_iou'))} / {_f(s.get(f'{c}_f1'))}" for c in ("fire", "smoke", "burn_scar")]
            lines.append(f"| {name} | {sensor} | {' | '.join(cells)} | {_f(s.get('fire_object_recall'))} |")
    scored = {n: r["real_scenes"] for n, r in results.items() if "real_scenes" in r}
    if scored:
        free = sorted({s for r in scored.values() for s in r["fire_free"]})
        lines += ["", "**Real scenes of other biomes** (`../shared/data/real_scenes`, scored by scripts/eval_real.py "
                  "with the references of docs/real_scenes.md; each row's model is its second fold's, which saw "
                  "none of these scenes): Corumba 2019-08-25 rows >= 600, burn-scar IoU against dNBR (NBR < 0.1 "
                  "alone in brackets) and fire F1 / precision / recall against the unambiguous fire tests; on the "
                  "fire-free scenes, whole, % of land called burn scar and fire polygons away from lava:", "",
                  "| model | Corumba scar IoU | Corumba fire F1 / P / R | " + " | ".join(free) + " |",
                  "|---|---|---|" + "---|" * len(free)]
        for name, r in scored.items():
            c = r["corumba"]
            cells = [f"{r['fire_free'][s]['scar_pct_land']:.2f}% / {r['fire_free'][s]['fire_clusters']}"
                     if s in r["fire_free"] else "-" for s in free]
            lines.append(f"| {name} | {_f(c['scar_iou'])} ({_f(c['scar_nbr_iou'])}) | {_f(c['fire_f1'])} / "
                         f"{_f(c['fire_precision'])} / {_f(c['fire_recall'])} | {' | '.join(cells)} |")
    lines += ["", "**Cost** (256 px tiles, batch 8, channels-last; best of 3):", "",
              "| model | params (M) | inference ms/tile fp32 / bf16 | train step ms/tile fp32 / bf16 | "
              "training wall time (s) |", "|---|---|---|---|---|"]
    for name, r in results.items():
        c = {k: r.get(k, "-") for k in ("params_m", "infer_ms_fp32", "infer_ms_bf16", "train_ms_fp32",
                                        "train_ms_bf16", "train_seconds")}
        lines.append(f"| {name} | {c['params_m']} | {c['infer_ms_fp32']} / {c['infer_ms_bf16']} | "
                     f"{c['train_ms_fp32']} / {c['train_ms_bf16']} | {c['train_seconds']} |")
    timed = {r["timed"] for r in results.values() if r.get("timed")}
    if timed:
        lines += ["", "fp32 times re-measured for every row in one process, one after the other (`--retime`, "
                  f"{args.threads} thread(s); started {min(timed)}); bf16 times and wall times from each row's own "
                  "training run."]
    reused = [name for name, r in results.items() if r.get("reused")]
    if reused:
        lines += ["", f"Rows {', '.join(reused)}: from the run of 2026-11-21 (`--out runs/compare2`, same recipe, "
                  "data, budget and hold-out scenes; the script reuses rows already in its results.json)."]
        if len(reused) < len(results):
            lines[-1] += (" The other rows were run later on a shared, loaded machine: their wall and per-tile "
                          "times are inflated and only comparable among themselves.")
    return "\n".join(lines) + "\n"


def inference_markdown(rows: dict[str, dict[str, Any]]) -> str:
    """The inference-time toolkit table (flip, multi-scale, CRF)."""
    lines = ["", "**Inference-time toolkit** (the first 2 simulated hold-outs per sensor, `--inference-scenes 2`: "
             "fire F1 / fire object recall and burn-scar IoU; real Sentinel-2 burn-scar IoU pooled over the two "
             "folds; the real scenes scored by scripts/eval_real.py as in the table above: Corumba rows >= 600, "
             "fire F1 and burn-scar IoU; the fire-free scenes, the worst % of land called burn scar and all fire "
             "polygons away from lava; seconds for the whole row):", "",
             "| model | inference | S2 fire F1 / recall | L8 fire F1 / recall | S2 / L8 burn-scar IoU | real burn-scar "
             "IoU | Corumba fire F1 | Corumba scar IoU | fire-free worst scar % / fire polygons | s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, settings in rows.items():
        for label, r in settings.items():
            s2, l8 = r["sim_sentinel2"], r["sim_landsat8"]
            cor = r.get("real_scenes", {}).get("corumba", {})
            free = r.get("real_scenes", {}).get("fire_free", {}).values()
            worst = f"{max(f['scar_pct_land'] for f in free):.2f}% / {sum(f['fire_clusters'] for f in free)}" \
                if free else "-"
            lines.append(
                f"| {name} | {label} | {_f(s2.get('fire_f1'))} / {_f(s2.get('fire_object_recall'))} | "
                f"{_f(l8.get('fire_f1'))} / {_f(l8.get('fire_object_recall'))} | {_f(s2.get('burn_scar_iou'))} / "
                f"{_f(l8.get('burn_scar_iou'))} | {_f(r.get('real', {}).get('burn_scar_iou'))} | "
                f"{_f(cor.get('fire_f1'))} | {_f(cor.get('scar_iou'))} | {worst} | {r['seconds']} |")
    return "\n".join(lines) + "\n"


def write_section(text: str, path: Path) -> None:
    """Replace (or append) this script's ``## `` section of docs/benchmarks.md, leaving the others alone."""
    old = path.read_text() if path.exists() else "# firemap benchmarks\n"
    start = old.find(SECTION)
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        ends = [i for i in (old.find("\n## ", start + len(SECTION)), old.find("\n<!--", start)) if i >= 0]
        end = min(ends) if ends else -1  # the next section, or another script's marked section
        new = old[:start] + text + ("\n" + old[end + 1:] if end >= 0 else "")
    path.parent.mkdir(exist_ok=True)
    path.write_text(new)


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "runs" / "compare")
    p.add_argument("--data", type=Path, default=td.DATA)
    p.add_argument("--archs", default=",".join(ARCHS), help=f"comma list of {', '.join(ARCHS)}")
    p.add_argument("--epochs1", type=int, default=6)
    p.add_argument("--steps1", type=int, default=60)
    p.add_argument("--epochs2", type=int, default=3)
    p.add_argument("--steps2", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"], help=td.PRECISION_HELP)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-scenes", type=int, default=6)
    p.add_argument("--docs", type=Path, default=REPO / "docs" / "benchmarks.md")
    p.add_argument("--holdout", default=None, help=argparse.SUPPRESS)
    p.add_argument("--inference", default="", help="comma list of trained variants (or 'default') for the "
                   "inference-time rows (flip, multi-scale, CRF)")
    p.add_argument("--inference-scenes", type=int, default=2,
                   help="simulated hold-out scenes per sensor for the inference rows (the first N)")
    p.add_argument("--no-train", action="store_true", help="only rows already in results.json")
    p.add_argument("--retime", action="store_true",
                   help="re-measure the fp32 per-tile times of all rows together (comparable under one load)")
    return p.parse_args()


def retime(results: dict[str, Any], names: list[str], args: argparse.Namespace) -> None:
    """Re-measure the fp32 per-tile times of ``names`` one after the other in this process (``--retime``): rows
    trained at different times on a shared machine are timed under different loads; these are comparable."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    for name in names:
        mc = load_bundle(fold_bundle(name, args)).config
        results[name].update(timing(mc, args.threads, precisions=("fp32",)))
        results[name]["timed"] = f"{time.strftime('%Y-%m-%d %H:%M')} UTC, load before {load}"
        log.info("%s: %s ms per tile (fp32 inference)", name, results[name]["infer_ms_fp32"])


def main() -> None:
    args = parse()
    args.holdout = args.holdout or td.SCENES[0]  # stage-1 configs want one; stage 1 here validates on nothing
    args.variant = td.DEFAULT_VARIANT  # replaced per architecture by model_fields()
    args.keep_unreliable = True  # stage2() sets each fold's exclusions itself (the recipe of the first table)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    sims = {s: simulated_scenes(SimulatorSource(sensor=s, name=f"cmp-{s}", scenes=args.test_scenes, scene_size=384),
                                args.out / f"test_{s}", seed=70_000) for s in ("sentinel2", "landsat8")}
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    names = [n for n in args.archs.split(",") if n in results or not args.no_train]
    for name in names:
        if name not in results:
            results[name] = score(name, args, sims)
            results_path.write_text(json.dumps(results, indent=2))
    if args.retime:
        retime(results, names, args)
        results_path.write_text(json.dumps(results, indent=2))
    if real_scenes_present():
        for name in names:
            if "real_scenes" not in results[name]:
                results[name]["real_scenes"] = real_scenes(fold_bundle(name, args), args.out)
                results_path.write_text(json.dumps(results, indent=2))
    inference_path = args.out / "inference.json"
    inference = json.loads(inference_path.read_text()) if inference_path.exists() else {}
    few = {k: v.model_copy(update={"images": sorted(v.images)[:args.inference_scenes]}) for k, v in sims.items()}
    for name in filter(None, args.inference.split(",")):
        if name not in inference:
            inference[name] = inference_rows(name, args, few)
            inference_path.write_text(json.dumps(inference, indent=2))
    text = markdown({k: results[k] for k in names}, args)
    shown = [n for n in (*names, "default") if n in inference]
    if shown:
        text += inference_markdown({k: inference[k] for k in shown})
    write_section(text, args.docs)
    print(text)


if __name__ == "__main__":
    main()
