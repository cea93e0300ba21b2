"""Peak memory of ``firemap predict`` on a huge, mostly empty scene (200 000 x 200 000 px), for a bounded time.

The scene is a VRT: 6 Landsat-8 L1 bands of 200 000 x 200 000 px (40 gigapixels, nodata 0) with a few simulated
1024 x 1024 scenes placed at scattered positions, so almost every tile is nodata. ``firemap predict`` with the
shipped default model runs on it in a subprocess (``predict_scenes``, the library call behind ``firemap predict``,
with a progress callback that prints the tiles done) for ``--seconds``; its resident memory (VmRSS, and the
kernel's peak VmHWM) is sampled every second; then the run is stopped with SIGTERM, which must leave no file under
a final name and no temporary or lock. Before issue 11, tiles without data were queued until 8 tiles with data arrived,
so memory grew without bound (3.4 GB after 150 s) and nothing was written.

    python scripts/bench_sparse.py                         # 150 s, this checkout
    python scripts/bench_sparse.py --seconds 100 --code /path/to/other/checkout   # e.g. the code before the fix

Prints a Markdown table; paste it into docs/reliability.md with the command.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZE = 200_000
PATCH = 1024
# (row, col) of the simulated patches: none in the first 2000 rows (the layout that made the old loop queue every
# empty tile), one far right at row 2000, the others far away
PATCHES = [(2_000, 150_000), (100_000, 100_000), (199_000, 5_000)]

DRIVER = """
import signal, sys, time
from pathlib import Path
from firemap.config import PredictConfig
from firemap.predict import predict_scenes

def stop(signum, frame):
    raise KeyboardInterrupt

signal.signal(signal.SIGTERM, stop)
done, last = [0], [0.0]

def factory(scene, total):
    print(f"grid {total}", flush=True)
    def tick(n):
        done[0] += n
        if time.monotonic() - last[0] > 2:
            last[0] = time.monotonic()
            print(f"tiles {done[0]}", flush=True)
    return tick

try:
    predict_scenes([sys.argv[1]], sys.argv[2], None, PredictConfig(device="cpu"), factory)
except KeyboardInterrupt:
    print(f"tiles {done[0]}", flush=True)
    print("stopped", flush=True)
    sys.exit(143)
"""


def build_scene(folder: Path) -> Path:
    """Write one simulated Landsat-8 L1 scene and a 200 000^2 VRT that places it at :data:`PATCHES`."""
    from firemap.simulate import simulate_scene, write_scene

    patch, _ = write_scene(simulate_scene("landsat8", PATCH, PATCH, seed=3), folder / "patch.tif")
    import rasterio

    with rasterio.open(patch) as src:
        descriptions, dtype, count = src.descriptions, src.dtypes[0], src.count
        crs, transform = src.crs.to_wkt(), src.transform
    gt = ", ".join(str(v) for v in transform.to_gdal())
    bands = []
    for b in range(1, count + 1):
        sources = "".join(
            f"<SimpleSource><SourceFilename relativeToVRT=\"1\">{patch.name}</SourceFilename>"
            f"<SourceBand>{b}</SourceBand><SrcRect xOff=\"0\" yOff=\"0\" xSize=\"{PATCH}\" ySize=\"{PATCH}\"/>"
            f"<DstRect xOff=\"{c}\" yOff=\"{r}\" xSize=\"{PATCH}\" ySize=\"{PATCH}\"/></SimpleSource>"
            for r, c in PATCHES
        )
        bands.append(f"<VRTRasterBand dataType=\"{_gdal_type(dtype)}\" band=\"{b}\"><NoDataValue>0</NoDataValue>"
                     f"<Description>{descriptions[b - 1]}</Description>{sources}</VRTRasterBand>")
    vrt = folder / "sparse200k.vrt"
    vrt.write_text(f"<VRTDataset rasterXSize=\"{SIZE}\" rasterYSize=\"{SIZE}\"><SRS>{_xml(crs)}</SRS>"
                   f"<GeoTransform>{gt}</GeoTransform>{''.join(bands)}</VRTDataset>")
    return vrt


def _gdal_type(dtype: str) -> str:
    return {"uint16": "UInt16", "int16": "Int16", "float32": "Float32", "uint8": "Byte"}[dtype]


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _status(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out


def run(vrt: Path, out: Path, seconds: float, code: Path) -> dict[str, object]:
    """Run predict on ``vrt`` for ``seconds``, sampling memory and tiles done; stop it with SIGTERM."""
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "2"}
    cmd = [sys.executable, "-c", DRIVER, str(vrt), str(out)]
    proc = subprocess.Popen(cmd, env=env, cwd=vrt.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    t0, samples = time.monotonic(), []
    while time.monotonic() - t0 < seconds and proc.poll() is None:
        time.sleep(1.0)
        try:
            samples.append((time.monotonic() - t0, _status(proc.pid), _last(lines, "tiles")))
        except (FileNotFoundError, ProcessLookupError):
            break
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=300)
    reader.join(timeout=10)
    tiles, grid = _last(lines, "tiles"), _last(lines, "grid")
    left = sorted(p.name for p in out.iterdir()) if out.exists() else []
    return {"samples": samples, "returncode": proc.returncode, "tiles": tiles, "grid": grid, "left": left}


def _last(lines: list[str], key: str) -> int:
    values = [int(line.split()[1]) for line in list(lines) if line.startswith(key + " ")]
    return values[-1] if values else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=150.0)
    parser.add_argument("--code", type=Path, default=ROOT, help="checkout whose firemap to run (PYTHONPATH)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory(prefix="bench_sparse_") as tmp:
        folder = Path(tmp)
        vrt = build_scene(folder)
        result = run(vrt, folder / "out", args.seconds, args.code)
    samples = result["samples"]
    print(f"command: python scripts/bench_sparse.py {' '.join(sys.argv[1:])}")
    print(f"code: {args.code}; scene {SIZE} x {SIZE} px VRT, {len(PATCHES)} patches of {PATCH}^2 px with data at "
          f"(row, col) {PATCHES}; tile grid {result['grid']} tiles")
    print("| time s | tiles done | VmRSS MB | peak (VmHWM) MB |\n|---:|---:|---:|---:|")
    for t, s, tiles in samples[:: max(1, len(samples) // 10)] + samples[-1:]:  # type: ignore[index, operator]
        print(f"| {t:.0f} | {tiles} | {s['VmRSS'] / 2**20:.0f} | {s['VmHWM'] / 2**20:.0f} |")
    print(f"after SIGTERM: exit code {result['returncode']}, {result['tiles']} tiles done, "
          f"left in the output folder: {result['left'] or 'nothing'}")


if __name__ == "__main__":
    main()
