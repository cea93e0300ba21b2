"""Measure the simulator and write the numbers and pictures into docs/simulator.md.

    .venv/bin/python scripts/bench_simulate.py            # speed + classic rules + realism + figures
    .venv/bin/python scripts/bench_simulate.py --quick    # speed only

Speed is measured on one core (thread pools limited to 1 before numpy/OpenCV load). The realism section needs
the real Sentinel-2 crops in ../shared/data/s2_calfire and is skipped without them. Sections of the document
between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` are replaced; the rest is left as written.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import itertools  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

cv2.setNumThreads(1)

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "simulator.md"
IMG = ROOT / "docs" / "img"
CALFIRE = ROOT.parent / "shared" / "data" / "s2_calfire"
BANDS3 = ("red", "nir", "swir2")
CALIFORNIA_LANDSCAPES = ("forest", "mediterranean", "savanna", "agricultural", "arid")
"""Landscapes compared with the Californian crops (the other landscapes are compared with real scenes of their
biomes by scripts/sim_vs_real.py)."""


def replace_section(name: str, body: str) -> None:
    """Replace the text between the section markers ``name`` in docs/simulator.md."""
    text = DOC.read_text()
    pattern = re.compile(rf"(<!-- bench:{name} -->\n).*?(<!-- /bench:{name} -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"{DOC}: markers for section {name!r} not found")
    DOC.write_text(pattern.sub(lambda m: m.group(1) + body.rstrip() + "\n" + m.group(2), text))


def bench_speed(repeats: int = 3) -> str:
    """Median CPU time (and wall time) of simulate_scene at 1024 x 1024 per sensor, and of the tile stream.

    CPU time (``time.process_time``, one thread) is what a scene costs; wall time also counts waiting for the
    CPU, so on a shared machine it can be many times larger: both are printed, with the load average."""
    from firemap.simulate import iter_tiles, simulate_scene

    simulate_scene("landsat8", 128, 128, seed=0)  # warm-up (imports, FFT plans)
    rows = ["| sensor | bands | 1024 x 1024 scene: CPU s (median of 3) | wall s |", "|---|---|---|---|"]
    for sensor in ("landsat8", "landsat9", "sentinel2", "hls"):
        cpu_times, wall_times = [], []
        for seed in range(repeats):
            start, cpu_start = time.perf_counter(), time.process_time()
            scene = simulate_scene(sensor, 1024, 1024, seed=seed, clouds="some")
            cpu_times.append(time.process_time() - cpu_start)
            wall_times.append(time.perf_counter() - start)
        rows.append(f"| {sensor} | {len(scene.bands)} | {np.median(cpu_times):.2f} | {np.median(wall_times):.2f} |")
    stream = iter_tiles("sentinel2", 256, seed=0)
    next(stream)
    cpu_start = time.process_time()
    for _ in itertools.islice(stream, 40):
        pass
    per_tile = (time.process_time() - cpu_start) / 40
    cpu = platform.processor() or platform.machine()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return "\n".join([
        f"Measured with `.venv/bin/python scripts/bench_simulate.py` on one core ({cpu}, "
        f"{os.cpu_count()} logical CPUs on the machine, thread pools limited to 1, load average {load:.1f} "
        "at the end):", "", *rows, "",
        f"Tile stream (`iter_tiles('sentinel2', 256)`, 512 x 512 scenes, 4 crops each): {1000 * per_tile:.0f} ms "
        "CPU per tile.",
    ])


def bench_rules(seeds: range = range(8)) -> str:
    """Detection rate of the Landsat-8 classic fire rules on simulated fire pixels and on confusers."""
    from firemap.rules import murphy2016, schroeder2016
    from firemap.simulate import simulate_scene

    counts = {k: np.zeros(4, int) for k in ("fire", "water", "cloud", "soil_rock", "urban", "other")}
    for seed in seeds:
        scene = simulate_scene("landsat8", 512, 512, seed=seed, clouds="some")
        bands = {b: scene.band(b) for b in scene.bands}
        s, m = schroeder2016(bands, scene.valid), murphy2016(bands, scene.valid)
        t, fire, unlit = scene.truth, scene.labels[0] == 1, scene.truth.fire_fraction == 0
        groups = {"fire": fire, "water": t.material("water") & unlit, "cloud": (t.cloud_tau > 4) & unlit,
                  "soil_rock": (t.material("soil") | t.material("dark_soil") | t.material("rock")) & unlit,
                  "urban": (t.material("urban") | t.material("roof") | t.material("tile_roof")) & unlit}
        groups["other"] = unlit & ~np.logical_or.reduce(list(groups.values())[1:])
        for name, mask in groups.items():
            counts[name] += [mask.sum(), (s & mask).sum(), (m & mask).sum(), ((s | m) & mask).sum()]
    rows = ["| pixels | n | Schroeder 2016 | Murphy 2016 | either |", "|---|---|---|---|---|"]
    for name, (n, s_hit, m_hit, any_hit) in counts.items():
        rows.append(f"| {name} | {n} | {s_hit / max(n, 1):.1%} | {m_hit / max(n, 1):.1%} | {any_hit / max(n, 1):.1%} |")
    return (f"`firemap.rules` on {len(seeds)} simulated Landsat-8 L1 scenes of 512 x 512 (seeds "
            f"{seeds.start}-{seeds.stop - 1}, clouds `some`); fire = labelled fire pixels, the other rows exclude "
            "every pixel with any sub-pixel fire:\n\n" + "\n".join(rows))


def real_crops() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, physical (blue, green, red, nir, swir2), mask) of each real crop."""
    import rasterio

    from firemap.bands import resolve_bands, to_physical

    out = []
    for path in sorted((CALFIRE / "images").glob("*.tif")):
        with rasterio.open(path) as src:
            raw, desc = src.read(), src.descriptions
        sources = resolve_bands(desc, raw.shape[0]).select(["blue", "green", "red", "nir", "swir2"])
        phys = to_physical(raw[[s.index - 1 for s in sources]], sources)
        with rasterio.open(CALFIRE / "masks" / path.name) as src:
            mask = src.read(1)
        mask = np.where((raw != 0).any(axis=0), mask, 255)
        out.append((path.stem, phys, mask))
    return out


