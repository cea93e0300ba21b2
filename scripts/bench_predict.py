"""Benchmark ``firemap predict``: overhead over the bare network, and peak memory vs scene size.

Writes its results between markers in docs/benchmarks.md (other sections of that file are left alone).

    python scripts/bench_predict.py                      # 2048^2 and 8192^2 scenes (~3-5 min on 2 cores)
    python scripts/bench_predict.py --sizes 1024 2048     # quicker

1. End-to-end predict time (read, resolve bands, normalize, network, stitch, write COGs, vectorize, styles)
   vs the bare network forward pass on the same number of tiles with the same batch size.
2. Peak RSS of a fresh process predicting a 6-band scene of each size: bounded by the tile grid, so the
   larger scene should use about the same memory (a whole-scene accumulator would grow with the area).

Each measurement runs in its own subprocess so ru_maxrss is that run's own peak.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- bench_predict:start -->", "<!-- bench_predict:end -->"
log = logging.getLogger("bench_predict")


def make_scene(path: Path, size: int, seed: int = 0) -> None:
    """Write a ``size x size`` 6-band Sentinel-2-like uint16 scene (B02,B03,B04,B08,B11,B12) in row blocks."""
    rng = np.random.default_rng(seed)
    base = np.array([600, 800, 700, 3000, 2000, 1100], np.float32)[:, None, None]
    profile = {"driver": "GTiff", "width": size, "height": size, "count": 6, "dtype": "uint16", "tiled": True,
               "blockxsize": 256, "blockysize": 256, "compress": "deflate", "crs": "EPSG:32610",
               "transform": Affine(20, 0, 500000, 0, -20, 4200000), "nodata": 0}
    with rasterio.open(path, "w", **profile) as dst:
        for i, d in enumerate(("B02", "B03", "B04", "B08", "B11", "B12"), start=1):
            dst.set_band_description(i, d)
        for r in range(0, size, 512):
            h = min(512, size - r)
            cols = np.arange(size, dtype=np.float32)[None, None, :]
            block = base * (1 + 0.3 * np.sin(cols / 97.0 + r / 131.0)) + rng.normal(0, 50, (6, h, size))
            scar = ((np.arange(r, r + h)[:, None] // 700 + np.arange(size)[None, :] // 900) % 5 == 0)
            block[3:, scar] *= 0.4
            dst.write(np.clip(block, 1, 65535).astype(np.uint16), window=Window(0, r, size, h))


def run_python(code: str) -> dict:
    """Run code in a fresh interpreter; it must print one JSON line last."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


PREDICT = textwrap.dedent("""
    import json, resource, time
    import firemap.predict as P
    from firemap._compat import ensure_torchvision
    ensure_torchvision()
    import segmentation_models_pytorch  # imports (torch, smp: ~2 s) stay outside the timer, as in the bare run
    from firemap.config import PredictConfig
    spent = [0.0]
    forward = P.forward_probs
    def timed(*args, **kwargs):  # the network's share of this very run, measured under the same load
        t0 = time.perf_counter(); out = forward(*args, **kwargs); spent[0] += time.perf_counter() - t0
        return out
    P.forward_probs = timed
    t = time.perf_counter()
    r = P.predict_scenes([{scene!r}], {out!r}, {model!r}, PredictConfig(batch_size={batch}, overwrite=True,
                         precision={precision!r}))[0]
    print(json.dumps({{"seconds": time.perf_counter() - t, "tiles": r.tiles, "network_seconds": spent[0],
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
""")

BARE = textwrap.dedent("""
    import json, time, torch
    from firemap.models import fuse_batchnorm, load_bundle
    from firemap.predict import autocast_dtype, forward_probs
    b = load_bundle({model!r}); fuse_batchnorm(b.model)  # the network exactly as predict runs it
    m = b.model.to(memory_format=torch.channels_last)
    c, t = b.config.in_channels, b.config.tile_size
    batches = [min({batch}, {tiles} - i) for i in range(0, {tiles}, {batch})]
    xs = [torch.randn(n, c, t, t).contiguous(memory_format=torch.channels_last) for n in sorted(set(batches))]
    by_size = {{x.shape[0]: x for x in xs}}
    amp = autocast_dtype(torch.device("cpu"), {precision!r})
    with torch.inference_mode():
        forward_probs(m, xs[-1], "none", amp)
        start = time.perf_counter()
        for n in batches:
            forward_probs(m, by_size[n], "none", amp)
    print(json.dumps({{"seconds": time.perf_counter() - start}}))
""")


