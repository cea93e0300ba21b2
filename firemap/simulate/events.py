"""Fire-related events and the sky: burn scars, active fires, smoke plumes, haze, clouds and their shadows.

Geometry follows the wind: a fire spreads downwind from its ignition point into an ellipse whose
length-to-breadth ratio grows with wind speed (Anderson 1983, USDA INT-305; Alexander 1985), its perimeter
roughened by fuel and terrain (a warped distance field), with unburned islands inside. The active front is the
downwind (head) part of the perimeter; smoke rises from the front and drifts downwind as a Gaussian plume.

* Burn severity and spectra: consumed fraction ``c`` of the pre-fire canopy is replaced by char, white ash,
  scorched/dead vegetation (npv) and exposed soil (linear mixture). Grass fires leave mostly char (dark in
  every band: Trigg & Flasse 2000); forest and shrub fires leave scorched crowns, ash and bare soil, so SWIR2
  stays higher than NIR (Key & Benson 2006, FIREMON LA; Lentile et al. 2006, IJWF 15:319). Char weathers away
  in weeks (grass) to months (forest) (Trigg & Flasse 2000; Roy et al. 2010); vegetation regrows with time
  constants of ~0.7 (grass) to ~2 years (woody) (Epting & Verbyla 2005; Veraverbeke et al. 2012).
* Active fire: sub-pixel flaming fraction ``p`` and temperature ``T``: flaming 800-1300 K, smouldering
  600-850 K (Dozier 1981, RSE 11:221; Giglio & Kendall 2001, RSE 78:1); Landsat-scale fire fractions ~1e-3 to
  1e-1 of a 30 m pixel (Schroeder et al. 2016, RSE 185:210; Giglio et al. 2008, RSE 112:3055).
* Smoke: optical depth at 550 nm from Gaussian plumes (width growing linearly downwind, column mass
  conserved, ``tau ~ 1/sigma``) with lognormal turbulence; Angstrom exponent 1.2-2.1 and single-scattering
  albedo 0.85-0.95 of biomass-burning aerosol (Eck et al. 1999, JGR 104:31333; Dubovik et al. 2002,
  J. Atmos. Sci. 59:590).
* Clouds: optical thickness of water clouds up to ~40 (cumulus) with droplet absorption in SWIR
  (single-scattering albedo ~0.993 at 1.6 um, ~0.97 at 2.2 um; Nakajima & King 1990, J. Atmos. Sci. 47:1878);
  thin high cirrus; shadows cast at ``h tan(theta_s)`` away from the sun.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from firemap.simulate.landscape import FUELS, Landscape, fine_noise, smooth_field
from firemap.simulate.spectra import C1, C2, MATERIAL_ID, SPECTRA

FIRE_LABEL_RADIANCE = 3.0
"""A pixel is labelled fire when its fire emits at least this band-mean radiance at 2.2 um (SWIR2),
W m-2 sr-1 um-1: about +0.11 to +0.2 in SWIR2 reflectance, i.e. a hot anomaly that a person or a rule can see."""

SMOKE_LABEL_TAU = 0.3
"""A pixel is labelled smoke when the plume's aerosol optical depth at 550 nm is at least this (background
continental aerosol is ~0.05-0.2)."""

OPAQUE_CLOUD_TAU = 4.0
"""Cloud optical thickness above which the ground is hidden: fire and burn-scar labels are cleared there."""

_SPARSE = np.array([MATERIAL_ID[m] for m in ("soil", "dark_soil")])
_GRASSY = np.array([MATERIAL_ID[m] for m in ("grass", "dry_grass", "crop", "soil", "dark_soil")])


def _unit(direction_deg: float) -> tuple[float, float]:
    """(drow, dcol) of a compass direction (degrees clockwise from north; north is up)."""
    a = np.radians(direction_deg)
    return -float(np.cos(a)), float(np.sin(a))


@dataclass
class Scars:
    """Burned ground.

    Attributes:
        burned: ``(rows, cols)`` bool, burned this season (the burn_scar label before cloud masking).
        old: ``(rows, cols)`` bool, burned in earlier years and partly regrown (not labelled).
        severity: ``(rows, cols)`` float32 consumed fraction of the canopy (0 unburned).
        age_days: ``(rows, cols)`` float32 days since the fire reached the pixel.
        front: ``(rows, cols)`` bool, pixels of the active fire front (when a fire is burning).
        char_gain: brightness of this fire's char/ash-on-soil relative to :data:`MATERIALS` ``char`` (its colour
            depends on the soil and the fuel: real scars read 0.15-0.4 in SWIR2).
    """

    burned: np.ndarray
    old: np.ndarray
    severity: np.ndarray
    age_days: np.ndarray
    front: np.ndarray
    char_gain: float = 1.0


def _pick_centre(rng: np.random.Generator, fuel: np.ndarray, radius: float) -> tuple[float, float]:
    """Among 24 random points, the one with the most fuel around it."""
    rows, cols = fuel.shape
    step = max(1, int(radius // 4))
    coarse = fuel[::step, ::step].astype(np.float32)
    ys = rng.uniform(0.15, 0.85, 24) * rows
    xs = rng.uniform(0.15, 0.85, 24) * cols
    r = max(1, int(radius / step))
    scores = [coarse[max(0, int(y) // step - r): int(y) // step + r + 1,
                     max(0, int(x) // step - r): int(x) // step + r + 1].mean() for y, x in zip(ys, xs, strict=True)]
    best = int(np.argmax(scores))
    return float(ys[best]), float(xs[best])


def _ellipse_distance(shape: tuple[int, int], centre: tuple[float, float], direction: float, a: float, b: float,
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Downwind ``u``, crosswind ``v`` (pixels) and elliptical distance ``sqrt((u/a)^2 + (v/b)^2)``."""
    dr, dc = _unit(direction)
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    y = (rows - centre[0]).astype(np.float32)
    x = (cols - centre[1]).astype(np.float32)
    u = y * dr + x * dc
    v = -y * dc + x * dr
    return u, v, np.sqrt((u / a) ** 2 + (v / b) ** 2)


