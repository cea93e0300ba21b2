"""The ground before any fire: spatially correlated fields, land-cover layout, topography, surface spectra.

Fields are Gaussian random fields with a power-law spectrum ``P(k) ~ (k^2 + k0^2)^(-beta/2)``, synthesised
with the FFT (fractional Brownian surfaces; Voss 1988, in *The Science of Fractal Images*). Smooth fields are
made on a coarse grid and interpolated, which keeps a 1024 x 1024 scene cheap. Land cover is the argmax of
one field per cover type biased by the log of its share, with the borders roughened by a domain warp;
fields (farmland) are rectangular parcels; lakes fill the lowest terrain. Each vegetated pixel is a linear
mixture of its canopy and the local soil (fractional cover; Adams et al. 1986, JGR 91:8098).

Topographic illumination: Lambertian direct light ``cos(i) / cos(theta_s)`` plus isotropic skylight, with
``cos i = cos(theta_s) cos(slope) + sin(theta_s) sin(slope) cos(phi_s - aspect)`` (e.g. Teillet et al. 1982,
Can. J. Remote Sens. 8:84).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from firemap.simulate.spectra import MATERIAL_ID, MATERIAL_NAMES, SKY_FRACTION, SPECTRA

LANDSCAPES: dict[str, dict[str, float]] = {
    "forest": {"conifer": 0.42, "broadleaf": 0.22, "shrub": 0.1, "grass": 0.08, "dry_grass": 0.05,
               "dark_soil": 0.04, "rock": 0.04, "urban": 0.02},
    "mediterranean": {"shrub": 0.38, "dry_grass": 0.2, "conifer": 0.1, "broadleaf": 0.06, "soil": 0.07,
                      "rock": 0.05, "dark_soil": 0.04, "urban": 0.06, "grass": 0.04},
    "savanna": {"dry_grass": 0.45, "broadleaf": 0.1, "shrub": 0.12, "soil": 0.1, "dark_soil": 0.08,
                "grass": 0.08, "rock": 0.04, "urban": 0.03},
    "agricultural": {"crop": 0.3, "dry_grass": 0.15, "soil": 0.15, "dark_soil": 0.14, "broadleaf": 0.08,
                     "urban": 0.08, "grass": 0.1},
    "arid": {"soil": 0.32, "rock": 0.22, "dark_soil": 0.1, "dry_grass": 0.18, "shrub": 0.13, "urban": 0.05},
    "tropical_savanna": {"grass": 0.18, "dry_grass": 0.22, "broadleaf": 0.2, "shrub": 0.15, "laterite": 0.12,
                         "dark_soil": 0.05, "soil": 0.04, "crop": 0.02, "urban": 0.02},
    "wetland": {"wet_grass": 0.4, "grass": 0.15, "dry_grass": 0.12, "broadleaf": 0.2, "shrub": 0.08,
                "dark_soil": 0.03, "urban": 0.01},
    "laterite": {"broadleaf": 0.32, "grass": 0.18, "laterite": 0.2, "tailings": 0.07, "shrub": 0.1, "crop": 0.06,
                 "urban": 0.05, "dry_grass": 0.02},
    "desert": {"sand": 0.42, "reg": 0.2, "rock": 0.1, "salt": 0.05, "basalt": 0.04, "dark_soil": 0.03,
               "shrub": 0.04, "dry_grass": 0.03},
    "volcanic": {"broadleaf": 0.35, "grass": 0.18, "crop": 0.14, "shrub": 0.12, "tephra": 0.04,
                 "dry_grass": 0.06, "urban": 0.03},
    "coastal_city": {"urban": 0.4, "grass": 0.12, "broadleaf": 0.1, "crop": 0.1, "dry_grass": 0.08, "soil": 0.08,
                     "metal_roof": 0.06, "shrub": 0.06},
}
"""Landscape -> cover-type shares (water is added from the terrain; ``coastal_city`` also gets a sea and a
beach). Each scene multiplies the shares by lognormal factors (sigma 0.35), so no two scenes of a landscape
have the same mix. ``volcanic`` scenes may carry an active lava flow and ``coastal_city`` scenes industrial
hot spots (real thermal anomalies that are *not labelled* fire, see :func:`firemap.simulate.events.make_hotspots`)."""

LAKE_SHARE = {"forest": 0.05, "mediterranean": 0.02, "savanna": 0.03, "agricultural": 0.04, "arid": 0.01,
              "tropical_savanna": 0.03, "wetland": 0.14, "laterite": 0.03, "desert": 0.0, "volcanic": 0.05,
              "coastal_city": 0.01}
RELIEF_M = {"forest": 900.0, "mediterranean": 700.0, "savanna": 250.0, "agricultural": 80.0, "arid": 500.0,
            "tropical_savanna": 200.0, "wetland": 20.0, "laterite": 800.0, "desert": 300.0, "volcanic": 1200.0,
            "coastal_city": 60.0}
VEGETATION = ("conifer", "broadleaf", "shrub", "grass", "dry_grass", "crop", "wet_grass")
FUELS = frozenset(MATERIAL_ID[m] for m in VEGETATION)
"""Cover ids that burn."""
_CANOPY = np.array([{"conifer": 0.85, "broadleaf": 0.92, "shrub": 0.72, "grass": 0.78, "dry_grass": 0.78,
                     "crop": 0.82, "wet_grass": 0.88}.get(m, 10.0) for m in MATERIAL_NAMES], dtype=np.float32)
"""Mean fractional canopy cover of each vegetated cover type (the rest is the local soil); 10 = not vegetated
(clipped to 1)."""
BARE = frozenset(MATERIAL_ID[m] for m in ("soil", "dark_soil", "laterite"))
"""Bare soils: mixed with the local soil, and they burn lightly (sparse grass)."""

# Surface temperature offsets from the air temperature, K (daytime, sunlit; water and dense canopy are cool,
# dry and dark bare surfaces warm). Order: MATERIAL_NAMES.
_SURFACE_DT = {"conifer": -2, "broadleaf": -3, "shrub": 2, "grass": 0, "dry_grass": 7, "crop": -3, "soil": 9,
               "dark_soil": 13, "rock": 8, "water": -8, "urban": 8, "roof": 6, "tile_roof": 10, "char": 16,
               "ash": 10, "npv": 7, "wet_grass": -4, "black_char": 18, "white_ash": 8, "laterite": 11,
               "tailings": 6, "reg": 12, "sand": 9, "salt": 2, "basalt": 16, "tephra": 14, "metal_roof": 8,
               "beach": 7, "wet_soil": 2}


def fbm(
    rng: np.random.Generator, shape: tuple[int, int], beta: float = 3.0, corr_px: float | None = None
) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian random field with a power-law spectrum (periodic).

    Args:
        rng: random generator.
        shape: ``(rows, cols)``.
        beta: spectral slope (2 rough ... 4 very smooth).
        corr_px: roll-off scale in pixels (``k0 = 1 / corr_px``); None = the field size.

    Returns:
        ``(rows, cols)`` float32 field.
    """
    rows, cols = shape
    ky = np.fft.fftfreq(rows)[:, None]
    kx = np.fft.rfftfreq(cols)[None, :]
    k0 = 1.0 / (corr_px or max(rows, cols))
    amp = (ky**2 + kx**2 + k0**2) ** (-beta / 4.0)
    amp[0, 0] = 0.0
    spec = np.fft.rfft2(rng.standard_normal(shape, dtype=np.float32)) * amp
    field = np.fft.irfft2(spec, s=shape).astype(np.float32)
    return (field - field.mean()) / (field.std() + 1e-12)


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], beta: float = 3.0, corr_px: float | None = None,
                 factor: int = 4) -> np.ndarray:
    """A smooth :func:`fbm` made on a grid ``factor`` times coarser and interpolated (bilinear) to ``shape``."""
    small = (max(4, -(-shape[0] // factor)), max(4, -(-shape[1] // factor)))
    field = fbm(rng, small, beta, None if corr_px is None else corr_px / factor)
    return cv2.resize(field, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def blur(field: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of ``sigma`` pixels (mirrored edges) of a ``(rows, cols)`` or ``(bands, rows, cols)`` array."""
    if field.ndim == 3:
        return np.stack([blur(band, sigma) for band in field])
    return cv2.GaussianBlur(np.ascontiguousarray(field, dtype=np.float32), (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def fine_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float = 0.8) -> np.ndarray:
    """Unit-variance white noise smoothed by a Gaussian of ``sigma`` pixels (pixel-scale texture)."""
    field = blur(rng.standard_normal(shape, dtype=np.float32), sigma)
    return field / (field.std() + 1e-12)


@dataclass
class Landscape:
    """The pre-fire ground.

    Attributes:
        kind: landscape name (a key of :data:`LANDSCAPES`).
        cover: ``(rows, cols)`` uint8 material id (see ``spectra.MATERIAL_NAMES``).
        reflectance: ``(8, rows, cols)`` float32 surface reflectance, flat terrain, no atmosphere.
        soil: ``(8, rows, cols)`` float32 reflectance of the local bare soil (under canopies, exposed by fire).
        veg_fraction: ``(rows, cols)`` float32 canopy cover of vegetated pixels (1 elsewhere).
        elevation: ``(rows, cols)`` float32 metres.
        warp: ``(2, rows, cols)`` float32 small displacement field (pixels) reused to roughen shapes.
        hot_sites: ``(rows, cols)`` uint8 where non-wildfire hot spots may burn: 1 active lava flow,
            2 industrial site (see :func:`firemap.simulate.events.make_hotspots`), 0 elsewhere.
    """

    kind: str
    cover: np.ndarray
    reflectance: np.ndarray
    soil: np.ndarray
    veg_fraction: np.ndarray
    elevation: np.ndarray
    warp: np.ndarray
    hot_sites: np.ndarray


def _cover_blobs(rng: np.random.Generator, shape: tuple[int, int], shares: dict[str, float],
                 warp: np.ndarray) -> np.ndarray:
    """Natural cover patches: argmax over one smooth field per type, biased by log share, domain-warped."""
    factor = 4
    small = (max(4, -(-shape[0] // factor)), max(4, -(-shape[1] // factor)))
    corr = rng.uniform(0.08, 0.3) * max(small)
    names = list(shares)
    scores = np.stack([fbm(rng, small, 3.0, corr) for _ in names])
    scores += 1.3 * np.log(np.array([shares[n] for n in names], dtype=np.float32))[:, None, None]
    ids = np.array([MATERIAL_ID[n] for n in names], dtype=np.uint8)[scores.argmax(axis=0)]
    rows, cols = np.indices(shape, dtype=np.float32)
    ry = np.clip(((rows + warp[0]) / factor).astype(np.int32), 0, small[0] - 1)
    rx = np.clip(((cols + warp[1]) / factor).astype(np.int32), 0, small[1] - 1)
    return ids[ry, rx]


def _parcels(rng: np.random.Generator, shape: tuple[int, int], shares: dict[str, float]) -> np.ndarray:
    """Farmland: rectangular parcels (a coarse grid of random size), each with one cover type."""
    names = list(shares)
    p = np.array([shares[n] for n in names]) / sum(shares.values())
    cell_y, cell_x = (int(rng.integers(12, 40)) for _ in range(2))
    grid = rng.choice([MATERIAL_ID[n] for n in names], p=p, size=(shape[0] // cell_y + 2, shape[1] // cell_x + 2))
    oy, ox = int(rng.integers(0, cell_y)), int(rng.integers(0, cell_x))
    rows = (np.arange(shape[0]) + oy) // cell_y
    cols = (np.arange(shape[1]) + ox) // cell_x
    return grid[rows[:, None], cols[None, :]].astype(np.uint8)


_BUILT = frozenset(MATERIAL_ID[m] for m in ("urban", "roof", "tile_roof", "metal_roof"))
_DISTRICTS = {  # weights of asphalt/concrete, bright roof, tile roof, grass, trees, metal roof
    "tile": (0.35, 0.05, 0.4, 0.1, 0.1, 0.0), "white": (0.35, 0.45, 0.05, 0.08, 0.07, 0.0),
    "commercial": (0.55, 0.3, 0.05, 0.05, 0.05, 0.0), "industrial": (0.4, 0.2, 0.0, 0.03, 0.02, 0.35),
}


def _urban_texture(rng: np.random.Generator, cover: np.ndarray, dense: bool = False) -> np.ndarray:
    """Inside urban cover: districts (tile-roofed or white-roofed housing, commercial, industrial; smooth field
    of 8-20 blocks) of 2-4 px blocks drawn from the district's palette, cut by a street grid every 4-8 blocks.
    A ``dense`` (coastal) city has more white roofs and industry (the false alarms of real coastal towns)."""
    town = cover == MATERIAL_ID["urban"]
    if not town.any():
        return cover
    block = int(rng.integers(2, 5))
    small = (cover.shape[0] // block + 1, cover.shape[1] // block + 1)
    kinds = np.array([MATERIAL_ID[k] for k in ("urban", "roof", "tile_roof", "grass", "broadleaf", "metal_roof")])
    shares = np.array([0.4, 0.2, 0.3, 0.1]) if not dense else np.array([0.2, 0.35, 0.25, 0.2])
    field = fbm(rng, small, 3.0, rng.uniform(8.0, 20.0))
    edges = np.quantile(field, np.cumsum(shares)[:-1])
    district = np.searchsorted(edges, field)
    grid = np.empty(small, np.uint8)
    for index, name in enumerate(_DISTRICTS):
        where = district == index
        weights = np.array(_DISTRICTS[name])
        grid[where] = rng.choice(kinds, p=weights / weights.sum(), size=int(where.sum()))
    step, offset = int(rng.integers(4, 9)), int(rng.integers(0, 4))
    grid[(np.arange(small[0]) + offset) % step == 0, :] = MATERIAL_ID["urban"]
    grid[:, (np.arange(small[1]) + offset) % step == 0] = MATERIAL_ID["urban"]
    texture = np.repeat(np.repeat(grid, block, 0), block, 1)[: cover.shape[0], : cover.shape[1]]
    return np.where(town, texture, cover)


def _terrain(rng: np.random.Generator, shape: tuple[int, int], relief: float) -> tuple[np.ndarray, np.ndarray]:
    """Elevation (m) and its large-scale part (valleys and basins), both ``(rows, cols)`` float32."""
    base = smooth_field(rng, shape, beta=3.4, factor=4) * relief / 3.0
    z = base + 0.05 * relief * smooth_field(rng, shape, beta=2.6, corr_px=20, factor=2)
    return z.astype(np.float32), base.astype(np.float32)


def _water(rng: np.random.Generator, basins: np.ndarray, share: float) -> np.ndarray:
    """Lakes in the lowest basins and, sometimes, a meandering river."""
    water = basins <= np.quantile(basins[::4, ::4], share) if share > 0 else np.zeros(basins.shape, bool)
    if rng.random() < 0.35:
        across = bool(rng.random() < 0.5)
        rows, cols = basins.shape[::-1] if across else basins.shape
        walk = np.cumsum(rng.standard_normal(rows + 64)) * rng.uniform(0.3, 1.2)
        path = ndimage.gaussian_filter1d(walk, 12)[32 : 32 + rows] + rng.uniform(0.1, 0.9) * cols
        river = np.abs(np.arange(cols)[None, :] - path[:, None]) < rng.uniform(0.8, 3.0)
        water |= river.T if across else river
    return water


def make_landscape(rng: np.random.Generator, shape: tuple[int, int], kind: str, pixel_m: float = 30.0) -> Landscape:
    """Lay out land cover, terrain and surface spectra.

    Args:
        rng: random generator.
        shape: ``(rows, cols)``.
        kind: a key of :data:`LANDSCAPES`.
        pixel_m: pixel size, metres. Relief scales with the scene extent as ``(extent / 30 km)^0.7``
            (terrain is self-affine; Hurst exponent ~0.7, e.g. Mark & Aronson 1984), so small scenes are not
            implausibly steep.

    Returns:
        The :class:`Landscape` (surface reflectance before fire, topography and atmosphere).
    """
    shares = _scene_shares(rng, LANDSCAPES[kind])
    warp = np.stack([smooth_field(rng, shape, 2.4, 12, factor=2) for _ in range(2)]) * rng.uniform(1.5, 4.0)
    cover = _cover_blobs(rng, shape, shares, warp)
    if kind == "agricultural":
        farmed = smooth_field(rng, shape, 3.0) > -0.6
        cover = np.where(farmed, _parcels(rng, shape, shares), cover)
    cover = _urban_texture(rng, cover, dense=kind == "coastal_city")
    extent = max(shape) * pixel_m / 30000.0
    elevation, basins = _terrain(rng, shape, RELIEF_M[kind] * rng.uniform(0.4, 1.5) * extent**0.7)
    cover[_water(rng, basins, LAKE_SHARE[kind] * rng.uniform(0, 2))] = MATERIAL_ID["water"]
    if kind == "coastal_city":
        _coast(rng, cover, warp)
    hot_sites = np.zeros(shape, np.uint8)
    if kind == "volcanic":
        elevation = _volcano(rng, cover, elevation, hot_sites, warp)
    hot_sites = _industry(rng, cover, hot_sites) if kind == "coastal_city" else hot_sites
    soil = _soil(rng, shape, kind)
    veg_fraction = np.clip(_CANOPY[cover] + 0.14 * smooth_field(rng, shape, 2.8, 40), 0.35, 1.0).astype(np.float32)
    reflectance = _surface(rng, cover, soil, veg_fraction)
    return Landscape(kind, cover, reflectance, soil, veg_fraction, elevation, warp.astype(np.float32), hot_sites)


def _scene_shares(rng: np.random.Generator, shares: dict[str, float]) -> dict[str, float]:
    """Per-scene cover shares: each share times a lognormal factor (sigma 0.35)."""
    return {name: share * float(np.exp(rng.normal(0.0, 0.35))) for name, share in shares.items()}


def _coast(rng: np.random.Generator, cover: np.ndarray, warp: np.ndarray) -> None:
    """Sea on one side (15-40% of the scene, a rough coastline) and a 1-4 px beach along it (in place)."""
    rows, cols = cover.shape
    angle = rng.uniform(0, 2 * np.pi)
    y, x = np.indices(cover.shape, dtype=np.float32)
    plane = (np.cos(angle) * (y - rows / 2) + np.sin(angle) * (x - cols / 2)) / max(rows, cols)
    plane += 0.06 * smooth_field(rng, cover.shape, 3.4, 0.2 * max(rows, cols)) + 0.002 * warp[0]
    sea = plane > np.quantile(plane[::4, ::4], 1.0 - rng.uniform(0.15, 0.4))
    land_distance = ndimage.distance_transform_edt(~sea) if sea.any() else np.full(cover.shape, 1e9)
    cover[(land_distance > 0) & (land_distance <= rng.uniform(1.0, 4.0))] = MATERIAL_ID["beach"]
    cover[sea] = MATERIAL_ID["water"]


def _lava_path(rng: np.random.Generator, shape: tuple[int, int], start: tuple[float, float], heading: float,
               length: int) -> np.ndarray:
    """``(rows, cols)`` bool one-pixel path of a lava flow: a random walk with a slowly turning heading."""
    turn = heading + np.cumsum(rng.normal(0, 0.08, length))
    y = start[0] + np.cumsum(np.cos(turn))
    x = start[1] + np.cumsum(np.sin(turn))
    keep = (y >= 0) & (y < shape[0]) & (x >= 0) & (x < shape[1])
    path = np.zeros(shape, bool)
    path[y[keep].astype(int), x[keep].astype(int)] = True
    return path


def _volcano(rng: np.random.Generator, cover: np.ndarray, elevation: np.ndarray, hot_sites: np.ndarray,
             warp: np.ndarray) -> np.ndarray:
    """A volcano: a cone (Gaussian, radius R = 15-30% of the scene), tephra around the summit, 3-8 basalt
    lava flows running outwards (random walks dilated by 4-12% of R), and with probability 0.7 an active flow
    whose path is a lava hot-spot site (``hot_sites = 1``; in place). Returns the elevation with the cone."""
    rows, cols = cover.shape
    centre = (rng.uniform(0.25, 0.75) * rows, rng.uniform(0.25, 0.75) * cols)
    radius = rng.uniform(0.15, 0.3) * min(rows, cols)
    y, x = np.indices(cover.shape, dtype=np.float32)
    r2 = ((y - centre[0]) ** 2 + (x - centre[1]) ** 2) / radius**2
    elevation = elevation + rng.uniform(300.0, 1200.0) * np.exp(-0.5 * r2) * min(1.0, radius / 100.0)
    summit = (r2 + 0.15 * warp[0] / 4.0) < rng.uniform(0.05, 0.25)
    cover[summit & (cover != MATERIAL_ID["water"])] = MATERIAL_ID["tephra"]
    flows = [_lava_path(rng, cover.shape, centre, rng.uniform(0, 2 * np.pi), int(rng.uniform(0.5, 1.5) * radius))
             for _ in range(int(rng.integers(3, 9)))]
    for path in flows:
        wide = ndimage.binary_dilation(path, iterations=max(2, int(rng.uniform(0.04, 0.12) * radius)))
        cover[wide & (cover != MATERIAL_ID["water"])] = MATERIAL_ID["basalt"]
    if rng.random() < 0.7:
        active = flows[0] & (rng.random(cover.shape) < rng.uniform(0.3, 0.9))
        hot_sites[active & (cover != MATERIAL_ID["water"])] = 1
    return elevation.astype(np.float32)


def _industry(rng: np.random.Generator, cover: np.ndarray, hot_sites: np.ndarray) -> np.ndarray:
    """1-5 industrial hot-spot sites (``2``) on metal roofs (steel works, kilns, flares)."""
    industry = np.flatnonzero((cover == MATERIAL_ID["metal_roof"]).ravel())
    if industry.size:
        picks = rng.choice(industry, size=min(industry.size, int(rng.integers(1, 6))), replace=False)
        hot_sites.ravel()[picks] = 2
    return hot_sites


def _scene_spectra(rng: np.random.Generator) -> np.ndarray:
    """Per-scene variants of the material spectra: +-12% overall (tailings x U(0.8, 1.8)), +-5% per band
    (domain randomisation)."""
    overall = np.clip(1.0 + 0.12 * rng.standard_normal((SPECTRA.shape[0], 1)), 0.7, 1.3)
    overall[MATERIAL_ID["tailings"]] = rng.uniform(0.8, 1.8)  # wet mud ... dry tailings
    per_band = 1.0 + 0.05 * rng.standard_normal(SPECTRA.shape)
    return (SPECTRA * overall * per_band).astype(np.float32)


_SOILS = {"laterite": ("laterite", "dark_soil"), "tropical_savanna": ("laterite", "dark_soil"),
          "desert": ("sand", "reg"), "volcanic": ("tephra", "dark_soil"), "wetland": ("dark_soil", "wet_soil")}
"""Bright and dark soil endmembers by landscape (default: soil and dark_soil)."""


def _soil(rng: np.random.Generator, shape: tuple[int, int], kind: str = "forest") -> np.ndarray:
    """Local bare soil: a smooth mix of the landscape's bright and dark soil."""
    bright_name, dark_name = _SOILS.get(kind, ("soil", "dark_soil"))
    mix = 1.0 / (1.0 + np.exp(-1.5 * smooth_field(rng, shape, 3.0) - rng.normal(0.0, 0.8)))
    bright, dark = SPECTRA[MATERIAL_ID[bright_name]], SPECTRA[MATERIAL_ID[dark_name]]
    return (bright[:, None, None] * mix + dark[:, None, None] * (1.0 - mix)).astype(np.float32)


def _surface(rng: np.random.Generator, cover: np.ndarray, soil: np.ndarray, veg_fraction: np.ndarray) -> np.ndarray:
    spectra = _scene_spectra(rng)
    rho = spectra.T[:, cover]  # (8, rows, cols)
    rho = veg_fraction * rho + (1.0 - veg_fraction) * soil
    bare = np.isin(cover, list(BARE))
    rho = np.where(bare, 0.5 * rho + 0.5 * soil, rho)
    town = np.isin(cover, list(_BUILT))
    if town.any():  # buildings are smaller than a pixel: roofs, streets and gardens mix
        rho = np.where(town, blur(rho, 0.7), rho)
    texture = 1.0 + 0.07 * fine_noise(rng, cover.shape, 0.7) + 0.06 * smooth_field(rng, cover.shape, 2.5, 25)
    return np.clip(rho * texture, 0.001, 1.0).astype(np.float32)


def illumination(elevation: np.ndarray, pixel_m: float, sun_zenith: float, sun_azimuth: float) -> np.ndarray:
    """Relative irradiance of each pixel, per reflective band: direct ``cos(i)/cos(theta_s)`` plus skylight.

    Args:
        elevation: ``(rows, cols)`` metres.
        pixel_m: pixel size, metres.
        sun_zenith: degrees.
        sun_azimuth: degrees clockwise from north.

    Returns:
        ``(8, rows, cols)`` float32 factor (1 on flat ground).
    """
    dz_drow, dz_dx = np.gradient(elevation.astype(np.float32), np.float32(pixel_m))
    sz, sa = np.radians(sun_zenith), np.radians(sun_azimuth)
    cos_slope = 1.0 / np.sqrt(1.0 + dz_dx * dz_dx + dz_drow * dz_drow)
    # n . s with n ~ (-dz/dx_east, -dz/dy_north, 1) and the sun at (sin sz sin sa, sin sz cos sa, cos sz);
    # rows grow southward, so dz/dy_north = -dz_drow.
    cos_i = (np.float32(np.cos(sz)) + np.float32(np.sin(sz)) * (np.float32(np.cos(sa)) * dz_drow
             - np.float32(np.sin(sa)) * dz_dx)) * cos_slope
    direct = np.clip(cos_i, 0.0, None) / np.float32(np.cos(sz))
    sky = SKY_FRACTION[:, None, None]
    return ((1.0 - sky) * direct[None] + sky * (0.5 + 0.5 * cos_slope)[None]).astype(np.float32)


def surface_temperature(rng: np.random.Generator, cover: np.ndarray, shade: np.ndarray, air_k: float) -> np.ndarray:
    """Daytime land-surface brightness temperature, K: air temperature + material offset + sunlit slopes.

    Args:
        rng: random generator.
        cover: ``(rows, cols)`` material ids.
        shade: ``(rows, cols)`` relative direct irradiance (1 = flat).
        air_k: near-surface air temperature, K.

    Returns:
        ``(rows, cols)`` float32, K.
    """
    offsets = np.array([_SURFACE_DT[m] for m in MATERIAL_NAMES], dtype=np.float32)
    temp = air_k + offsets[cover] + 6.0 * (shade - 1.0) + 1.0 * smooth_field(rng, cover.shape, 2.8, 30)
    return temp.astype(np.float32)
