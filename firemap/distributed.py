"""Many scenes on many processes: Dask (a local cluster or an existing scheduler), or ``torchrun`` ranks.

One task per scene. Each worker process loads the model once (:func:`worker_bundle` caches it per process) and
predicts its scenes with :func:`firemap.predict.predict_scene`, so the outputs are the same bytes as a sequential
``firemap predict``. A scene that fails is recorded (its one-line error) while the others go on; the caller exits
non-zero when any failed. ``resume`` skips scenes whose outputs are all present (outputs only ever appear under
their final names when complete, see :func:`firemap.raster.atomic_output`). A JSON manifest of what was done is
rewritten atomically after every scene, so an interrupted job still leaves an accurate one.

The job is planned on the client: each scene is resolved (products assembled, see :mod:`firemap.sources`) to
know its output names, so an existing scheduler's workers must see the same paths (a shared file system).

With ``torchrun --nproc-per-node G firemap predict ...`` (env ``RANK``/``WORLD_SIZE``), rank ``r`` takes scenes
``r, r + G, ...`` and runs them in its own process on ``cuda:LOCAL_RANK``; each rank writes its own manifest.

Dask is imported only when a cluster is used (``firemap predict`` start-up stays fast).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from firemap import __version__
from firemap.config import PredictConfig
from firemap.errors import ConfigError, FiremapError, OutputExistsError

log = logging.getLogger(__name__)

MANIFEST_NAME = "firemap-manifest.json"
"""Default manifest file name in the output folder (``firemap-manifest.rank<R>.json`` under torchrun)."""


@dataclass
class SceneOutcome:
    """What happened to one scene of a job.

    Attributes:
        scene: the input path as given.
        status: ``done``, ``skipped`` (outputs complete, ``resume``) or ``failed``.
        outputs: output kind -> path.
        error: the one-line error of a failed scene.
        seconds: wall time of the task.
        worker: ``host:pid`` that ran it.
        area_ha: class name -> mapped hectares.
        polygons: class name -> polygon count.
        loaded_model: this task loaded the model (the worker's first task); later tasks reuse it.
    """

    scene: str
    status: str
    outputs: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    worker: str = ""
    area_ha: dict[str, float] = field(default_factory=dict)
    polygons: dict[str, int] = field(default_factory=dict)
    loaded_model: bool = False


@dataclass
class JobResult:
    """The outcome of a multi-scene job, in input order, and where its manifest is."""

    outcomes: list[SceneOutcome]
    manifest: Path

    @property
    def failed(self) -> list[SceneOutcome]:
        """The scenes that failed."""
        return [o for o in self.outcomes if o.status == "failed"]


_BUNDLES: dict[tuple[str, float], Any] = {}


def worker_bundle(model: str | None, cfg: PredictConfig | None = None) -> tuple[Any, bool]:
    """The model bundle of this process, loaded on first use for inference on ``cfg.device`` (as in
    ``predict_scenes``: the exported network on the CPU when the bundle has one, else BatchNorm folded).

    Returns:
        ``(bundle, loaded)``: ``loaded`` is True when this call loaded it.
    """
    from firemap.predict import load_inference_bundle

    key = (str(model), os.path.getmtime(model) if model else 0.0)
    if key in _BUNDLES:
        return _BUNDLES[key], False
    bundle = load_inference_bundle(model, cfg or PredictConfig())
    _BUNDLES[key] = bundle
    return bundle, True


def run_scene(scene: str, out: str, model: str | None, cfg: dict[str, Any], threads: int | None = None) -> SceneOutcome:
    """Predict one scene in this process; never raises for a bad scene (the outcome carries the error).

    Args:
        scene: scene path (raster or product).
        out: output folder.
        model: bundle path, None for the shipped model.
        cfg: ``PredictConfig`` as a dict (plain data travels to workers).
        threads: torch CPU threads for this process (None = leave as is).
    """
    import torch

    from firemap.predict import model_for_scene, predict_scene
    from firemap.raster import bounded_gdal_cache, open_scene

    t0 = time.perf_counter()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    if threads:
        torch.set_num_threads(threads)
    try:
        pcfg = PredictConfig.model_validate(cfg)
        info = open_scene(scene, pcfg.allow_no_crs, pcfg.resolution)  # opened once: routing and prediction
        if model is None:  # the shipped default of the scene's sensor family
            model = str(model_for_scene(None, info, pcfg))
        bundle, loaded = worker_bundle(model, pcfg)
        with bounded_gdal_cache():
            result = predict_scene(info, out, bundle, pcfg)
    except Exception as exc:  # any failure is this scene's: report it, let the job go on
        message = " ".join(str(exc).split()) or type(exc).__name__
        if not isinstance(exc, FiremapError):
            message = f"{type(exc).__name__}: {message}"
        log.error("%s: failed: %s", scene, message)
        return SceneOutcome(scene, "failed", error=message, seconds=time.perf_counter() - t0, worker=worker)
    return SceneOutcome(
        scene, "done", {k: str(v) for k, v in result.outputs.items()}, None, time.perf_counter() - t0, worker,
        result.area_ha, result.polygons, loaded,
    )


def torchrun_share(scenes: Sequence[str]) -> tuple[list[str], int, int]:
    """This ``torchrun`` rank's scenes (``RANK``/``WORLD_SIZE`` env; every scene when not under torchrun).

    Returns:
        ``(scenes, rank, world)``: rank ``r`` of ``w`` takes scenes ``r, r + w, ...`` (disjoint, all covered).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    return list(scenes[rank::world]) if world > 1 else list(scenes), rank, world


def _plan(scenes: Sequence[str], out: Path, cfg: PredictConfig, resume: bool) -> list[SceneOutcome | None]:
    """Resolve each scene's output names on the client: complete outputs -> ``skipped`` (with ``resume``), an
    unreadable scene -> ``failed``, else None (to run). Two scenes writing the same names are refused.

    Raises:
        OutputExistsError: two scenes would write the same output.
    """
    from firemap.predict import output_paths
    from firemap.raster import open_scene

    plan: list[SceneOutcome | None] = []
    seen: dict[Path, str] = {}
    for scene in scenes:
        try:
            info = open_scene(scene, cfg.allow_no_crs, cfg.resolution)
        except FiremapError as exc:
            plan.append(SceneOutcome(scene, "failed", error=" ".join(str(exc).split())))
            continue
        paths = output_paths(info.path, out, cfg)
        for p in paths.values():
            if p in seen:
                raise OutputExistsError(
                    f"{scene} and {seen[p]} would both write {p.name}; predict them into different --out folders"
                )
            seen[p] = scene
        complete = all(p.exists() for p in paths.values())
        plan.append(SceneOutcome(scene, "skipped", {k: str(v) for k, v in paths.items()}) if resume and complete
                    else None)
    return plan


class _Manifest:
    """The job's JSON manifest, rewritten atomically (temporary file + rename) after every scene."""

    def __init__(self, path: Path, header: dict[str, Any], outcomes: list[SceneOutcome | None],
                 scenes: Sequence[str]) -> None:
        self.path, self.header, self.outcomes, self.scenes = path, header, outcomes, scenes

    def write(self) -> None:
        rows = [asdict(o) if o else {"scene": s, "status": "pending"} for o, s in zip(self.outcomes, self.scenes,
                                                                                      strict=True)]
        counts = {k: sum(r["status"] == k for r in rows) for k in ("done", "skipped", "failed", "pending")}
        doc = self.header | {"updated": _now(), "counts": counts, "scenes": rows}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.partial")
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, self.path)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def predict_job(
    scenes: Sequence[str | Path],
    out_dir: str | Path,
    model: str | Path | None,
    cfg: PredictConfig,
    workers: int | None = None,
    scheduler: str | None = None,
    resume: bool = False,
    manifest: str | Path | None = None,
    on_done: Callable[[SceneOutcome], None] | None = None,
    processes: bool = True,
) -> JobResult:
    """Predict many scenes, one task per scene, on Dask or in this process, recording a manifest.

    Args:
        scenes: inputs (rasters or products).
        out_dir: output folder.
        model: bundle path or None (shipped model).
        cfg: predict options (the same for every scene).
        workers: start a local Dask cluster of this many single-threaded worker processes.
        scheduler: address of an existing Dask scheduler (``tcp://host:8786``); wins over ``workers``.
        resume: skip scenes whose outputs are complete; incomplete leftovers of a scene are replaced.
        manifest: manifest path (default ``<out>/firemap-manifest.json``, ``.rank<R>`` under torchrun).
        on_done: called with each outcome as it arrives (progress).
        processes: local cluster workers are processes (False: threads of this process, for tests).

    Returns:
        The :class:`JobResult`; failed scenes are in it, not raised.

    Raises:
        ConfigError: bad ``workers``; OutputExistsError: two scenes with the same output names.
    """
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers {workers}: give 1 or more worker processes (or omit it to run in-process)")
    out = Path(out_dir)
    mine, rank, world = torchrun_share([str(Path(s).absolute()) for s in scenes])  # workers may run elsewhere
    default = MANIFEST_NAME if world == 1 else MANIFEST_NAME.replace(".json", f".rank{rank}.json")
    path = Path(manifest) if manifest else out / default
    outcomes = _plan(mine, out, cfg, resume)
    header = {"firemap_version": __version__, "started": _now(), "out": str(out), "model": str(model or "default"),
              "workers": workers, "scheduler": scheduler, "rank": rank, "world_size": world, "resume": resume,
              "config": cfg.model_dump(mode="json")}
    record = _Manifest(path, header, outcomes, mine)
    record.write()
    todo = [i for i, o in enumerate(outcomes) if o is None]
    cfg_data = cfg.model_dump(mode="json")

    def task_cfg(i: int) -> dict[str, Any]:  # resume replaces a scene's incomplete leftovers
        return cfg_data | {"overwrite": True} if resume else cfg_data

    def done(i: int, outcome: SceneOutcome) -> None:
        outcomes[i] = outcome
        record.write()
        if on_done:
            on_done(outcome)

    for planned in outcomes:
        if planned is not None and on_done:
            on_done(planned)
    model_arg = str(model) if model else None
    if scheduler or workers:
        _run_dask(todo, mine, str(out), model_arg, task_cfg, done, workers, scheduler, processes)
    else:
        if world > 1:
            cfg_data = _rank_device(cfg_data)
        for i in todo:
            done(i, run_scene(mine[i], str(out), model_arg, task_cfg(i)))
    return JobResult([o for o in outcomes if o is not None], path)


