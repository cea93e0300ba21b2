"""Physically based multispectral fire scenes with exact labels (``firemap simulate``).

A scene is built bottom-up: land cover and terrain (:mod:`.landscape`), burn scars, active fires, smoke,
haze and clouds (:mod:`.events`), the radiative stack and thermal emission (:mod:`.render`), then the
sensor's noise, saturation and file encoding (:mod:`.sensor`). Spectral constants and their sources live in
:mod:`.spectra`. The same generator feeds training as an infinite seeded tile stream (:mod:`.tiles`).

Labels (``(3, rows, cols)`` uint8: fire, smoke, burn_scar; 255 = nodata) describe what can be seen:

* fire: the fire in the pixel emits >= :data:`FIRE_LABEL_RADIANCE` at 2.2 um;
* smoke: plume optical depth at 550 nm >= :data:`SMOKE_LABEL_TAU` (haze is never labelled);
* burn_scar: burned this season (unburned islands, rock, water and old regrown scars are 0);
* fire and burn_scar are cleared under opaque cloud (optical thickness >= :data:`OPAQUE_CLOUD_TAU`), smoke too.

**Lava and industrial hot spots are not labelled fire** (255 = not labelled in the fire band, 0 in smoke and
burn scar): they are real thermal anomalies, rendered with Planck emission like fires, that a 30 m spectrum cannot
tell from a wildfire. Training gives them neither a positive nor a negative fire loss and scoring ignores them,
exactly as the real-scene recipe treats hot spots it cannot identify and as the real-scene validation counts fire
polygons on lava apart (docs/simulator.md, "Thermal anomalies that are not wildfires").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from scipy import ndimage

from firemap import CLASS_NAMES, __version__
from firemap.bands import THERMAL_BANDS
from firemap.errors import ConfigError
from firemap.raster import CLASS_NODATA, GeoGrid, check_writable, write_raster
from firemap.resources import available_memory
from firemap.simulate.events import (
    FIRE_LABEL_RADIANCE,
    OPAQUE_CLOUD_TAU,
    SMOKE_LABEL_TAU,
    Clouds,
    Fires,
    Scars,
    combine_emitters,
    glint,
    haze_tau,
    make_clouds,
    make_fires,
    make_hotspots,
    make_scars,
    smoke_tau,
)
from firemap.simulate.landscape import FUELS, LANDSCAPES, illumination, make_landscape
from firemap.simulate.render import Atmosphere, Conditions, reflective, thermal
from firemap.simulate.sensor import SENSOR_SPECS, SensorSpec, add_noise, decode, encode, sensor_spec, swath_mask
from firemap.simulate.spectra import MATERIAL_ID, MATERIAL_NAMES, REFLECTIVE

log = logging.getLogger(__name__)

CLOUD_LEVELS: dict[str, float] = {"none": 0.0, "few": 0.05, "some": 0.15, "many": 0.4}
"""Named cloud covers (fraction of the scene); ``--clouds`` also takes a number in [0, 0.9]."""

MIN_SIZE, MAX_SIZE = 32, 16384


@dataclass
class Truth:
    """Physical fields behind a scene (for tests, documentation and analysis), each ``(rows, cols)``.

    Attributes:
        cover: uint8 pre-fire material id (see :data:`firemap.simulate.spectra.MATERIAL_NAMES`).
        burned: bool, burned this season; ``old_burned``: burned in earlier years (not labelled).
        severity: float32 consumed canopy fraction; ``age_days``: days since the fire passed.
        fire_fraction, fire_temperature: float32 active-fire area fraction and temperature (K).
        smoke_tau, haze_tau, cloud_tau, cirrus_tau: float32 optical depths at 550 nm.
        glint: float32 sun-glint reflectance over water.
        hotspot_fraction, hotspot_temperature: float32 area fraction and temperature (K) of lava and industrial
            hot spots (thermal anomalies that are not wildfires: never labelled).
    """

    cover: np.ndarray
    burned: np.ndarray
    old_burned: np.ndarray
    severity: np.ndarray
    age_days: np.ndarray
    fire_fraction: np.ndarray
    fire_temperature: np.ndarray
    smoke_tau: np.ndarray
    haze_tau: np.ndarray
    cloud_tau: np.ndarray
    cirrus_tau: np.ndarray
    glint: np.ndarray
    hotspot_fraction: np.ndarray | None = None
    hotspot_temperature: np.ndarray | None = None

    def material(self, name: str) -> np.ndarray:
        """``(rows, cols)`` bool: pre-fire cover is material ``name``."""
        return self.cover == MATERIAL_ID[name]


@dataclass
class SimulatedScene:
    """A simulated scene as the sensor records it.

    Attributes:
        sensor: simulator sensor name (``landsat8``, ``landsat9``, ``sentinel2``, ``hls``).
        bands: canonical band names, in the order of ``physical`` and ``raw`` (the sensor's file order, which
            is canonical order).
        physical: ``(bands, rows, cols)`` float32 reflectance (unitless; TOA for Landsat L1, surface for
            Sentinel-2 L2A and HLS) and brightness temperature (K) for thermal bands, exactly as a reader
            decodes ``raw`` (quantized, saturated, noisy); 0 at nodata.
        labels: ``(3, rows, cols)`` uint8 fire / smoke / burn_scar, 0/1, 255 at nodata.
        valid: ``(rows, cols)`` bool, False outside the swath.
        grid: UTM grid (EPSG:326xx) at ``spec.pixel_m``.
        raw: ``(bands, rows, cols)`` the file values (``spec.dtype``).
        spec: the sensor specification (descriptions, nodata, encodings).
        truth: the physical fields behind the scene.
        tags: dataset tags written with the scene.
    """

    sensor: str
    bands: tuple[str, ...]
    physical: np.ndarray
    labels: np.ndarray
    valid: np.ndarray
    grid: GeoGrid
    raw: np.ndarray
    spec: SensorSpec
    truth: Truth
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def reflectance(self) -> np.ndarray:
        """Alias of :attr:`physical`."""
        return self.physical

    def band(self, name: str) -> np.ndarray:
        """``(rows, cols)`` physical values of canonical band ``name``."""
        return self.physical[self.bands.index(name)]


def cloud_fraction(clouds: str | float) -> float:
    """Cloud cover fraction from a level name (:data:`CLOUD_LEVELS`) or a number in [0, 0.9].

    Raises:
        ConfigError: unknown name or number out of range.
    """
    if isinstance(clouds, str) and clouds.strip().lower() in CLOUD_LEVELS:
        return CLOUD_LEVELS[clouds.strip().lower()]
    try:
        value = float(clouds)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 0.9:
        names = ", ".join(CLOUD_LEVELS)
        raise ConfigError(f"bad clouds value {clouds!r}; use one of {names} or a fraction in [0, 0.9]")
    return value


def _check(height: int, width: int, landscape: str | None) -> None:
    for name, value in (("height", height), ("width", width)):
        if not MIN_SIZE <= int(value) <= MAX_SIZE:
            raise ConfigError(f"scene {name} {value} out of range; use {MIN_SIZE}..{MAX_SIZE} pixels")
    if landscape is not None and landscape not in LANDSCAPES:
        raise ConfigError(f"unknown landscape {landscape!r}; choose one of: {', '.join(LANDSCAPES)} (or none = random)")


BYTES_PER_PIXEL = 480
"""Peak memory of :func:`simulate_scene` per scene pixel: the growth of the peak resident memory from 1024^2 to
2048^2 pixels (Landsat-8, 10 bands, ``scripts/bench_simulate.py``: 453 B/px), rounded up; ~0.3 GB comes on top."""


def estimate_memory(height: int, width: int) -> int:
    """Bytes :func:`simulate_scene` needs at its peak for a ``height`` x ``width`` scene (an upper estimate)."""
    return int(BYTES_PER_PIXEL * int(height) * int(width) + 300e6)




def check_memory(height: int, width: int, available: int | None = None) -> None:
    """Refuse up front a scene that would not fit in memory (the simulator works on whole-scene arrays).

    Raises:
        ConfigError: the estimate (:func:`estimate_memory`) exceeds ``available`` (default
            :func:`available_memory`); the message gives both and the largest square size that fits.
    """
    need, have = estimate_memory(height, width), available_memory() if available is None else int(available)
    if need > have:
        side = int(max(0.0, (have - 300e6) / BYTES_PER_PIXEL) ** 0.5) // 256 * 256
        raise ConfigError(f"a {height} x {width} scene needs about {need / 1e9:.1f} GB of memory to simulate but "
                          f"only {have / 1e9:.1f} GB are available; use --size {max(side, MIN_SIZE)} or less "
                          "(simulate several scenes with different --seed to cover more ground)")


def simulate_scene(
    sensor: str = "landsat8",
    height: int = 512,
    width: int = 512,
    seed: int = 0,
    fire: bool = True,
    smoke: bool = True,
    burn_scar: bool = True,
    clouds: str | float = "few",
    landscape: str | None = None,
    swath_edge: bool = False,
    haze: bool = True,
    hotspots: bool = True,
) -> SimulatedScene:
    """Simulate one scene with exact labels.

    Args:
        sensor: ``landsat8``, ``landsat9``, ``sentinel2``, ``hls`` (or the matching preset name).
        height: rows (32..16384).
        width: columns (32..16384).
        seed: random seed; the same arguments give the same scene, bit for bit. Each stage (terrain, scars,
            fire, smoke, clouds, noise, ...) has its own random stream, so turning one option off (e.g.
            ``smoke=False``) leaves everything else unchanged.
        fire: an active fire burns (at least one labelled fire pixel).
        smoke: a smoke plume (from the fire, or drifting in from upwind without one).
        burn_scar: this season's burn scar (the fire front runs along its downwind edge).
        clouds: cloud cover, a name of :data:`CLOUD_LEVELS` or a fraction.
        landscape: a key of :data:`firemap.simulate.landscape.LANDSCAPES`, or None for a random one.
        swath_edge: put a tilted nodata wedge (outside the swath) along one side.
        haze: add background aerosol (unlabelled).
        hotspots: render the landscape's lava / industrial hot spots (``volcanic`` and ``coastal_city``;
            never labelled fire).

    Returns:
        The :class:`SimulatedScene`; ``physical`` is ``(bands, rows, cols)`` float32 in canonical band order.

    Raises:
        ConfigError: size, clouds or landscape out of range, or the scene would not fit in memory
            (:func:`check_memory`).
        BandResolutionError: unknown sensor.
    """
    spec = sensor_spec(sensor)
    _check(height, width, landscape)
    check_memory(height, width)
    cover = cloud_fraction(clouds)
    shape = (int(height), int(width))
    rng = _streams(seed)
    cond = Conditions.draw(rng["conditions"], landscape or str(rng["conditions"].choice(sorted(LANDSCAPES))))
    land = make_landscape(rng["landscape"], shape, cond.landscape, spec.pixel_m)
    scars = make_scars(rng["scars"], land, cond.wind, burn_scar, fire)
    zeros = np.zeros(shape, np.float32)
    fuel = np.isin(land.cover, list(FUELS))
    fires = make_fires(rng["fires"], scars, fuel) if fire else Fires(zeros, zeros.copy())
    hot = make_hotspots(rng["hotspots"], land) if hotspots else Fires(zeros, zeros.copy())
    plume = smoke_tau(rng["smoke"], fires if fire else None, cond.wind, shape) if smoke else zeros
    residual = 1.0 if spec.toa else 0.2  # surface-reflectance processors remove most background aerosol
    atmos = Atmosphere(residual * haze_tau(rng["haze"], shape) if haze else zeros, plume,
                       make_clouds(rng["clouds"], shape, cover),
                       glint(rng["glint"], land.cover == MATERIAL_ID["water"]))
    valid = swath_mask(rng["swath"], shape) if swath_edge else np.ones(shape, bool)
    wanted = {"fire": fire, "smoke": smoke, "burn_scar": burn_scar}
    atmos.clouds, valid = _keep_visible(atmos.clouds, valid, fires, plume, scars, wanted)
    light = illumination(land.elevation, spec.pixel_m, cond.sun_zenith, cond.sun_azimuth)
    emitters = combine_emitters(fires, hot) if hot.fraction.any() else fires
    physical = reflective(spec, cond, land, scars, emitters, atmos, light)[_reflective_index(spec.bands)]
    if spec.thermal:
        bt = thermal(rng["thermal"], spec, cond, land, scars, emitters, atmos.clouds, light[4])
        physical = np.concatenate([physical, bt])
    tags = _tags(spec, cond, seed)
    raw = encode(spec, add_noise(rng["noise"], spec, physical, cond.cos_sun), valid, tags)
    truth = _truth(land.cover, scars, fires, atmos)
    truth.hotspot_fraction, truth.hotspot_temperature = hot.fraction, hot.temperature
    grid = _grid(rng["grid"], shape, spec.pixel_m)
    labels = make_labels(truth, valid)
    decoded = decode(spec, raw, valid, tags)
    return SimulatedScene(spec.name, spec.bands, decoded, labels, valid, grid, raw, spec, truth, tags)


_STAGES = ("conditions", "landscape", "scars", "fires", "smoke", "haze", "clouds", "glint", "swath", "thermal",
           "noise", "grid", "hotspots")


def _streams(seed: int) -> dict[str, np.random.Generator]:
    """One independent generator per stage, so switching one option off leaves the rest of the scene as is."""
    children = np.random.SeedSequence(seed).spawn(len(_STAGES))
    return {name: np.random.default_rng(child) for name, child in zip(_STAGES, children, strict=True)}


def _reflective_index(bands: tuple[str, ...]) -> list[int]:
    """Positions in the simulated reflective stack (:data:`REFLECTIVE`) of a sensor's reflective bands."""
    return [REFLECTIVE.index(b) for b in bands if b not in THERMAL_BANDS]


