"""Side by side: ``firemap predict`` against a peer's tiled inference (TerraTorch), same weights, same scenes.

Writes its table between ``<!-- bench_peer:start -->`` and ``<!-- bench_peer:end -->`` in docs/benchmarks.md.

    python scripts/bench_peer.py                                   # 2048^2, 4096^2 (2 runs each), 8192^2 (1 run)
    python scripts/bench_peer.py --sizes 512 --repeats 1 --no-write   # a smoke test (a few minutes)

The peer is TerraTorch's ``terratorch.tasks.tiled_inference.tiled_inference``, installed in its own virtualenv
(``--peer-python``, default /work/peer-venv/bin/python) so that its 108 packages never reach firemap's::

    python3 -m venv /work/peer-venv
    /work/peer-venv/bin/pip install /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl
    /work/peer-venv/bin/pip install -c constraints.txt terratorch

Both sides run the same network: the TorchScript export stored in the bundle (BatchNorm folded; what ``firemap
predict --bn-adapt 0`` runs on the CPU), handed to the peer as a ``torch.jit`` file; the peer imports no firemap.
The peer gets the band scaling, normalization, band-presence channels, thresholds and class priorities that
firemap's own plan of the scene computes (one source of truth), applies the sigmoid per batch as firemap does, and
blends probabilities. What differs is the tiling and accumulation (see ``ACCUMULATION`` in the report) and the I/O:
the peer's API takes one tensor, so it reads the whole scene into memory first (timed separately) and writes one
class GeoTIFF; firemap streams tile rows and writes its usual outputs (class COG with overviews, polygons, styles).

Every run is a fresh process; its wall time is measured from fork to exit and its peak RSS by ``/usr/bin/time``
(see :func:`run_child`). The two tools alternate run by run (firemap first in the 1st, 3rd, ... repeat, the
peer first in the others) so load changes hit both. Agreement is measured once on the smallest scene, outside
the timed runs.
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

import numpy as np
from bench_predict import make_scene
from benchlib import load_average, machine, write_section

ROOT = Path(__file__).resolve().parents[1]
PEER_PYTHON = "/work/peer-venv/bin/python"
TIME = "/usr/bin/time"
log = logging.getLogger("bench_peer")

FIREMAP_RUN = textwrap.dedent("""
    import json, time
    t0 = time.perf_counter()
    import torch
    torch.set_num_threads({threads})
    import firemap.predict as P
    from firemap.config import PredictConfig
    t1 = time.perf_counter()
    spent, tiles = [0.0], [0]
    forward = P.forward_probs
    def timed(model, x, *args, **kwargs):
        t = time.perf_counter(); out = forward(model, x, *args, **kwargs); spent[0] += time.perf_counter() - t
        tiles[0] += x.shape[0]
        return out
    P.forward_probs = timed
    cfg = PredictConfig(tile_size={tile}, overlap={overlap}, batch_size={batch}, device="cpu", precision="fp32",
                        runtime="torch", bn_adapt=0.0, overwrite=True)
    P.predict_scenes([{scene!r}], {out!r}, {model!r}, cfg)
    t2 = time.perf_counter()
    print(json.dumps({{"import_s": t1 - t0, "run_s": t2 - t1, "network_s": spent[0], "tiles": tiles[0]}}))