def _perimeter(rng: np.random.Generator, land: Landscape, wind: float, scale: float) -> tuple[np.ndarray, ...]:
    """One fire's footprint: roughened elliptical distance ``d`` (< 1 inside) and its downwind coordinate."""
    shape = land.cover.shape
    a = scale * min(shape)
    b = a / rng.uniform(1.3, 3.0)
    fuel = np.isin(land.cover, list(FUELS))
    centre = _pick_centre(rng, fuel, b)
    u, _, d = _ellipse_distance(shape, centre, wind, a, b)
    rough = smooth_field(rng, shape, 2.6, max(4.0, b / 1.5), factor=2)
    d = d * (1.0 + 0.2 * rough) + 0.025 * fine_noise(rng, shape, 1.5)
    return d.astype(np.float32), (u / a).astype(np.float32), fuel


def make_scars(rng: np.random.Generator, land: Landscape, wind: float, burn_scar: bool, fire: bool) -> Scars:
    """Burn scars of this season (labelled), older regrown scars (not labelled) and the active fire front.

    Args:
        rng: random generator.
        land: the pre-fire landscape.
        wind: direction the wind blows towards, degrees clockwise from north.
        burn_scar: render this season's scar.
        fire: a fire is burning now (the scar is growing at its head).

    Returns:
        :class:`Scars`.
    """
    shape = land.cover.shape
    d, u, fuel = _perimeter(rng, land, wind, rng.uniform(0.16, 0.4))
    inside = d < 1.0
    islands = smooth_field(rng, shape, 2.8, 0.03 * min(shape) + 2, factor=2) > rng.uniform(1.3, 2.2)
    sparse = np.isin(land.cover, _SPARSE)  # bare soils carry sparse grass: they burn, lightly
    burned = inside & (fuel | sparse) & ~islands
    if burned.sum() < 0.2 * inside.sum():  # hardly any fuel: rock and the rest burned through too
        burned = inside & (land.cover != MATERIAL_ID["water"]) & ~islands
    sev_noise = smooth_field(rng, shape, 2.6, 0.05 * min(shape) + 2, factor=2)
    severity = np.clip(0.65 + 0.3 * (1.0 - d) + 0.2 * sev_noise, 0.2, 1.0) * np.where(sparse, 0.6, 1.0)
    progress = np.clip((u + 0.8) / 1.8, 0.0, 1.0)  # ignition near the upwind end, head downwind
    span = rng.uniform(0.5, 8.0)
    base = 0.0 if fire else float(np.exp(rng.uniform(np.log(2.0), np.log(100.0))))  # mapped within ~3 months
    age = base + span * (1.0 - progress)
    front = np.zeros(shape, bool)
    if fire:
        front = _front(rng, d, u, burned if burn_scar else inside & fuel, min(shape))
    old, old_sev, old_age = _old_scars(rng, land, wind, inside)
    if not burn_scar:
        burned = np.zeros(shape, bool)
    severity = np.where(burned, severity, np.where(old, old_sev, 0.0)).astype(np.float32)
    age_days = np.where(burned, age, np.where(old, old_age, 0.0)).astype(np.float32)
    return Scars(burned, old & ~burned, severity, age_days, front, float(np.exp(rng.normal(0.0, 0.35))))


