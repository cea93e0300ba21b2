"""Benchmark multi-scene jobs and provider layouts.

Writes its results between markers in docs/benchmarks.md (other sections of that file are left alone).

    python scripts/bench_providers.py                      # 8 scenes of 512^2 + a 2048^2 read test (~6-8 min CPU)
    python scripts/bench_providers.py --no-jobs            # only the reading part (~1 min)

1. 8 scenes with the shipped model: ``firemap predict`` sequential (one process, 2 torch threads) vs
   ``--workers 2`` (a local Dask cluster of 2 single-threaded worker processes), wall time of the whole command
   (start-up, cluster start and model loading included), each in a fresh process.
2. Per-scene reading cost: every window the tile loop reads (256 px tiles, 64 px overlap, 12-tile chunks), from
   a stacked 6-band GeoTIFF vs the same scene as per-band files assembled by firemap.sources: Landsat-like
   (6 files, one grid) and Sentinel-2-like (4 bands at 10 m + 2 at 20 m, resampled on the fly). Best of 3.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- bench_providers:start -->", "<!-- bench_providers:end -->"
NAMES = {"landsat": ("SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B6", "SR_B7"),
         "sentinel2": ("B02", "B03", "B04", "B08", "B11", "B12")}


def _reflectance(size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.array([0.04, 0.07, 0.05, 0.30, 0.20, 0.10], np.float32)[:, None, None]
    refl = base + rng.normal(0, 0.01, (6, size, size)).astype(np.float32)
    q = size // 4
    refl[3, q : 2 * q, q : 2 * q] = 0.05  # a scar
    refl[5, q : q + 8, 2 * q : 2 * q + 8] = 0.9  # a fire
    return refl


def _write(path: Path, data: np.ndarray, res: float, names: tuple[str, ...] | None = None) -> Path:
    data = data[None] if data.ndim == 2 else data
    profile = {"driver": "GTiff", "count": data.shape[0], "height": data.shape[1], "width": data.shape[2],
               "dtype": "uint16", "crs": "EPSG:32610", "transform": Affine(res, 0, 500000, 0, -res, 4200000),
               "nodata": 0, "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "deflate"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i, n in enumerate(names or (), start=1):
            dst.set_band_description(i, n)
    return path


def _dn(refl: np.ndarray, scale: float, offset: float) -> np.ndarray:
    return np.clip(np.round((refl - offset) / scale), 1, 65535).astype(np.uint16)


def _run(cmd: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def bench_workers(tmp: Path, n: int, size: int) -> list[tuple[str, float]]:
    scenes = [str(_write(tmp / f"LC08_scene{i}.tif", _dn(_reflectance(size, i), 2.75e-5, -0.2), 30.0,
                         NAMES["landsat"])) for i in range(n)]
    base = [sys.executable, "-m", "firemap", "predict", *scenes, "-q", "--overwrite"]
    seq = _run([*base, "--out", str(tmp / "seq")])
    dask = _run([*base, "--out", str(tmp / "dask"), "--workers", "2"])
    same = all((tmp / "seq" / f"LC08_scene{i}.classes.tif").read_bytes()
               == (tmp / "dask" / f"LC08_scene{i}.classes.tif").read_bytes() for i in range(n))
    return [("sequential (1 process, 2 torch threads)", seq), (f"--workers 2 (class rasters identical: {same})", dask)]


def _read_all(scene: str) -> tuple[float, float]:
    """(seconds to resolve the scene, seconds to read every chunk of the tile loop), best of 3."""
    from firemap.config import PredictConfig
    from firemap.models import load_bundle
    from firemap.predict import _read_chunks, _scene_context, tile_grid
    from firemap.raster import bounded_gdal_cache, open_scene

    bundle = load_bundle(None)
    cfg = PredictConfig()
    opens, reads = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        info = open_scene(scene)
        ctx = _scene_context(info, bundle, cfg)
        t1 = time.perf_counter()
        with bounded_gdal_cache():
            for _chunk in _read_chunks(info, tile_grid(info, bundle, cfg), ctx):
                pass
        opens.append(t1 - t0)
        reads.append(time.perf_counter() - t1)
    return min(opens), min(reads)


def bench_reading(tmp: Path, size: int) -> list[tuple[str, float, float]]:
    refl = _reflectance(size, 0)
    l2 = _dn(refl, 2.75e-5, -0.2)
    s2 = _dn(refl, 1e-4, 0.0)
    stacked = _write(tmp / "stack.tif", l2, 30.0, NAMES["landsat"])
    landsat = tmp / "LC08_L2SP_044034_20200808_20200918_02_T1"
    landsat.mkdir()
    for name, band in zip(NAMES["landsat"], l2, strict=True):
        _write(landsat / f"{landsat.name}_{name}.TIF", band, 30.0)
    sentinel = tmp / "S2A_10SEG_20200901_0_L2A"
    sentinel.mkdir()
    for name, band in zip(NAMES["sentinel2"], s2, strict=True):
        coarse = name in ("B11", "B12")
        _write(sentinel / f"{name}.tif", band[::2, ::2] if coarse else band, 20.0 if coarse else 10.0)
    s2_stack = _write(tmp / "s2_stack.tif", s2, 10.0, NAMES["sentinel2"])
    rows = []
    for label, scene in (("stacked GeoTIFF, 6 bands", stacked),
                         ("Landsat C2 folder, 6 per-band files (VRT, one grid)", landsat),
                         ("stacked GeoTIFF, 6 bands at 10 m", s2_stack),
                         ("Sentinel-2 folder, 4 x 10 m + 2 x 20 m files (VRT, resampled)", sentinel)):
        rows.append((label, *_read_all(str(scene))))
    return rows


def _header(args: argparse.Namespace, what: str) -> str:
    import torch

    load = os.getloadavg()
    where = f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, no GPU"
    return (f"Written by `python scripts/bench_providers.py {what}` on {time.strftime('%Y-%m-%d')} ({where}). "
            f"**The 2 cores were shared with other jobs** (load average {load[0]:.1f} / {load[1]:.1f} / "
            f"{load[2]:.1f} at the end), so absolute times are noisy.")


def _jobs_block(args: argparse.Namespace, jobs: list[tuple[str, float]]) -> list[str]:
    return [
        _header(args, f"--scenes {args.scenes} --size {args.size} --no-reading"),
        "",
        f"**{args.scenes} scenes of {args.size} x {args.size} px (6-band Landsat L2 stacks), shipped model, whole "
        "command wall time** (start-up, Dask cluster start and model loading included):",
        "",
        "| run | seconds | seconds per scene |",
        "|---|---|---|",
        *[f"| {label} | {s:.1f} | {s / args.scenes:.2f} |" for label, s in jobs],
    ]


def _read_block(args: argparse.Namespace, reads: list[tuple[str, float, float]]) -> list[str]:
    return [
        _header(args, f"--read-size {args.read_size} --no-jobs"),
        "",
        f"**Reading one {args.read_size} x {args.read_size} px scene the way the tile loop does** (every 12-tile "
        "chunk of 256 px tiles with 64 px overlap, physical values and validity; best of 3):",
        "",
        "| layout | resolve (open, assemble VRT, bands) s | read all chunks s |",
        "|---|---|---|",
        *[f"| {label} | {o:.3f} | {r:.2f} |" for label, o, r in reads],
    ]


def _replace_block(doc: str, name: str, lines: list[str]) -> str:
    start, end = f"<!-- bench_providers:{name}:start -->", f"<!-- bench_providers:{name}:end -->"
    block = "\n".join([start, *lines, end])
    if start in doc:
        return doc[: doc.index(start)] + block + doc[doc.index(end) + len(end):]
    return doc[: doc.index(END)] + block + "\n\n" + doc[doc.index(END):]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=8)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--read-size", type=int, default=2048)
    parser.add_argument("--no-jobs", action="store_true", help="skip the sequential vs --workers 2 part")
    parser.add_argument("--no-reading", action="store_true", help="skip the per-band vs stacked reading part")
    parser.add_argument("--no-doc", action="store_true", help="print only, do not edit docs/benchmarks.md")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    blocks: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if not args.no_jobs:
            (tmp / "jobs").mkdir()
            blocks["jobs"] = _jobs_block(args, bench_workers(tmp / "jobs", args.scenes, args.size))
        if not args.no_reading:
            (tmp / "read").mkdir()
            blocks["read"] = _read_block(args, bench_reading(tmp / "read", args.read_size))
    print("\n\n".join("\n".join(b) for b in blocks.values()))
    if args.no_doc:
        return
    doc = DOC.read_text()
    if START not in doc:
        doc = doc.rstrip("\n") + f"\n\n{START}\n## Multi-scene jobs and provider layouts\n\n{END}\n"
    for name, lines in blocks.items():
        doc = _replace_block(doc, name, lines)
    DOC.write_text(doc)


if __name__ == "__main__":
    main()