""")

PEER_RUN = textwrap.dedent("""
    import json, time
    t0 = time.perf_counter()
    import numpy as np, rasterio, torch
    torch.set_num_threads({threads})
    # torchvision's only wheel for torch 2.13 is a CUDA build: declare the two op schemas its import needs, as
    # firemap/_compat.py does (TerraTorch imports torchgeo, which imports torchvision)
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for schema in ("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
                   "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"):
        lib.define(schema)
    from terratorch.tasks.tiled_inference import tiled_inference
    t1 = time.perf_counter()
    spec = json.load(open({spec!r}))
    net = torch.jit.load(spec["network"]).eval()
    t1b = time.perf_counter()
    with rasterio.open({scene!r}) as src:  # tiled_inference takes one tensor: the whole scene, read at once
        raw = src.read(spec["indexes"])
        profile = src.profile
    t2 = time.perf_counter()
    bands, flags = len(spec["scale"]), spec["flags"]
    x = np.empty((bands + len(flags), *raw.shape[1:]), np.float32)
    for i in range(bands):  # physical = raw * scale + offset, then (x - mean) / std: firemap's plan of the scene
        np.multiply(raw[i], np.float32(spec["scale"][i]), out=x[i], casting="unsafe")
        x[i] += np.float32(spec["offset"][i]); x[i] -= np.float32(spec["mean"][i]); x[i] /= np.float32(spec["std"][i])
    for j, flag in enumerate(flags):
        x[bands + j] = flag
    del raw
    t3 = time.perf_counter()
    spent, tiles = [0.0], [0]
    def forward(batch):  # tiled_inference stacks its tiles into an NCHW batch
        t = time.perf_counter()
        if {channels_last!r}:
            batch = batch.contiguous(memory_format=torch.channels_last)  # the layout firemap feeds the network
        p = torch.sigmoid(net(batch)); spent[0] += time.perf_counter() - t
        tiles[0] += batch.shape[0]
        return p
    probs = tiled_inference(forward, torch.from_numpy(x)[None], crop={tile}, stride={stride}, delta={delta},
                            batch_size={batch}, padding="reflect")[0].numpy()
    del x
    t4 = time.perf_counter()
    classes = np.zeros(probs.shape[1:], np.uint8)
    for k in sorted(range(len(spec["ids"])), key=lambda k: spec["priority"][k], reverse=True):
        classes[probs[k] >= np.float32(spec["threshold"][k])] = spec["ids"][k]
    profile.update(count=1, dtype="uint8", nodata=255, compress="deflate", tiled=True)
    with rasterio.open({out!r}, "w", **profile) as dst:
        dst.write(classes, 1)
    if {save_probs!r}:
        np.save({save_probs!r}, probs)
    t5 = time.perf_counter()
    print(json.dumps({{"import_s": t1 - t0, "read_s": t2 - t1b, "prepare_s": t3 - t2, "infer_s": t4 - t3,
                      "write_s": t5 - t4, "run_s": t5 - t1, "network_s": spent[0], "tiles": tiles[0]}}))
""")


LAYOUT = textwrap.dedent("""
    import json, time, torch
    torch.set_num_threads({threads})
    net = torch.jit.load({network!r}).eval()
    x = torch.randn({batch}, {channels}, {tile}, {tile}, generator=torch.Generator().manual_seed(0))
    inputs = {{"nchw": x, "channels_last": x.contiguous(memory_format=torch.channels_last)}}
    best = {{k: float("inf") for k in inputs}}
    with torch.inference_mode():
        diff = float((net(inputs["nchw"]) - net(inputs["channels_last"])).abs().max())
        for _ in range({rounds}):  # alternated, best of each: the load hits both
            for k, v in inputs.items():
                t = time.perf_counter(); net(v); best[k] = min(best[k], time.perf_counter() - t)
    print(json.dumps({{"ms_per_tile": {{k: 1e3 * v / {batch} for k, v in best.items()}}, "max_logit_diff": diff}}))