def simulated_crops(seeds: range, size: int = 256) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Clear-sky simulated Sentinel-2 scenes without active fire (like the real post-fire crops)."""
    from firemap.simulate import simulate_scene

    out = []
    for seed in seeds:
        scene = simulate_scene("sentinel2", size, size, seed=seed, fire=False, smoke=False, clouds="none",
                               landscape=CALIFORNIA_LANDSCAPES[seed % len(CALIFORNIA_LANDSCAPES)])
        phys = np.stack([scene.band(b) for b in ("blue", "green", "red", "nir", "swir2")])
        out.append((f"seed {seed} ({scene.tags['LANDSCAPE']})", phys, scene.labels[2]))
    return out


def class_values(crops: list[tuple[str, np.ndarray, np.ndarray]]) -> dict[int, np.ndarray]:
    """Pooled ``(3, n)`` red/nir/swir2 values per class (0 unburned, 1 burned)."""
    return {c: np.concatenate([phys[2:][:, mask == c] for _, phys, mask in crops], axis=1) for c in (0, 1)}


def realism_table(real: dict[int, np.ndarray], sim: dict[int, np.ndarray], n_sim: int) -> str:
    rows = ["| class | band | real median (10-90%) | simulated median (10-90%) | overlap |", "|---|---|---|---|---|"]
    for c, (i, band) in itertools.product((0, 1), enumerate(BANDS3)):
        r, s = np.percentile(real[c][i], [10, 50, 90]), np.percentile(sim[c][i], [10, 50, 90])
        bins = np.linspace(0, 0.6, 61)
        hr, hs = (np.histogram(v[c][i], bins)[0] / v[c][i].size for v in (real, sim))
        rows.append(f"| {('unburned', 'burned')[c]} | {band} | {r[1]:.3f} ({r[0]:.3f}-{r[2]:.3f}) | "
                    f"{s[1]:.3f} ({s[0]:.3f}-{s[2]:.3f}) | {np.minimum(hr, hs).sum():.2f} |")
    return (f"Real: the 6 crops of `s2_calfire` (burned = inside the CAL FIRE perimeter). Simulated: {n_sim} "
            "clear-sky Sentinel-2 scenes of 256 x 256 without active fire, Californian landscapes (forest, "
            "mediterranean, savanna, agricultural, arid in turn; burned = the "
            "burn_scar label). Overlap = shared area of the two histograms (0.01 bins, 1 = identical):\n\n"
            + "\n".join(rows))


def _rgb(phys: np.ndarray, order: tuple[int, int, int], top: float) -> np.ndarray:
    return np.clip(np.stack([phys[i] for i in order], axis=-1) / top, 0, 1) ** (1 / 1.4)


def figure_comparison(real: list, sim: list) -> Path:
    """False colour (SWIR2, NIR, red) and natural colour of simulated scenes beside real crops."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picks = [("real " + n, p, m) for n, p, m in real[:3]] + [("sim " + n, p, m) for n, p, m in sim[:3]]
    fig, axes = plt.subplots(3, len(picks), figsize=(3.0 * len(picks), 9.2))
    for col, (name, phys, mask) in enumerate(picks):
        axes[0, col].imshow(_rgb(phys, (4, 3, 2), 0.5))
        axes[1, col].imshow(_rgb(phys, (2, 1, 0), 0.3))
        axes[2, col].imshow(np.where(mask == 255, np.nan, mask), cmap="magma", vmin=0, vmax=1.5)
        axes[0, col].set_title(name, fontsize=9)
    for row, label in enumerate(("SWIR2/NIR/red", "natural colour", "burned mask/label")):
        axes[row, 0].set_ylabel(label)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    path = IMG / "simulator_vs_real.jpg"
    fig.savefig(path, dpi=80, pil_kwargs={"quality": 85})
    plt.close(fig)
    return path


