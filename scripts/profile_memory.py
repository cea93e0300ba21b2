"""Where predict's peak memory goes: peak RSS per phase, the C heap at the peak, and (optionally) Python's.

Predicts the synthetic 6-band scene of ``scripts/bench_predict.py`` (``--size 8192`` or ``--size 2048x8192`` for a
wide strip) in this process with 1 torch thread and ``--bn-adapt 0``, and prints one JSON line:

* ``peak_mb``: peak RSS of each phase (model loading, tile loop, after the loop, polygon dissolve and COG
  writing), exact: the kernel's high-water mark (``VmHWM``) is read and reset (``/proc/self/clear_refs``) at each
  phase change;
* ``heap_at_peak``: glibc's ``mallinfo2`` when RSS was highest in each phase (sampled every 20 ms): heap size,
  bytes in use and free in it (free = holes left by freed buffers; ``top`` is the part glibc could give back),
  and ``mmap``-ed bytes;
* with ``--trace``: ``tracemalloc``'s largest allocations (numpy registers its buffers) at the RSS peak.

    python scripts/profile_memory.py --size 8192 --fake-network     # the pipeline alone, in a minute
    python scripts/profile_memory.py --size 2048 --trace --fake-network
    python scripts/profile_memory.py --size 8192                    # the real default network (minutes)

``--fake-network`` is the stand-in of ``scripts/profile_predict.py`` (a box filter through a sigmoid): it keeps
the pipeline's buffers but not the network's activations, which share the C heap with them. Linux and glibc only.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import torch
from bench_predict import make_scene

ROOT = Path(__file__).resolve().parents[1]


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]


class Monitor:
    """Per-phase peak RSS (exact) and the heap at each phase's sampled RSS peak."""

    def __init__(self, trace: bool) -> None:
        self.phase, self.peaks, self.heap = "start", {}, {}
        self.trace, self.snapshot, self._best = trace, None, 0
        self._libc = ctypes.CDLL("libc.so.6")
        self._libc.mallinfo2.restype = _MallInfo2
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def _status(key: str) -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) // 1024 for line in f if line.startswith(key + ":"))

    def mark(self, phase: str) -> None:
        self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), self._status("VmHWM"))
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        self.phase = phase

    def _sample(self) -> None:
        while not self._stop.is_set():
            rss = self._status("VmRSS")
            if rss >= self.heap.get(self.phase, {}).get("rss", 0):
                m = self._libc.mallinfo2()
                self.heap[self.phase] = {"rss": rss, "heap": m.arena >> 20, "in_use": m.uordblks >> 20,
                                         "free": m.fordblks >> 20, "top": m.keepcost >> 20, "mmap": m.hblkhd >> 20}
            if self.trace and rss > self._best + 2:
                self._best, self.snapshot = rss, (self.phase, rss, tracemalloc.take_snapshot())
            time.sleep(0.02)

    def __enter__(self) -> Monitor:
        if self.trace:
            tracemalloc.start(8)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.mark("end")
        self._stop.set()
        self._thread.join()


def instrument(mon: Monitor, fake: bool) -> None:
    """Phase markers around the tile loop and the dissolve; the stand-in network if asked for."""
    import firemap.predict as P
    import firemap.vectorize as V

    finish, rows = V.PolygonCollector.finish, P._stitched_rows

    def finish_marked(self, *a, **k):  # type: ignore[no-untyped-def]
        mon.mark("dissolve, vector file and COGs")
        return finish(self, *a, **k)

    def rows_marked(*a, **k):  # type: ignore[no-untyped-def]
        mon.mark("tile loop")
        yield from rows(*a, **k)
        mon.mark("after the tile loop")

    V.PolygonCollector.finish, P._stitched_rows = finish_marked, rows_marked
    if fake:
        def network(model, x, *a, **k):  # type: ignore[no-untyped-def]
            s = torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(x[:, :1], 8), scale_factor=8)
            p = torch.sigmoid(torch.cat([s * 0 - 5, 30 * (s + 0.75), s * 0 - 5], 1))
            return p.contiguous(memory_format=torch.channels_last)

        P.forward_probs = network


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="2048", help="N (N x N) or HxW pixels")
    parser.add_argument("--fake-network", action="store_true", help="the cheap stand-in network")
    parser.add_argument("--trace", action="store_true", help="tracemalloc snapshot at the RSS peak (slow)")
    parser.add_argument("--scene-dir", type=Path, default=None, help="keep (and reuse) the scenes here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sys.path.insert(0, str(ROOT))
    import firemap.predict as P
    from firemap.config import PredictConfig

    height, width = (int(v) for v in (args.size.split("x") if "x" in args.size else (args.size, args.size)))
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.scene_dir or Path(tmp)
        scene = folder / f"scene{height}x{width}.tif"
        if not scene.exists():
            make_scene(scene, height, width=width)
        mon = Monitor(args.trace)
        instrument(mon, args.fake_network)
        cfg = PredictConfig(batch_size=8, overwrite=True, device="cpu", runtime="torch", bn_adapt=0)
        with mon:
            mon.mark("model loading, planning")
            t0 = time.perf_counter()
            result = P.predict_scenes([scene], Path(tmp) / "out", None, cfg)[0]
            seconds = time.perf_counter() - t0
    print(json.dumps({"size": args.size, "network": "fake" if args.fake_network else "default", "seconds": seconds,
                      "polygons": sum(result.polygons.values()), "peak_mb": mon.peaks, "heap_at_peak": mon.heap}))
    if mon.snapshot:
        phase, rss, snap = mon.snapshot
        print(f"largest allocations at {rss} MB RSS ({phase}):")
        for stat in snap.statistics("traceback")[:12]:
            where = next((f for f in reversed(stat.traceback) if "firemap" in f.filename), stat.traceback[-1])
            print(f"  {stat.size / 2**20:6.1f} MB in {stat.count:5d} blocks  {where.filename}:{where.lineno}")


if __name__ == "__main__":
    main()
