"""The simulator as an infinite, seeded stream of training tiles (no disk needed).

Each scene is simulated at ``scene_size`` (default twice the tile size) with randomised options, and
``crops_per_scene`` tiles are cut from it; half of the crops of a scene with fire are centred on a fire pixel
(fire is rare: < 0.1% of pixels in real scenes). Seeds are derived with :class:`numpy.random.SeedSequence`
from ``(seed, rank, worker id)``, so every DataLoader worker (and every DDP rank) draws a different,
reproducible stream.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.utils.data

from firemap.errors import ConfigError
from firemap.simulate import simulate_scene
from firemap.simulate.landscape import LANDSCAPES
from firemap.simulate.sensor import sensor_spec

DEFAULT_OPTIONS: dict[str, float] = {"fire": 0.7, "smoke": 0.6, "burn_scar": 0.8, "swath_edge": 0.15}
"""Probability that each scene option is on."""

_CLOUD_CHOICES = ("none", "few", "some", "many")
_CLOUD_WEIGHTS = (0.35, 0.35, 0.2, 0.1)


def _worker() -> tuple[int, int]:
    """(worker id, number of workers) of the current torch DataLoader worker, (0, 1) outside one."""
    if "torch" not in sys.modules:
        return 0, 1
    info = torch.utils.data.get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


def scene_options(rng: np.random.Generator, probabilities: dict[str, float] | None = None) -> dict[str, Any]:
    """Random keyword arguments for :func:`~firemap.simulate.simulate_scene` (fire, smoke, clouds, ...)."""
    probs = DEFAULT_OPTIONS | (probabilities or {})
    options: dict[str, Any] = {name: bool(rng.random() < p) for name, p in probs.items()}
    options["clouds"] = str(rng.choice(_CLOUD_CHOICES, p=_CLOUD_WEIGHTS))
    options["landscape"] = str(rng.choice(sorted(LANDSCAPES)))
    return options


def _check_bands(sensors: Sequence[str], bands: Sequence[str] | None) -> None:
    for name in sensors:
        offered = sensor_spec(name).bands
        missing = [b for b in bands or () if b not in offered]
        if missing:
            raise ConfigError(f"simulated sensor {name!r} has no band(s) {missing}; it offers {list(offered)}")


def _crop_origin(rng: np.random.Generator, labels: np.ndarray, tile: int) -> tuple[int, int]:
    rows, cols = labels.shape[1:]
    fire = np.flatnonzero(labels[0].ravel() == 1)
    if fire.size and rng.random() < 0.5:
        centre = int(rng.choice(fire))
        r, c = centre // cols - tile // 2, centre % cols - tile // 2
    else:
        r, c = int(rng.integers(0, rows - tile + 1)), int(rng.integers(0, cols - tile + 1))
    return int(np.clip(r, 0, rows - tile)), int(np.clip(c, 0, cols - tile))


def iter_tiles(
    sensor: str | Sequence[str] = "sentinel2",
    tile_size: int = 256,
    seed: int = 0,
    bands: Sequence[str] | None = None,
    scene_size: int | None = None,
    crops_per_scene: int = 4,
    options: dict[str, float] | None = None,
    rank: int = 0,
    worker: tuple[int, int] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield simulated training tiles forever.

    Args:
        sensor: a simulated sensor name, or several (one is picked at random per scene).
        tile_size: tile side, pixels.
        seed: base seed.
        bands: canonical bands to return, in this order (default: all bands of the first sensor).
        scene_size: side of the scene each group of tiles is cut from (default ``2 * tile_size``, >= tile_size).
        crops_per_scene: tiles cut from each scene.
        options: probabilities overriding :data:`DEFAULT_OPTIONS`.
        rank: distributed rank (each rank gets its own stream).
        worker: ``(worker id, number of workers)``; None = detect the torch DataLoader worker.

    Yields:
        ``(image, labels)``: ``image`` ``(bands, tile, tile)`` float32 reflectance (thermal bands in K, 0 at
        nodata), ``labels`` ``(3, tile, tile)`` uint8 fire / smoke / burn_scar (255 at nodata).

    Raises:
        ConfigError: a requested band is missing from a sensor, or sizes are inconsistent.
        BandResolutionError: unknown sensor.
    """
    sensors = [sensor] if isinstance(sensor, str) else list(sensor)
    _check_bands(sensors, bands)
    names = tuple(bands or sensor_spec(sensors[0]).bands)
    size = scene_size or 2 * tile_size
    if tile_size < 16 or size < tile_size:
        raise ConfigError(f"tile size {tile_size} must be >= 16 and <= the scene size {size}")
    worker_id, _ = worker or _worker()
    streams = np.random.SeedSequence([seed, rank, worker_id])
    while True:
        child = streams.spawn(1)[0]
        rng = np.random.default_rng(child)
        name = str(rng.choice(sensors))
        scene = simulate_scene(name, size, size, seed=int(child.generate_state(1)[0]), **scene_options(rng, options))
        index = [scene.bands.index(b) for b in names]
        for _ in range(crops_per_scene):
            r, c = _crop_origin(rng, scene.labels, tile_size)
            window = (slice(r, r + tile_size), slice(c, c + tile_size))
            yield scene.physical[index][(slice(None), *window)].copy(), scene.labels[(slice(None), *window)].copy()


class SimulatedTiles(torch.utils.data.IterableDataset):
    """:func:`iter_tiles` as a torch ``IterableDataset`` yielding ``(image, labels)`` tensors.

    Worker-safe: each DataLoader worker seeds its own stream from ``(seed, rank, worker id)``.
    Arguments are those of :func:`iter_tiles` (except ``worker``, detected at iteration time).
    """

    def __init__(self, sensor: str | Sequence[str] = "sentinel2", tile_size: int = 256, seed: int = 0,
                 bands: Sequence[str] | None = None, scene_size: int | None = None, crops_per_scene: int = 4,
                 options: dict[str, float] | None = None, rank: int = 0) -> None:
        super().__init__()
        sensors = [sensor] if isinstance(sensor, str) else list(sensor)
        _check_bands(sensors, bands)
        self.kwargs: dict[str, Any] = {"sensor": sensor, "tile_size": tile_size, "seed": seed, "bands": bands,
                                       "scene_size": scene_size, "crops_per_scene": crops_per_scene,
                                       "options": options, "rank": rank}

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for image, labels in iter_tiles(**self.kwargs, worker=_worker()):
            yield torch.from_numpy(image), torch.from_numpy(labels)
