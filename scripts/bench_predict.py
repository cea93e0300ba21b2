"""Benchmark ``firemap predict``: start-up, network speed vs the GEMM peak, overhead, and peak memory.

Writes its results between markers in docs/benchmarks.md (other sections of that file are left alone).

    python scripts/bench_predict.py                      # start-up, 2048^2 and 8192^2 scenes (~3-5 min on 2 cores)
    python scripts/bench_predict.py --sizes 1024 2048     # quicker
    python scripts/bench_predict.py --sizes               # start-up only

1. Start-up (section ``bench_startup``): ``firemap predict`` on a small real crop (a ../shared/data/s2_calfire
   scene) in fresh processes, with the bundle's exported network and through smp (the same bundle without it),
   alternated with ``python -c "import torch"`` so each ratio compares runs seconds apart; plus where the time
   goes inside one process (imports, bundle loading, the scene).
2. End-to-end predict time (read, resolve bands, normalize, network, stitch, write COGs, vectorize, styles)
   vs the bare network forward pass on the same number of tiles with the same batch size; the network's ms per
   tile and its FLOP rate as a share of a 2048^2 fp32 matmul timed in the same process.
3. Peak RSS of a fresh process predicting a 6-band scene of each size: bounded by the tile grid, so the
   larger scene should use about the same memory (a whole-scene accumulator would grow with the area).

Each measurement runs in its own subprocess and reports its own peak RSS (``VmHWM`` of /proc/self/status: a
child's ``ru_maxrss`` would also count the driver's peak at fork, e.g. the 8192^2 scene it has just written).
The bundle is ``--model`` or the shipped default, given its exported networks (``firemap export``) in a temporary
folder when it lacks them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from benchlib import load_average, machine, write_section
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).resolve().parent
CROP = ROOT.parent / "shared" / "data" / "s2_calfire" / "images" / "CAMPBELL_20241028.tif"
log = logging.getLogger("bench_predict")


def make_scene(path: Path, size: int, seed: int = 0, width: int | None = None) -> None:
    """Write a ``size x size`` (``size x width`` when given) 6-band Sentinel-2-like uint16 scene (B02,B03,B04,B08,
    B11,B12) in row blocks."""
    height, width = size, width or size
    rng = np.random.default_rng(seed)
    base = np.array([600, 800, 700, 3000, 2000, 1100], np.float32)[:, None, None]
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 6, "dtype": "uint16", "tiled": True,
               "blockxsize": 256, "blockysize": 256, "compress": "deflate", "crs": "EPSG:32610",
               "transform": Affine(20, 0, 500000, 0, -20, 4200000), "nodata": 0}
    with rasterio.open(path, "w", **profile) as dst:
        for i, d in enumerate(("B02", "B03", "B04", "B08", "B11", "B12"), start=1):
            dst.set_band_description(i, d)
        for r in range(0, height, 512):
            h = min(512, height - r)
            cols = np.arange(width, dtype=np.float32)[None, None, :]
            block = base * (1 + 0.3 * np.sin(cols / 97.0 + r / 131.0)) + rng.normal(0, 50, (6, h, width))
            scar = ((np.arange(r, r + h)[:, None] // 700 + np.arange(width)[None, :] // 900) % 5 == 0)
            block[3:, scar] *= 0.4
            dst.write(np.clip(block, 1, 65535).astype(np.uint16), window=Window(0, r, width, h))


def run_python(code: str, threads: int) -> dict:
    """Run code in a fresh interpreter with ``threads`` OpenMP threads; it must print one JSON line last."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, env=env)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def wall(args: list[str], threads: int) -> float:
    """Wall seconds of a fresh process (``python ARGS``) from fork to exit."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, capture_output=True, env=env)
    return time.perf_counter() - start


PREDICT = textwrap.dedent("""
    import json, time, torch
    torch.set_num_threads({threads})
    def peak_rss_mb():  # this process image's own peak: VmHWM (ru_maxrss also counts the parent's peak at fork)
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    import firemap.predict as P  # imports (torch, rasterio, ...) stay outside the timer, as in the bare run
    from firemap.config import PredictConfig
    spent = [0.0, 0.0]
    forward, adapt = P.forward_probs, P.adapt_to_scene
    def timed(*args, **kwargs):  # the network's share of this very run, measured under the same load
        t0 = time.perf_counter(); out = forward(*args, **kwargs); spent[0] += time.perf_counter() - t0
        return out
    def adapting(*args, **kwargs):  # the BatchNorm measuring pass (--bn-adapt > 0): reads, normalizes, runs
        t0 = time.perf_counter(); out = adapt(*args, **kwargs); spent[1] += time.perf_counter() - t0
        return out
    P.forward_probs, P.adapt_to_scene = timed, adapting
    t = time.perf_counter()
    r = P.predict_scenes([{scene!r}], {out!r}, {model!r}, PredictConfig(batch_size={batch}, overwrite=True,
                         precision={precision!r}, device="cpu", runtime={runtime!r}, bn_adapt={bn_adapt!r}))[0]
    print(json.dumps({{"seconds": time.perf_counter() - t, "tiles": r.tiles, "network_seconds": spent[0],
                      "adapt_seconds": spent[1], "rss_mb": peak_rss_mb()}}))
