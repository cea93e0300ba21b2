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

from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy import ndimage

from firemap.simulate.landscape import BARE, FUELS, Landscape, fbm, fine_noise, smooth_field
from firemap.simulate.spectra import C1, C2, MATERIAL_ID, SPECTRA

FIRE_LABEL_RADIANCE = 3.0
"""A pixel is labelled fire when its fire emits at least this band-mean radiance at 2.2 um (SWIR2),
W m-2 sr-1 um-1: about +0.11 to +0.2 in SWIR2 reflectance, i.e. a hot anomaly that a person or a rule can see."""

SMOKE_LABEL_TAU = 0.3
"""A pixel is labelled smoke when the plume's aerosol optical depth at 550 nm is at least this (background
continental aerosol is ~0.05-0.2)."""

OPAQUE_CLOUD_TAU = 4.0
"""Cloud optical thickness above which the ground is hidden: fire and burn-scar labels are cleared there."""

_SPARSE = np.array(sorted(BARE))
_GRASSY = np.array([MATERIAL_ID[m] for m in ("grass", "dry_grass", "crop", "soil", "dark_soil", "wet_grass",
                                             "laterite")])
_NEVER_BURN = np.array([MATERIAL_ID[m] for m in ("water", "salt", "sand", "tailings", "beach", "metal_roof")])

STAGES = ("fresh", "ash", "brown", "regrowth")
"""Ages of this season's scars: fresh black char (days), white ash, older brown scars (weeks to months: char
weathered, soil and dead vegetation exposed, NBR negative) and regrowth (months)."""

_STAGE_WEIGHTS = {"savanna": (0.5, 0.1, 0.3, 0.1), "tropical_savanna": (0.5, 0.1, 0.3, 0.1),
                  "wetland": (0.55, 0.1, 0.25, 0.1), "forest": (0.2, 0.25, 0.45, 0.1),
                  "mediterranean": (0.2, 0.25, 0.45, 0.1)}
_DEFAULT_STAGE_WEIGHTS = (0.3, 0.15, 0.4, 0.15)
_BLACK_FIRE_LANDSCAPES = ("savanna", "tropical_savanna", "wetland", "agricultural", "laterite")


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
        front: ``(rows, cols)`` bool, the flaming zone of the active fire fronts (1-3 px deep, continuous along
            the head of each burning scar).
        char_gain: brightness of this fire's char/ash-on-soil relative to :data:`MATERIALS` ``char`` (its colour
            depends on the soil and the fuel: real scars read 0.15-0.4 in SWIR2).
        black: ``(rows, cols)`` float32 share of fresh black char in the char at the time of burning (0-1).
        ash: ``(rows, cols)`` float32 white-ash cover per unit severity at the time of burning.
        front_depth: ``(rows, cols)`` float32 distance (px) inside the scar from its perimeter, on front pixels.
        head: ``(rows, cols)`` float32 head-fire weight (1 at the downwind head, ~0.3 on the flanks).
        smoulder: ``(rows, cols)`` bool, smouldering pixels behind the front.
        spots: ``(rows, cols)`` bool, spot fires ahead of the front.
        stages: the age stage (:data:`STAGES`) of each of this season's scars.
    """

    burned: np.ndarray
    old: np.ndarray
    severity: np.ndarray
    age_days: np.ndarray
    front: np.ndarray
    char_gain: float = 1.0
    black: np.ndarray | None = None
    ash: np.ndarray | None = None
    front_depth: np.ndarray | None = None
    head: np.ndarray | None = None
    smoulder: np.ndarray | None = None
    spots: np.ndarray | None = None
    stages: tuple[str, ...] = field(default_factory=tuple)


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
    d = d * (1.0 + 0.2 * rough) + 0.008 * fine_noise(rng, shape, 1.5)
    return d.astype(np.float32), (u / a).astype(np.float32), fuel


def make_scars(rng: np.random.Generator, land: Landscape, wind: float, burn_scar: bool, fire: bool) -> Scars:
    """This season's burn scars (labelled), older regrown scars (not labelled) and the active fire fronts.

    One to three scars, each with its own age stage (:data:`STAGES`, weighted by landscape: savanna and wetland
    scars are mostly fresh black char, forest and shrub scars mostly brown). With ``fire`` the first scar (and
    each other one with probability 0.4) is burning: its age is 0 at the front and grows towards ignition.

    Args:
        rng: random generator.
        land: the pre-fire landscape.
        wind: direction the wind blows towards, degrees clockwise from north.
        burn_scar: render this season's scars.
        fire: a fire is burning now (the scar is growing at its head).

    Returns:
        :class:`Scars`.
    """
    shape = land.cover.shape
    acc = {k: np.zeros(shape, np.float32) for k in ("severity", "age", "black", "ash", "depth", "head")}
    burned, front, smoulder, spots = (np.zeros(shape, bool) for _ in range(4))
    stages = []
    for i in range(1 + min(2, int(rng.poisson(0.6)))):
        burning = fire and (i == 0 or bool(rng.random() < 0.4))
        scar = _one_scar(rng, land, wind + (0.0 if i == 0 else rng.normal(0, 20)),
                         rng.uniform(0.16, 0.5) if i == 0 else rng.uniform(0.06, 0.2), burning, burned, burn_scar)
        stages.append(scar.stage)
        for key, value in scar.fields.items():
            acc[key] = np.where(scar.burned, value, acc[key])
        burned |= scar.burned
        if scar.front is not None:
            front |= scar.front.flaming
            smoulder |= scar.front.smoulder
            spots |= scar.front.spots
            acc["depth"] = np.where(scar.front.flaming, scar.front.depth, acc["depth"])
            acc["head"] = np.where(scar.front.flaming, scar.front.head, acc["head"])
    burned |= spots
    acc["age"][spots] = 0.0
    acc["severity"][spots] = 0.7
    old, old_sev, old_age = _old_scars(rng, land, wind, burned)
    if not burn_scar:
        burned = np.zeros(shape, bool)
    severity = np.where(burned, acc["severity"], np.where(old, old_sev, 0.0)).astype(np.float32)
    age_days = np.where(burned, acc["age"], np.where(old, old_age, 0.0)).astype(np.float32)
    return Scars(burned, old & ~burned, severity, age_days, front, float(np.exp(rng.normal(0.0, 0.35))),
                 acc["black"], acc["ash"], acc["depth"], acc["head"], smoulder & burned if burn_scar else smoulder,
                 spots, tuple(stages))


@dataclass
class _Front:
    """One scar's burning edge, ``(rows, cols)`` each (see :func:`_front`)."""

    flaming: np.ndarray
    smoulder: np.ndarray
    spots: np.ndarray
    depth: np.ndarray
    head: np.ndarray


