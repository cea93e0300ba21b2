"""Where the non-network time of ``firemap predict`` goes: a phase-by-phase profile of one run.

Predicts the synthetic 6-band scene of ``scripts/bench_predict.py`` (default 2048^2) in a fresh process with the
given torch threads, timing each phase with wall-clock and main-thread CPU timers (``time.thread_time``: robust
to the load of a shared machine), and the reader thread's CPU separately. With ``--before PATH`` the same run is
made with the firemap code at PATH (e.g. a checkout of ``main``) and both are printed side by side.

    python scripts/profile_predict.py --threads 2                       # this tree
    python scripts/profile_predict.py --threads 2 --before /work/main   # before / after
    python scripts/profile_predict.py --size 8192 --fake-network        # the pipeline alone, quickly

``--fake-network`` replaces the network with a cheap stand-in (box-filtered blue band through a sigmoid) so the
rest of the pipeline can be profiled on a large scene in seconds; its "network" row is then meaningless.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from bench_predict import make_scene
from benchlib import load_average, machine, write_section

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("profile_predict")

PHASES = [  # (label, module, attribute, kind): kind "call", "method" (Class.name) or "generator"
    ("model loading (bundle, exported network, checks)", "firemap.predict", "load_inference_bundle", "call"),
    ("scene opening, band resolution, tile grid", "firemap.predict", "open_scene", "call"),
    ("scene opening, band resolution, tile grid", "firemap.predict", "plan_scenes", "call"),
    ("scene opening, band resolution, tile grid", "firemap.predict", "with_runtime", "call"),
    ("BatchNorm adaptation to the scene (--bn-adapt)", "firemap.predict", "adapt_to_scene", "call"),
    ("tile loop: waiting for reads, band checks, normalization", "firemap.predict", "_tiles", "generator"),
    ("batch assembly (submit minus network)", "firemap.predict", "_submit_queue", "call"),
    ("network", "firemap.predict", "forward_probs", "call"),
    ("stitching: blending tiles", "firemap.tiling", "RowStitcher.add", "method"),
    ("stitching: finished rows (mean, nodata)", "firemap.predict", "_row_blocks", "generator"),
    ("argmax / thresholds (classify)", "firemap.predict", "classify", "call"),
    ("class raster rows (scratch GTiff)", "firemap.raster", "TiledWriter.write", "method"),
    ("COG copy with overviews", "firemap.raster", "TiledWriter.close", "method"),
    ("polygons: per row block", "firemap.vectorize", "PolygonCollector.add", "method"),
    ("polygons: dissolve, areas", "firemap.vectorize", "PolygonCollector.finish", "method"),
    ("vector file", "firemap.vectorize", "write_vector_file", "call"),
    ("styles", "firemap.style", "combined_qml", "call"),
    ("styles", "firemap.style", "raster_qml", "call"),
    ("atomic commit (rename outputs)", "firemap.raster", "_publish", "call"),
    ("reading + band scaling [reader thread]", "firemap.raster", "StripReader.read", "method"),
    ("reading + band scaling [reader thread]", "firemap.predict", "read_window", "call"),  # code before StripReader
]

CHILD = textwrap.dedent('''
    import collections, importlib, json, resource, sys, threading, time
    import torch
    torch.set_num_threads({threads})
    import firemap.predict as P
    from firemap.config import PredictConfig
    PHASES = {phases!r}
    wall, cpu, calls = collections.defaultdict(float), collections.defaultdict(float), collections.Counter()
    main = threading.main_thread()

    def record(label, t0, c0):
        if threading.current_thread() is not main and "[reader thread]" not in label:
            label += " [other thread]"
        elif threading.current_thread() is main and "[reader thread]" in label:  # the adaptation's sampled tiles
            label = "reading sampled tiles (BatchNorm adaptation)"
        wall[label] += time.perf_counter() - t0
        cpu[label] += time.thread_time() - c0
        calls[label] += 1

    def wrapped(label, fn, kind):
        if kind == "generator":
            def gen(*a, **k):
                it = fn(*a, **k)
                while True:
                    t0, c0 = time.perf_counter(), time.thread_time()
                    try:
                        item = next(it)
                    except StopIteration:
                        record(label, t0, c0)
                        return
                    record(label, t0, c0)
                    yield item
            return gen
        def call(*a, **k):
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return fn(*a, **k)
            finally:
                record(label, t0, c0)
        return call

    for label, module, attr, kind in PHASES:
        mod = importlib.import_module(module)
        owner, name = (getattr(mod, attr.split(".")[0], None), attr.split(".")[1]) if kind == "method" else (mod, attr)
        if owner is not None and hasattr(owner, name):
            setattr(owner, name, wrapped(label, getattr(owner, name), kind))
    if {fake}:
        def fake(model, x, *a, **k):
            s = torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(x[:, :1], 8), scale_factor=8)
            p = torch.sigmoid(torch.cat([s * 0 - 5, 30 * (s + 0.75), s * 0 - 5], 1))
            return p.contiguous(memory_format=torch.channels_last)
        P.forward_probs = wrapped("network", fake, "call")
    cfg = PredictConfig(batch_size=8, overwrite=True, device="cpu", runtime={runtime!r}, **{extra!r})
    t0, c0 = time.perf_counter(), time.thread_time()
    result = P.predict_scenes([{scene!r}], {out!r}, None, cfg)[0]
    total, total_cpu = time.perf_counter() - t0, time.thread_time() - c0
    print(json.dumps({{"total": total, "total_cpu": total_cpu, "wall": wall, "cpu": cpu, "calls": calls,
                      "tiles": result.tiles, "polygons": sum(result.polygons.values()),
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
''')


def profile(code: Path, scene: Path, out: Path, threads: int, runtime: str, fake: bool,
            bn_adapt: float | None = None) -> dict:
    """Run one profiled predict in a fresh process with the firemap code at ``code``."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(code)}
    extra = {} if bn_adapt is None else {"bn_adapt": bn_adapt}
    src = CHILD.format(threads=threads, phases=PHASES, fake=fake, runtime=runtime, scene=str(scene), out=str(out),
                       extra=extra)
    load = load_average()
    done = subprocess.run([sys.executable, "-c", src], capture_output=True, text=True, env=env, check=False,
                          cwd=out.parent)  # not this tree's folder: ``-c`` puts the working folder first on sys.path
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    res = json.loads(done.stdout.strip().splitlines()[-1])
    res["load"] = f"{load} / {load_average()}"
    return res