""")

BARE = textwrap.dedent("""
    import json, sys, time, torch
    torch.set_num_threads({threads})
    sys.path.insert(0, {scripts!r})
    from benchlib import gemm_peak, network_flops
    from firemap.config import PredictConfig
    from firemap.predict import autocast_dtype, forward_probs, load_inference_bundle, with_runtime
    cfg = PredictConfig(device="cpu", precision={precision!r}, runtime={runtime!r}, bn_adapt={bn_adapt!r})
    b = load_inference_bundle({model!r}, cfg)
    c, t = b.config.in_channels, b.config.tile_size
    flops = network_flops(b.model, (1, c, t, t))  # counted on the torch network (OpenVINO's is the same graph)
    b = with_runtime(b, cfg, {tiles})  # the network exactly as predict runs it
    m = b.model.to(memory_format=torch.channels_last)
    batches = [min({batch}, {tiles} - i) for i in range(0, {tiles}, {batch})]
    xs = [torch.randn(n, c, t, t).contiguous(memory_format=torch.channels_last) for n in sorted(set(batches))]
    by_size = {{x.shape[0]: x for x in xs}}
    amp = autocast_dtype(torch.device("cpu"), {precision!r})
    with torch.inference_mode():
        forward_probs(m, xs[-1], "none", amp)
        peak = gemm_peak("fp32")
        start = time.perf_counter()
        for n in batches:
            forward_probs(m, by_size[n], "none", amp)
        seconds = time.perf_counter() - start
        peak = max(peak, gemm_peak("fp32"))  # timed before and after the network: the better of the two
    print(json.dumps({{"seconds": seconds, "flops": flops, "gemm_peak": peak, "runtime": b.runtime}}))
""")

STARTUP = textwrap.dedent("""
    import json, sys, time
    t0 = time.perf_counter()
    import torch
    torch.set_num_threads({threads})
    t1 = time.perf_counter()
    from firemap.config import PredictConfig
    from firemap.predict import load_inference_bundle, predict_scenes
    t2 = time.perf_counter()
    cfg = PredictConfig(device="cpu", overwrite=True)
    bundle = load_inference_bundle({model!r}, cfg)
    t3 = time.perf_counter()
    predict_scenes([{scene!r}], {out!r}, {model!r}, cfg)  # loads the bundle a second time (the CLI loads it once)
    t4 = time.perf_counter()
    print(json.dumps({{"import torch": t1 - t0, "import firemap.predict": t2 - t1, "load bundle": t3 - t2,
                      "predict the crop (bundle loaded again)": t4 - t3, "runtime": bundle.runtime,
                      "smp imported": "segmentation_models_pytorch" in sys.modules}}))