def figure_histograms(real: dict[int, np.ndarray], sim: dict[int, np.ndarray]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    bins = np.linspace(0, 0.6, 61)
    for i, band in enumerate(BANDS3):
        for c, colour in ((0, "tab:green"), (1, "tab:red")):
            kind = ("unburned", "burned")[c]
            axes[i].hist(real[c][i], bins, density=True, histtype="step", color=colour, lw=2, label=f"real {kind}")
            axes[i].hist(sim[c][i], bins, density=True, histtype="step", color=colour, ls="--", label=f"sim {kind}")
        axes[i].set_title(f"Sentinel-2 {band} reflectance")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path = IMG / "simulator_histograms.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def figure_landsat() -> Path:
    """A simulated Landsat-8 L1 scene with fire: false colour, natural colour, labels, brightness temperature."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from firemap.simulate import simulate_scene

    scene = simulate_scene("landsat8", 768, 768, seed=11, clouds="few", landscape="mediterranean", swath_edge=True)
    phys = np.stack([scene.band(b) for b in ("blue", "green", "red", "nir", "swir2")])
    labels = scene.labels.astype(float)
    labels[labels == 255] = np.nan
    fig, axes = plt.subplots(1, 5, figsize=(20, 4.4))
    axes[0].imshow(_rgb(phys, (4, 3, 2), 0.6))
    axes[1].imshow(_rgb(phys, (2, 1, 0), 0.35))
    axes[2].imshow(np.stack([labels[0], labels[1] * 0.7, labels[2] * 0.5], axis=-1))
    im = axes[3].imshow(np.where(scene.valid, scene.band("thermal"), np.nan), cmap="inferno")
    fig.colorbar(im, ax=axes[3], fraction=0.046, label="K")
    strongest = np.unravel_index(np.argmax(scene.truth.fire_fraction * (scene.labels[0] == 1)), scene.valid.shape)
    r, c = np.clip(np.array(strongest) - 48, 0, 768 - 96)
    axes[4].imshow(_rgb(phys[:, r : r + 96, c : c + 96], (4, 3, 2), 0.6), interpolation="nearest")
    titles = ("SWIR2/NIR/red", "natural colour (smoke, clouds)", "labels: fire red, smoke green, scar blue",
              "B10 brightness temperature", "SWIR2/NIR/red, 96 x 96 px around the fire front")
    for ax, title in zip(axes, titles, strict=True):
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    path = IMG / "simulator_landsat8.jpg"
    fig.savefig(path, dpi=70, pil_kwargs={"quality": 85})
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="speed only")
    args = parser.parse_args()
    IMG.mkdir(parents=True, exist_ok=True)
    replace_section("speed", bench_speed())
    if args.quick:
        return
    replace_section("rules", bench_rules())
    print("figure:", figure_landsat())
    if not CALFIRE.is_dir():
        print(f"{CALFIRE} absent: realism section left as is")
        return
    real, sim = real_crops(), simulated_crops(range(16))
    real_values, sim_values = class_values(real), class_values(sim)
    replace_section("realism", realism_table(real_values, sim_values, len(sim)))
    print("figures:", figure_comparison(real, sim), figure_histograms(real_values, sim_values))


if __name__ == "__main__":
    main()
