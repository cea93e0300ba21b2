"""Compare simulated scenes with the real scenes of ../shared/data/real_scenes, in pictures and per-class band
statistics, and write the tables into docs/simulator.md (section ``sim_vs_real``) and the pictures into
docs/img/sim_vs_real_*.png.

    .venv/bin/python scripts/sim_vs_real.py            # tables + pictures (a few minutes on one core)
    .venv/bin/python scripts/sim_vs_real.py --no-figures

Each real scene is paired with simulated scenes of the same kind of product and landscape (Landsat-8 L1 TOA for
the L1 scenes, HLS surface reflectance for the Landsat L2SP ones, Sentinel-2 L2A for the Sentinel-2 tile and
chip). Real classes come from simple references (below, one function each); simulated classes from the exact
simulated fields. Needs ../shared/data/real_scenes; exits with a message without it.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import re  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from bench_simulate import replace_section  # noqa: E402  (scripts/: the same docs/simulator.md sections)

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "simulator.md"
IMG = ROOT / "docs" / "img"
REAL = ROOT.parent / "shared" / "data" / "real_scenes"
BANDS = ("blue", "green", "red", "nir", "swir1", "swir2")

Stack = dict[str, np.ndarray]  # canonical band -> (rows, cols) reflectance


# ----------------------------------------------------------------------------------------------- real scenes


def read_stack(path: Path) -> tuple[Stack, np.ndarray]:
    """A real multi-band stack as reflectance (GDAL scale/offset applied), by canonical band; and its valid mask."""
    with rasterio.open(path) as src:
        raw = src.read().astype(np.float32)
        names = [src.tags(i + 1).get("STANDARD_NAME", d or "") for i, d in enumerate(src.descriptions)]
        phys = raw * np.array(src.scales, np.float32)[:, None, None] + np.array(src.offsets, np.float32)[:, None, None]
    valid = (raw != 0).all(axis=0)
    return {n: phys[i] for i, n in enumerate(names) if n in BANDS}, valid


def read_s2_tile(folder: Path) -> tuple[Stack, np.ndarray]:
    """The Sentinel-2 L2A tile (one COG per band at 100/200 m here) on its 200 m SWIR grid, DN / 10000."""
    files = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08", "swir1": "B11", "swir2": "B12"}
    out: Stack = {}
    for band, name in files.items():
        with rasterio.open(folder / f"{name}.tif") as src:
            a = src.read(1).astype(np.float32) / 10000.0
        if a.shape[0] > 600:  # 100 m band: average 2 x 2 onto the 200 m grid
            a = a[: a.shape[0] // 2 * 2, : a.shape[1] // 2 * 2].reshape(a.shape[0] // 2, 2, a.shape[1] // 2, 2)
            a = a.mean(axis=(1, 3))
        out[band] = a
    valid = np.logical_and.reduce([v > 0 for v in out.values()])
    return out, valid


def read_ashdod(path: Path) -> tuple[Stack, np.ndarray]:
    """The Sentinel-2 L2A chip (12 bands B01-B08, B8A, B09, B11, B12; DN / 10000)."""
    with rasterio.open(path) as src:
        a = src.read().astype(np.float32) / 10000.0
    index = {"blue": 1, "green": 2, "red": 3, "nir": 7, "swir1": 10, "swir2": 11}
    return {b: a[i] for b, i in index.items()}, (a > 0).all(axis=0)


def nbr(x: Stack) -> np.ndarray:
    """Normalized burn ratio (nir - swir2) / (nir + swir2)."""
    return (x["nir"] - x["swir2"]) / (x["nir"] + x["swir2"] + 1e-6)


def schroeder_unambiguous(x: Stack) -> np.ndarray:
    """Schroeder et al. (2016) Eq. 1, the unambiguous fire test (no coastal band needed):
    rho7/rho5 > 2.5 and rho7 - rho5 > 0.3 and rho7 > 0.5 (TOA reflectance)."""
    r5, r7 = x["nir"], x["swir2"]
    return (r7 / np.maximum(r5, 1e-6) > 2.5) & (r7 - r5 > 0.3) & (r7 > 0.5)


def corumba_classes() -> tuple[Stack, dict[str, np.ndarray]]:
    """Corumba 2019-08-25 (L1 TOA). char: dNBR (08-09 -> 08-25) > 0.27 and NBR < 0.2; fire: Schroeder Eq. 1;
    older scar: NBR < 0.1 on 08-09 (burnt before); vegetation: NBR > 0.3 and dNBR < 0.1; not fire."""
    folder = REAL / "landsat8_corumba_2019"
    post, valid = read_stack(next(folder.glob("*20190825*.tif")))
    pre, valid_pre = read_stack(next(folder.glob("*20190809*.tif")))
    ok = valid & valid_pre
    fire = schroeder_unambiguous(post) & ok
    dnbr = nbr(pre) - nbr(post)
    older = (nbr(pre) < 0.1) & ok
    return post, {"fire": fire, "fresh char": (dnbr > 0.27) & (nbr(post) < 0.2) & ok & ~fire & ~older,
                  "vegetation": (nbr(post) > 0.3) & (dnbr < 0.1) & ok}


def momotombo_classes() -> tuple[Stack, dict[str, np.ndarray]]:
    """Momotombo 2015-12-05 (L1 TOA). lava hot spot: Schroeder Eq. 1; dark lava/ash field: nir < 0.15, swir2 >
    0.03 (not water), NBR < 0.3, not hot; vegetation: NBR > 0.5."""
    x, valid = read_stack(next((REAL / "landsat8_momotombo_2015").glob("*L1TP*.tif")))
    hot = schroeder_unambiguous(x) & valid
    dark = (x["nir"] < 0.15) & (x["swir2"] > 0.03) & (nbr(x) < 0.3) & valid & ~hot
    return x, {"lava hot spot": hot, "dark lava / ash": dark, "vegetation": (nbr(x) > 0.5) & valid}


def brumadinho_classes() -> tuple[Stack, dict[str, np.ndarray]]:
    """Brumadinho 2019-01-30 (L2SP surface). tailings/mud: swir2 > 0.2, blue < 0.12 (not cloud), red > green;
    red soil: red > 0.8 nir, 0.1 < swir2 <= 0.2; forest: NBR > 0.5."""
    x, valid = read_stack(next((REAL / "landsat8_brumadinho_2019").glob("*20190130*.tif")))
    mud = (x["swir2"] > 0.2) & (x["blue"] < 0.12) & (x["red"] > x["green"]) & valid
    red_soil = (x["red"] > 0.8 * x["nir"]) & (x["swir2"] > 0.1) & (x["swir2"] <= 0.2) & valid
    return x, {"tailings / mud": mud, "red soil": red_soil, "forest": (nbr(x) > 0.5) & valid}


def desert_classes() -> tuple[Stack, dict[str, np.ndarray]]:
    """Sahara S2 L2A tile 29RKH. desert (all land with swir2 > 0.15); dark rock: swir2 <= 0.25."""
    x, valid = read_s2_tile(REAL / "provider_formats" / "S2A_29RKH_20200219_0_L2A")
    land = valid & (x["swir2"] > 0.05)
    return x, {"desert (all)": land, "dark rock / reg": land & (x["swir2"] <= 0.3)}


def ashdod_classes() -> tuple[Stack, dict[str, np.ndarray]]:
    """Ashdod S2 L2A chip. sea: nir < 0.05; built-up: nir >= 0.1 and NDVI < 0.3 (roofs, roads, port)."""
    x, valid = read_ashdod(next((REAL / "sentinel2_ashdod_chip").glob("*.tif")))
    ndvi = (x["nir"] - x["red"]) / (x["nir"] + x["red"] + 1e-6)
    return x, {"sea": (x["nir"] < 0.05) & valid, "built-up": (x["nir"] >= 0.1) & (ndvi < 0.3) & valid}


# ------------------------------------------------------------------------------------------ simulated scenes


@dataclass
class Pair:
    """A real scene and its simulated counterpart."""

    name: str
    real: Callable[[], tuple[Stack, dict[str, np.ndarray]]]
    sensor: str
    landscape: str
    options: dict
    classes: Callable[[object], dict[str, np.ndarray]]


def _material(scene: object, *names: str) -> np.ndarray:
    truth = scene.truth  # type: ignore[attr-defined]
    return np.logical_or.reduce([truth.material(n) for n in names])


def _clear(scene: object) -> np.ndarray:
    t = scene.truth  # type: ignore[attr-defined]
    return scene.valid & (t.cloud_tau < 0.5) & (t.smoke_tau < 0.3) & (t.fire_fraction == 0)  # type: ignore[attr-defined]


def sim_corumba(scene: object) -> dict[str, np.ndarray]:
    t = scene.truth  # type: ignore[attr-defined]
    fuel = _material(scene, "wet_grass", "grass", "dry_grass", "broadleaf", "shrub")
    unambiguous = schroeder_unambiguous(sim_stack(scene))  # the same reference as on the real scene
    return {"fire": (scene.labels[0] == 1) & unambiguous,  # type: ignore[attr-defined]
            "fresh char": t.burned & (t.age_days <= 16) & _clear(scene),
            "vegetation": fuel & ~t.burned & ~t.old_burned & _clear(scene)}


def sim_momotombo(scene: object) -> dict[str, np.ndarray]:
    t = scene.truth  # type: ignore[attr-defined]
    hot = t.hotspot_fraction > 0
    from firemap.simulate.events import Fires

    strong = (Fires(t.hotspot_fraction, t.hotspot_temperature).swir2_radiance() >= 3.0) \
        & schroeder_unambiguous(sim_stack(scene))
    dark = _material(scene, "basalt", "tephra") & _clear(scene) & ~hot
    return {"lava hot spot": hot & strong, "dark lava / ash": dark,
            "vegetation": _material(scene, "broadleaf", "grass", "crop") & _clear(scene) & ~t.burned}


def sim_brumadinho(scene: object) -> dict[str, np.ndarray]:
    return {"tailings / mud": _material(scene, "tailings") & _clear(scene),
            "red soil": _material(scene, "laterite") & _clear(scene),
            "forest": _material(scene, "broadleaf") & _clear(scene) & ~scene.truth.burned}  # type: ignore[attr-defined]


def sim_desert(scene: object) -> dict[str, np.ndarray]:
    land = ~_material(scene, "water") & _clear(scene)
    return {"desert (all)": land, "dark rock / reg": land & _material(scene, "basalt", "reg", "rock", "dark_soil")}


def sim_ashdod(scene: object) -> dict[str, np.ndarray]:
    return {"sea": _material(scene, "water") & _clear(scene),
            "built-up": _material(scene, "urban", "roof", "tile_roof", "metal_roof") & _clear(scene)}


PAIRS = [
    Pair("Corumba 2019-08-25, Landsat-8 L1 (wetland, fire)", corumba_classes, "landsat8", "wetland",
         {"fire": True, "smoke": True, "clouds": "none"}, sim_corumba),
    Pair("Momotombo 2015-12-05, Landsat-8 L1 (volcanic)", momotombo_classes, "landsat8", "volcanic",
         {"fire": False, "smoke": False, "burn_scar": False, "clouds": "few"}, sim_momotombo),
    Pair("Brumadinho 2019-01-30, Landsat-8 L2SP (laterite; simulated as HLS surface reflectance)",
         brumadinho_classes, "hls", "laterite", {"fire": False, "smoke": False, "burn_scar": False,
                                                 "clouds": "few"}, sim_brumadinho),
    Pair("Sahara S2 L2A 29RKH (desert)", desert_classes, "sentinel2", "desert",
         {"fire": False, "smoke": False, "burn_scar": False, "clouds": "none"}, sim_desert),
    Pair("Ashdod S2 L2A chip (coastal city)", ashdod_classes, "sentinel2", "coastal_city",
         {"fire": False, "smoke": False, "burn_scar": False, "clouds": "none"}, sim_ashdod),
]


def simulate(pair: Pair, seeds: range, size: int) -> list[object]:
    from firemap.simulate import simulate_scene

    return [simulate_scene(pair.sensor, size, size, seed=seed, landscape=pair.landscape, **pair.options)
            for seed in seeds]


def sim_stack(scene: object) -> Stack:
    return {b: scene.band(b) for b in BANDS}  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------------------------ statistics


def _fmt(values: np.ndarray) -> str:
    if values.size == 0:
        return "-"
    p10, p50, p90 = np.percentile(values, [10, 50, 90])
    return f"{p50:.3f} ({p10:.2f}-{p90:.2f})"


def class_table(pair: Pair, real: tuple[Stack, dict[str, np.ndarray]], scenes: list[object]) -> tuple[str, int]:
    """Markdown rows real vs simulated per class and band (median and 10-90%); the count of simulated medians
    outside the real 10-90% range."""
    stack, masks = real
    sim_masks = [pair.classes(s) for s in scenes]
    rows, misses = [], 0
    for name, mask in masks.items():
        sim_values = {b: np.concatenate([sim_stack(s)[b][m[name]] for s, m in zip(scenes, sim_masks, strict=True)])
                      for b in BANDS}
        sim_values["NBR"] = np.concatenate([nbr(sim_stack(s))[m[name]] for s, m in zip(scenes, sim_masks,
                                                                                           strict=True)])
        real_values = {b: stack[b][mask] for b in BANDS} | {"NBR": nbr(stack)[mask]}
        cells = []
        for band in (*BANDS, "NBR"):
            r, s = real_values[band], sim_values[band]
            inside = ""
            if r.size and s.size:
                lo, hi = np.percentile(r, [10, 90])
                ok = lo - 0.02 <= np.median(s) <= hi + 0.02
                misses += not ok
                inside = "" if ok else " **x**"
            cells.append(f"{_fmt(r)} / {_fmt(s)}{inside}")
        n_sim = sum(int(m[name].sum()) for m in sim_masks)
        rows.append(f"| {name} | {int(mask.sum())} / {n_sim} | " + " | ".join(cells) + " |")
    header = ("| class | pixels real / sim | " + " | ".join((*BANDS, "NBR")) + " |\n|---|---|"
              + "---|" * (len(BANDS) + 1))
    return f"**{pair.name}** (simulated: `{pair.sensor}`, landscape `{pair.landscape}`)\n\n{header}\n" \
        + "\n".join(rows), misses


# --------------------------------------------------------------------------------------------------- figures


def false_colour(x: Stack, top: float = 0.5) -> np.ndarray:
    """``(rows, cols, 3)`` float SWIR2 / NIR / red, clipped at ``top``, gamma 1/1.4."""
    rgb = np.stack([x["swir2"], x["nir"], x["red"]], axis=-1)
    return np.clip(rgb / top, 0, 1) ** (1 / 1.4)


def natural_colour(x: Stack, top: float = 0.3) -> np.ndarray:
    return np.clip(np.stack([x["red"], x["green"], x["blue"]], axis=-1) / top, 0, 1) ** (1 / 1.4)


def figure(pair: Pair, real: Stack, scene: object, path: Path, zoom: tuple[int, int] | None = None) -> Path:
    """Real beside simulated, false colour (top) and natural colour (bottom); optional zoom on a fire front."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sim = sim_stack(scene)
    panels = [("real", false_colour(real), natural_colour(real)), ("simulated", false_colour(sim), natural_colour(sim))]
    extra = 0
    if zoom is not None:
        extra = 2
    fig, axes = plt.subplots(2, 2 + extra, figsize=(4.2 * (2 + extra), 8.4))
    for col, (title, fc, nc) in enumerate(panels):
        axes[0, col].imshow(fc)
        axes[1, col].imshow(nc)
        axes[0, col].set_title(f"{title}: SWIR2/NIR/red", fontsize=10)
        axes[1, col].set_title(f"{title}: natural colour", fontsize=10)
    if zoom is not None:
        r, c = zoom
        axes[0, 2].imshow(false_colour(real)[r : r + 80, c : c + 80], interpolation="nearest")
        axes[0, 2].set_title("real fire front, 80 x 80 px", fontsize=10)
        fire = scene.labels[0] == 1  # type: ignore[attr-defined]
        ys, xs = np.nonzero(fire)
        rr = int(np.clip(np.median(ys) - 40, 0, fire.shape[0] - 80))
        cc = int(np.clip(np.median(xs) - 40, 0, fire.shape[1] - 80))
        axes[0, 3].imshow(false_colour(sim)[rr : rr + 80, cc : cc + 80], interpolation="nearest")
        axes[0, 3].set_title("simulated fire front, 80 x 80 px", fontsize=10)
        labels = scene.labels.astype(float)  # type: ignore[attr-defined]
        axes[1, 3].imshow(np.stack([labels[0], labels[1] * 0.6, labels[2] * 0.5], -1)[rr : rr + 80, cc : cc + 80],
                          interpolation="nearest")
        axes[1, 3].set_title("simulated labels (fire red, smoke green, scar blue)", fontsize=9)
        axes[1, 2].axis("off")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(pair.name, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=64)
    plt.close(fig)
    from PIL import Image

    with Image.open(path) as image:  # 256-colour palette: a quarter of the size, no visible loss at this scale
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-figures", action="store_true", help="tables only")
    parser.add_argument("--scenes", type=int, default=4, help="simulated scenes per real scene")
    parser.add_argument("--size", type=int, default=512, help="simulated scene side, pixels")
    args = parser.parse_args()
    if not REAL.is_dir():
        raise SystemExit(f"{REAL} not found: nothing to compare with")
    IMG.mkdir(parents=True, exist_ok=True)
    parts, total = [], 0
    for i, pair in enumerate(PAIRS):
        real = pair.real()
        scenes = simulate(pair, range(args.scenes), args.size)
        table, misses = class_table(pair, real, scenes)
        total += misses
        parts.append(table)
        print(table, "\n")
        if not args.no_figures:
            zoom = (770, 150) if pair.landscape == "wetland" else None
            slug = re.sub(r"[^a-z0-9]+", "_", pair.name.split(",")[0].split(" (")[0].lower()).strip("_")
            print("figure:", figure(pair, real[0], scenes[0], IMG / f"sim_vs_real_{slug}.png", zoom))
        del i
    cmd = f"`.venv/bin/python scripts/sim_vs_real.py --scenes {args.scenes} --size {args.size}`"
    intro = (f"Made by {cmd}. Each cell: real median (10-90%) / simulated median (10-90%); **x** marks a "
             f"simulated median outside the real 10-90% range widened by 0.02 ({total} cells). Real classes from "
             "the references in the script's docstrings; simulated ones from the exact simulated fields, "
             f"{args.scenes} scenes of {args.size} x {args.size} per row, clear of cloud and smoke.")
    replace_section("sim_vs_real", intro + "\n\n" + "\n\n".join(parts))


if __name__ == "__main__":
    main()