def decode_seconds(scene: Path) -> float:
    """CPU seconds (this thread) to decode every block of ``scene`` once, in file order: the floor of any reader."""
    import rasterio

    with rasterio.open(scene) as src:
        c0 = time.thread_time()
        for _, window in src.block_windows(1):
            src.read(window=window)
        return time.thread_time() - c0


def floor_lines(runs: dict[str, dict], decode: float, threads: int) -> list[str]:
    """What the pipeline costs in CPU outside the network, and the overhead it implies when every core runs the
    network: that CPU shared by ``threads`` cores, over the in-run network's wall time. With ``--bn-adapt`` > 0
    the BatchNorm measuring pass counts as pipeline here (run with ``--bn-adapt 0`` for the pipeline alone)."""
    lines = ["", f"Decoding the input once (rasterio, every block, one thread): **{decode:.2f} s CPU**.", ""]
    for name, r in runs.items():
        main = r["total_cpu"] - r["cpu"].get("network", 0.0)
        side = sum(v for k, v in r["cpu"].items() if "thread]" in k)
        net = r["wall"].get("network", 0.0)
        lines.append(
            f"- {name}: CPU outside the network {main + side:.2f} s (main thread {main:.2f}, reader and writer "
            f"threads {side:.2f}); on {threads} cores that all run the network this alone is "
            f"**{(main + side) / threads / net:+.1%}** of the in-run network's {net:.1f} s, the decoding "
            f"{decode / threads / net:+.1%}.")
    return lines