@dataclass
class _Scar:
    """One of this season's scars: its age stage, footprint, per-pixel fields where burned, and its front."""

    stage: str
    burned: np.ndarray
    fields: dict[str, np.ndarray]
    front: _Front | None


def _one_scar(rng: np.random.Generator, land: Landscape, wind: float, scale: float, burning: bool,
              taken: np.ndarray, burn_scar: bool) -> _Scar:
    """Footprint, severity, age and char of one scar, and its front when ``burning``."""
    shape = land.cover.shape
    d, u, fuel = _perimeter(rng, land, wind, scale)
    inside = _main_body((d < 1.0) & ~taken)
    inside, stopped = _fire_break(rng, inside, wind)
    islands = smooth_field(rng, shape, 2.8, 0.03 * min(shape) + 2, factor=2) > rng.uniform(1.3, 2.2)
    sparse = np.isin(land.cover, _SPARSE)  # bare soils carry sparse grass: they burn, lightly
    burned = inside & (fuel | sparse) & ~islands
    if burned.sum() < 0.2 * inside.sum():  # hardly any fuel: what is there burned through
        burned = inside & ~np.isin(land.cover, _NEVER_BURN) & ~islands
    sev_noise = smooth_field(rng, shape, 2.6, 0.05 * min(shape) + 2, factor=2)
    severity = np.clip(0.65 + 0.3 * (1.0 - d) + 0.2 * sev_noise, 0.2, 1.0) * np.where(sparse, 0.6, 1.0)
    progress = np.clip((u + 0.8) / 1.8, 0.0, 1.0)  # ignition near the upwind end, head downwind
    stage, base, black, ash = _stage(rng, land.kind, burning)
    severity = np.clip(severity + 0.25 * black, 0.0, 1.0)  # black-char burns are near-complete (grass, litter)
    age = base + rng.uniform(0.5, 8.0) * (1.0 - progress)
    fields = {"severity": severity.astype(np.float32), "age": age.astype(np.float32),
              "black": np.asarray(black, np.float32), "ash": np.asarray(ash, np.float32)}
    burnable = (burned if burn_scar else inside & fuel) & ~stopped  # no flames along a fire break
    front = _front(rng, inside, burnable, u, fuel & ~inside, wind) if burning else None
    return _Scar(stage, burned, fields, front)


