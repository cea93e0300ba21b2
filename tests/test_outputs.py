"""Outputs appear together or not at all: interrupts, full disks, killed runs, concurrent runs, sparse scenes."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

import firemap.predict
import firemap.raster
import firemap.style
import firemap.vectorize
from firemap.config import PredictConfig
from firemap.errors import OutputExistsError, OutputLockedError, OutputWriteError
from firemap.models import Bundle
from firemap.predict import iter_predictions, predict_scene
from firemap.raster import claimed_outputs, open_scene, output_stem
from tests.conftest import UTM_TRANSFORM, background

CFG = PredictConfig(tile_size=64, overlap=16, save_probs=True)
FINALS = ["scene.classes.qml", "scene.classes.tif", "scene.geojson", "scene.probs.tif", "scene.qml"]


def _scene(write_tif, height: int = 96, width: int = 96) -> Path:
    data = background(height, width)
    data[5, 40:50, 60:70] = 0.9  # fire
    return write_tif(data)


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _raise(exc: BaseException):
    def stage(*args: object, **kwargs: object) -> None:
        raise exc

    return stage


STAGES = {
    "network": lambda mp, exc: mp.setattr(firemap.predict, "forward_probs", _raise(exc)),
    "class COG": lambda mp, exc: mp.setattr(firemap.raster.TiledWriter, "close", _raise(exc)),
    "polygons": lambda mp, exc: mp.setattr(firemap.vectorize.PolygonCollector, "finish_table", _raise(exc)),
    "styles": lambda mp, exc: mp.setattr(firemap.style, "raster_qml", _raise(exc)),
    "vectors": lambda mp, exc: mp.setattr(firemap.vectorize, "write_vector_file", _raise(exc)),
}


@pytest.mark.parametrize("stage", list(STAGES))
@pytest.mark.parametrize("kind", ["interrupt", "disk full"])
def test_failure_at_any_stage_leaves_nothing_and_rerun_works(
    stage: str, kind: str, write_tif, threshold_bundle: Bundle, tmp_path: Path, monkeypatch
) -> None:
    scene, out = _scene(write_tif), tmp_path / "o"
    exc = KeyboardInterrupt() if kind == "interrupt" else OSError(errno.ENOSPC, "No space left on device")
    with monkeypatch.context() as mp:
        STAGES[stage](mp, exc)
        expected = KeyboardInterrupt if kind == "interrupt" else OutputWriteError
        with pytest.raises(expected, match=None if kind == "interrupt" else "disk full"):
            predict_scene(scene, out, threshold_bundle, CFG)
    assert _listing(out) == []  # no final name, no temporary, no lock
    predict_scene(scene, out, threshold_bundle, CFG)  # the rerun needs no --overwrite
    assert _listing(out) == FINALS


def test_publishing_is_all_or_nothing(write_tif, threshold_bundle, tmp_path, monkeypatch) -> None:
    """A failure while renaming the temporaries removes the outputs already renamed."""
    scene, out = _scene(write_tif), tmp_path / "o"
    real, calls = os.link, []

    def link(src: str, dst: str) -> None:
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(os, "link", link)
    with pytest.raises(OutputWriteError, match="disk full"):
        predict_scene(scene, out, threshold_bundle, CFG)
    assert len(calls) == 3 and _listing(out) == []


def test_a_file_appearing_meanwhile_is_never_replaced(write_tif, threshold_bundle, tmp_path, monkeypatch) -> None:
    scene, out = _scene(write_tif), tmp_path / "o"
    real = firemap.vectorize.write_vector_file

    def write_and_race(gdf, path, *args, **kwargs):  # another program writes a final name during the run
        (out / "scene.geojson").write_text("theirs")
        return real(gdf, path, *args, **kwargs)

    monkeypatch.setattr(firemap.vectorize, "write_vector_file", write_and_race)
    with pytest.raises(OutputExistsError, match="appeared while this run was writing"):
        predict_scene(scene, out, threshold_bundle, CFG)
    assert _listing(out) == ["scene.geojson"] and (out / "scene.geojson").read_text() == "theirs"


def test_concurrent_run_fails_fast_before_any_work(write_tif, threshold_bundle, tmp_path) -> None:
    scene, out = _scene(write_tif), tmp_path / "o"
    with claimed_outputs([out / "scene.geojson"]):  # run A holds the claim
        with pytest.raises(OutputLockedError, match="another firemap run"):
            predict_scene(scene, out, threshold_bundle, CFG)
        assert threshold_bundle.model.tiles == 0  # run B stopped before the network
        assert _listing(out) == [".scene.geojson.firemap-lock"]
    assert _listing(out) == []


def test_stale_lock_and_temporaries_of_a_killed_run_are_cleaned(write_tif, threshold_bundle, tmp_path) -> None:
    scene, out = _scene(write_tif), tmp_path / "o"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / ".scene.classes.tif.firemap-lock").write_text(f"{dead.pid}@{socket.gethostname()}\n")
    (out / ".scene.classes.tif.0badf00d.partial.tif").write_bytes(b"half a COG")
    (out / ".scene.classes.tif.0badf00d.partial.tif.scratch.tif").write_bytes(b"scratch")
    predict_scene(scene, out, threshold_bundle, CFG)
    assert _listing(out) == FINALS


def test_sigterm_unwinds_like_ctrl_c(tmp_path, smp_bundle_path, write_tif) -> None:
    scene = write_tif(background(512, 512))
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "firemap", "predict", str(scene), "--out", str(out), "--model",
           str(smp_bundle_path), "--batch-size", "1", "--save-probs", "-q"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while not list(out.glob(".*partial*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # wait until the run is writing its temporaries
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "terminated" in err and "Traceback" not in err
    assert _listing(out) == []


def test_sparse_scene_streams_with_bounded_tiles_in_flight(write_tif, threshold_bundle, monkeypatch) -> None:
    """A tall scene with data only in its last rows: the old loop held every empty tile until 8 tiles with data
    arrived (nothing released until the end); now at most 4 batches of tiles are in flight and rows are
    released while the scene is still being read."""
    data = np.full((6, 1000, 64), -9999, np.float32)
    data[:, -30:] = background(30, 64)
    info = open_scene(write_tif(data, nodata=-9999))
    reads, seen_at_first_block, in_flight = [], [], []
    real = firemap.raster.StripReader.read

    def counting(*args, **kwargs):
        reads.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(firemap.raster.StripReader, "read", counting)
    cfg = PredictConfig(tile_size=64, overlap=16, batch_size=2)
    blocks = []
    for block in iter_predictions(info, threshold_bundle, cfg, in_flight.append):
        if not blocks:
            seen_at_first_block.append(len(reads))
        blocks.append(block)
    chunks = len(reads)
    assert max(in_flight) <= firemap.predict.MAX_QUEUED_BATCHES * cfg.batch_size
    assert chunks >= 20 and seen_at_first_block[0] <= 6  # first rows left after ~4 tile rows, not at the end
    assert sum(b.probs.shape[1] for b in blocks) == 1000
    valid = np.concatenate([b.valid for b in blocks])
    assert not valid[:-30].any() and valid[-30:].all()


@pytest.mark.parametrize(
    ("name", "stem"),
    [
        ("HLS.L30.T10SEG.2020250T184921.v2.0.tif", "HLS.L30.T10SEG.2020250T184921.v2.0"),
        ("scene.tif", "scene"),
        ("LC08_L1TP_044034_20200830.TIF", "LC08_L1TP_044034_20200830"),
        ("mosaic.tif.vrt", "mosaic"),
        ("x.classes.tif", "x.classes"),
        ("S2A_MSIL2A.SAFE.jp2", "S2A_MSIL2A.SAFE"),
    ],
)
def test_output_stem_drops_only_raster_extensions(name: str, stem: str) -> None:
    assert output_stem(Path("/data") / name) == stem


def test_hls_granules_keep_distinct_names(write_tif, threshold_bundle, tmp_path) -> None:
    names = ["HLS.L30.T10SEG.2020250T184921.v2.0.tif", "HLS.S30.T10SEG.2020251T184919.v2.0.tif"]
    scenes = [write_tif(background(64, 64), name=n) for n in names]
    for s in scenes:
        predict_scene(s, tmp_path / "o", threshold_bundle, PredictConfig(tile_size=64, overlap=16))
    tifs = sorted(p.name for p in (tmp_path / "o").glob("*.classes.tif"))
    assert tifs == [n.replace(".tif", ".classes.tif") for n in names]


def test_crs_without_geotransform_with_allow_no_crs_is_pixel_space(tmp_path, threshold_bundle) -> None:
    from firemap.errors import MissingCRSError
    from tests.conftest import BANDS, UTM

    path = tmp_path / "nogt.tif"
    with rasterio.open(path, "w", driver="GTiff", count=6, height=64, width=64, dtype="float32", crs=UTM) as dst:
        dst.write(background(64, 64))
        dst.descriptions = BANDS
    with pytest.raises(MissingCRSError, match="no geotransform"):
        open_scene(path)
    info = open_scene(path, allow_no_crs=True)
    assert info.grid.crs is None  # pixel coordinates, not metres at the CRS origin
    predict_scene(info, tmp_path / "o", threshold_bundle, PredictConfig(tile_size=64, overlap=16))
    with rasterio.open(tmp_path / "o" / "nogt.classes.tif") as ds:
        assert ds.crs is None


def test_bundle_with_nan_weights_or_stats_is_refused(smp_bundle_path, tmp_path) -> None:
    from firemap.errors import BundleError
    from firemap.models import load_bundle

    payload = torch.load(smp_bundle_path, map_location="cpu", weights_only=True)
    key = next(k for k, v in payload["state_dict"].items() if v.is_floating_point())
    payload["state_dict"][key][0] = float("nan")
    torch.save(payload, tmp_path / "nan.firemap.pt")
    with pytest.raises(BundleError, match=f"weight '{key}' holds NaN"):
        load_bundle(tmp_path / "nan.firemap.pt")
    payload = torch.load(smp_bundle_path, map_location="cpu", weights_only=True)
    payload["config"]["std"][2] = float("inf")
    torch.save(payload, tmp_path / "inf.firemap.pt")
    with pytest.raises(BundleError, match="normalization std"):
        load_bundle(tmp_path / "inf.firemap.pt")



@pytest.mark.parametrize("count", [1, 3])
def test_cog_bytes_do_not_depend_on_the_scratch_compression(tmp_path, monkeypatch, count) -> None:
    """An uncompressed scratch (the default up to RAW_SCRATCH_BYTES) and a DEFLATE one give the same COG file, and
    the GDAL block cache is really bounded in megabytes (rasterio passes GDAL_CACHEMAX as bytes)."""
    from firemap.raster import GeoGrid, TiledWriter, bounded_gdal_cache

    grid = GeoGrid(200, 300, rasterio.crs.CRS.from_epsg(32610), UTM_TRANSFORM)  # width, height
    data = (np.random.default_rng(0).random((count, 300, 200)) * 4).astype(np.uint8)
    out = {}
    for raw in (True, False):
        monkeypatch.setattr(firemap.raster, "RAW_SCRATCH_BYTES", 2**40 if raw else 0)
        path = tmp_path / f"{raw}.tif"
        with bounded_gdal_cache() as env, TiledWriter(path, grid, count, "uint8", nodata=255) as w:
            assert env.options["GDAL_CACHEMAX"] == firemap.raster.GDAL_CACHE_MB * 2**20
            for r in range(0, 300, 96):  # row blocks that straddle the 256-row scratch blocks
                w.write(data[:, r : r + 96], r)
        out[raw] = path.read_bytes()
        with rasterio.open(path) as src:
            np.testing.assert_array_equal(src.read(), data)
            assert src.overviews(1) == [2]
    assert out[True] == out[False]


def _tiled(path: Path, width: int, height: int = 48, block: int = 16) -> Path:
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 2, "dtype": "uint16", "tiled": True,
               "blockxsize": block, "blockysize": block, "crs": "EPSG:32610", "transform": UTM_TRANSFORM}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.ones((2, height, width), np.uint16))
    return path


def test_streaming_cache_holds_the_blocks_neighbouring_chunks_share(tmp_path, monkeypatch) -> None:
    """2 uint16 bands (4 B/px), 16 px blocks, 32 px tiles overlapping by 8: a read touches 48 block rows, and
    neighbouring chunks share 2 block columns. The strip reader decodes each block row once, so that is all the
    cache holds, whatever the width, plus one row of output blocks. Blocks taller than the reader aligns to keep
    the whole band of a row of tiles when it fits (the next row of tiles reuses it)."""
    from firemap.raster import streaming_cache_megabytes

    monkeypatch.setattr(firemap.raster, "GDAL_CACHE_MB", 0.5)  # 524 288 bytes
    mb = 2**20
    narrow = streaming_cache_megabytes(_tiled(tmp_path / "n.tif", 256), 32, 64, 8) * mb
    assert narrow == 48 * 32 * 4 + 256 * 32
    inputs = [streaming_cache_megabytes(_tiled(tmp_path / f"{w}.tif", w), 32, 64, 8) * mb - w * 32
              for w in (4096, 8192)]
    assert inputs == [48 * 32 * 4, 48 * 32 * 4]  # no growth with the width
    assert streaming_cache_megabytes(_tiled(tmp_path / "w.tif", 16384), 32, 64, 8) == 0.5  # never above the cap
    assert streaming_cache_megabytes(tmp_path / "4096.tif", 32, 64, 8, out_bytes_per_px=2) * mb == (
        48 * 32 * 4 + 4096 * 32 * 2)
    monkeypatch.setattr(firemap.raster, "STRIP_MAX_BLOCK_ROWS", 8)  # 16 px blocks are now "tall"
    assert streaming_cache_megabytes(tmp_path / "n.tif", 32, 64, 8) * mb == 48 * 256 * 4 + 256 * 32  # the band
    assert streaming_cache_megabytes(tmp_path / "4096.tif", 32, 64, 8) * mb == 48 * 80 * 4 + 4096 * 32  # a chunk
    vrt = tmp_path / "n.vrt"
    vrt.write_text(f'<VRTDataset rasterXSize="256" rasterYSize="48"><VRTRasterBand dataType="UInt16" band="1">'
                   f"<SimpleSource><SourceFilename>{tmp_path / 'n.tif'}</SourceFilename><SourceBand>1</SourceBand>"
                   "</SimpleSource></VRTRasterBand></VRTDataset>")
    assert streaming_cache_megabytes(vrt, 32, 64, 8) == 0.5  # a VRT's sources have blocks of their own


@pytest.mark.parametrize(("block", "mask"), [(16, False), (32, True), (16, "zero")])
def test_strip_reader_equals_read_window(tmp_path, monkeypatch, block, mask) -> None:
    """The strip reader's windows, walked as predict walks them (rows of tiles starting above the scene and
    ending below it, in chunks, the next row's start kept) and out of order (no usable carry), are exactly
    read_window's: values, fill, validity from nodata, the file's mask and zero fill, mirrored padding."""
    from rasterio.windows import Window

    from firemap.bands import resolve_bands
    from firemap.raster import StripReader, read_window
    from firemap.tiling import TileGrid

    rng = np.random.default_rng(block)
    data = rng.integers(1, 5000, (3, 150, 90)).astype(np.uint16)
    data[:, 40:47, 10:30] = 0  # nodata, or the zero fill of an L1 swath
    path = tmp_path / "s.tif"
    profile = {"driver": "GTiff", "count": 3, "height": 150, "width": 90, "dtype": "uint16", "tiled": True,
               "blockxsize": block, "blockysize": block, "nodata": None if mask else 0, "crs": "EPSG:32610",
               "transform": UTM_TRANSFORM}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if mask is True:
            m = np.full((150, 90), 255, np.uint8)
            m[100:120, 50:] = 0
            dst.write_mask(m)
    sources = [*resolve_bands([None] * 3, 3, "sentinel2-l2a", "red=1,nir=2,swir2=3").sources.values(), None]
    zero = mask == "zero"
    fill = [0.1, 0.2, 0.3, 0.4]
    grid = TileGrid(150, 90, 32, 8)
    windows = []
    for row in range(grid.shape[0]):
        for c0 in range(0, grid.shape[1], 2):  # chunks of 2 tiles
            c1 = min(c0 + 2, grid.shape[1])
            col0 = grid.col_origins[c0]
            nxt = grid.row_origins[row + 1] if row + 1 < grid.shape[0] else None
            windows.append((Window(col0, grid.row_origins[row], grid.col_origins[c1 - 1] + 32 - col0, 32), nxt))
    rows_read: dict[tuple[int, int], int] = {}
    real = firemap.raster._read_raw

    def counting(src, inner, *args):
        if counting.on:
            key = (int(inner.col_off), int(inner.width))
            rows_read[key] = rows_read.get(key, 0) + int(inner.height)
        return real(src, inner, *args)

    monkeypatch.setattr(firemap.raster, "_read_raw", counting)
    with rasterio.open(path) as src:
        for order in (windows, windows[::-1]):
            rows_read.clear()
            reader = StripReader(src, sources, zero, fill)
            for window, nxt in order:
                counting.on = True
                got, got_valid = reader.read(window, keep_from=nxt)
                counting.on = False
                want, want_valid = read_window(src, window, sources, zero, fill)
                np.testing.assert_array_equal(got_valid, want_valid)
                np.testing.assert_array_equal(got, want)
            if order is windows:  # walked down: every row of each column span read from the file once
                assert set(rows_read.values()) == {150}, rows_read
    assert reader.block_rows == block


def test_outputs_do_not_depend_on_the_gdal_cache(write_tif, threshold_bundle, tmp_path) -> None:
    """The cache only decides what GDAL decodes twice: a cache smaller than one block gives the same files."""
    data = background(96, 96)
    data[5, 40:50, 60:70] = 0.9
    scene = write_tif(data)
    out = {}
    for mb in (32.0, 0.001):
        with firemap.raster.bounded_gdal_cache(mb):
            predict_scene(scene, tmp_path / str(mb), threshold_bundle, PredictConfig(tile_size=32, overlap=8))
        out[mb] = {p.name: p.read_bytes() for p in sorted((tmp_path / str(mb)).iterdir())}
    assert list(out[32.0]) == list(out[0.001]) and len(out[32.0]) >= 4
    assert out[32.0] == out[0.001]


def test_malloc_arenas_are_limited_on_glibc_unless_the_user_chose(monkeypatch) -> None:
    import platform

    from firemap.resources import limit_malloc_arenas

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False  # the user's own setting wins
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert limit_malloc_arenas() is glibc


def test_worker_thread_is_waited_for_through_a_signal(monkeypatch) -> None:
    """SIGTERM or Ctrl-C while predict waits for its reader or COG worker must not let it unwind (and close the
    datasets or delete the scratch files GDAL is still using) before the worker is done: that crashed GDAL under
    load."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import firemap.predict as predict_module

    real_shutdown, calls = ThreadPoolExecutor.shutdown, []

    def interrupted_shutdown(self, wait=True, **kwargs):  # the first wait for the thread is hit by a signal
        if wait:
            calls.append(1)
            if len(calls) == 1:
                raise KeyboardInterrupt
        return real_shutdown(self, wait=wait, **kwargs)

    monkeypatch.setattr(ThreadPoolExecutor, "shutdown", interrupted_shutdown)
    started = threading.Event()
    with pytest.raises(RuntimeError, match="unwinding"), predict_module.worker_thread("test") as pool:
        future = pool.submit(lambda: started.set() or time.sleep(0.3))
        started.wait(5)
        raise RuntimeError("unwinding")  # the error already in flight when the signal arrives
    assert future.done() and len(calls) >= 2