def table(runs: dict[str, dict]) -> list[str]:
    """Markdown rows: each phase's wall and main-thread CPU seconds for each run."""
    names = list(runs)
    head = "| phase | " + " | ".join(f"{n} wall s | {n} CPU s" for n in names) + " |"
    lines = [head, "|---|" + "---:|" * (2 * len(names))]
    labels = list(dict.fromkeys(label for label, *_ in PHASES))
    for r in runs.values():  # submit includes the network: keep only the assembly around it
        for key in ("wall", "cpu"):
            r[key]["batch assembly (submit minus network)"] = (
                r[key].get("batch assembly (submit minus network)", 0.0) - r[key].get("network", 0.0))
    extra = sorted({k for r in runs.values() for k in r["wall"] if k not in labels})
    for label in [*labels, *extra]:
        cells = []
        for r in runs.values():
            w, c = r["wall"].get(label), r["cpu"].get(label)
            cells.append("-" if w is None else f"{w:.3f}")
            cells.append("-" if c is None else f"{c:.3f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for key, label in (("network", "**all but the network** (main thread: predict_scenes minus network)"),):
        cells = []
        for r in runs.values():
            cells.append(f"**{r['total'] - r['wall'].get(key, 0.0):.3f}**")
            cells.append(f"**{r['total_cpu'] - r['cpu'].get(key, 0.0):.3f}**")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    cells = []
    for r in runs.values():
        main_phases = [k for k in r["wall"] if "thread]" not in k and k != "batch assembly (submit minus network)"]
        rest_w = r["total"] - sum(r["wall"][k] for k in main_phases) - r["wall"].get(
            "batch assembly (submit minus network)", 0.0)
        rest_c = r["total_cpu"] - sum(r["cpu"][k] for k in main_phases) - r["cpu"].get(
            "batch assembly (submit minus network)", 0.0)
        cells += [f"{rest_w:.3f}", f"{rest_c:.3f}"]
    lines.append("| rest of the main thread (loop bookkeeping, ...) | " + " | ".join(cells) + " |")
    lines.append("| predict_scenes total | " + " | ".join(
        f"{r['total']:.3f} | {r['total_cpu']:.3f}" for r in runs.values()) + " |")
    lines.append("| overhead over the in-run network | " + " | ".join(
        f"{r['total'] / r['wall']['network'] - 1:+.1%} | " for r in runs.values()) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="scene size, pixels")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runtime", default="torch")
    parser.add_argument("--before", type=Path, default=None, help="firemap code to compare with (a checkout)")
    parser.add_argument("--fake-network", action="store_true", help="a cheap stand-in for the network")
    parser.add_argument("--bn-adapt", type=float, default=None, help="predict's --bn-adapt (default: the bundle's)")
    parser.add_argument("--section", default=None, help="write the table into this docs/benchmarks.md section")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        scene = tmp / f"scene{args.size}.tif"
        make_scene(scene, args.size)
        runs = {}
        codes = ([("before", args.before)] if args.before else []) + [("after" if args.before else "run", ROOT)]
        for name, code in codes:
            t = time.perf_counter()
            runs[name] = profile(code, scene, tmp / name, args.threads, args.runtime, args.fake_network,
                                 args.bn_adapt)
            log.info("%s: %.1f s (load %s)", name, time.perf_counter() - t, runs[name]["load"])
        decode = 0.0 if args.fake_network else decode_seconds(scene)
        same = ""
        if args.before:  # the two runs' outputs, byte for byte
            files = sorted(p.name for p in (tmp / "before").iterdir())
            same = " Outputs of before and after byte-identical: " + ", ".join(
                f"{f} {'yes' if (tmp / 'before' / f).read_bytes() == (tmp / 'after' / f).read_bytes() else 'NO'}"
                for f in files) + "."
    first = next(iter(runs.values()))
    lines = [
        f"## predict phase by phase ({args.size}^2{', fake network' if args.fake_network else ''})", "",
        f"Command: `python scripts/profile_predict.py {' '.join(sys.argv[1:])}`  ",
        f"Machine: {machine(args.threads)}. Scene: the synthetic 6-band {args.size}^2 scene of "
        f"`scripts/bench_predict.py` ({first['tiles']} tiles), `--runtime {args.runtime}`, batch 8.  ",
        "Runs: " + "; ".join(f"{n}: load before / after {r['load']}, {r['polygons']} polygons, peak RSS "
                             f"{r['rss_mb']:.0f} MB" for n, r in runs.items()) + "." + same, "",
        "Wall and main-thread CPU seconds per phase (CPU time is robust to the machine's load; the reader thread's "
        "CPU runs beside the network and slows it on a machine whose cores all run torch threads).", "",
        *table(runs),
        *([] if args.fake_network else floor_lines(runs, decode, args.threads)),
    ]
    text = "\n".join(lines)
    if args.section:
        write_section(args.section, text)
        log.info("updated docs/benchmarks.md (%s)", args.section)
    else:
        sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