""")


def run_child(python: str, code: str, threads: int, env_extra: dict[str, str], log_path: Path) -> dict:
    """Run ``python -c code`` in a fresh process; its JSON line (last stdout line), wall seconds and peak RSS.

    The peak RSS is GNU time's ``%M`` of the child, not ``os.wait4``'s ``ru_maxrss``: Linux carries the parent's
    peak RSS into a child's ``ru_maxrss`` across fork and exec, so a child of this (large) driver would report at
    least the driver's peak; ``/usr/bin/time`` is a small parent.

    Returns:
        The child's JSON plus ``wall_s`` (fork to exit) and ``rss_mb``, or ``{"failed": reason, ...}`` when it
        exits non-zero (a kill by the OOM killer shows as signal 9).
    """
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), **env_extra}
    timing = log_path.with_suffix(".time")
    with open(log_path, "w") as out, open(log_path.with_suffix(".err"), "w") as err:
        start = time.perf_counter()
        proc = subprocess.run([TIME, "-f", "%M", "-o", str(timing), python, "-c", code], stdout=out, stderr=err,
                              env=env, check=False)
        wall = time.perf_counter() - start
    result = {"wall_s": wall, "rss_mb": int(timing.read_text().split()[-1]) / 1024}
    if proc.returncode != 0:
        tail = log_path.with_suffix(".err").read_text().strip().splitlines()[-1:] or [""]
        status = timing.read_text().strip().splitlines()[0]
        return {**result, "failed": f"exit {proc.returncode} ({status}): {tail[0][:200]}"}
    return {**result, **json.loads(log_path.read_text().strip().splitlines()[-1])}


def peer_spec(scene: Path, model: Path, tile: int, overlap: int, network: Path) -> dict:
    """What the peer needs to feed the network exactly what firemap feeds it, from firemap's plan of ``scene``.

    Also writes the bundle's exported TorchScript network to ``network`` (loadable with ``torch.jit.load``).
    """
    import torch

    from firemap.config import PredictConfig
    from firemap.predict import load_inference_bundle, plan_scene, presence_flags
    from firemap.raster import open_scene

    payload = torch.load(model, map_location="cpu", weights_only=True)
    network.write_bytes(payload["exported"]["data"].numpy().tobytes())
    cfg = PredictConfig(tile_size=tile, overlap=overlap, device="cpu", bn_adapt=0.0)
    bundle = load_inference_bundle(model, cfg)
    if bundle.runtime != "torchscript":
        raise RuntimeError(f"{model}: firemap would not run its exported network ({bundle.runtime})")
    plan = plan_scene(open_scene(scene), bundle, cfg)
    if any(s is None for s in plan.sources):  # (its pixels are >= 1: no nodata, zero fill or not)
        raise RuntimeError("the benchmark scene must have every band")
    mc, thresholds = bundle.config, bundle.config.class_thresholds()
    return {"network": str(network), "indexes": [s.index for s in plan.sources if s is not None],
            "scale": [s.encoding.scale for s in plan.sources if s is not None],
            "offset": [s.encoding.offset for s in plan.sources if s is not None],
            "mean": list(mc.mean), "std": list(mc.std), "flags": presence_flags(mc, plan.present).tolist(),
            "ids": [c.id for c in mc.classes], "priority": [c.priority for c in mc.classes],
            "threshold": [thresholds[c.name] for c in mc.classes]}


def agreement(a: np.ndarray, b: np.ndarray, classes_a: np.ndarray, classes_b: np.ndarray,
              where: np.ndarray | None = None, tol: float = 1e-3) -> dict[str, float]:
    """How far two tools' outputs for one scene are apart.

    Args:
        a, b: ``(classes, rows, cols)`` float32 probabilities.
        classes_a, classes_b: ``(rows, cols)`` class rasters (any integer dtype).
        where: ``(rows, cols)`` bool, the pixels to compare (default: all).
        tol: a probability difference above this counts a pixel as differing.

    Returns:
        ``max_abs_diff`` and ``mean_abs_diff`` of the probabilities, ``pct_pixels_over_tol`` (pixels where any
        class differs by more than ``tol``, %), ``pct_identical_classes`` (%) and ``pixels`` (compared).
    """
    if a.shape != b.shape or classes_a.shape != classes_b.shape or a.shape[1:] != classes_a.shape:
        raise ValueError(f"shapes differ: {a.shape}, {b.shape}, {classes_a.shape}, {classes_b.shape}")
    sel = np.ones(classes_a.shape, bool) if where is None else where
    diff = np.abs(a[:, sel].astype(np.float64) - b[:, sel].astype(np.float64))
    if not diff.size:
        raise ValueError("no pixel to compare")
    return {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
            "pct_pixels_over_tol": float((diff.max(axis=0) > tol).mean() * 100),
            "pct_identical_classes": float((classes_a[sel] == classes_b[sel]).mean() * 100), "pixels": int(sel.sum())}


def blend_zone(length: int, tile_size: int, overlap: int) -> np.ndarray:
    """``(length,)`` bool: where firemap blends two tiles along an axis (covered by more than one tile core)."""
    from firemap.tiling import TileGrid

    grid = TileGrid(length, 1, tile_size, overlap)
    cover = np.zeros(length, np.int32)
    for row in range(grid.shape[0]):
        r0, r1 = grid.tile(row, 0).core_rows
        cover[r0:r1] += 1
    return cover > 1


def seams(height: int, width: int, tile_size: int, overlap: int) -> np.ndarray:
    """``(height, width)`` bool: pixels in a row or column band where firemap blends neighbouring tiles."""
    return blend_zone(height, tile_size, overlap)[:, None] | blend_zone(width, tile_size, overlap)[None, :]


def firemap_probs(scene: Path, model: Path, tile: int, overlap: int, threads: int) -> np.ndarray:
    """firemap's float32 stitched probabilities ``(classes, rows, cols)`` of a scene, in this process."""
    import torch

    from firemap.config import PredictConfig
    from firemap.predict import iter_predictions, load_inference_bundle
    from firemap.raster import open_scene

    torch.set_num_threads(threads)
    cfg = PredictConfig(tile_size=tile, overlap=overlap, device="cpu", precision="fp32", runtime="torch",
                        bn_adapt=0.0)
    bundle = load_inference_bundle(model, cfg)
    info = open_scene(scene)
    probs = np.zeros((len(bundle.config.classes), info.grid.height, info.grid.width), np.float32)
    for block in iter_predictions(info, bundle, cfg):
        probs[:, block.row_off:block.row_off + block.probs.shape[1]] = block.probs
    return probs


