"""The device-side helpers (firemap.accel) and the tile loop's asynchronous batches, on the CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import firemap.predict as predict_module
from firemap.accel import CPU_BATCH_SIZE, GraphedForward, InFlight, batch_size_for_memory, submit
from firemap.config import PredictConfig, validate
from firemap.errors import ConfigError
from firemap.models import Bundle
from firemap.predict import TILE_BYTES_PER_PIXEL, batch_size, iter_predictions
from firemap.raster import open_scene
from tests.conftest import background

GIB = 2**30


@pytest.mark.parametrize(("free", "tile", "half", "expected"), [
    (16 * GIB, 256, False, 64),     # a 16 GB card: capped at the upper limit
    (GIB // 2, 256, False, 22),     # 512 MiB * 0.7 / (256^2 px * 256 B = 16 MiB) = 22.4
    (GIB // 2, 256, True, 44),      # fp16/bf16 activations: half the bytes, twice the tiles
    (2 * GIB, 1024, False, 5),      # 2 GiB * 0.7 / 256 MiB = 5.6
    (100 * 2**20, 1024, False, 1),  # not even one: the lower limit (the forward pass reports the OOM)
    (0, 256, False, 1),
])
def test_batch_size_from_free_memory(free: int, tile: int, half: bool, expected: int) -> None:
    assert batch_size_for_memory(free, tile, TILE_BYTES_PER_PIXEL, half) == expected


def test_batch_size_limits_and_headroom() -> None:
    assert batch_size_for_memory(GIB, 256, 256, limits=(4, 16), headroom=0.0) == 16
    assert batch_size_for_memory(GIB, 256, 256, limits=(4, 16), headroom=0.99) == 4
    assert batch_size_for_memory(GIB, 256, 256, headroom=0.5) == 32  # 0.5 GiB / 16 MiB


def test_auto_batch_size_on_the_cpu_is_the_default(threshold_bundle: Bundle) -> None:
    cfg = validate(PredictConfig, {"batch_size": "auto", "device": "cpu"}, "command line")
    assert cfg.batch_size == "auto"
    assert batch_size(cfg, threshold_bundle) == CPU_BATCH_SIZE
    assert batch_size(PredictConfig(batch_size=3), threshold_bundle) == 3


@pytest.mark.parametrize("bad", ["0", "big", 2.5, -1])
def test_bad_batch_size_names_the_fix(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"positive integer \(e.g. 8\) or auto"):
        validate(PredictConfig, {"batch_size": bad}, "command line")


def test_submit_on_the_cpu_computes_now_and_keeps_the_queue() -> None:
    items = ["a", "b", "c"]
    inputs = [np.full((2, 4, 4), v, np.float32) for v in (1.0, 2.0)]
    flight = submit(lambda x: x * 10, inputs, torch.device("cpu"), items)
    assert flight.event is None and flight.items is items
    result = flight.result()
    assert result is not None and result.shape == (2, 2, 4, 4)
    np.testing.assert_array_equal(result[:, 0, 0, 0], [10.0, 20.0])
    assert InFlight(items, None).result() is None
    assert submit(lambda x: x, [], torch.device("cpu"), items).result() is None


def test_graphed_forward_is_eager_off_cuda() -> None:
    calls = []

    def forward(x: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(x.shape))
        return x + 1

    graphed = GraphedForward(forward)
    out = graphed(torch.zeros(2, 3, 8, 8))
    assert torch.equal(out, torch.ones(2, 3, 8, 8)) and calls == [(2, 3, 8, 8)]
    assert graphed.graph is None and graphed.replays == 0


def test_pipelined_batches_give_the_same_rows(write_tif, threshold_bundle: Bundle,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The CUDA ordering (one batch in flight while the next is read) stitches exactly what the CPU one does."""
    data = background(150, 170)
    data[5, 40:60, 30:90] = 0.9
    data[:, 100:, :40] = np.nan  # a nodata corner: tiles without data skip the network
    scene = open_scene(write_tif(data, nodata=float("nan")))
    cfg = PredictConfig(tile_size=64, overlap=16, batch_size=2)
    plain = list(iter_predictions(scene, threshold_bundle, cfg))
    monkeypatch.setattr(predict_module, "PIPELINE_DEPTH", {"cpu": 1})
    piped = list(iter_predictions(scene, threshold_bundle, cfg))
    assert [b.row_off for b in plain] == [b.row_off for b in piped]
    for a, b in zip(plain, piped, strict=True):
        np.testing.assert_array_equal(a.probs, b.probs)
        np.testing.assert_array_equal(a.valid, b.valid)
    assert np.concatenate([b.probs[0] for b in plain]).max() > 0.9  # the fire strip is there


def test_cli_accepts_batch_size_auto_and_cuda_graphs(write_tif, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from firemap.cli import app

    scene = write_tif(background(64, 64))
    bad = CliRunner().invoke(app, ["predict", str(scene), "-o", str(tmp_path / "o"), "--batch-size", "many"])
    assert bad.exit_code == 1 and "or auto" in bad.output


def test_bench_gpu_exits_cleanly_without_a_gpu() -> None:
    import os
    import subprocess
    import sys

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: scripts/bench_gpu.py would run the benchmark")
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "scripts" / "bench_gpu.py"), "--no-write"], capture_output=True,
                         text=True, check=False, cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    assert out.returncode == 0 and "no CUDA device" in out.stderr + out.stdout
