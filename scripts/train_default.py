#!/usr/bin/env python
"""Reproduce firemap's shipped default model end to end on CPU.

Stage 1 pretrains a U-Net with a mobilenet_v2 encoder (the architecture that won
scripts/compare_architectures.py: DeepLabv3+ predicts at stride 4 and misses most single-pixel fires; see
docs/benchmarks.md) on the physically based simulator (Sentinel-2 and Landsat-8 scenes with exact fire / smoke /
burn-scar labels). Stage 2 fine-tunes it on the real Sentinel-2 burn-scar crops of ``../shared/data/s2_calfire``
(burn_scar labelled only: fire and smoke get no gradient from them) mixed with simulator tiles that keep fire and
smoke alive. One real scene is held out
(``--holdout``, default FRENCH_20240704): it is never trained on, and the shipped model is the *last* stage-2
checkpoint, not one selected on it, so its held-out score is unbiased.

The real crops carry red/green/blue (TCI), nir (B8) and swir2 (B12) but no swir1: the model treats swir1 as
optional (band dropout during training plus a band-presence input channel).

After training, the fire probability threshold is calibrated on fresh simulated scenes (seed 70000, not the test
scenes, see :func:`calibrate_fire_threshold`) and stored in the bundle's config; ``--threshold fire=P`` still
overrides it at predict time.

Stage 3 (the default, without ``--legacy``) reads ``configs/default_model.yaml``: it fine-tunes the v2 bundle
(stages 1-2, taken from git) on real scenes - Corumba's northern rows with partial labels from ``firemap label``,
fire-free crops, the California crops - mixed with the simulator, calibrates the burn-scar threshold on the training
crops only, and measures the held-out real scenes with ``scripts/eval_real.py`` (see docs/training.md).
Stage 4 (the recipe's ``fire_head`` section) adds a full-resolution fire head to the stage-3 network and trains
only it, on the same mixture in small tiles (docs/training.md, "A full-resolution fire head").
``--install-for`` picks the default built: the recipe's ``defaults`` section of that name is merged over it
(``generic``: stage 3 retrains only the fire output of v2, see the recipe; ``landsat``: the recipe as written).

Usage (from the repository root)::

    .venv/bin/python scripts/train_default.py --out runs/v9 --install-for landsat [--install]  # the Landsat default
    .venv/bin/python scripts/train_default.py --out runs/g10 [--install]          # the generic (Sentinel-2) default
    .venv/bin/python scripts/train_default.py --out runs/v3 --reuse-stage3 runs/v3/stage3/last.firemap.pt
    .venv/bin/python scripts/train_default.py --legacy --out runs/default   # v2: ~40 min (--install: as the generic)
    .venv/bin/python scripts/train_default.py --legacy --out runs/default \
        --reuse-stage2 runs/default/stage2/last.firemap.pt --training-seconds 2400  # calibrate + evaluate only
    .venv/bin/python scripts/train_default.py --out runs/cv --cv --reuse-stage1 runs/default/stage1/last.firemap.pt
    .venv/bin/python scripts/train_default.py --legacy --out runs/default --resume \
        --training-seconds 3000  # continue an interrupted run (the seconds spent before it)

``--cv`` runs leave-one-scene-out fine-tuning over the real crops not in ``UNRELIABLE`` (report only, nothing is
installed) and prints the mean held-out burn-scar IoU next to that of NBR < -0.05.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import rasterio
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from firemap.config import ModelConfig, PredictConfig  # noqa: E402
from firemap.models import DEFAULT_BUNDLES, load_bundle, save_bundle, sensor_family  # noqa: E402
from firemap.train.config import SceneSource, SimulatorSource, train_config_from_dict  # noqa: E402
from firemap.train.data import simulated_scenes  # noqa: E402
from firemap.train.evaluate import EvalReport, evaluate_source, evaluate_thresholds  # noqa: E402
from firemap.train.loop import STATE_FILE, fit  # noqa: E402
from firemap.transfer import init_bundle_config  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import eval_real  # noqa: E402
import real_data  # noqa: E402

log = logging.getLogger("train_default")

DATA = REPO.parent / "shared" / "data" / "s2_calfire"
UNRELIABLE = {
    "KENNETH_20250109": "acquired on the ignition day before the fire started (docs/rules.md): its fire-perimeter "
                        "mask does not describe the image",
}
"""Real crops whose mask contradicts the image: left out of training and of the cross-validation
(``--keep-unreliable`` keeps them)."""
SCENES = ("CAMPBELL_20241028", "CANAL_20240530", "DOVE_20241019", "FRENCH_20240704", "KENNETH_20250109",
          "LIDIA_20250108")
VARIANTS: dict[str, dict[str, Any]] = {
    "deeplabv3plus-mobilenet_v2": {"arch": "deeplabv3plus", "encoder": "mobilenet_v2", "output_stride": 16,
                                   "decoder_channels": 128},
    "deeplabv3plus-resnet18": {"arch": "deeplabv3plus", "encoder": "resnet18", "decoder_channels": 128},
    "unet-resnet18": {"arch": "unet", "encoder": "resnet18"},
    "unet-mobilenet_v2": {"arch": "unet", "encoder": "mobilenet_v2", "decoder_channels": 128},
    # firemap's DeepLabv3+ variants (firemap/nets.py): full-resolution refinement, with SANet, with ResNet
    # multi-grid (resnet18's last block has two units: rates 1x2 and 2x2 at output stride 16)
    "deeplabv3plus-fr-mobilenet_v2": {"arch": "deeplabv3plus", "encoder": "mobilenet_v2", "output_stride": 16,
                                      "decoder_channels": 128, "refine": "full"},
    "deeplabv3plus-fr-sanet-mobilenet_v2": {"arch": "deeplabv3plus", "encoder": "mobilenet_v2",
                                            "output_stride": 16, "decoder_channels": 128, "refine": "full",
                                            "sanet": True},
    "deeplabv3plus-fr-mg-resnet18": {"arch": "deeplabv3plus", "encoder": "resnet18", "output_stride": 16,
                                     "decoder_channels": 128, "refine": "full", "multi_grid": [1, 2, 4]},
}
"""Architectures the scripts know (``--variant``); the default model is ``DEFAULT_VARIANT``."""
DEFAULT_VARIANT = "unet-mobilenet_v2"
BASE_MODEL: dict[str, Any] = {
    "bands": ["blue", "green", "red", "nir", "swir1", "swir2"], "optional_bands": ["swir1"],
    "band_presence": True, "tile_size": 256, "overlap": 64,
}
MODEL: dict[str, Any] = {**BASE_MODEL, **VARIANTS[DEFAULT_VARIANT]}
LOSS: dict[str, Any] = {"class_weights": {"fire": 2.0}, "pos_weights": {"fire": 10.0}}
"""Fire positives weigh 10x in BCE: fires are mostly single pixels, and without it the network learns to hedge
(measured on simulated hold-out scenes, U-Net/mobilenet_v2, 360 steps: fire F1 0.50 -> 0.81)."""
PRECISION_HELP = ("training autocast: auto = fp16 on CUDA, fp32 on CPU; bf16 pays only on CPUs with native bf16 "
                  "(AVX512-BF16/AMX): on an AVX2 CPU it is emulated, 8314 vs 925 ms fp32 per tile per training "
                  "step (DeepLabv3+ refine=full, batch 8, 1 thread; docs/benchmarks.md, compare_architectures.py)")
SIM_S2 = {"kind": "simulator", "sensor": "sentinel2", "pool_scenes": 24, "pool_size": 384}
SIM_L8 = {"kind": "simulator", "sensor": "landsat8", "pool_scenes": 16, "pool_size": 384}


def _real(holdout: str | None, data: Path, weight: float, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"kind": "scenes", "name": "s2_calfire", "images": str(data / "images"), "masks": str(data / "masks"),
            "mask_values": {"burn_scar": [1]}, "labelled": ["burn_scar"],
            "exclude": ([holdout] if holdout else []) + list(exclude), "weight": weight}


def unreliable(args: argparse.Namespace) -> tuple[str, ...]:
    """The real crops to leave out of training (none with ``--keep-unreliable``)."""
    return () if args.keep_unreliable else tuple(sorted(UNRELIABLE))


def _heldout(holdout: str, data: Path) -> dict[str, Any]:
    return {"kind": "scenes", "name": "real_heldout", "images": [str(data / "images" / f"{holdout}.tif")],
            "masks": str(data / "masks"), "labelled": ["burn_scar"]}


def stage1_config(args: argparse.Namespace) -> dict[str, Any]:
    """Simulator pretraining."""
    return {
        "name": "firemap-default-stage1", "model": {**BASE_MODEL, **VARIANTS[args.variant]},
        "data": {"train": [{**SIM_S2, "weight": 0.6}, {**SIM_L8, "weight": 0.4}],
                 "val": [{"kind": "simulator", "name": "sim-s2", "sensor": "sentinel2", "scenes": 3,
                          "scene_size": 320}, _heldout(args.holdout, args.data)],
                 "tile_size": 256, "batch_size": args.batch_size, "oversample": {"fire": 0.3, "burn_scar": 0.15},
                 "stats_tiles": 48},
        "augment": {"saturate_visible": 0.3, "band_dropout": 0.3},
        "optim": {"lr": 2e-3, "warmup_steps": 30},
        "loss": LOSS,
        "epochs": args.epochs1, "steps_per_epoch": args.steps1, "seed": args.seed, "device": "cpu",
        "precision": args.precision, "threads": args.threads, "out": str(args.out / "stage1"),
        "overwrite": True, "select_metric": "sim-s2/macro_iou",
    }


def stage2_config(args: argparse.Namespace, init: Path, holdout: str | None, out: Path) -> dict[str, Any]:
    """Fine-tuning on the real crops (one held out) plus simulator tiles."""
    val = [_heldout(holdout, args.data)] if holdout else []
    return {
        "name": "firemap-default", "model": {**BASE_MODEL, **VARIANTS[args.variant]}, "init": str(init),
        "data": {"train": [_real(holdout, args.data, 0.6, unreliable(args)),
                           {**SIM_S2, "weight": 0.25, "pool_scenes": 16}, {**SIM_L8, "weight": 0.15, "pool_scenes": 8}],
                 "val": val, "tile_size": 256, "batch_size": args.batch_size,
                 "oversample": {"fire": 0.3, "burn_scar": 0.2}},
        "augment": {"saturate_visible": 0.3, "band_dropout": 0.3},
        "optim": {"lr": 5e-4, "encoder_lr_mult": 0.3, "warmup_steps": 10},
        "loss": LOSS,
        "epochs": args.epochs2, "steps_per_epoch": args.steps2, "seed": args.seed + 1, "device": "cpu",
        "precision": args.precision, "threads": args.threads, "out": str(out), "overwrite": True,
    }


def _summary(report: EvalReport) -> dict[str, Any]:
    keys = ("burn_scar_iou", "burn_scar_f1", "burn_scar_precision", "burn_scar_recall", "burn_scar_iou_scene_mean",
            "fire_iou", "fire_f1", "fire_object_recall", "smoke_iou", "smoke_f1", "macro_iou",
            "predicted_fire_objects", "baseline_nbr_burn_scar_iou", "baseline_best_nbr_iou_pooled",
            "baseline_best_nbr_threshold_pooled", "baseline_best_nbr_iou_scene_mean",
            "baseline_fire_rules_fire_f1")
    s = report.summary()
    out = {k: s[k] for k in keys if k in s}
    fire_free = [sc for sc in report.scenes if "fire" in report.labelled and sc.fire_objects[1] == 0]
    if fire_free:
        out["fire_free_scenes"] = len(fire_free)
        out["fire_objects_on_fire_free_scenes"] = sum(sc.predicted_fire_objects for sc in fire_free)
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}


FIRE_THRESHOLDS = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9)
"""Candidate fire probability thresholds for :func:`calibrate_fire_threshold`."""


def choose_fire_threshold(table: dict[str, dict[str, Any]]) -> float:
    """The rule of :func:`calibrate_fire_threshold` on its table (threshold text -> ``fire_f1``, ``false_objects``):
    the lowest threshold without a false fire object whose pooled simulated fire F1 is within 0.03 of the best;
    else the one with the fewest false objects (the best F1 among those)."""
    best_f1 = max(v["fire_f1"] for v in table.values())
    quiet = [float(t) for t, v in table.items() if v["false_objects"] == 0 and v["fire_f1"] >= best_f1 - 0.03]
    if quiet:
        return min(quiet)
    return float(min(table, key=lambda t: (table[t]["false_objects"], -table[t]["fire_f1"])))


def calibrate_fire_threshold(bundle_path: Path, args: argparse.Namespace,
                             real: list[SceneSource] | None = None) -> tuple[float, dict[str, Any]]:
    """Pick the fire threshold stored in the bundle, on simulated calibration scenes (not the test scenes) and,
    when given, real training sources whose fire labels are 0 away from hot spots (``real``: false fire objects
    are counted on them, outside their unlabelled pixels).

    Rule: the lowest candidate that predicts no false fire object (fire-free simulated scenes, ``real``), unless it
    costs more than 0.03 pooled simulated fire F1 against the best candidate; otherwise the candidate with the
    fewest false objects (the best F1 among those). False fire alarms are what users notice first (a fire polygon
    on a quiet scene), and single-pixel fires keep most of their F1 at higher thresholds because the network is
    confident on them.
    """
    bundle = load_bundle(bundle_path)
    sources = [
        simulated_scenes(SimulatorSource(sensor=sensor, name=f"calib-{sensor}", scenes=args.calib_scenes,
                                         scene_size=384), args.out / f"calib_{sensor}", seed=70_000 + args.seed)
        for sensor in ("sentinel2", "landsat8")
    ]
    pcfg = PredictConfig(device="cpu")
    candidates = [{"fire": t} for t in FIRE_THRESHOLDS]  # each scene predicted once, scored per threshold
    sim = [evaluate_thresholds(bundle, src, pcfg, candidates) for src in sources]
    on_real = {src.name: evaluate_thresholds(bundle, src, pcfg, candidates) for src in real or ()}
    table: dict[str, Any] = {}
    for i, t in enumerate(FIRE_THRESHOLDS):
        reports = [per_source[i] for per_source in sim]
        pooled = reports[0].pooled()
        for r in reports[1:]:
            pooled.merge(r.pooled())
        fire_f1 = float(pooled.f1()[pooled.classes.index("fire")])
        false_objects = sum(sc.predicted_fire_objects for r in reports for sc in r.scenes if sc.fire_objects[1] == 0)
        real_false = {name: per_source[i].summary()["predicted_fire_objects"] for name, per_source in on_real.items()}
        table[f"{t:g}"] = {"fire_f1": round(fire_f1, 4), "false_objects": false_objects + sum(real_false.values()),
                           "false_objects_simulated": false_objects, "false_objects_real": real_false}
        log.info("calibration fire threshold %.2f: %s", t, table[f"{t:g}"])
    chosen = choose_fire_threshold(table)
    log.info("calibrated fire threshold: %.2f", chosen)
    return chosen, {"fire_threshold": chosen, "candidates": table, "scenes_per_sensor": args.calib_scenes,
                    "seed": 70_000 + args.seed}


def with_config(bundle_path: Path, updates: dict[str, Any], out: Path) -> Path:
    """Copy a bundle with some of its config's fields replaced (calibrated thresholds, ``bn_adapt``)."""
    bundle = load_bundle(bundle_path)
    config = bundle.config.model_copy(update=updates)
    save_bundle(out, bundle.model, type(config).model_validate(config.model_dump()), bundle.provenance,
                overwrite=True)
    return out