def _rank_device(cfg_data: dict[str, Any]) -> dict[str, Any]:
    """Under torchrun, each rank uses its own GPU (``LOCAL_RANK``) when the device allows CUDA."""
    import torch

    if cfg_data.get("device") in ("auto", "cuda") and torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return cfg_data


def _run_dask(
    todo: Sequence[int], scenes: Sequence[str], out: str, model: str | None,
    task_cfg: Callable[[int], dict[str, Any]], done: Callable[[int, SceneOutcome], None],
    workers: int | None, scheduler: str | None, processes: bool = True,
) -> None:
    """Submit one task per scene to a Dask cluster and record outcomes as they complete."""
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise ConfigError(
            "--workers/--scheduler need Dask: pip install 'dask[distributed]' (or pip install 'firemap[dask]')"
        ) from None
    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=processes, dashboard_address=None)
        client = Client(cluster)
    try:
        futures = {
            client.submit(run_scene, scenes[i], out, model, task_cfg(i), 1, key=f"firemap-scene-{i}-{os.getpid()}",
                          pure=False): i
            for i in todo
        }
        for future in as_completed(futures):
            i = futures[future]
            try:
                outcome = future.result()
            except Exception as exc:  # a worker died (killed, out of memory): the scene failed, the job goes on
                outcome = SceneOutcome(scenes[i], "failed", error=f"worker lost: {' '.join(str(exc).split())}")
            done(i, outcome)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


__all__ = ["MANIFEST_NAME", "JobResult", "SceneOutcome", "predict_job", "run_scene", "torchrun_share",
           "worker_bundle"]