def check_agreement(scene: Path, model: Path, args: argparse.Namespace, spec_path: Path, tmp: Path) -> dict:
    """Both tools' probabilities on ``scene`` (untimed), classified by firemap's one rule, compared.

    The peer runs twice: with ``delta`` = overlap / 2 its tiles fall exactly on firemap's (same origins, the same
    input pixels in every tile), so away from firemap's blending bands the two must agree to float rounding; and
    with the timed runs' ``--peer-delta``.
    """
    from firemap.models import load_bundle
    from firemap.predict import classify

    ours = firemap_probs(scene, model, args.tile, args.overlap, args.threads)
    config = load_bundle(model).config
    valid = np.ones(ours.shape[1:], bool)
    _, ca = classify(ours, valid, config.classes, config.class_thresholds())
    away = ~seams(*ours.shape[1:], args.tile, args.overlap)
    result: dict = {"away_pct": float(away.mean() * 100)}
    for delta in dict.fromkeys((args.overlap // 2, args.peer_delta)):
        peer_npy = tmp / f"peer_probs_{delta}.npy"
        code = peer_code(args, scene, spec_path, tmp / "peer_agree.tif", str(peer_npy), delta)
        res = run_child(args.peer_python, code, args.threads, {}, tmp / "peer_agree.log")
        if "failed" in res:
            raise RuntimeError(f"peer agreement run failed: {res['failed']}")
        theirs = np.load(peer_npy)
        _, cb = classify(theirs, valid, config.classes, config.class_thresholds())
        result[delta] = {"all": agreement(ours, theirs, ca, cb), "away": agreement(ours, theirs, ca, cb, away)}
        peer_npy.unlink()
        log.info("agreement, peer delta %d: %s", delta, result[delta])
    return result


def peer_code(args: argparse.Namespace, scene: Path, spec: Path, out: Path, save_probs: str = "",
              delta: int | None = None) -> str:
    return PEER_RUN.format(threads=args.threads, spec=str(spec), scene=str(scene), tile=args.tile,
                           stride=args.tile - args.overlap, delta=args.peer_delta if delta is None else delta,
                           batch=args.batch_size, channels_last=args.peer_layout == "channels_last",
                           out=str(out), save_probs=save_probs)


def one_run(tool: str, scene: Path, model: Path, args: argparse.Namespace, spec: Path, tmp: Path) -> dict:
    """One timed fresh-process run of ``tool`` (``firemap`` or ``peer``) on ``scene``, with the load around it."""
    before = load_average()
    if tool == "firemap":
        code = FIREMAP_RUN.format(threads=args.threads, tile=args.tile, overlap=args.overlap, batch=args.batch_size,
                                  scene=str(scene), out=str(tmp / "firemap_out"), model=str(model))
        res = run_child(sys.executable, code, args.threads, {"PYTHONPATH": str(ROOT)}, tmp / "firemap.log")
    else:
        res = run_child(args.peer_python, peer_code(args, scene, spec, tmp / "peer_classes.tif"), args.threads, {},
                        tmp / "peer.log")
    res.update(tool=tool, load=f"{before} / {load_average()}")
    log.info("%s %s: %s", tool, scene.name, res)
    return res


def layout_cost(args: argparse.Namespace, spec: dict, tmp: Path, rounds: int = 4) -> dict:
    """The network alone on one batch of random tiles, NCHW vs channels-last, alternated in one fresh process."""
    code = LAYOUT.format(threads=args.threads, network=spec["network"], batch=args.batch_size, tile=args.tile,
                         channels=len(spec["scale"]) + len(spec["flags"]), rounds=rounds)
    res = run_child(sys.executable, code, args.threads, {}, tmp / "layout.log")
    res["load"] = load_average()
    log.info("layout: %s", res)
    return res


def save(tmp: Path, rows: list[dict], agree: dict, layout: dict | None = None) -> None:
    """Write what was measured so far to ``tmp/bench_peer.json``."""
    data = {"argv": sys.argv[1:], "rows": rows, "agreement": {str(k): v for k, v in agree.items()},
            "layout": layout or {}}
    (tmp / "bench_peer.json").write_text(json.dumps(data, indent=1))


def bench(args: argparse.Namespace, model: Path, tmp: Path) -> tuple[list[dict], dict, dict]:
    """All timed runs (size by size, tools alternated), the peer spec and the agreement on the first size."""
    rows: list[dict] = []
    spec: dict = {}
    agree: dict = {}
    repeats = args.repeats + [args.repeats[-1]] * (len(args.sizes) - len(args.repeats))
    for size, n in zip(args.sizes, repeats, strict=True):
        scene = tmp / f"scene{size}.tif"
        make_scene(scene, size)
        spec_path = tmp / "peer_spec.json"
        spec = peer_spec(scene, model, args.tile, args.overlap, tmp / "network.pt")
        spec_path.write_text(json.dumps(spec))
        if not agree:
            agree = check_agreement(scene, model, args, spec_path, tmp)
        for r in range(n):
            for tool in ("firemap", "peer") if r % 2 == 0 else ("peer", "firemap"):
                rows.append({"size": size, "repeat": r + 1, **one_run(tool, scene, model, args, spec_path, tmp)})
                save(tmp, rows, agree)  # kept run by run: --report-from rebuilds the table from it
        scene.unlink()
    return rows, spec, agree


ACCUMULATION = (
    "**How each accumulates** (tile 256, overlap 64 = stride 192 in both). *firemap*: tiles start 32 px before the "
    "scene edge (reflect padding), so every pixel gets context; of each tile's probabilities the outer 16 px "
    "(overlap / 4) are dropped and the rest is blended with a Hann window that never falls below 1% of its centre, "
    "divided by the summed weights; sums are kept for one band of tile rows (256 rows x scene width) and finished "
    "rows are classified and written as soon as no later tile touches them. *TerraTorch* `tiled_inference`: "
    "`crop` is the tile size and `stride` the step (its overlap = crop - stride); the whole input tensor is padded "
    "by `delta` px (reflect), every tile's prediction loses `delta` px on each side and is weighted by a mask that "
    "is 1 in the middle and falls along a raised cosine over the outer `min(crop/2, crop - stride) - delta` px of "
    "each side (plus 1e-6), summed into a whole-scene `(classes, rows, cols)` tensor and divided by the whole-scene "
    "sum of the masks. The tiles' inputs are views of the padded scene tensor, and every batch's output is kept in "
    "a list until all tiles are done; the last tile of each row and column is aligned with the scene edge.")


def report(rows: list[dict], agree: dict, layout: dict, args: argparse.Namespace, versions: dict[str, str],
           argv: list[str] | None = None) -> str:
    cmd = f"python scripts/bench_peer.py {' '.join(sys.argv[1:] if argv is None else argv)}".strip()
    lines = [
        "## Side by side: firemap vs TerraTorch tiled_inference (same weights)", "",
        f"Command: `{cmd}`  ",
        f"Machine: {machine(args.threads)} when the report was written (each row has the load around its run).  ",
        f"Versions: {', '.join(f'{k} {v}' for k, v in versions.items())}.  ",
        f"Same network on both sides: the TorchScript export in `{Path(args.model).name}` (BatchNorm folded, what "
        "`firemap predict --bn-adapt 0` runs on the CPU), fp32, batch "
        f"{args.batch_size}, {args.threads} torch thread(s), tile {args.tile}, stride {args.tile - args.overlap}; "
        f"TerraTorch `delta` {args.peer_delta}; the peer's batches {LAYOUTS[args.peer_layout]}. "
        "Scenes: `bench_predict.make_scene` (6-band uint16 Sentinel-2-like, "
        "deflate, 256 px blocks), scaled to reflectance and normalized as firemap's plan of the scene says.", "",
        "| scene | run | tool | tiles | wall s (fork to exit) | imports s | read s | prepare s | network s "
        "| rest s | write s | peak RSS MB | load before / after |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(row_line(r))
    lines += ["", *summary(rows), "", agreement_text(agree, args), "", layout_text(layout, args), "", ACCUMULATION,
              "", TIMING_NOTE]
    return "\n".join(lines)


LAYOUTS = {"channels_last": "are made channels-last in its forward callable (as firemap feeds the network; "
                            "`tiled_inference` itself stacks NCHW tiles)",
           "nchw": "are NCHW, as `tiled_inference` stacks them (firemap feeds channels-last batches)"}


def layout_text(layout: dict, args: argparse.Namespace) -> str:
    if "ms_per_tile" not in layout:
        return f"Layout: not measured ({layout.get('failed', '?')})."
    ms = layout["ms_per_tile"]
    return (f"**Memory layout** (the network alone, one batch of {args.batch_size} random tiles, best of 4 alternated "
            f"rounds in one fresh process, load {layout['load']}): NCHW {ms['nchw']:.0f} ms per tile, channels-last "
            f"{ms['channels_last']:.0f} ms per tile ({ms['nchw'] / ms['channels_last']:.2f}x); logits differ by at "
            f"most {layout['max_logit_diff']:.2g} between the two layouts.")


def row_line(r: dict) -> str:
    size = f"{r['size']}x{r['size']}"
    if "failed" in r:
        return (f"| {size} | {r['repeat']} | {r['tool']} | - | {r['wall_s']:.1f} | - | - | - | - | - | - | "
                f"{r['rss_mb']:.0f} | {r['load']} (**failed**: {r['failed']}) |")

    def cell(key: str) -> str:
        return f"{r[key]:.1f}" if key in r else "-"

    rest = r["run_s"] - r["network_s"] - r.get("read_s", 0) - r.get("prepare_s", 0) - r.get("write_s", 0)
    return (f"| {size} | {r['repeat']} | {r['tool']} | {r['tiles']} | {r['wall_s']:.1f} | {r['import_s']:.1f} | "
            f"{cell('read_s')} | {cell('prepare_s')} | {r['network_s']:.1f} | {rest:.1f} | {cell('write_s')} | "
            f"{r['rss_mb']:.0f} | {r['load']} |")


def summary(rows: list[dict]) -> list[str]:
    """Per size: medians of each tool (wall, time after imports, network ms per tile, peak RSS) and peer / firemap."""
    out = ["| scene | wall s firemap / peer | after imports s firemap / peer | peer / firemap after imports "
           "| network ms per tile firemap / peer | peak RSS MB firemap / peer | peer / firemap RSS |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for size in dict.fromkeys(r["size"] for r in rows):
        f, p = (_medians([r for r in rows if r["size"] == size and r["tool"] == tool]) for tool in ("firemap", "peer"))
        if not f or not p:
            out.append(f"| {size}x{size} | {_fmt(f, 'wall_s')} / {_fmt(p, 'wall_s')} | - | - | - | "
                       f"{_fmt(f, 'rss_mb', 0)} / - | - (a run failed) |")
            continue
        out.append(f"| {size}x{size} | {f['wall_s']:.1f} / {p['wall_s']:.1f} | {f['run_s']:.1f} / {p['run_s']:.1f} | "
                   f"{p['run_s'] / f['run_s']:.2f}x | {f['ms_tile']:.0f} / {p['ms_tile']:.0f} | "
                   f"{f['rss_mb']:.0f} / {p['rss_mb']:.0f} | {p['rss_mb'] / f['rss_mb']:.1f}x |")
    return out


def _medians(runs: list[dict]) -> dict[str, float]:
    ok = [r for r in runs if "failed" not in r]
    if not ok:
        return {}
    return {"wall_s": float(np.median([r["wall_s"] for r in ok])), "run_s": float(np.median([r["run_s"] for r in ok])),
            "rss_mb": float(np.median([r["rss_mb"] for r in ok])),
            "ms_tile": float(np.median([1e3 * r["network_s"] / r["tiles"] for r in ok]))}


def _fmt(d: dict, key: str, digits: int = 1) -> str:
    return f"{d[key]:.{digits}f}" if key in d else "-"


def agreement_text(agree: dict, args: argparse.Namespace) -> str:
    if not agree:
        return "Agreement: not measured."
    size = args.sizes[0]
    lines = [f"**Agreement** on the {size}^2 scene (float probabilities of both tools from untimed runs; classes by "
             "firemap's thresholds and priorities applied to both). *Away from seams*: the "
             f"{agree['away_pct']:.0f}% of pixels outside the bands where firemap blends two tiles.", "",
             "| TerraTorch delta | pixels | max abs prob. diff | mean abs diff | % pixels > 1e-3 "
             "| % identical classes |", "|---|---|---:|---:|---:|---:|"]
    for delta, parts in agree.items():
        if delta == "away_pct":
            continue
        note = " (tiles on firemap's grid)" if int(delta) == args.overlap // 2 else ""
        for key, label in (("all", "all"), ("away", "away from seams")):
            a = parts[key]
            lines.append(f"| {delta}{note} | {label} | {a['max_abs_diff']:.3g} | {a['mean_abs_diff']:.2g} | "
                         f"{a['pct_pixels_over_tol']:.2f} | {a['pct_identical_classes']:.3f} |")
    return "\n".join(lines)


TIMING_NOTE = (
    "Columns: *wall* from fork to exit of a fresh process (imports, loading the network, reading, the network, "
    "stitching, writing); *imports* `import torch` and the tool's modules (TerraTorch pulls in torchgeo, "
    "torchvision, lightning, ...); *read* the peer's whole-scene `rasterio` read (firemap reads tile rows in a "
    "worker thread while the network runs: inside its *rest*); *prepare* the peer's scaling and normalization into "
    "one float32 scene tensor; *network* the forward passes (sigmoid included) timed inside the run; *rest* "
    "everything else inside the run (firemap: planning, reading, stitching, class COG with overviews, polygons, "
    "styles; peer: loading the network, cutting, stitching); *write* the peer's class GeoTIFF (deflate, no "
    "overviews, no polygons). Peak RSS is the child's own `ru_maxrss`. firemap also uses a reader thread and a "
    "COG-writing thread beside its torch threads; the peer is single-threaded outside torch.")


def versions(peer_python: str) -> dict[str, str]:
    """Versions of both sides (the peer's read from its own interpreter)."""
    import torch

    code = ("import importlib.metadata as m, json; print(json.dumps({k: m.version(k) for k in "
            "('terratorch', 'torch', 'torchgeo', 'torchvision', 'numpy', 'rasterio')}))")
    peer = json.loads(subprocess.run([peer_python, "-c", code], capture_output=True, text=True, check=True).stdout)
    from importlib.metadata import version
    return {"firemap": version("firemap"), "firemap torch": str(torch.__version__),
            **{f"peer {k}": v for k, v in peer.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096, 8192], help="scene sizes, px")
    parser.add_argument("--repeats", type=int, nargs="+", default=[2, 2, 1],
                        help="runs per tool for each size (the last value repeats for further sizes)")
    parser.add_argument("--model", default=str(ROOT / "firemap" / "assets" / "default.firemap.pt"))
    parser.add_argument("--peer-python", default=PEER_PYTHON, help="interpreter of the virtualenv with terratorch")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=64, help="firemap's overlap; the peer's stride = tile - this")
    parser.add_argument("--peer-delta", type=int, default=8, help="TerraTorch's delta in the timed runs (px cropped "
                        "from each side of each tile's prediction; TerraTorch's default 8)")
    parser.add_argument("--peer-layout", choices=["channels_last", "nchw"], default="channels_last",
                        help="memory layout of the peer's batches: channels_last (as firemap feeds the network; one "
                        "line in the peer's forward callable) or nchw (as tiled_inference stacks them)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch/OpenMP threads of every measured process")
    parser.add_argument("--workdir", default=None, help="keep scenes, logs and JSON here (default: a temporary dir)")
    parser.add_argument("--report-from", default=None, help="rebuild the report from a bench_peer.json of an earlier "
                        "--workdir (give the same options) instead of measuring")
    parser.add_argument("--no-write", action="store_true", help="print instead of updating docs/benchmarks.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.report_from:
        data = json.loads(Path(args.report_from).read_text())
        rows, layout, argv = data["rows"], data["layout"], data.get("argv")
        agree = {k if k == "away_pct" else int(k): v for k, v in data["agreement"].items()}
    else:
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(args.workdir or d)
            tmp.mkdir(parents=True, exist_ok=True)
            rows, spec, agree = bench(args, Path(args.model), tmp)
            layout = layout_cost(args, spec, tmp)
            save(tmp, rows, agree, layout)
        argv = None
    text = report(rows, agree, layout, args, versions(args.peer_python), argv)
    if args.no_write:
        sys.stdout.write(text + "\n")
    else:
        write_section("bench_peer", text)
        log.info("updated docs/benchmarks.md (bench_peer)")


if __name__ == "__main__":
    main()