def _fire_break(rng: np.random.Generator, inside: np.ndarray, wind: float) -> tuple[np.ndarray, np.ndarray]:
    """With probability 0.4, a road or fire break stopped one flank of the fire: a straight line through the
    footprint within 30 deg of the wind direction; the scar keeps the larger side, with a straight edge as on
    real Pantanal and savanna scars. Returns the footprint and the pixels within 2 px of the break (where no
    front burns)."""
    ys, xs = np.nonzero(inside[::4, ::4])
    if ys.size < 10 or rng.random() >= 0.4:
        return inside, np.zeros(inside.shape, bool)
    k = int(rng.integers(ys.size))
    dr, dc = _unit(wind)
    angle = float(np.arctan2(dc, -dr)) + np.radians(rng.uniform(-30.0, 30.0))  # normal across the wind
    rows, cols = np.ogrid[: inside.shape[0], : inside.shape[1]]
    signed = ((cols - 4.0 * xs[k]) * np.float32(np.cos(angle)) + (rows - 4.0 * ys[k]) * np.float32(np.sin(angle)))
    keep = signed < 0 if (inside & (signed < 0)).sum() >= (inside & (signed >= 0)).sum() else signed >= 0
    return inside & keep, np.abs(signed) <= 2.0


def _main_body(mask: np.ndarray) -> np.ndarray:
    """The largest connected part of a footprint, opened (no 1-px whiskers) and with its holes filled."""
    opened = ndimage.binary_opening(mask)
    labels, count = ndimage.label(opened)
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    return ndimage.binary_fill_holes(labels == 1 + int(np.argmax(sizes)))


def _stage(rng: np.random.Generator, kind: str, burning: bool) -> tuple[str, float, float, float]:
    """(stage, age in days at the ignition end, black-char share, white-ash cover) of one scar."""
    if burning:
        black = rng.uniform(0.85, 1.0) if kind in _BLACK_FIRE_LANDSCAPES else rng.uniform(0.3, 0.8)
        return "fresh", 0.0, black, rng.uniform(0.0, 0.08)
    stage = str(rng.choice(STAGES, p=_STAGE_WEIGHTS.get(kind, _DEFAULT_STAGE_WEIGHTS)))
    if stage == "fresh":
        return stage, float(np.exp(rng.uniform(np.log(0.5), np.log(10.0)))), rng.uniform(0.6, 1.0), \
            rng.uniform(0.0, 0.06)
    if stage == "ash":
        return stage, rng.uniform(1.0, 15.0), rng.uniform(0.1, 0.4), rng.uniform(0.2, 0.55)
    if stage == "brown":
        return stage, float(np.exp(rng.uniform(np.log(15.0), np.log(120.0)))), rng.uniform(0.0, 0.35), \
            rng.uniform(0.0, 0.05)
    return stage, rng.uniform(100.0, 300.0), rng.uniform(0.0, 0.2), 0.0


