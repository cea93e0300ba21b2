"""Multi-scene jobs (Dask, torchrun ranks, resume, manifest) and distributed training on 2 CPU processes (gloo)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from firemap.config import PredictConfig
from firemap.distributed import predict_job, torchrun_share
from firemap.predict import predict_scenes
from tests._train_helpers import tiny_train_config
from tests.conftest import background

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def one_thread():  # type: ignore[no-untyped-def]
    """torch on 1 thread, as each Dask worker (float reductions such as mean_prob depend on the thread count)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _scenes(folder: Path, write_tif, n: int = 3) -> list[Path]:
    scenes = []
    for i in range(n):
        data = background(80, 72, seed=i)
        data[5, 10 + i : 20 + i, 30:40] = 0.9
        scenes.append(write_tif(data, name=f"s{i}.tif"))
    bad = folder / "broken.tif"
    bad.write_text("not a raster")
    return [*scenes, bad]


def _bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix in (".tif", ".geojson", ".qml")}


def test_two_dask_workers_match_sequential_bytes_and_a_bad_scene_does_not_stop_the_others(
    write_tif, smp_bundle_path: Path, tmp_path: Path, one_thread: None
) -> None:
    """The Dask path with 2 workers (threads of this process: the default suite stays fast; the slow test below
    runs the same job through the CLI on 2 worker processes)."""
    pytest.importorskip("dask.distributed")
    scenes = _scenes(tmp_path, write_tif)
    predict_scenes(scenes[:-1], tmp_path / "seq", smp_bundle_path, PredictConfig())
    job = predict_job(scenes, tmp_path / "dask", smp_bundle_path, PredictConfig(), workers=2, processes=False)
    assert [o.status for o in job.outcomes] == ["done", "done", "done", "failed"]
    assert "broken.tif" in (job.failed[0].error or "") or "not a raster" in (job.failed[0].error or "")
    seq, dask = _bytes(tmp_path / "seq"), _bytes(tmp_path / "dask")
    assert len(seq) == 12 and seq == dask  # byte-identical outputs
    manifest = json.loads(job.manifest.read_text())
    assert manifest["counts"] == {"done": 3, "skipped": 0, "failed": 1, "pending": 0}
    assert [Path(r["scene"]).name for r in manifest["scenes"]] == ["s0.tif", "s1.tif", "s2.tif", "broken.tif"]


@pytest.mark.slow
def test_cli_two_dask_worker_processes_match_sequential_bytes(
    write_tif, smp_bundle_path: Path, tmp_path: Path, one_thread: None
) -> None:
    pytest.importorskip("dask.distributed")
    scenes = _scenes(tmp_path, write_tif)
    predict_scenes(scenes[:-1], tmp_path / "seq", smp_bundle_path, PredictConfig())
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "300"}
    proc = subprocess.run(
        [sys.executable, "-m", "firemap", "predict", *map(str, scenes), "--out", str(tmp_path / "dask"),
         "--model", str(smp_bundle_path), "--workers", "2"], capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 1, proc.stderr  # a scene failed
    assert "3 done, 0 skipped, 1 failed" in proc.stdout
    assert "failed: " in proc.stderr and "broken.tif" in proc.stderr and "not a raster" in proc.stderr
    seq, dask = _bytes(tmp_path / "seq"), _bytes(tmp_path / "dask")
    assert len(seq) == 12 and seq == dask  # byte-identical outputs
    manifest = json.loads((tmp_path / "dask" / "firemap-manifest.json").read_text())
    done = [r for r in manifest["scenes"] if r["status"] == "done"]
    assert len(done) == 3 and sum(r["loaded_model"] for r in done) <= 2  # once per worker, not once per scene
    assert len({r["worker"] for r in done}) <= 2


def test_resume_skips_complete_scenes_and_redoes_incomplete_ones(
    write_tif, smp_bundle_path: Path, tmp_path: Path
) -> None:
    scenes = _scenes(tmp_path, write_tif)[:-1]
    out = tmp_path / "out"
    first = predict_job(scenes, out, smp_bundle_path, PredictConfig())
    assert [o.status for o in first.outcomes] == ["done"] * 3 and first.manifest == out / "firemap-manifest.json"
    before = (out / "s1.classes.tif").read_bytes()
    (out / "s1.geojson").unlink()  # as if interrupted while writing s1
    second = predict_job(scenes, out, smp_bundle_path, PredictConfig(), resume=True, manifest=tmp_path / "m.json")
    assert [o.status for o in second.outcomes] == ["skipped", "done", "skipped"]
    assert (out / "s1.geojson").is_file() and (out / "s1.classes.tif").read_bytes() == before
    counts = json.loads((tmp_path / "m.json").read_text())["counts"]
    assert counts == {"done": 1, "skipped": 2, "failed": 0, "pending": 0}
    assert not list(out.glob(".*partial*"))


def test_torchrun_ranks_take_disjoint_scenes(monkeypatch: pytest.MonkeyPatch) -> None:
    scenes = [f"s{i}.tif" for i in range(7)]
    shares = []
    for rank in range(3):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "3")
        shares.append(torchrun_share(scenes)[0])
    assert sorted(s for share in shares for s in share) == sorted(scenes)
    assert all(not set(a) & set(b) for i, a in enumerate(shares) for b in shares[i + 1 :])
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert torchrun_share(scenes) == (scenes, 2, 1)