def _front(rng: np.random.Generator, d: np.ndarray, u: np.ndarray, burnable: np.ndarray, size: int) -> np.ndarray:
    """The burning edge: the inner band of the perimeter on the head (downwind) side, in broken segments."""
    width = rng.uniform(1.0, 2.5) / (0.25 * size)
    edge = (d > 1.0 - width) & (d < 1.0) & burnable
    head = u > rng.uniform(-0.3, 0.4)
    gate = smooth_field(rng, d.shape, 2.4, 6.0, factor=2) > rng.uniform(-0.6, 0.2)
    return edge & head & gate


def _old_scars(rng: np.random.Generator, land: Landscape, wind: float, taken: np.ndarray) -> tuple[np.ndarray, ...]:
    shape = land.cover.shape
    old = np.zeros(shape, bool)
    sev = np.zeros(shape, np.float32)
    age = np.zeros(shape, np.float32)
    for _ in range(int(rng.choice([0, 0, 1, 1, 2]))):
        d, _, fuel = _perimeter(rng, land, wind + rng.normal(0, 40), rng.uniform(0.08, 0.22))
        scar = (d < 1.0) & fuel & ~taken & ~old
        old |= scar
        sev[scar] = np.clip(0.6 + 0.3 * (1 - d[scar]), 0.2, 1.0)
        age[scar] = rng.uniform(1.5, 10.0) * 365.0
    return old, sev, age


def burned_reflectance(pre: np.ndarray, soil: np.ndarray, severity: np.ndarray, age_days: np.ndarray,
                       grassy: np.ndarray, char_gain: float = 1.0) -> np.ndarray:
    """Post-fire surface reflectance of burned pixels (linear mixture of fire products).

    Args:
        pre: ``(8, n)`` pre-fire reflectance.
        soil: ``(8, n)`` local soil reflectance.
        severity: ``(n,)`` consumed canopy fraction ``c`` in [0, 1].
        age_days: ``(n,)`` days since burning.
        grassy: ``(n,)`` bool, grass/crop fuels (else woody: shrub and forest).
        char_gain: brightness factor of the char endmember (see :class:`Scars`).

    Returns:
        ``(8, n)`` float32 reflectance: ``(1-c) pre + char + ash + npv + soil`` fractions, char and ash
        weathering to soil (e-folding 120 / 365 days for grass / woody char, 30 days for ash), then, after a
        60-day lag (dry season), regrowth towards green grass and shrub with e-folding 250 / 700 days.
    """
    c = severity.astype(np.float32)
    char0 = np.where(grassy, 0.9, 0.8) * c
    ash0 = np.where(grassy, 0.03, 0.06) * c * c
    npv = np.minimum(np.where(grassy, 0.05, 0.25) * c * (1.0 - c), c - char0 - ash0)
    char = char0 * np.exp(-age_days / np.where(grassy, 120.0, 365.0))
    ash = ash0 * np.exp(-age_days / 30.0)
    bare = c - char - ash - npv
    s = SPECTRA.T
    burnt = ((1.0 - c) * pre + char * char_gain * s[:, [MATERIAL_ID["char"]]] + ash * s[:, [MATERIAL_ID["ash"]]]
             + npv * s[:, [MATERIAL_ID["npv"]]] + bare * soil)
    regrow = 1.0 - np.exp(-np.maximum(age_days - 60.0, 0.0) / np.where(grassy, 250.0, 700.0))
    green = 0.6 * s[:, [MATERIAL_ID["grass"]]] + 0.4 * s[:, [MATERIAL_ID["shrub"]]]
    green = 0.75 * green + 0.25 * soil
    return ((1.0 - regrow) * burnt + regrow * green).astype(np.float32)


