"""Measure the rules on the real Sentinel-2 crops and on simulated scenes; write the numbers into docs/rules.md.

Usage: ``.venv/bin/python scripts/rules_real_data.py`` (needs ``../shared/data/s2_calfire``). Rewrites the block
between ``<!-- measured:begin -->`` and ``<!-- measured:end -->`` of ``docs/rules.md``; everything runs through
``firemap.label`` (the same code as ``firemap label`` / ``firemap indices``).
"""

from __future__ import annotations

import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio

from firemap.indices import dnbr_severity
from firemap.label import label_config, label_scene, write_indices

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "s2_calfire"
DOC = ROOT / "docs" / "rules.md"
BEGIN, END = "<!-- measured:begin -->", "<!-- measured:end -->"
THRESHOLDS = (0.1, 0.0, -0.05, -0.09)


def read1(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def burned(labels: Path) -> np.ndarray:
    with rasterio.open(labels) as src:
        return src.read(3) == 1  # band 3 = burn_scar


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def single_date(tmp: Path) -> list[str]:
    lines = ["| scene | " + " | ".join(f"NBR < {t}" for t in THRESHOLDS) + " |", "|---" * (len(THRESHOLDS) + 1) + "|"]
    scores = []
    for scene in sorted((DATA / "images").glob("*.tif")):
        perimeter = read1(DATA / "masks" / scene.name).astype(bool)
        row = []
        for t in THRESHOLDS:
            out = tmp / f"{scene.stem}_{t}"
            result = label_scene(scene, out, label_config(nbr_threshold=t, smoke=False))
            row.append(iou(burned(result.outputs["labels"]), perimeter))
        scores.append(row)
        lines.append(f"| {scene.stem} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    lines.append("| **mean** | " + " | ".join(f"**{v:.3f}**" for v in np.mean(scores, axis=0)) + " |")
    return lines


def nbr_contrast(path: Path, perimeter: np.ndarray) -> float:
    with rasterio.open(path) as src:
        nir = src.read(list(src.descriptions).index("B8") + 1)
        swir2 = src.read(list(src.descriptions).index("B12") + 1)
    nbr = (nir - swir2) / (nir + swir2)
    return float(np.median(nbr[perimeter]) - np.median(nbr[~perimeter]))


def kenneth(tmp: Path) -> tuple[list[str], float]:
    folder = DATA / "kenneth_pre_post"
    named_pre, named_post = folder / "KENNETH_20250109_pre_fire.tif", folder / "KENNETH_20250109_post_fire.tif"
    perimeter = read1(folder / "KENNETH_20250109_mask.tif").astype(bool)
    lines = ["| file | median NBR inside minus outside the perimeter |", "|---|---|"]
    for f in (named_pre, named_post):
        lines.append(f"| {f.name} | {nbr_contrast(f, perimeter):+.3f} |")
    lines += ["", "| `--pre-fire` scene | post-fire scene | burned (dNBR >= 0.1) IoU with the perimeter |",
              "|---|---|---|"]
    measured = {}
    for pre, post in ((named_pre, named_post), (named_post, named_pre)):
        result = label_scene(post, tmp / f"k_{post.stem}", label_config(smoke=False), pre_fire=pre)
        measured[post.name] = iou(burned(result.outputs["labels"]), perimeter)
        lines.append(f"| {pre.name} | {post.name} | {measured[post.name]:.3f} |")
    post = named_pre if nbr_contrast(named_pre, perimeter) < nbr_contrast(named_post, perimeter) else named_post
    pre = named_post if post == named_pre else named_pre
    dnbr = read1(write_indices(post, tmp / "kd", ["dnbr"], pre_fire=pre)["dnbr"])
    classes = dnbr_severity(dnbr)
    inside = np.bincount(classes[perimeter], minlength=8)[1:8] / perimeter.sum()
    outside = np.bincount(classes[~perimeter], minlength=8)[1:8] / (~perimeter).sum()
    lines += ["", f"Severity classes (evidence order, pre = {pre.name}), share of pixels:", "",
              "| | regrowth high | regrowth low | unburned | low | mod-low | mod-high | high |", "|---" * 8 + "|",
              "| inside perimeter | " + " | ".join(f"{v:.3f}" for v in inside) + " |",
              "| outside | " + " | ".join(f"{v:.3f}" for v in outside) + " |"]
    return lines, measured[post.name]


def simulated_check(seeds: tuple[int, ...] = (0, 1, 2, 3), size: int = 512) -> list[str]:
    """Each rule on simulated scenes against their exact fire labels (the simulator check of the issue)."""
    from firemap.indices import nbr_burn_scar, smoke_mask
    from firemap.rules import RULES, combine
    from firemap.simulate import simulate_scene

    lines = ["| sensor | rule | class pixels found (recall) | false alarms | precision |", "|---|---|---|---|---|"]
    for sensor, rules in (("landsat8", ("schroeder", "murphy", "kumar-roy")), ("sentinel2", ("sentinel2",))):
        hits: dict[str, list[int]] = {}
        for seed in seeds:
            scene = simulate_scene(sensor, size, size, seed=seed, clouds="some")
            bands = dict(zip(scene.bands, scene.physical, strict=False))
            masks = {r: (RULES[r](bands, scene.valid), 0) for r in rules}
            if len(rules) > 1:
                masks["voting (2 of 3)"] = (combine([m for m, _ in masks.values()], "voting"), 0)
            masks["smoke_mask (smoke)"] = (smoke_mask(bands["blue"], bands["swir2"], bands["nir"]) & scene.valid, 1)
            masks["NBR < -0.05 (burn scar)"] = (nbr_burn_scar(bands["nir"], bands["swir2"]) & scene.valid, 2)
            for name, (m, k) in masks.items():
                truth = scene.labels[k] == 1
                counts = hits.setdefault(name, [0, 0, 0])
                counts[0] += int((m & truth).sum())
                counts[1] += int((m & ~truth).sum())
                counts[2] += int(truth.sum())
        for name, (tp, fp, total) in hits.items():
            lines.append(f"| {sensor} | {name} | {tp}/{total} ({tp / max(total, 1):.2f}) | {fp} | "
                         f"{tp / max(tp + fp, 1):.2f} |")
    lines += ["", f"{len(seeds)} simulated {size}x{size} scenes per sensor (seeds {', '.join(map(str, seeds))}, "
              "clouds 'some'); truth = the simulator's exact labels (fire: emission >= its 2.2 um radiance threshold)."]
    return lines


def timing(tmp: Path, size: int = 2048) -> str:
    from firemap.simulate import simulate_scene, write_scene

    path, _ = write_scene(simulate_scene("landsat8", size, size, seed=0), tmp / "timing_l8.tif")
    t0 = time.perf_counter()
    label_scene(path, tmp / "timing", label_config(sensor="landsat8-l1"))
    seconds = time.perf_counter() - t0
    return (f"`firemap label` (schroeder + murphy + kumar-roy, voting; smoke; NBR; vectors) on a simulated "
            f"{size}x{size} Landsat-8 L1 scene: {seconds:.1f} s ({size * size / seconds / 1e6:.2f} Mpx/s), "
            f"block 512, halo 31; {platform.machine()}, Python {sys.version.split()[0]}, 2 cores.")


def main() -> None:
    if not DATA.is_dir():
        sys.exit(f"{DATA} not found")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        table = single_date(tmp)
        kenneth_lines, kenneth_iou = kenneth(tmp)
        simulated = simulated_check()
        speed = timing(tmp)
    block = "\n".join([
        BEGIN, "", f"Measured by `scripts/rules_real_data.py` on {time.strftime('%Y-%m-%d')}.", "",
        "### Single-date NBR burn scar vs CAL FIRE perimeters (IoU, 6 Sentinel-2 L2A crops)", "", *table, "",
        "### KENNETH pre/post pair (dNBR)", "", *kenneth_lines, "",
        f"**KENNETH burned-area IoU: {kenneth_iou:.3f}** (dNBR >= 0.1, pair in the order the images support).", "",
        "### Rules on simulated scenes (the simulator check)", "", *simulated, "", "### Speed", "", speed, "", END,
    ])
    text = DOC.read_text()
    start, stop = text.index(BEGIN), text.index(END) + len(END)
    DOC.write_text(text[:start] + block + text[stop:])
    print(block)


if __name__ == "__main__":
    main()