def final_metrics(bundle_path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Held-out real scene, all real scenes (fire false alarms), fresh simulated test scenes per sensor."""
    bundle = load_bundle(bundle_path)
    pcfg = PredictConfig(device="cpu")
    out: dict[str, Any] = {}
    out["real_heldout"] = _summary(evaluate_source(bundle, SceneSource(**_heldout(args.holdout, args.data)), pcfg))
    everything = SceneSource(**{**_real(None, args.data, 1.0), "name": "real_all"})
    out["real_all_6_fire_objects"] = evaluate_source(bundle, everything, pcfg).summary()["predicted_fire_objects"]
    for sensor in ("sentinel2", "landsat8"):
        sim = SimulatorSource(sensor=sensor, name=f"simtest-{sensor}", scenes=args.test_scenes, scene_size=384)
        src = simulated_scenes(sim, args.out / f"test_{sensor}", seed=90_000 + args.seed)
        out[f"sim_test_{sensor}"] = _summary(evaluate_source(bundle, src, pcfg))
    return out


def resumed(cfg: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """``cfg`` set to continue its run folder (``--resume``, when the folder holds a resume state of
    :func:`firemap.train.fit`: a stage interrupted after an epoch continues there, a finished one is reused)."""
    if args.resume and (Path(cfg["out"]) / STATE_FILE).is_file():
        log.info("resuming %s", cfg["out"])
        return {**cfg, "resume": True, "overwrite": False}
    return cfg


def train(cfg: dict[str, Any], args: argparse.Namespace) -> Path:
    """Run one training stage (resumed with ``--resume``); the path of its last bundle."""
    return fit(train_config_from_dict(resumed(cfg, args))).last


def reproduce_command(args: argparse.Namespace) -> str:
    """The command that rebuilds this run from scratch (the options of this one, without the --reuse-* shortcuts
    and a fire threshold given by hand; a burn-scar threshold given by hand stays, it replaces the calibration)."""
    parts = ["python scripts/train_default.py", f"--out {args.out}"]
    if args.legacy:
        parts.append("--legacy")
    parts.append(f"--variant {args.variant}")
    if args.bn_adapt is not None:
        parts.append(f"--bn-adapt {args.bn_adapt:g}")
    if getattr(args, "no_stage3", False):
        parts.append("--no-stage3")
    if getattr(args, "scar_threshold", None) is not None:
        parts.append(f"--scar-threshold {args.scar_threshold:g}")
    parts += [f"--precision {args.precision}", f"--threads {args.threads}", f"--calib-scenes {args.calib_scenes}",
              f"--test-scenes {args.test_scenes}",
              "--install", f"--install-for {args.install_for}"]
    return " ".join(parts)


def install(bundle_path: Path, metrics: dict[str, Any], args: argparse.Namespace, seconds: float | None,
            extra: dict[str, Any] | None = None) -> Path:
    """Write the final bundle with its provenance and metrics into firemap/assets."""
    bundle = load_bundle(bundle_path)
    provenance = dict(bundle.provenance)
    provenance.update({
        "name": "firemap-default" + ("" if args.install_for == "generic" else f"-{args.install_for}"),
        "heldout_real_scene": args.holdout, "metrics": metrics,
        "reproduce": reproduce_command(args),
        "training_seconds": round(seconds) if seconds is not None else None,
        "machine": f"{torch.get_num_threads()} CPU threads, no GPU",
        "real_data": "shared/data/s2_calfire (Copernicus Sentinel-2 L2A crops, CAL FIRE perimeters; "
                     "Runan-Duan/Wildfire_Detection data_example)",
        "real_scenes_left_out": {k: UNRELIABLE[k] for k in unreliable(args)},
        **(extra or {}),
    })
    # record data paths relative to the repository, not this machine's absolute paths
    text = json.dumps(provenance).replace(str(args.data.resolve()), "../shared/data/s2_calfire")
    text = text.replace(str((REPO.parent / "shared" / "data").resolve()), "../shared/data")
    provenance = json.loads(text.replace(str(REPO), "."))
    target = REPO / "firemap" / "assets" / DEFAULT_BUNDLES[args.install_for]
    target.parent.mkdir(exist_ok=True)
    save_bundle(target, bundle.model, bundle.config, provenance, overwrite=True)
    log.info("installed %s (%.1f MB)", target, target.stat().st_size / 1e6)
    return target


def init_bundle(recipe: dict[str, Any], out: Path) -> Path:
    """The recipe's ``init`` bundle, copied to ``out``: ``{git_commit, path}`` extracts it from git history (the
    shipped v2 model: stages 1-2), ``{path}`` alone is a bundle file (relative to the repository root)."""
    spec = recipe["init"]
    out.parent.mkdir(parents=True, exist_ok=True)
    if "git_commit" in spec:
        blob = subprocess.run(["git", "-C", str(REPO), "show", f"{spec['git_commit']}:{spec['path']}"],
                              check=True, capture_output=True).stdout
    else:
        blob = (REPO / spec["path"]).read_bytes()
    out.write_bytes(blob)
    return out


def real_negatives(real: list[dict[str, Any]]) -> list[SceneSource]:
    """The sources of :func:`real_sources` whose fire labels are 0 away from hot spots (the fire-free scenes'
    training rows and the California training crops; not Corumba): where :func:`calibrate_fire_threshold` counts
    false fire objects."""
    return [SceneSource(**src) for src in real if src["name"] != "corumba_north"]


def real_sources(recipe: dict[str, Any], work: Path, data: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Training sources on real scenes, built under ``work``: crops (VRT windows) and their labels.

    Returns:
        ``(sources, provenance)``: TrainConfig source dicts and which scene trained what (rows).
    """
    weights, cor = recipe["finetune"]["real"], recipe["corumba"]
    folder = work / "real_train"
    all_scenes = real_data.scenes(recipe, work)
    rows = real_data.train_rows(all_scenes[0], recipe)
    assert rows is not None
    post = real_data.crop_vrt(real_data.data_path(recipe, cor["post"]), folder / "corumba_north.vrt", rows)
    pre = real_data.crop_vrt(real_data.data_path(recipe, cor["pre"]), folder / "pre" / "corumba_north.vrt", rows)
    real_data.corumba_labels(recipe, folder, post, pre, cor["train_labels"])
    sources = [{"kind": "scenes", "name": "corumba_north", "images": [str(post)], "mask_format": "bands",
                "labelled": ["fire", "burn_scar"], "sensor": cor["sensor"], "weight": weights["corumba"]}]
    trained: dict[str, Any] = {"corumba_20190825": f"rows {rows[0]}-{rows[1] - 1} (partial labels)"}
    negatives = [(sc, r) for sc in all_scenes[1:] if (r := real_data.train_rows(sc, recipe)) is not None]
    for scene, r in negatives:
        crop = real_data.crop_vrt(scene.path, folder / f"{scene.name}.vrt", r)
        real_data.negative_labels(scene, crop, folder)
        sources.append({"kind": "scenes", "name": scene.name, "images": [str(crop)], "mask_format": "bands",
                        "labelled": ["fire", "burn_scar"], "sensor": scene.sensor, "bands": scene.bands,
                        "weight": weights["fire_free"] / len(negatives)})
        trained[scene.name] = f"rows {r[0]}-{r[1] - 1} of {scene.height} (negatives)"
    s2 = weights["s2_calfire"]
    names = [n for n in SCENES if n != s2["holdout"] and n not in s2.get("exclude", ())]
    masks = real_data.california_labels(data, names, folder / "california")
    images = [str(data / "images" / f"{n}.tif") for n in names]
    sources.append({"kind": "scenes", "name": "s2_calfire", "images": images, "masks": str(masks),
                    "mask_format": "bands", "labelled": ["fire", "burn_scar"],
                    "weight": s2["weight"]})
    trained["s2_calfire"] = (f"all crops except {s2['holdout']} (held out) and {', '.join(s2.get('exclude', []))}; "
                             "burn scar from the perimeters, fire 0 away from bright SWIR2")
    return sources, trained