def apply_scars(land: Landscape, scars: Scars) -> np.ndarray:
    """Surface reflectance ``(8, rows, cols)`` float32 with all scars (this season's and old ones) burned in."""
    rho = land.reflectance.copy()
    hit = np.flatnonzero((scars.burned | scars.old).ravel())
    if hit.size:
        flat = rho.reshape(8, -1)
        cover = land.cover.ravel()[hit]
        flat[:, hit] = burned_reflectance(
            flat[:, hit], land.soil.reshape(8, -1)[:, hit], scars.severity.ravel()[hit],
            scars.age_days.ravel()[hit], np.isin(cover, _GRASSY), scars.char_gain,
        )
    return rho


@dataclass
class Fires:
    """Active fire within pixels.

    Attributes:
        fraction: ``(rows, cols)`` float32 burning fraction of the pixel area (0 = none).
        temperature: ``(rows, cols)`` float32 fire temperature, K (0 where no fire).
    """

    fraction: np.ndarray
    temperature: np.ndarray

    def swir2_radiance(self) -> np.ndarray:
        """``(rows, cols)`` float32 radiance the fires emit at 2.2 um, W m-2 sr-1 um-1 (``p B(2.2 um, T)``)."""
        t = np.maximum(self.temperature, 1.0)
        with np.errstate(over="ignore"):
            return (self.fraction * C1 / (2.2**5 * np.expm1(C2 / (2.2 * t)))).astype(np.float32)


def make_fires(rng: np.random.Generator, scars: Scars, fuel: np.ndarray) -> Fires:
    """Flaming front pixels plus smouldering spots in the freshly burned area.

    Front: ``log10 p ~ U(-2.8, -1.0)``, ``T ~ U(800, 1300) K``. Smouldering: ~0.3% of pixels burned within the
    last two days, ``log10 p ~ U(-2.5, -1.2)``, ``T ~ U(600, 850) K``. At least one labelled fire pixel is
    guaranteed (the fire may be small, never invisible).
    """
    shape = scars.front.shape
    fraction = np.zeros(shape, np.float32)
    temperature = np.zeros(shape, np.float32)
    front = np.flatnonzero(scars.front.ravel())
    if front.size == 0:
        candidates = np.flatnonzero((fuel | scars.burned).ravel())
        front = rng.choice(candidates if candidates.size else np.arange(fraction.size), size=1)
    fraction.ravel()[front] = 10 ** rng.uniform(-2.8, -1.0, front.size)
    temperature.ravel()[front] = rng.uniform(800.0, 1300.0, front.size)
    fresh = np.flatnonzero((scars.burned & (scars.age_days < 2.0)).ravel())
    spots = rng.choice(fresh, size=int(0.003 * fresh.size), replace=False) if fresh.size else fresh
    spots = spots[fraction.ravel()[spots] == 0]
    fraction.ravel()[spots] = 10 ** rng.uniform(-2.5, -1.2, spots.size)
    temperature.ravel()[spots] = rng.uniform(600.0, 850.0, spots.size)
    fires = Fires(fraction, temperature)
    if not (fires.swir2_radiance() >= FIRE_LABEL_RADIANCE).any():
        strongest = front[np.argmax(fraction.ravel()[front])]
        fraction.ravel()[strongest] = 0.05
        temperature.ravel()[strongest] = 1100.0
    return fires