def test_torchrun_rank_writes_its_own_manifest(write_tif, smp_bundle_path, tmp_path, monkeypatch) -> None:
    scenes = _scenes(tmp_path, write_tif)[:-1]
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    job = predict_job(scenes, tmp_path / "o", smp_bundle_path, PredictConfig())
    assert [Path(o.scene).name for o in job.outcomes] == ["s1.tif"]
    assert job.manifest.name == "firemap-manifest.rank1.json"
    assert sorted(p.name for p in (tmp_path / "o").glob("*.classes.tif")) == ["s1.classes.tif"]


# --------------------------------------------------------------------------------- distributed training


def _ddp_rank(rank: int, world: int, port: int, cfg: dict, log_dir: str) -> None:
    """One training rank: patch the loop to record its weights after each step and who writes checkpoints."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from firemap.train import loop
    from firemap.train.config import train_config_from_dict

    step, save_bundle, save_state = loop._train_step, loop.save_bundle, loop._save_state

    def traced_step(run, *args):  # type: ignore[no-untyped-def]
        loss = step(run, *args)
        # parameters, not BatchNorm running stats: those are per-rank between steps (DDP broadcasts rank 0's
        # buffers at the start of each forward; rank 0's are the ones saved)
        weights = {k: v.detach().clone() for k, v in loop._unwrap(run.model).named_parameters()}
        torch.save(weights, Path(log_dir) / f"weights.rank{rank}.step{run.step}.pt")
        return loss

    def traced(fn, kind):  # type: ignore[no-untyped-def]
        def wrapper(*a, **k):  # type: ignore[no-untyped-def]
            with open(Path(log_dir) / "writes.txt", "a") as f:
                f.write(f"{rank} {kind}\n")
            return fn(*a, **k)
        return wrapper

    loop._train_step = traced_step
    loop.save_bundle = traced(save_bundle, "bundle")
    loop._save_state = traced(save_state, "state")
    loop.fit(train_config_from_dict(cfg))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_ddp_two_cpu_ranks_keep_identical_weights_and_only_rank0_writes(tmp_path: Path) -> None:
    cfg = tiny_train_config(tmp_path / "data", tmp_path / "run", threads=1, overwrite=True)
    logs = tmp_path / "logs"
    logs.mkdir()
    torch.multiprocessing.spawn(_ddp_rank, args=(2, _free_port(), cfg, str(logs)), nprocs=2, join=True)
    for step in (1, 2):
        w0 = torch.load(logs / f"weights.rank0.step{step}.pt")
        w1 = torch.load(logs / f"weights.rank1.step{step}.pt")
        assert w0.keys() == w1.keys()
        for k in w0:
            assert torch.equal(w0[k], w1[k]), k
    first, second = torch.load(logs / "weights.rank0.step1.pt"), torch.load(logs / "weights.rank0.step2.pt")
    assert any(not torch.equal(first[k], second[k]) for k in first)  # it trains
    writes = (logs / "writes.txt").read_text().split("\n")
    assert {w.split()[0] for w in writes if w} == {"0"} and "0 state" in writes
    assert (tmp_path / "run" / "last.firemap.pt").is_file()