def finetune_config(recipe: dict[str, Any], init: Path, out: Path, real: list[dict[str, Any]]) -> dict[str, Any]:
    """Stage 3 TrainConfig dict: the recipe's ``finetune.config`` with model, init, out and real sources."""
    cfg = copy.deepcopy(recipe["finetune"]["config"])
    cfg["data"]["train"] = real + cfg["data"]["train"]
    model = {**MODEL, **recipe["finetune"].get("model", {})}  # the recipe may swap the architecture
    cfg.update({"model": model, "init": str(init), "out": str(out)})
    return cfg


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` deep-merged in (mappings merge key by key; anything else is replaced)."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def recipe_for(recipe: dict[str, Any], target: str) -> dict[str, Any]:
    """The recipe of one shipped default (a key of :data:`DEFAULT_BUNDLES`): the recipe's ``defaults[target]``
    section deep-merged over the rest (lists replaced whole); a target without a section gets the recipe as
    written."""
    base = {k: v for k, v in recipe.items() if k != "defaults"}
    return _merged(base, (recipe.get("defaults") or {}).get(target, {}))


def fire_head_config(
    recipe: dict[str, Any], stage3: dict[str, Any], init: Path, out: Path
) -> dict[str, Any] | None:
    """Stage 4 TrainConfig dict (the recipe's ``fire_head``), or None when the recipe has none.

    Stage 3's config with the recipe's overrides merged in, its simulator pools ``pool_scale`` times larger, the
    model given a ``fire_head`` and only that head trained (``train_only``) from the stage-3 bundle ``init``.
    """
    spec = recipe.get("fire_head")
    if not spec:
        return None
    cfg = _merged(stage3, spec.get("config", {}))
    for src in cfg["data"]["train"]:
        if src.get("kind") == "simulator":
            pool = src.get("pool_scenes", SimulatorSource.model_fields["pool_scenes"].default)
            src["pool_scenes"] = int(pool * spec.get("pool_scale", 1))
    cfg.update({"model": {**stage3["model"], **spec["model"]}, "init": str(init), "out": str(out),
                "train_only": ["fire_head"]})
    return cfg


SCAR_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
"""Candidate burn-scar probability thresholds for :func:`calibrate_scar_threshold`."""
MAX_FALSE_SCAR_PCT = 0.5
"""Calibration limit: % of fire-free land called burn scar on every fire-free training crop."""


def _crop_scene(folder: Path, scene: real_data.Scene, name: str) -> real_data.Scene:
    with rasterio.open(folder / f"{name}.vrt") as src:
        shape = src.height, src.width
    return real_data.Scene(name, folder / f"{name}.vrt", scene.sensor, scene.bands, scene.split, scene.role, *shape)


def calibrate_scar_threshold(bundle_path: Path, recipe: dict[str, Any], work: Path,
                             data: Path = DATA) -> tuple[float, dict[str, Any]]:
    """Pick the burn-scar threshold on the training crops only (never on held-out rows).

    Rule: the best mean of two burn-scar IoUs, on the Corumba training rows (against their partial labels) and on
    the California training crops (pooled; two biomes, two kinds of scar: fresh char and older brown scars),
    among the candidates that call at most :data:`MAX_FALSE_SCAR_PCT` % of land burn scar on every fire-free
    training crop; the highest candidate if none does. (The first version used Corumba alone and chose 0.7,
    the highest candidate, which cost the held-out California crop 0.07 IoU against 0.5.)
    """
    bundle = load_bundle(bundle_path)
    k = [c.name for c in bundle.config.classes].index("burn_scar")
    folder = work / "real_train"
    all_scenes = real_data.scenes(recipe, work)
    cor = _crop_scene(folder, all_scenes[0], "corumba_north")
    probs, valid = eval_real.predict_probs(bundle, cor)
    with rasterio.open(folder / "corumba_north.labels.tif") as src:
        ref = src.read(3)
    negatives = []
    for scene in all_scenes[1:]:
        if real_data.train_rows(scene, recipe) is None:
            continue
        crop = _crop_scene(folder, scene, scene.name)
        p, v = eval_real.predict_probs(bundle, crop)
        bands, _ = eval_real.read_bands(crop, ("green", "nir"))
        negatives.append((scene.name, p[k], v & ~eval_real.water_mask(bands)))
    s2 = recipe["finetune"]["real"]["s2_calfire"]
    california = SceneSource(**_real(s2["holdout"], data, 1.0, tuple(s2.get("exclude", ()))))
    on_california = evaluate_thresholds(bundle, california, PredictConfig(device="cpu"),
                                        [{"burn_scar": t} for t in SCAR_THRESHOLDS])
    table: dict[str, Any] = {}
    for t, ca_report in zip(SCAR_THRESHOLDS, on_california, strict=True):
        iou = eval_real.binary_scores((probs[k] >= t) & valid, ref, valid)["iou"]
        ca = ca_report.summary()["burn_scar_iou"]
        pct = {n: 100 * float(((p >= t) & land).sum()) / max(int(land.sum()), 1) for n, p, land in negatives}
        table[f"{t:g}"] = {"corumba_train_iou": round(iou, 4), "california_train_iou": round(ca, 4),
                           "mean_iou": round((iou + ca) / 2, 4), "max_false_pct": round(max(pct.values()), 3),
                           "worst": max(pct, key=lambda n: pct[n])}
        log.info("calibration burn_scar threshold %.2f: %s", t, table[f"{t:g}"])
    quiet = [float(t) for t, v in table.items() if v["max_false_pct"] <= MAX_FALSE_SCAR_PCT]
    chosen = max(quiet, key=lambda t: table[f"{t:g}"]["mean_iou"]) if quiet else max(SCAR_THRESHOLDS)
    log.info("calibrated burn_scar threshold: %.2f", chosen)
    return chosen, {"burn_scar_threshold": chosen, "candidates": table, "max_false_pct": MAX_FALSE_SCAR_PCT,
                    "data": "training crops only: Corumba rows < 536 (partial labels), the California training crops, "
                            "fire-free training crops"}


def cross_validate(args: argparse.Namespace, stage1: Path) -> dict[str, Any]:
    """Leave-one-scene-out fine-tuning over the usable real crops; mean held-out burn-scar IoU, with the training
    BatchNorm statistics and, with ``--bn-adapt W``, also adapted to each held-out crop as predict runs it."""
    results: dict[str, Any] = {}
    adapted: dict[str, Any] = {}
    for scene in (s for s in SCENES if s not in unreliable(args)):
        r = fit(train_config_from_dict(resumed(stage2_config(args, stage1, scene, args.out / f"cv_{scene}"), args)))
        source = SceneSource(**_heldout(scene, args.data))
        results[scene] = _summary(evaluate_source(load_bundle(r.last), source, PredictConfig(device="cpu")))
        log.info("CV %s: %s", scene, results[scene])
        if args.bn_adapt:
            pcfg = PredictConfig(device="cpu", bn_adapt=args.bn_adapt)
            adapted[scene] = _summary(evaluate_source(load_bundle(r.last), source, pcfg))
            log.info("CV %s, BatchNorm adapted (%g): %s", scene, args.bn_adapt, adapted[scene])
    ious = [r["burn_scar_iou"] for r in results.values()]
    nbr = [r.get("baseline_nbr_burn_scar_iou", float("nan")) for r in results.values()]
    out = {"per_scene": results, "mean_burn_scar_iou": sum(ious) / len(ious),
           "mean_nbr_default_iou": sum(nbr) / len(nbr)}
    if adapted:
        out[f"per_scene_bn_adapt_{args.bn_adapt:g}"] = adapted
        out[f"mean_burn_scar_iou_bn_adapt_{args.bn_adapt:g}"] = (
            sum(r["burn_scar_iou"] for r in adapted.values()) / len(adapted))
    return out


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "runs" / "default")
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--holdout", default="FRENCH_20240704", choices=SCENES)
    p.add_argument("--variant", default=DEFAULT_VARIANT, choices=list(VARIANTS))
    p.add_argument("--epochs1", type=int, default=12)
    p.add_argument("--steps1", type=int, default=80)
    p.add_argument("--epochs2", type=int, default=6)
    p.add_argument("--steps2", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"], help=PRECISION_HELP)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-scenes", type=int, default=8)
    p.add_argument("--calib-scenes", type=int, default=24, help="simulated scenes per sensor for calibration")
    p.add_argument("--reuse-stage1", type=Path, default=None, help="skip pretraining, start from this bundle")
    p.add_argument("--reuse-stage2", type=Path, default=None,
                   help="skip all training: calibrate, evaluate (and --install) this fine-tuned bundle")
    p.add_argument("--training-seconds", type=float, default=None,
                   help="seconds already spent on a reused stage (--reuse-stage1/2), added to the provenance")
    p.add_argument("--keep-unreliable", action="store_true",
                   help=f"train and cross-validate on {', '.join(UNRELIABLE)} too (see UNRELIABLE)")
    p.add_argument("--install", action="store_true", help="write the bundle into firemap/assets (see --install-for)")
    p.add_argument("--install-for", default="generic", choices=list(DEFAULT_BUNDLES),
                   help="which shipped default to build (the recipe's `defaults` section of that name is merged "
                        "over it) and, with --install, replace: " + ", ".join(
                       f"{k} = {v}" for k, v in DEFAULT_BUNDLES.items()))
    p.add_argument("--bn-adapt", type=float, default=None,
                   help="test-time BatchNorm adaptation weight written into the bundle before calibration "
                        "(firemap/adapt.py; default: the recipe's bn_adapt, 0 with --legacy)")
    p.add_argument("--resume", action="store_true",
                   help="continue the stages an interrupted run of the same command left in --out (each stage "
                        "resumes after its last finished epoch; finished stages are reused)")
    p.add_argument("--cv", action="store_true", help="leave-one-scene-out fine-tuning report instead")
    p.add_argument("--recipe", type=Path, default=real_data.RECIPE, help="YAML recipe of the real-scene stage")
    p.add_argument("--legacy", action="store_true",
                   help="the v2 recipe (stages 1-2 only: simulator pretraining + California fine-tuning)")
    p.add_argument("--fire-threshold", type=float, default=None,
                   help="use this fire threshold instead of calibrating one (recipe path)")
    p.add_argument("--scar-threshold", type=float, default=None,
                   help="use this burn-scar threshold instead of calibrating one (recipe path)")
    start = p.add_mutually_exclusive_group()  # where stage 4 starts when stage 3 is not trained here
    start.add_argument("--no-stage3", action="store_true",
                       help="recipe path without the real-scene stage: stage 4 adds the fire head to the recipe's "
                            "init bundle (v2, the generic default's network)")
    start.add_argument("--reuse-stage3", type=Path, default=None,
                       help="skip stage-3 training: start from this bundle (stage 4 adds the recipe's fire "
                            "head unless it has one), calibrate, evaluate (and --install)")
    return p.parse_args()


def main() -> None:
    args = parse()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if not (args.data / "images").is_dir():
        sys.exit(f"real data not found at {args.data}; pass --data")
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.legacy and not args.cv:
        return run_recipe(args)
    t0 = time.perf_counter()
    stage1 = args.reuse_stage1 or args.reuse_stage2 or train(stage1_config(args), args)
    log.info("stage 1 done after %.0f s: %s", time.perf_counter() - t0, stage1)
    if args.cv:
        cv = cross_validate(args, stage1)
        (args.out / "cv.json").write_text(json.dumps(cv, indent=2))
        print(json.dumps({k: v for k, v in cv.items() if k != "per_scene"}, indent=2))
        return
    if args.reuse_stage2:
        last, seconds = args.reuse_stage2, args.training_seconds
    else:
        last = train(stage2_config(args, stage1, args.holdout, args.out / "stage2"), args)
        seconds = time.perf_counter() - t0 + (args.training_seconds or 0.0)
        log.info("training done after %.0f s", seconds)
    if args.bn_adapt:  # calibrate and score the network as predict will run it
        last = with_config(last, {"bn_adapt": args.bn_adapt}, args.out / "adapted.firemap.pt")
    if args.fire_threshold is not None:
        fire_threshold = args.fire_threshold
        calibration = {"fire_threshold": fire_threshold, "note": "given with --fire-threshold, not recalibrated"}
    else:
        fire_threshold, calibration = calibrate_fire_threshold(last, args)
    final = with_config(last, {"thresholds": {"fire": fire_threshold}}, args.out / "final.firemap.pt")
    metrics = final_metrics(final, args)
    metrics["calibration"] = calibration
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps(metrics, indent=2))
    if args.install:
        install(final, metrics, args, seconds)
        shutil.copy(args.out / "metrics.json", args.out / "installed_metrics.json")


def real_scene_metrics(bundle_path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The held-out real-scene numbers of ``scripts/eval_real.py`` (Corumba rows >= 600, fire-free held-out land)."""
    t0 = time.perf_counter()
    bundle, results = eval_real.evaluate(str(bundle_path), args.recipe, args.out / "eval_real", args.out / "img")
    (args.out / "eval_real.json").write_text(json.dumps(results, indent=2, default=str))
    command = f"python scripts/eval_real.py --model {bundle_path}"
    (args.out / "real_scenes.md").write_text(eval_real.report(str(bundle_path), bundle, results, real_data.load_recipe(
        args.recipe), time.perf_counter() - t0, command))
    held = results["corumba_20190825"]["heldout"]
    out: dict[str, Any] = {
        "corumba_heldout_rows": held["rows"], "burn_scar_iou": held["scar"]["iou"],
        "burn_scar_precision": held["scar"]["precision"], "burn_scar_recall": held["scar"]["recall"],
        "baseline_nbr_0.1_burn_scar_iou": held["scar_nbr"]["iou"], "fire_f1": held["fire"]["f1"],
        "fire_precision": held["fire"]["precision"], "fire_recall": held["fire"]["recall"],
        "baseline_rules_fire_f1": held["fire_rules"]["f1"],
    }
    free = {n: r["heldout"] for n, r in results.items() if not n.startswith("_") and n != "corumba_20190825"
            and "heldout" in r}
    own = [r for n, r in free.items() if sensor_family(results[n]["sensor"]) == args.install_for]
    out["fire_free_max_burn_scar_pct_land"] = max(r["scar_pct_land"] for r in free.values())  # every scene
    if own:  # the scenes predict routes to this default (--install-for): what its users see
        out[f"fire_free_max_burn_scar_pct_land_{args.install_for}_scenes"] = max(r["scar_pct_land"] for r in own)
        out[f"fire_free_fire_polygons_outside_lava_{args.install_for}_scenes"] = sum(r["fire_clusters"][0]
                                                                                   for r in own)
    out["fire_free_fire_polygons_outside_lava"] = sum(r["fire_clusters"][0] for r in free.values())
    out["fire_free_fire_polygons_on_lava"] = sum(r["fire_clusters"][1] for r in free.values())
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


def run_recipe(args: argparse.Namespace) -> None:
    """Stage 3 from the YAML recipe on top of the v2 bundle, then calibration, metrics and install."""
    recipe = recipe_for(real_data.load_recipe(args.recipe), args.install_for)
    done = args.out / "metrics.json"
    if args.install and args.reuse_stage3 and done.exists() and "real_scenes" in json.loads(done.read_text()):
        install(args.out / "final.firemap.pt", json.loads(done.read_text()), args, args.training_seconds,
                _recipe_provenance(recipe, args))  # everything measured already: install only
        return
    init = init_bundle(recipe, args.out / "init.firemap.pt")
    real, trained = real_sources(recipe, args.out, args.data)
    (args.out / "trained_on.json").write_text(json.dumps(trained, indent=2))
    t0 = time.perf_counter()
    cfg = finetune_config(recipe, init, args.out / "stage3", real)
    if args.reuse_stage3:
        last, seconds = args.reuse_stage3, args.training_seconds
    elif args.no_stage3:  # the generic default: v2's network (the recipe's init) with the fire head
        last, seconds = init, args.training_seconds
    else:
        (args.out / "stage3_config.json").write_text(json.dumps(cfg, indent=2))
        last = train(cfg, args)
        seconds = time.perf_counter() - t0
        log.info("stage 3 done after %.0f s", seconds)
    head = fire_head_config(recipe, cfg, last, args.out / "stage4")
    # stage 4: the full-resolution fire head on the stage-3 network (unless that bundle has one already)
    new_head = head is not None and not (init_bundle_config(str(last)) or {}).get("fire_head")
    if new_head:
        t4 = time.perf_counter()
        (args.out / "stage4_config.json").write_text(json.dumps(head, indent=2))
        last = train(head, args)
        seconds = (seconds or 0.0) + time.perf_counter() - t4
        log.info("stage 4 (fire head) done after %.0f s", time.perf_counter() - t4)
    adapt = args.bn_adapt if args.bn_adapt is not None else float(recipe.get("bn_adapt", 0.0))
    if adapt:  # calibrate and score the network as predict will run it
        last = with_config(last, {"bn_adapt": adapt}, args.out / "adapted.firemap.pt")
    previous = args.out / "metrics.json"
    if args.fire_threshold is not None:  # given (e.g. the init bundle's calibrated value): not recalibrated
        fire_threshold = args.fire_threshold
        calibration = {"fire_threshold": fire_threshold, "note": "given with --fire-threshold, not recalibrated"}
    elif (args.reuse_stage3 and not new_head and previous.exists()
          and "calibration" in json.loads(previous.read_text())):
        # the same network as the previous run in --out (no head trained now): its fire threshold does not depend
        # on the burn-scar one, reuse it
        calibration = json.loads(previous.read_text())["calibration"]
        fire_threshold = calibration["fire_threshold"]
    else:
        fire_threshold, calibration = calibrate_fire_threshold(last, args, real_negatives(real))
    given = recipe.get("thresholds", {}).get("burn_scar")
    if args.scar_threshold is not None:  # given by hand
        scar_threshold = args.scar_threshold
        scar_calibration = {"burn_scar_threshold": scar_threshold, "note": "given with --scar-threshold"}
    elif given is not None:  # the recipe's (the generic default's 0.5, chosen on the California training crops)
        scar_threshold = float(given)
        scar_calibration = {"burn_scar_threshold": scar_threshold, "note": "the recipe's thresholds.burn_scar"}
    else:
        scar_threshold, scar_calibration = calibrate_scar_threshold(last, recipe, args.out, args.data)
    final = with_config(last, {"thresholds": {"fire": fire_threshold, "burn_scar": scar_threshold}},
                        args.out / "final.firemap.pt")
    metrics = final_metrics(final, args)
    metrics["calibration"] = calibration
    metrics["calibration_burn_scar"] = scar_calibration
    metrics["real_scenes"] = real_scene_metrics(final, args)
    metrics["trained_on"] = trained
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps(metrics, indent=2))
    if args.install:
        install(final, metrics, args, seconds, _recipe_provenance(recipe, args))


def _recipe_provenance(recipe: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    ft = recipe["finetune"]["config"]
    only = f", {', '.join(ft['train_only'])} only" if ft.get("train_only") else ""
    weights = ft.get("loss", {}).get("class_weights", {})
    if any(w == 0 for w in weights.values()):
        only += ", loss on " + ", ".join(c for c, w in weights.items() if w > 0) + " only"
    head = recipe.get("fire_head")
    stage4 = (f"; 4: a {head['model']['fire_head']}-channel full-resolution fire head (gate "
              f"{head['model'].get('fire_gate', ModelConfig.model_fields['fire_gate'].default):g}), "
              f"{head['config']['epochs']} x {head['config']['steps_per_epoch']} steps, only the head trained"
              ) if head else ""
    return {
        "recipe": f"configs/default_model.yaml (defaults.{args.install_for} merged in, if any)",
        "reproduce": f"{reproduce_command(args)}  (recipe {args.recipe.name})",
        "stages": "1-2: the shipped v2 model (simulator pretraining 12 x 80 steps, California Sentinel-2 fine-tuning "
                  f"6 x 60 steps; git {recipe['init']['git_commit']}), not rerun; 3: real-scene fine-tuning "
                  f"{ft['epochs']} x {ft['steps_per_epoch']} steps{only} (Corumba rows < 536 partial labels, "
                  f"fire-free training crops, California crops, simulator with the new landscapes){stage4}",
        "real_data": "../shared/data: s2_calfire (Copernicus Sentinel-2 L2A crops, CAL FIRE perimeters; "
                     "Runan-Duan/Wildfire_Detection data_example); real_scenes (Landsat-8/Sentinel-2 scenes, see "
                     "configs/default_model.yaml for which rows trained)",
    }


if __name__ == "__main__":
    main()