def _front(rng: np.random.Generator, inside: np.ndarray, burnable: np.ndarray, u: np.ndarray,
           unburned_fuel: np.ndarray, wind: float) -> _Front:
    """The burning edge of one scar as continuous lines and arcs.

    Flaming zone: the pixels within ``w`` = 1-3 px of the perimeter (distance transform of the footprint) where
    the head weight ``1 / (1 + exp(-(u - u0) / 0.08))`` (``u``: downwind coordinate) exceeds 0.3: an arc along
    the downwind head that fades along the flanks; a few gaps where a smooth gate closes (long segments) and
    where nothing burns (water, rock, unburned islands). Smouldering: 5-25% of the pixels 1-12 px behind the
    flaming zone. Spot fires: 0-4 small fires 3-15 px downwind of the head, in unburned fuel.
    """
    shape = inside.shape
    depth = cv2.distanceTransform(inside.astype(np.uint8), cv2.DIST_L2, 5)
    head = (1.0 / (1.0 + np.exp(np.clip((rng.uniform(-0.35, 0.3) - u) / 0.08, -50, 50)))).astype(np.float32)
    gate = smooth_field(rng, shape, 2.4, 0.06 * min(shape) + 8, factor=2) > rng.uniform(-2.2, -1.0)
    width = rng.uniform(1.0, 3.0) ** 0.5 * rng.uniform(1.0, 1.75)  # 1-3 px, mostly 1-2
    flaming = burnable & (depth > 0) & (depth <= width + 0.5) & (head > 0.3) & gate
    behind = burnable & (depth > width + 0.5) & (depth <= width + rng.uniform(3.0, 12.0)) & (head > 0.3)
    smoulder = behind & (rng.random(shape) < rng.uniform(0.02, 0.1))
    spots = np.zeros(shape, bool)
    ys, xs = np.nonzero(flaming & (head > 0.8))
    dr, dc = _unit(wind)
    for _ in range(min(int(rng.poisson(1.5)), 4) if ys.size else 0):
        k, hop = int(rng.integers(ys.size)), rng.uniform(3.0, 15.0)
        r, c = round(ys[k] + dr * hop + rng.normal(0, 2)), round(xs[k] + dc * hop + rng.normal(0, 2))
        if 0 <= r < shape[0] and 0 <= c < shape[1] and unburned_fuel[r, c]:
            spots[max(0, r - 1): r + int(rng.integers(1, 3)), max(0, c - 1): c + int(rng.integers(1, 3))] = True
    spots &= unburned_fuel
    return _Front(flaming, smoulder, spots, np.where(flaming, depth, 0.0), np.where(flaming, head, 0.0))


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


BLACK_CHAR_DAYS = 40.0
"""E-folding time (days) of the black look of fresh char: wind and rain remove the fine black char and mix it
with ash and soil within weeks (Trigg & Flasse 2000; Roy et al. 2010, RSE 114:2626)."""


