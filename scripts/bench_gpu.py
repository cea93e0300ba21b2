"""Benchmark ``firemap predict`` on a CUDA GPU: tiles/s, end-to-end time and CPU-side overhead.

    python scripts/bench_gpu.py                         # 4096^2 scene, batch auto, fp16, with and without CUDA graphs
    python scripts/bench_gpu.py --sizes 2048 8192 --precision bf16 --batch-size 32

Without a GPU it says so and exits 0 (nothing to measure). With one, for each scene size and each variant
(CUDA graphs off/on) it runs the whole predict path (read, normalize, network, stitch, write COGs, vectorize) and,
in the same process, the bare network on as many tiles with the same batches, synchronising the device:

* tiles/s: tiles / end-to-end seconds, and tiles / bare-network seconds (the GPU's ceiling);
* CPU-side overhead: end-to-end / bare network - 1 (reading, normalization, stitching, writing: what the tile
  loop's overlap of host work with device work is meant to hide);
* the batch size ``auto`` chose and the peak device memory.

Writes the ``bench_gpu`` section of docs/benchmarks.md unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_predict import make_scene
from benchlib import machine, write_section

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from firemap.config import PredictConfig  # noqa: E402
from firemap.predict import autocast_dtype, batch_size, forward_probs, load_inference_bundle, predict_scenes  # noqa: E402

log = logging.getLogger("bench_gpu")


def bare_network(bundle: object, cfg: PredictConfig, tiles: int, batch: int) -> float:
    """Seconds for the network alone on ``tiles`` random tiles in batches of ``batch`` (device synchronised)."""
    model = bundle.model  # type: ignore[attr-defined]
    c, t = bundle.config.in_channels, bundle.config.tile_size  # type: ignore[attr-defined]
    device = torch.device("cuda")
    amp = autocast_dtype(device, cfg.precision)
    x = torch.randn(batch, c, t, t, device=device).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        forward_probs(model, x, "none", amp)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for i in range(0, tiles, batch):
            forward_probs(model, x[: min(batch, tiles - i)], "none", amp)
        torch.cuda.synchronize()
    return time.perf_counter() - start


def run(args: argparse.Namespace) -> list[str]:
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for size in args.sizes:
            scene = tmp / f"scene{size}.tif"
            make_scene(scene, size)
            for graphs in (False, True):
                cfg = PredictConfig(device="cuda", precision=args.precision, batch_size=args.batch_size,
                                    cuda_graphs=graphs, overwrite=True)
                bundle = load_inference_bundle(args.model, cfg)
                batch = batch_size(cfg, bundle)
                torch.cuda.reset_peak_memory_stats()
                start = time.perf_counter()
                result = predict_scenes([scene], tmp / "out", args.model, cfg)[0]
                seconds = time.perf_counter() - start
                peak = torch.cuda.max_memory_allocated() / 2**20
                bare = bare_network(bundle, cfg, result.tiles, batch)
                rows.append(f"| {size}^2 | {result.tiles} | {'on' if graphs else 'off'} | {batch} | {seconds:.2f} | "
                            f"{result.tiles / seconds:.0f} | {result.tiles / bare:.0f} | {seconds / bare - 1:+.0%} | "
                            f"{peak:.0f} |")
                log.info("%s", rows[-1])
            scene.unlink()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096])
    parser.add_argument("--model", default=None)
    parser.add_argument("--batch-size", default="auto")
    parser.add_argument("--precision", default="fp16", choices=["fp32", "fp16", "bf16"])
    parser.add_argument("--no-write", action="store_true", help="print instead of updating docs/benchmarks.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not torch.cuda.is_available():
        log.info("bench_gpu: no CUDA device visible to torch %s (CPU build or no GPU): nothing to measure. "
                 "Run it on a machine with a GPU and a CUDA torch.", torch.__version__)
        return
    rows = run(args)
    name = torch.cuda.get_device_name(0)
    section = "\n".join([
        "## predict on a GPU", "",
        f"Command: `python scripts/bench_gpu.py {' '.join(sys.argv[1:])}`  ",
        f"GPU: {name}; host: {machine(torch.get_num_threads())}; precision {args.precision}.", "",
        "| scene | tiles | CUDA graphs | batch | end-to-end s | tiles/s end-to-end | tiles/s bare network | "
        "CPU-side overhead | peak GPU MiB |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|", *rows])
    if args.no_write:
        sys.stdout.write(section + "\n")
    else:
        write_section("bench_gpu", section)


if __name__ == "__main__":
    main()
