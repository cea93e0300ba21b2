"""Peak memory of ``firemap predict`` on a huge, mostly empty scene (200 000 x 200 000 px), for a bounded time.

The scene is a VRT: 6 Landsat-8 L1 bands of 200 000 x 200 000 px (40 gigapixels, nodata 0) with a few simulated
1024 x 1024 scenes placed at scattered positions, so almost every tile is nodata. ``firemap predict`` with the
shipped default model runs on it in a subprocess for ``--seconds``; its resident memory (VmRSS, and the kernel's
peak VmHWM) is sampled every second; then the run is stopped with SIGTERM, which must leave no file under a final
name and no temporary or lock. Before issue 11, tiles without data were queued until 8 tiles with data arrived,
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZE = 200_000
PATCH = 1024
# (row, col) of the simulated patches: one at the origin, others scattered along the first tile rows and far out
PATCHES = [(0, 0), (600, 60_000), (1500, 150_000), (2600, 198_000), (100_000, 100_000), (199_000, 5_000)]


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
    """Run predict on ``vrt`` for ``seconds``, sampling memory; stop it with SIGTERM."""
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "2"}
    cmd = [sys.executable, "-m", "firemap", "predict", str(vrt), "--out", str(out), "--device", "cpu", "-q"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t0, samples = time.monotonic(), []
    while time.monotonic() - t0 < seconds and proc.poll() is None:
        time.sleep(1.0)
        try:
            samples.append((time.monotonic() - t0, _status(proc.pid)))
        except (FileNotFoundError, ProcessLookupError):
            break
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    left = sorted(p.name for p in out.iterdir()) if out.exists() else []
    return {"samples": samples, "returncode": proc.returncode, "stderr": err.strip().splitlines()[-1:] if err else [],
            "left": left}


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
    print(f"code: {args.code}; scene {SIZE} x {SIZE} px VRT, {len(PATCHES)} patches of {PATCH}^2 px with data")
    print("| time s | VmRSS MB | peak (VmHWM) MB |\n|---:|---:|---:|")
    for t, s in samples[:: max(1, len(samples) // 12)] + samples[-1:]:  # type: ignore[index, operator]
        print(f"| {t:.0f} | {s['VmRSS'] / 2**20:.0f} | {s['VmHWM'] / 2**20:.0f} |")
    print(f"exit code after SIGTERM: {result['returncode']} ({' '.join(result['stderr'])}); "  # type: ignore[arg-type]
          f"left in the output folder: {result['left'] or 'nothing'}")


if __name__ == "__main__":
    main()