def burned_reflectance(pre: np.ndarray, soil: np.ndarray, severity: np.ndarray, age_days: np.ndarray,
                       grassy: np.ndarray, char_gain: float = 1.0, black: np.ndarray | float = 0.0,
                       ash: np.ndarray | float = 0.0) -> np.ndarray:
    """Post-fire surface reflectance of burned pixels (linear mixture of fire products).

    Args:
        pre: ``(8, n)`` pre-fire reflectance.
        soil: ``(8, n)`` local soil reflectance.
        severity: ``(n,)`` consumed canopy fraction ``c`` in [0, 1].
        age_days: ``(n,)`` days since burning.
        grassy: ``(n,)`` bool, grass/crop fuels (else woody: shrub and forest).
        char_gain: brightness factor of the (brown, weathered) char endmember (see :class:`Scars`).
        black: ``(n,)`` or scalar share of fresh black char (``black_char``) in the char when it burned; it
            fades with e-folding :data:`BLACK_CHAR_DAYS`.
        ash: ``(n,)`` or scalar white-ash (``white_ash``) cover per unit severity when it burned (complete
            combustion), fading with e-folding 30 days.

    Returns:
        ``(8, n)`` float32 reflectance: ``(1-c) pre + char + ash + npv + soil`` fractions, char and ash
        weathering to soil (e-folding 120 / 365 days for grass / woody char, 30 days for ash), then, after a
        60-day lag (dry season), regrowth towards green grass and shrub with e-folding 250 / 700 days.
    """
    c = severity.astype(np.float32)
    white = np.clip(np.asarray(ash, np.float32), 0.0, 0.8) * c * np.exp(-age_days / 30.0)
    fresh_black = np.clip(np.asarray(black, np.float32), 0.0, 1.0)
    char0 = (np.where(grassy, 0.9, 0.8) + 0.08 * fresh_black) * c - white
    ash0 = np.where(grassy, 0.03, 0.06) * c * c
    npv = np.clip(np.minimum(np.where(grassy, 0.05, 0.25) * c * (1.0 - c), c - char0 - ash0 - white), 0.0, None)
    char = np.clip(char0, 0.0, None) * np.exp(-age_days / np.where(grassy, 120.0, 365.0))
    ash_grey = ash0 * np.exp(-age_days / 30.0)
    bare = np.clip(c - char - ash_grey - npv - white, 0.0, None)
    s = SPECTRA.T
    dark = fresh_black * np.exp(-age_days / BLACK_CHAR_DAYS)
    char_spectrum = dark * s[:, [MATERIAL_ID["black_char"]]] + (1.0 - dark) * char_gain * s[:, [MATERIAL_ID["char"]]]
    burnt = ((1.0 - c) * pre + char * char_spectrum + ash_grey * s[:, [MATERIAL_ID["ash"]]]
             + white * s[:, [MATERIAL_ID["white_ash"]]] + npv * s[:, [MATERIAL_ID["npv"]]] + bare * soil)
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
        black = 0.0 if scars.black is None else scars.black.ravel()[hit]
        ash = 0.0 if scars.ash is None else scars.ash.ravel()[hit]
        flat[:, hit] = burned_reflectance(
            flat[:, hit], land.soil.reshape(8, -1)[:, hit], scars.severity.ravel()[hit],
            scars.age_days.ravel()[hit], np.isin(cover, _GRASSY), scars.char_gain, black, ash,
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
    """Active fires: continuous flaming fronts, smouldering behind them and spot fires ahead.

    Along each front the flaming area fraction and temperature vary smoothly (a random field of ~15 px):
    ``log10 p`` between ``U(-2.9, -2.4)`` and that plus ``U(0.3, 0.9)`` (Corumba's fronts read SWIR2 0.6-1.5
    TOA, mostly below saturation), ``T`` 880-1200 K (Dozier 1981; Giglio &
    Kendall 2001); ``p`` is scaled by the head weight (flanks burn weaker) and falls off with depth into the
    flaming zone (e-folding 0.6-1.5 px), ``T`` by 100 K per pixel. Smouldering: ``log10 p ~ U(-2.4, -1.3)``,
    ``T ~ U(550, 800) K``. Spot fires: ``log10 p ~ U(-2.6, -1.4)``, ``T ~ U(850, 1150) K``. Landsat fire fractions
    of a 30 m pixel are ~1e-3 to 1e-1 (Schroeder et al. 2016; Giglio et al. 2008). At least one labelled fire
    pixel is guaranteed (the fire may be small, never invisible).
    """
    shape = scars.front.shape
    fraction = np.zeros(shape, np.float32)
    temperature = np.zeros(shape, np.float32)
    front = np.flatnonzero(scars.front.ravel())
    depth = scars.front_depth.ravel() if scars.front_depth is not None else np.ones(fraction.size, np.float32)
    head = scars.head.ravel() if scars.head is not None else np.ones(fraction.size, np.float32)
    if front.size == 0:
        candidates = np.flatnonzero((fuel | scars.burned).ravel())
        front = rng.choice(candidates if candidates.size else np.arange(fraction.size), size=1)
        depth, head = np.ones(fraction.size, np.float32), np.ones(fraction.size, np.float32)
    line = np.clip(0.5 + 0.35 * smooth_field(rng, shape, 2.6, 15.0, factor=2), 0.0, 1.0).ravel()[front]
    lo, span, fall = rng.uniform(-2.9, -2.4), rng.uniform(0.3, 0.9), rng.uniform(0.6, 1.5)
    t_lo, t_span = rng.uniform(880.0, 980.0), rng.uniform(80.0, 220.0)
    inner = np.maximum(depth[front] - 1.0, 0.0)
    fraction.ravel()[front] = 10 ** (lo + span * line) * np.clip(head[front], 0.3, 1.0) * np.exp(-inner / fall)
    temperature.ravel()[front] = t_lo + t_span * line - 100.0 * inner
    for mask, lp, tk in ((scars.smoulder, (-2.4, -1.3), (550.0, 800.0)), (scars.spots, (-2.6, -1.4), (850.0, 1150.0))):
        idx = np.flatnonzero(mask.ravel()) if mask is not None else np.zeros(0, int)
        idx = idx[fraction.ravel()[idx] == 0]
        fraction.ravel()[idx] = 10 ** rng.uniform(*lp, idx.size)
        temperature.ravel()[idx] = rng.uniform(*tk, idx.size)
    fires = Fires(fraction, temperature)
    if not (fires.swir2_radiance() >= FIRE_LABEL_RADIANCE).any():
        strongest = front[np.argmax(fraction.ravel()[front])]
        fraction.ravel()[strongest] = 0.05
        temperature.ravel()[strongest] = 1100.0
    return fires


def make_hotspots(rng: np.random.Generator, land: Landscape) -> Fires:
    """Thermal anomalies that are not wildfires: active lava and industrial hot spots.

    **They are not labelled fire** (255 in the fire band, see :func:`firemap.simulate.make_labels`): their
    spectrum is a fire's, so they are neither taught as fire nor as "no fire" (docs/simulator.md, "Thermal
    anomalies that are not wildfires").

    Lava (``land.hot_sites == 1``): crusted flow with hot cracks, ``log10 p ~ U(-2.4, -1.6)``,
    ``T ~ U(750, 950) K`` (Momotombo 2015: SWIR2 0.5-1.1, SWIR2/SWIR1 ~4, i.e. ~800-900 K; basaltic lava
    surfaces: Flynn et al. 2001, RSE 78:180; Wright et al. 2004).
    Industry (``== 2``, with 0-1 neighbours): steel works, kilns and gas flares, ``log10 p ~ U(-3, -1.5)``,
    ``T ~ U(1000, 1800) K`` (flares 1500-2000 K: Elvidge et al. 2013, Remote Sensing 5:4423).

    Returns:
        :class:`Fires` with the hot spots' area fraction and temperature, ``(rows, cols)`` float32 each.
    """
    shape = land.cover.shape
    fraction = np.zeros(shape, np.float32)
    temperature = np.zeros(shape, np.float32)
    industry = land.hot_sites == 2
    if industry.any():
        grown = ndimage.binary_dilation(industry) & (rng.random(shape) < 0.3)
        industry = industry | (grown & (land.cover != MATERIAL_ID["water"]))
    for mask, lp, tk in ((land.hot_sites == 1, (-2.4, -1.6), (750.0, 950.0)), (industry, (-3.0, -1.5),
                                                                               (1000.0, 1800.0))):
        idx = np.flatnonzero(mask.ravel())
        fraction.ravel()[idx] = 10 ** rng.uniform(*lp, idx.size)
        temperature.ravel()[idx] = rng.uniform(*tk, idx.size)
    return Fires(fraction, temperature)


def combine_emitters(a: Fires, b: Fires) -> Fires:
    """Wildfires and other hot spots as one emitter field (areas add, the hotter temperature wins)."""
    fraction = np.minimum(a.fraction + b.fraction, 1.0).astype(np.float32)
    temperature = np.maximum(a.temperature, b.temperature).astype(np.float32)
    return Fires(fraction, temperature)


def smoke_tau(rng: np.random.Generator, fires: Fires | None, wind: float, shape: tuple[int, int]) -> np.ndarray:
    """Smoke optical depth at 550 nm, ``(rows, cols)`` float32: emitted along the fire fronts, advected downwind.

    Sources are the fire pixels weighted by ``sqrt(p T^4)`` (so the whole front smokes, not only its hottest
    pixel), on a grid 4x coarser and rotated so the wind blows along its columns, moved 2-5 coarse pixels
    downwind (the smoke rises before it spreads, so it is thin over the front). Marching downwind, each step
    adds the sources, diffuses the column laterally (Gaussian, ``sigma = U(0.5, 1.2)`` coarse px per step: plume
    width grows as the square root of the distance, so ``tau`` falls downwind), dilutes it (e-folding 0.4-1.5
    canvas lengths) and drifts it sideways by a slowly varying amount (wind shear: curved plumes). The result
    is scaled to a core optical depth ``U(0.5, 2.5)`` and multiplied by lognormal turbulence (sigma 0.4-0.6; half
    of it stretched 3x along the wind, half puffs of ~10% of the canvas), plus a finer texture. Without a fire
    (``fires`` None or empty), a plume 4-12% of the scene wide drifts in from upwind (core optical depth
    ``U(0.7, 2)``).
    """
    factor = 4
    small = (max(8, -(-shape[0] // factor)), max(8, -(-shape[1] // factor)))
    side = int(np.ceil(np.hypot(*small))) + 8
    dr, dc = _unit(wind)
    cy, cx = small[0] / 2.0, small[1] / 2.0
    half = side / 2.0
    to_src = np.array([[dc, -dr, cx - half * dc + half * dr], [dr, dc, cy - half * dr - half * dc]], np.float32)
    burning = fires is not None and bool(fires.fraction.any())
    if burning:
        assert fires is not None
        power = np.sqrt(fires.fraction * (fires.temperature.astype(np.float32) / 1000.0) ** 4)
        src = cv2.resize(power, (small[1], small[0]), interpolation=cv2.INTER_AREA)
        rotated = cv2.warpAffine(src, to_src, (side, side), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        tau0 = rng.uniform(0.5, 2.5)
    else:
        rotated = np.zeros((side, side), np.float32)
        across = np.arange(side) - side / 2 - rng.normal(0, 0.15) * min(small)
        rotated[:, 0] = np.exp(-0.5 * (across / (rng.uniform(0.04, 0.12) * min(small))) ** 2)
        tau0 = rng.uniform(0.7, 2.0)
    lag = int(rng.integers(2, 6))  # smoke rises before it spreads: thin over the front itself
    rotated = np.concatenate([np.zeros((side, lag), np.float32), rotated[:, :-lag]], axis=1)
    column = _advect(rng, cv2.GaussianBlur(rotated, (0, 0), 1.0))
    stretched = cv2.resize(fbm(rng, (side, max(8, side // 3)), 2.6), (side, side), interpolation=cv2.INTER_LINEAR)
    puffs = fbm(rng, (side, side), 2.4, 0.1 * side)
    sig = rng.uniform(0.4, 0.6)
    column *= np.exp(sig * (0.7 * stretched + 0.7 * puffs) - 0.5 * sig * sig)
    to_img = np.array([[dc, dr, side / 2 - cx * dc - cy * dr], [-dr, dc, side / 2 + cx * dr - cy * dc]], np.float32)
    back = cv2.warpAffine(column, to_img, (small[1], small[0]), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    tau = cv2.resize(back, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    tau *= np.clip(1.0 + 0.15 * fine_noise(rng, shape, 1.5), 0.5, None)
    peak = float(np.percentile(tau[tau > 0], 99.5)) if (tau > 0).any() else 1.0
    return (tau0 * tau / max(peak, 1e-12)).astype(np.float32)


def _advect(rng: np.random.Generator, sources: np.ndarray) -> np.ndarray:
    """March ``sources`` (rows across the wind, columns downwind) downwind: add, diffuse, drift (see smoke_tau)."""
    rows, cols = sources.shape
    sigma = rng.uniform(0.5, 1.2)
    keep = float(np.exp(-1.0 / (rng.uniform(0.4, 1.5) * cols)))  # dilution out of the column (e-fold 0.4-1.5 x)
    drift = ndimage.gaussian_filter1d(rng.normal(0.0, 1.0, cols), max(2.0, cols / 12.0))
    drift *= rng.uniform(0.1, 0.5) / (np.abs(drift).max() + 1e-9)
    out = np.zeros_like(sources)
    acc = np.zeros(rows, np.float32)
    for k in range(cols):
        if acc.any():
            acc = keep * ndimage.shift(ndimage.gaussian_filter1d(acc, sigma, mode="constant"), drift[k], order=1,
                                       mode="constant")
        acc = acc + sources[:, k]
        out[:, k] = acc
    return out


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
    """Cumulus covering about ``cover`` of the scene, sometimes with thin cirrus.

    Clouds are the top ``cover`` of a field = large-scale cloud regions + rounded cells of 12-40 px (cumulus of
    ~0.4-1.2 km at 30 m; 30% of scenes get popcorn cumulus: cells of 6-14 px weighted more) + fine fractal edges.
    Inside, the optical thickness rises from the edge (``^1.3``: thin soft borders) to ``U(10, 40)`` with lognormal
    turret texture (sigma 0.45), so clouds are lumpy, not flat white discs.
    """
    zeros = np.zeros(shape, np.float32)
    if cover <= 0:
        return Clouds(zeros, zeros.copy(), 1000.0)
    popcorn = bool(rng.random() < 0.3)
    field = smooth_field(rng, shape, 3.0, rng.uniform(0.15, 0.5) * min(shape), factor=4)
    cells = smooth_field(rng, shape, 3.2, rng.uniform(6.0, 14.0) if popcorn else rng.uniform(12.0, 40.0), factor=2)
    field += (rng.uniform(0.8, 1.2) if popcorn else rng.uniform(0.35, 0.6)) * cells
    field += 0.03 * fine_noise(rng, shape, 1.5)
    thr = np.quantile(field[::2, ::2], 1.0 - min(0.95, cover * 1.25))
    tau = rng.uniform(10.0, 40.0) * np.clip((field - thr) / (field.max() - thr + 1e-6), 0.0, 1.0) ** 1.3
    texture = smooth_field(rng, shape, 2.2, 6.0, factor=2) + 0.3 * fine_noise(rng, shape, 1.0)
    tau *= np.exp(0.45 * texture - 0.1)
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
    waves = np.clip(1.0 + 0.25 * fine_noise(rng, water.shape, 1.5), 0.0, None)
    return (rng.uniform(0.02, 0.2) * np.tanh(patch) * waves * water).astype(np.float32)