def model_path(arg: str | None, tmp: Path) -> str:
    """The bundle to benchmark: --model, else the shipped default, else a random DeepLabV3+/mobilenet_v2."""
    if arg:
        return arg
    from firemap.errors import BundleError
    from firemap.models import default_bundle_path

    try:
        return str(default_bundle_path())
    except BundleError:
        from firemap.config import ModelConfig
        from firemap.models import build_model, save_bundle

        cfg = ModelConfig(arch="deeplabv3plus", encoder="mobilenet_v2")
        return str(save_bundle(tmp / "random.firemap.pt", build_model(cfg).eval(), cfg, {"name": "random"}))


def bench(sizes: list[int], model: str | None, batch: int, precision: str) -> tuple[list[dict], str]:
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        bundle = model_path(model, tmp)
        for size in sizes:
            scene = tmp / f"scene{size}.tif"
            t = time.perf_counter()
            make_scene(scene, size)
            log.info("made %s in %.1f s", scene.name, time.perf_counter() - t)
            e2e = run_python(PREDICT.format(scene=str(scene), out=str(tmp / "out"), model=bundle, batch=batch,
                                            precision=precision))
            bare = run_python(BARE.format(model=bundle, batch=batch, tiles=e2e["tiles"], precision=precision))
            rows.append({"size": size, **e2e, "bare_seconds": bare["seconds"]})
            log.info("%s", rows[-1])
            scene.unlink()
    return rows, Path(bundle).name


def report(rows: list[dict], model: str, batch: int, precision: str, command: str) -> str:
    import torch

    lines = [
        START, "## predict: overhead and memory", "",
        f"Command: `{command}`  ", f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__} (CPU, {torch.get_num_threads()} threads), no GPU. Model: `{model}`, "
        f"batch {batch}, precision {precision}. Date: {time.strftime('%Y-%m-%d')}.", "",
        "| scene (6 bands) | tiles | end-to-end s | bare network s | overhead vs bare | network inside the run s "
        "| overhead vs that | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        overhead = r["seconds"] / r["bare_seconds"] - 1
        inside = r["seconds"] / r["network_seconds"] - 1
        lines.append(f"| {r['size']}x{r['size']} | {r['tiles']} | {r['seconds']:.1f} | {r['bare_seconds']:.1f} | "
                     f"{overhead:+.0%} | {r['network_seconds']:.1f} | {inside:+.0%} | {r['rss_mb']:.0f} |")
    if len(rows) >= 2:
        small, large = rows[0], rows[-1]
        area = (large["size"] / small["size"]) ** 2
        lines += ["", f"Peak memory {large['size']}^2 / {small['size']}^2: "
                  f"**{large['rss_mb'] / small['rss_mb']:.2f}x** for {area:.0f}x the pixels "
                  f"(goal <= 1.25x; a whole-scene accumulator would grow {area:.0f}x)."]
    lines += ["", "Overhead = end-to-end / network time - 1: everything that is not the network (process start-up "
              "after imports, model loading, reading, band scaling, normalization, stitching, COG writing with "
              "overviews, vectorization, styles; goal <= 15%). 'Bare network' is a separate process running the "
              "same network (BatchNorm folded, channels-last) on as many random tiles with the same batch sizes; "
              "'network inside the run' times the forward passes of the predict run itself, so both sides of "
              "that ratio saw the same machine load. Imports (torch, smp: about 2 s) are outside both timers. "
              "On a machine whose cores all run torch threads, the reading thread competes with the network "
              "(the in-run network is slower than the bare one); with a GPU or spare cores the two overlap.", END]
    return "\n".join(lines)


def write_doc(section: str) -> None:
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n\nEach section says the command that made it.\n"
    if START in text and END in text:
        text = text[: text.index(START)] + section + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 8192])
    parser.add_argument("--model", default=None)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--no-write", action="store_true", help="print instead of updating docs/benchmarks.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows, model = bench(args.sizes, args.model, args.batch_size, args.precision)
    command = "python scripts/bench_predict.py " + " ".join(sys.argv[1:])
    section = report(rows, model, args.batch_size, args.precision, command.strip())
    if args.no_write:
        sys.stdout.write(section + "\n")
    else:
        write_doc(section)
        log.info("updated %s", DOC)


if __name__ == "__main__":
    main()