""")


def bundles(arg: str | None, tmp: Path) -> tuple[str, str]:
    """``(with the exported network, without it)``: the same weights, written to ``tmp`` as needed."""
    import torch

    from firemap.models import default_bundle_path, export_bundle

    src = Path(arg) if arg else default_bundle_path()
    payload = torch.load(src, map_location="cpu", weights_only=True)
    if "adaptable" in payload.get("exported", {}):
        fast = src
    else:
        fast = export_bundle(src, tmp / src.name.replace(".firemap.pt", "-exported.firemap.pt"))
    payload.pop("exported", None)
    slow = tmp / src.name.replace(".firemap.pt", "-smp.firemap.pt")
    torch.save(payload, slow)
    return str(fast), str(slow)


def bench_startup(fast: str, slow: str, threads: int, repeats: int, tmp: Path) -> str:
    """The start-up table: CLI wall times alternated with ``import torch``, and one in-process breakdown each."""
    cli = ["-m", "firemap", "predict", str(CROP), "-o", str(tmp / "startup"), "--overwrite", "-q", "--device", "cpu"]
    import torch

    adapts = float(torch.load(fast, map_location="cpu", weights_only=True)["config"].get("bn_adapt", 0.0)) > 0
    commands = {"import torch": ["-c", "import torch"], "smp": [*cli, "--model", slow],
                "exported": [*cli, "--model", fast]}
    if adapts:  # the same bundle without the per-scene adaptation pass, for what adaptation itself costs
        commands["exported, --bn-adapt 0"] = [*cli, "--model", fast, "--bn-adapt", "0"]
    times: dict[str, list[float]] = {key: [] for key in commands}
    loads = [load_average()]
    wall(["-c", "import torch"], threads)  # page cache warm for every variant
    for _ in range(repeats):
        for key, args in commands.items():
            times[key].append(wall(args, threads))
    loads.append(load_average())
    med = {k: statistics.median(v) for k, v in times.items()}
    torch_s = med["import torch"]
    with rasterio.open(CROP) as src:
        size = f"{src.width} x {src.height}"
    lines = [
        "## predict start-up on a small crop", "",
        f"Command: `python scripts/bench_predict.py {' '.join(sys.argv[1:])}` (start-up part)  ",
        f"Machine: {machine(threads)}; load before / after: {loads[0]} / {loads[1]}.  ",
        f"Crop: `{CROP.name}` ({size} px, 5 bands, one 2 x 2 tile grid). Each row is the median of {repeats} fresh "
        f"processes, the {len(commands)} commands alternated so that each ratio compares runs seconds apart.", "",
        "| command | seconds (median) | all runs | x `import torch` |", "|---|---:|---|---:|",
    ]
    names = {"import torch": '`python -c "import torch"`',
             "smp": "`firemap predict CROP` before: bundle without its exported network (smp, timm, torchvision)",
             "exported": "`firemap predict CROP` after: the bundle's exported TorchScript network (torch alone; "
                         "BatchNorm adapted to the crop when the bundle's bn_adapt > 0)",
             "exported, --bn-adapt 0": "`firemap predict CROP --bn-adapt 0`: the same, training statistics (no "
                                       "adaptation pass)"}
    for key, label in names.items():
        if key not in times:
            continue
        lines.append(f"| {label} | {med[key]:.2f} | {', '.join(f'{t:.2f}' for t in times[key])} | "
                     f"{med[key] / torch_s:.2f} |")
    lines += ["", "Where the time goes inside one process (in-process timers, one run each):", "",
              "| step | through smp s | exported s |", "|---|---:|---:|"]
    parts = {}
    for key, model in (("smp", slow), ("exported", fast)):
        parts[key] = run_python(STARTUP.format(threads=threads, model=model, scene=str(CROP),
                                               out=str(tmp / "startup2")), threads)
    for step in ("import torch", "import firemap.predict", "load bundle", "predict the crop (bundle loaded again)"):
        lines.append(f"| {step} | {parts['smp'][step]:.2f} | {parts['exported'][step]:.2f} |")
    lines.append(f"| network | {parts['smp']['runtime']} (smp imported: {parts['smp']['smp imported']}) | "
                 f"{parts['exported']['runtime']} (smp imported: {parts['exported']['smp imported']}) |")
    return "\n".join(lines)


def bench(sizes: list[int], model: str, batch: int, precision: str, runtime: str, threads: int,
          tmp: Path, repeats: int = 1, bn_adapt: float | None = None) -> list[dict]:
    """One row per scene size: the predict run (its time, in-run network time, peak RSS) and the bare network.

    With ``repeats`` > 1 the predict process runs that many times per size (each a fresh process: its peak RSS
    is its own); the row reports the run with the median overhead over its in-run network, and the median peak
    RSS of all runs.
    """
    rows = []
    for size in sizes:
        scene = tmp / f"scene{size}.tif"
        t = time.perf_counter()
        make_scene(scene, size)
        log.info("made %s in %.1f s", scene.name, time.perf_counter() - t)
        load = load_average()
        runs = []
        for _ in range(repeats):
            runs.append(run_python(PREDICT.format(scene=str(scene), out=str(tmp / "out"), model=model, batch=batch,
                                                  precision=precision, threads=threads, runtime=runtime,
                                                  bn_adapt=bn_adapt), threads))
            log.info("%s: %s", scene.name, runs[-1])
        e2e = sorted(runs, key=lambda r: r["seconds"] / r["network_seconds"])[len(runs) // 2]
        rss = [r["rss_mb"] for r in runs]
        bare = run_python(BARE.format(model=model, batch=batch, tiles=e2e["tiles"], precision=precision,
                                      threads=threads, scripts=str(SCRIPTS), runtime=runtime, bn_adapt=bn_adapt),
                          threads)
        rows.append({"size": size, **e2e, "rss_mb": statistics.median(rss), "rss_runs": rss,
                     "overheads": [r["seconds"] / r["network_seconds"] - 1 for r in runs],
                     "bare_seconds": bare["seconds"], "flops": bare["flops"],
                     "gemm_peak": bare["gemm_peak"], "runtime": bare["runtime"], "load": f"{load} / {load_average()}"})
        log.info("%s", rows[-1])
        scene.unlink()
    return rows


def report(rows: list[dict], model: str, batch: int, precision: str, threads: int,
           bn_adapt: float | None = None) -> str:
    adapt = "the bundle's" if bn_adapt is None else f"{bn_adapt:g}"
    lines = [
        f"## predict: overhead and memory (--runtime {rows[0]['runtime'] if rows else '?'})", "",
        f"Command: `python scripts/bench_predict.py {' '.join(sys.argv[1:])}`  ",
        f"Machine: {machine(threads)}. Model: `{Path(model).name}`, batch {batch}, precision {precision}, "
        f"--bn-adapt {adapt}.", "",
        "| scene (6 bands) | tiles | runtime | end-to-end s | bare network s | overhead vs bare "
        "| network inside the run s | overhead vs that | BatchNorm adaptation pass s | overhead vs network + "
        "adaptation | ms/tile (bare) | % of fp32 GEMM peak (same process) | peak RSS MB | load before / after |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        overhead = r["seconds"] / r["bare_seconds"] - 1
        inside = r["seconds"] / r["network_seconds"] - 1
        adapt = r.get("adapt_seconds", 0.0)
        per_tile = r["bare_seconds"] / r["tiles"]
        share = r["flops"] / per_tile / r["gemm_peak"]
        lines.append(f"| {r['size']}x{r['size']} | {r['tiles']} | {r['runtime']} | {r['seconds']:.1f} | "
                     f"{r['bare_seconds']:.1f} | "
                     f"{overhead:+.0%} | {r['network_seconds']:.1f} | {inside:+.0%} | {adapt:.1f} | "
                     f"{r['seconds'] / (r['network_seconds'] + adapt) - 1:+.0%} | {per_tile * 1e3:.1f} | "
                     f"{share:.0%} | {r['rss_mb']:.0f} | {r['load']} |")
    if rows:
        r = rows[0]
        lines += ["", f"Network: {r['flops'] / 1e9:.2f} GFLOP per tile (torch FlopCounterMode); GEMM peak "
                  f"{r['gemm_peak'] / 1e9:.1f} GFLOP/s (2048^2 fp32 matmul in the bare process, best of before and "
                  "after the network)."]
    if rows and len(rows[0].get("rss_runs", [])) > 1:
        lines += ["", f"Each size ran in {len(rows[0]['rss_runs'])} fresh processes, one after the other; the row "
                  "shows the run with the median overhead and the median peak RSS. All runs: "
                  + "; ".join(f"{r['size']}^2 overhead {', '.join(f'{o:+.0%}' for o in r['overheads'])}, peak RSS "
                              f"{', '.join(f'{m:.0f}' for m in r['rss_runs'])} MB" for r in rows) + "."]
    if len(rows) >= 2:
        small, large = rows[0], rows[-1]
        area = (large["size"] / small["size"]) ** 2
        lines += ["", f"Peak memory {large['size']}^2 / {small['size']}^2: "
                  f"**{large['rss_mb'] / small['rss_mb']:.2f}x** for {area:.0f}x the pixels "
                  f"(goal <= 1.1x; a whole-scene accumulator would grow {area:.0f}x)."]
    lines += ["", "Overhead = end-to-end / network time - 1: everything that is not the network (process start-up "
              "after imports, model loading, reading, band scaling, normalization, stitching, COG writing with "
              "overviews, vectorization, styles; goals <= 10% at 2048^2, <= 5% at 8192^2). 'Bare network' is a "
              "separate process running the same network as predict (`load_inference_bundle`) on as many random "
              "tiles with the same batch sizes; 'network inside the run' times the forward passes of the predict "
              "run itself, so both sides of that ratio saw the same machine load. Imports are outside both timers. "
              "On a machine whose cores all run torch threads, the reading thread competes with the network; with "
              "a GPU or spare cores the two overlap. 'BatchNorm adaptation pass': `adapt_to_scene`, the extra pass "
              "of a bundle with `bn_adapt` > 0 (reading and normalizing up to 64 sampled tiles, the network with "
              "BatchNorm in training mode); the last overhead column counts it as network time."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[2048, 8192], help="scene sizes (none: start-up only)")
    parser.add_argument("--model", default=None)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--runtime", default="auto", help="predict's --runtime (auto: OpenVINO if installed, >= 256 "
                        "tiles)")
    parser.add_argument("--threads", type=int, default=2, help="torch/OpenMP threads of every measured process")
    parser.add_argument("--startup-repeats", type=int, default=5, help="fresh processes per start-up row (0: skip)")
    parser.add_argument("--bn-adapt", type=float, default=None, help="predict's --bn-adapt (default: the bundle's; "
                        "0 predicts with the exported network and no per-scene adaptation pass)")
    parser.add_argument("--repeats", type=int, default=1, help="fresh predict processes per scene size (median "
                        "overhead and median peak RSS reported)")
    parser.add_argument("--section", default="bench_predict", help="docs/benchmarks.md section for the scene table")
    parser.add_argument("--startup-section", default="bench_startup", help="docs/benchmarks.md section for start-up")
    parser.add_argument("--no-write", action="store_true", help="print instead of updating docs/benchmarks.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        fast, slow = bundles(args.model, tmp)
        sections = {}
        if args.startup_repeats and CROP.exists():
            sections[args.startup_section] = bench_startup(fast, slow, args.threads, args.startup_repeats, tmp)
        elif args.startup_repeats:
            log.warning("%s not found: start-up not measured", CROP)
        if args.sizes:
            rows = bench(args.sizes, fast, args.batch_size, args.precision, args.runtime, args.threads, tmp,
                         args.repeats, args.bn_adapt)
            sections[args.section] = report(rows, fast, args.batch_size, args.precision, args.threads,
                                            args.bn_adapt)
    for name, text in sections.items():
        if args.no_write:
            sys.stdout.write(text + "\n\n")
        else:
            write_section(name, text)
            log.info("updated docs/benchmarks.md (%s)", name)


if __name__ == "__main__":
    main()