def _visible(fires: Fires, plume: np.ndarray, scars: Scars, clouds: Clouds, valid: np.ndarray) -> dict[str, bool]:
    seen = valid & (clouds.tau < OPAQUE_CLOUD_TAU)
    return {
        "fire": bool((seen & (fires.swir2_radiance() >= FIRE_LABEL_RADIANCE)).any()),
        "smoke": bool((seen & (plume >= SMOKE_LABEL_TAU)).any()),
        "burn_scar": bool((seen & scars.burned).any()),
    }


def _keep_visible(clouds: Clouds, valid: np.ndarray, fires: Fires, plume: np.ndarray, scars: Scars,
                  wanted: dict[str, bool]) -> tuple[Clouds, np.ndarray]:
    """Move clouds (then the swath edge) off the requested classes so each stays visible in the scene."""
    rows, cols = valid.shape
    candidates = [(clouds, valid)]
    for k in (1, 2, 3):
        moved = Clouds(np.roll(clouds.tau, (k * rows // 4, k * cols // 3), (0, 1)), clouds.cirrus, clouds.height_m)
        candidates.append((moved, valid))
    clear = Clouds(np.zeros_like(clouds.tau), clouds.cirrus, clouds.height_m)
    candidates += [(clear, valid), (clear, valid[::-1, ::-1].copy()), (clear, np.ones_like(valid))]
    for cand_clouds, cand_valid in candidates:
        seen = _visible(fires, plume, scars, cand_clouds, cand_valid)
        if all(seen[name] for name, want in wanted.items() if want):
            return cand_clouds, cand_valid
    return candidates[-1]


def _truth(cover: np.ndarray, scars: Scars, fires: Fires, atmos: Atmosphere) -> Truth:
    return Truth(cover, scars.burned, scars.old, scars.severity, scars.age_days, fires.fraction, fires.temperature,
                 atmos.smoke, atmos.haze, atmos.clouds.tau, atmos.clouds.cirrus, atmos.glint)


def make_labels(truth: Truth, valid: np.ndarray) -> np.ndarray:
    """``(3, rows, cols)`` uint8 labels fire / smoke / burn_scar from the physical fields (see module doc).

    Fire is wildfire only: ``truth.fire_*`` (flaming fronts, smouldering, spot fires) at least
    :data:`FIRE_LABEL_RADIANCE` at 2.2 um. Lava and industrial hot spots (``truth.hotspot_*``, and 1 px around
    them, where the sensor's blur spreads their heat) are **not labelled** in the fire band (:data:`CLASS_NODATA`)
    unless a wildfire burns there too; smoke and burn scar label them as usual.
    """
    seen = truth.cloud_tau < OPAQUE_CLOUD_TAU
    fires = Fires(truth.fire_fraction, truth.fire_temperature)
    labels = np.stack([
        (fires.swir2_radiance() >= FIRE_LABEL_RADIANCE) & seen,
        (truth.smoke_tau >= SMOKE_LABEL_TAU) & seen,
        truth.burned & seen,
    ]).astype(np.uint8)
    if truth.hotspot_fraction is not None and truth.hotspot_fraction.any():
        hot = ndimage.binary_dilation(truth.hotspot_fraction > 0, np.ones((3, 3), bool))
        labels[0][hot & (labels[0] == 0)] = CLASS_NODATA
    labels[:, ~valid] = CLASS_NODATA
    return labels


def _grid(rng: np.random.Generator, shape: tuple[int, int], pixel_m: float) -> GeoGrid:
    """A north-up UTM grid (WGS 84, northern hemisphere zone 10-59) with a random origin."""
    zone = int(rng.integers(10, 60))
    x0 = float(rng.integers(3000, 6000)) * 100.0
    y0 = float(rng.integers(34000, 60000)) * 100.0
    return GeoGrid(shape[1], shape[0], CRS.from_epsg(32600 + zone), Affine(pixel_m, 0, x0, 0, -pixel_m, y0))


def _tags(spec: SensorSpec, cond: Conditions, seed: int) -> dict[str, str]:
    return spec.tags | {
        "FIREMAP_SIMULATED": f"firemap {__version__}", "SIMULATION_SEED": str(seed),
        "LANDSCAPE": cond.landscape, "SUN_ELEVATION": f"{90.0 - cond.sun_zenith:.3f}",
        "SUN_AZIMUTH": f"{cond.sun_azimuth:.3f}", "WIND_TOWARDS_DEG": f"{cond.wind:.1f}",
        "REFLECTANCE": "top of atmosphere" if spec.toa else "surface",
    }


def labels_path(out_path: str | Path) -> Path:
    """The labels file written beside a scene: ``OUT.tif`` -> ``OUT.labels.tif``."""
    out = Path(out_path)
    return out.with_name(f"{out.stem}.labels{out.suffix or '.tif'}")


def write_scene(scene: SimulatedScene, out_path: str | Path, overwrite: bool = False) -> tuple[Path, Path]:
    """Write a scene in its sensor's encoding and its labels, both as Cloud-Optimized GeoTIFFs.

    Args:
        scene: from :func:`simulate_scene`.
        out_path: scene file; labels go to :func:`labels_path` (``OUT.labels.tif``).
        overwrite: replace existing files.

    Returns:
        ``(scene_path, labels_path)``.

    Raises:
        OutputExistsError: a file exists and ``overwrite`` is False (checked for both before writing).
    """
    out, lab = Path(out_path), labels_path(out_path)
    check_writable(out, overwrite)
    check_writable(lab, overwrite)
    write_raster(out, scene.raw, scene.grid, nodata=scene.spec.nodata, descriptions=scene.spec.descriptions,
                 tags=scene.tags, overwrite=overwrite)
    label_tags: dict[str, Any] = {"CLASSES": ",".join(CLASS_NAMES), "VALUES": "0=absent,1=present,255=nodata",
                                  "FIRE_LABEL_RADIANCE_2200NM": FIRE_LABEL_RADIANCE,
                                  "SMOKE_LABEL_TAU550": SMOKE_LABEL_TAU, "SCENE": out.name}
    write_raster(lab, scene.labels, scene.grid, nodata=CLASS_NODATA, descriptions=CLASS_NAMES, tags=label_tags,
                 overwrite=overwrite)
    log.info("wrote %s and %s", out, lab)
    return out, lab


def __getattr__(name: str) -> Any:
    if name in ("iter_tiles", "SimulatedTiles"):
        from firemap.simulate import tiles

        return getattr(tiles, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CLOUD_LEVELS", "FIRE_LABEL_RADIANCE", "MATERIAL_NAMES", "OPAQUE_CLOUD_TAU", "SENSOR_SPECS", "SMOKE_LABEL_TAU",
    "SimulatedScene", "SimulatedTiles", "Truth", "available_memory", "check_memory", "cloud_fraction",
    "estimate_memory", "iter_tiles", "labels_path", "make_labels", "simulate_scene", "write_scene",
]