@dataclass
class Plume:
    """One smoke plume: origin (row, col), optical depth scale at the origin, initial width (px), spread."""

    origin: tuple[float, float]
    tau0: float
    sigma0: float
    spread: float


def plume_sources(rng: np.random.Generator, fires: Fires, wind: float, shape: tuple[int, int]) -> list[Plume]:
    """Plumes from the strongest fires (by ``p T^4``), or one drifting in from upwind when there is no fire."""
    power = (fires.fraction * fires.temperature.astype(np.float64) ** 4).ravel()
    burning = np.flatnonzero(power)
    if burning.size:
        count = min(int(burning.size), int(rng.integers(1, 5)))
        picks = rng.choice(burning, size=count, replace=False, p=power[burning] / power[burning].sum())
        return [Plume((float(i // shape[1]), float(i % shape[1])), rng.uniform(0.8, 3.0),
                      3.0 + rng.uniform(0.01, 0.04) * min(shape), np.tan(np.radians(rng.uniform(3.0, 10.0))))
                for i in picks]
    dr, dc = _unit(wind)
    half = 0.5 * np.hypot(*shape)
    centre = (shape[0] / 2 + rng.normal(0, 0.15) * shape[0], shape[1] / 2 + rng.normal(0, 0.15) * shape[1])
    origin = (centre[0] - dr * half, centre[1] - dc * half)
    return [Plume(origin, rng.uniform(0.7, 2.0), rng.uniform(0.04, 0.12) * min(shape),
                  np.tan(np.radians(rng.uniform(2.0, 6.0))))]


def smoke_tau(rng: np.random.Generator, plumes: list[Plume], wind: float, shape: tuple[int, int]) -> np.ndarray:
    """Smoke optical depth at 550 nm, ``(rows, cols)`` float32.

    Each plume: ``tau = tau0 (sigma0 / sigma(u)) exp(-(v - m(u))^2 / (2 sigma(u)^2)) (1 - e^{-(u + 2)/4})``
    downwind (``u > 0``) with ``sigma(u) = sigma0 + u tan(spread)`` and a meander ``m(u)``; a small round
    puff upwind of the source. Multiplied by lognormal turbulence (unit mean, ~45% scatter).
    """
    tau = np.zeros(shape, np.float32)
    dr, dc = _unit(wind)
    for plume in plumes:
        u, v, _ = _ellipse_distance(shape, plume.origin, wind, 1.0, 1.0)
        wiggle = rng.uniform(0.0, 0.4) * plume.sigma0 * 4.0
        v = v - wiggle * np.sin(u / rng.uniform(30.0, 120.0) + rng.uniform(0, 2 * np.pi))
        uu = np.maximum(u, 0.0)
        sigma = plume.sigma0 + uu * plume.spread
        ramp = np.where(u > 0, 1.0 - np.exp(-(uu + 2.0) / 4.0), np.exp(-(u**2) / (2.0 * plume.sigma0**2)))
        tau += (plume.tau0 * (plume.sigma0 / sigma) * np.exp(-(v**2) / (2.0 * sigma**2)) * ramp).astype(np.float32)
    del dr, dc
    turbulence = np.exp(0.45 * smooth_field(rng, shape, 2.6, 0.08 * min(shape) + 4, factor=2) - 0.1)
    return (tau * turbulence).astype(np.float32)


def haze_tau(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Background aerosol (haze) optical depth at 550 nm: 0.02-0.15 with smooth +-40% variation (not labelled)."""
    mean = rng.uniform(0.02, 0.15)
    return (mean * np.clip(1.0 + 0.4 * smooth_field(rng, shape, 3.2), 0.2, None)).astype(np.float32)


@dataclass
class Clouds:
    """Cloud optical thickness fields and geometry.

    Attributes:
        tau: ``(rows, cols)`` float32 water-cloud optical thickness (550 nm).
        cirrus: ``(rows, cols)`` float32 thin ice-cloud optical thickness.
        height_m: cloud-base height of the water clouds, m.
    """

    tau: np.ndarray
    cirrus: np.ndarray
    height_m: float


def make_clouds(rng: np.random.Generator, shape: tuple[int, int], cover: float) -> Clouds:
    """Cumulus fields covering about ``cover`` of the scene (fractal edges), sometimes with thin cirrus."""
    zeros = np.zeros(shape, np.float32)
    if cover <= 0:
        return Clouds(zeros, zeros.copy(), 1000.0)
    field = smooth_field(rng, shape, 3.0, rng.uniform(0.15, 0.5) * min(shape), factor=4)
    field += rng.uniform(0.3, 0.7) * smooth_field(rng, shape, 2.4, 0.03 * min(shape) + 3, factor=2)
    field += 0.08 * fine_noise(rng, shape, 1.5)
    thr = np.quantile(field, 1.0 - min(0.95, cover * 1.25))
    tau = rng.uniform(10.0, 40.0) * np.clip((field - thr) / (field.max() - thr + 1e-6), 0.0, 1.0) ** 0.8
    cirrus = zeros.copy()
    if rng.random() < 0.3:
        cirrus = (rng.uniform(0.1, 0.8) * np.clip(smooth_field(rng, shape, 3.4) + 0.3, 0.0, None)).astype(np.float32)
    return Clouds(tau.astype(np.float32), cirrus, rng.uniform(600.0, 3000.0))


def shift(field: np.ndarray, drow: int, dcol: int) -> np.ndarray:
    """``field`` moved by (drow, dcol) pixels, zero-filled (no wrap-around)."""
    out = np.zeros_like(field)
    rows, cols = field.shape
    if abs(drow) >= rows or abs(dcol) >= cols:
        return out
    src_r = slice(max(0, -drow), rows - max(0, drow))
    dst_r = slice(max(0, drow), rows - max(0, -drow))
    src_c = slice(max(0, -dcol), cols - max(0, dcol))
    dst_c = slice(max(0, dcol), cols - max(0, -dcol))
    out[dst_r, dst_c] = field[src_r, src_c]
    return out


def shadow_of(clouds: Clouds, pixel_m: float, sun_zenith: float, sun_azimuth: float) -> np.ndarray:
    """Direct-beam transmittance of the cloud column between each pixel and the sun, ``(rows, cols)`` in [0, 1].

    The shadow of a cloud at height ``h`` falls ``h tan(theta_s)`` away from the sun (azimuth + 180 deg).
    """
    length = clouds.height_m * np.tan(np.radians(sun_zenith)) / pixel_m
    dr, dc = _unit(sun_azimuth + 180.0)
    moved = shift(clouds.tau, round(dr * length), round(dc * length))
    return np.exp(-moved / np.cos(np.radians(sun_zenith))).astype(np.float32)


def glint(rng: np.random.Generator, water: np.ndarray) -> np.ndarray:
    """Sun glint over water: a broad spectrally flat reflectance (Fresnel reflection of the sun off wave
    facets, Cox & Munk 1954) up to ~0.25 in a patch, with wave texture; ``(rows, cols)`` float32."""
    if not water.any() or rng.random() < 0.6:
        return np.zeros(water.shape, np.float32)
    patch = np.clip(smooth_field(rng, water.shape, 3.6) + rng.uniform(-0.5, 0.8), 0.0, None)
    waves = np.clip(1.0 + 0.5 * fine_noise(rng, water.shape, 0.8), 0.0, None)
    return (rng.uniform(0.05, 0.25) * np.tanh(patch) * waves * water).astype(np.float32)
