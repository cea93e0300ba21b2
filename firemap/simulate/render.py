"""From the physical state of a scene to what the sensor measures: reflective bands and thermal bands.

Order of the radiative stack (bottom to top): surface (scars burned in) -> topographic illumination ->
sensor point-spread (surface) -> sun glint -> active fire emission ``(1 - p) rho + pi p B(lambda, T) /
(E_sun cos theta_s)`` (80% on its pixel, the rest spread by the point-spread function; labels stay on the
fire's pixel) -> cloud shadow -> aerosol layer (haze + smoke, two-stream) -> water clouds (their tops shaded as a 3-D
surface: :func:`cloud_shading`) -> cirrus ->
Rayleigh path (TOA products only).
The 1.38 um cirrus band sees the ground and low clouds through water vapour (transmittance ~1-5% for the
surface, ~20% for low cloud tops; Gao & Kaufman 1995, J. Atmos. Sci. 52:4231).
Thermal: surface brightness temperature + fire radiance by area fraction + cloud emission
(emissivity ``1 - exp(-tau/2)``, cloud top at the air temperature minus 6.5 K/km), blurred to TIRS's 100 m.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from firemap.bands import get_sensor
from firemap.simulate.events import Clouds, Fires, Scars, apply_scars, shadow_of
from firemap.simulate.landscape import Landscape, blur, illumination, surface_temperature
from firemap.simulate.sensor import SensorSpec
from firemap.simulate.spectra import (
    MATERIAL_ID,
    SKY_FRACTION,
    add_layer,
    angstrom_tau,
    band_planck,
    bt_to_radiance,
    emission_reflectance,
    radiance_to_bt,
    rayleigh_path,
    two_stream_layer,
)

_L8_K = {"thermal": (774.8853, 1321.0789), "thermal2": (480.8883, 1201.1442)}
_WATER_CLOUD_OMEGA = np.array([0.99995] * 5 + [0.993, 0.97, 0.9995], dtype=np.float64)
_ICE_OMEGA = np.array([0.99995] * 5 + [0.985, 0.93, 0.999], dtype=np.float64)
_CIRRUS_BAND = 7


@dataclass(frozen=True)
class Conditions:
    """Scene-wide conditions drawn once per scene.

    Attributes:
        landscape: landscape name.
        sun_zenith: degrees.
        sun_azimuth: degrees clockwise from north.
        wind: direction the wind blows towards, degrees clockwise from north.
        air_k: near-surface air temperature, K.
        smoke_alpha: Angstrom exponent of the smoke.
        smoke_omega: single-scattering albedo of the smoke.
        vapour: water-vapour transmittance of the surface signal at 1.38 um.
    """

    landscape: str
    sun_zenith: float
    sun_azimuth: float
    wind: float
    air_k: float
    smoke_alpha: float
    smoke_omega: float
    vapour: float

    @classmethod
    def draw(cls, rng: np.random.Generator, landscape: str) -> Conditions:
        """Random conditions: sun zenith 20-60 deg and azimuth 100-170 deg (a ~10:30 overpass), any wind."""
        return cls(landscape, rng.uniform(20, 60), rng.uniform(100, 170), rng.uniform(0, 360), rng.uniform(283, 310),
                   rng.uniform(1.2, 2.1), rng.uniform(0.85, 0.95), rng.uniform(0.01, 0.05))

    @property
    def cos_sun(self) -> float:
        """Cosine of the solar zenith angle."""
        return float(np.cos(np.radians(self.sun_zenith)))


@dataclass
class Atmosphere:
    """Aerosol and cloud fields, ``(rows, cols)`` float32 each (see :mod:`firemap.simulate.events`)."""

    haze: np.ndarray
    smoke: np.ndarray
    clouds: Clouds
    glint: np.ndarray


def reflective(spec: SensorSpec, cond: Conditions, land: Landscape, scars: Scars, fires: Fires,
               atmos: Atmosphere, light: np.ndarray) -> np.ndarray:
    """At-sensor reflectance of the 8 reflective bands (coastal..cirrus), ``(8, rows, cols)`` float32.

    TOA for L1 products (``spec.toa``), surface reflectance otherwise (smoke, haze and clouds are not removed
    by surface-reflectance processors, so they stay in). ``light`` is the ``(8, rows, cols)`` topographic
    illumination factor (:func:`firemap.simulate.landscape.illumination`).
    """
    rho = blur(apply_scars(land, scars) * light, 0.45)
    rho += atmos.glint[None]
    direct = shadow_of(atmos.clouds, spec.pixel_m, cond.sun_zenith, cond.sun_azimuth)
    rho *= SKY_FRACTION[:, None, None] + (1.0 - SKY_FRACTION[:, None, None]) * direct[None]
    # after the cloud shadow: a fire's own emission does not depend on the sunlight it receives (until
    # 2026-12-03 it was added before, and fires in cloud shadow lost up to 95% of their SWIR2 signal while
    # staying labelled fire: docs/simulator.md, "Fires in cloud shadow")
    _add_fire(rho, fires, cond.cos_sun)
    rho = _aerosol(rho, atmos, cond)
    shade = cloud_shading(atmos.clouds.tau, spec.pixel_m, cond.sun_zenith, cond.sun_azimuth) \
        if atmos.clouds.tau.any() else None
    rho = _clouds(rho, atmos.clouds, shade)
    rho[_CIRRUS_BAND] = _cirrus_band(rho[_CIRRUS_BAND], atmos.clouds, cond.vapour)
    if spec.toa:
        path, trans = rayleigh_path(cond.cos_sun)
        rho = path[:, None, None] + trans[:, None, None] * rho
    return rho.astype(np.float32)


FIRE_PSF_CORE = 0.8
"""Share of a fire pixel's emitted signal that stays on its pixel; the rest spreads over the neighbours with a
Gaussian of sigma 0.6 px (the sensor's point-spread function and adjacency: the 1-2 px warm halo around real
Landsat fire fronts). Labels stay on the fire's own pixel."""


def _add_fire(rho: np.ndarray, fires: Fires, cos_sun: float) -> None:
    hot = np.flatnonzero(fires.fraction.ravel())
    if hot.size == 0:
        return
    flat = rho.reshape(rho.shape[0], -1)
    p = fires.fraction.ravel()[hot].astype(np.float64)
    emitted = emission_reflectance(p * band_planck(fires.temperature.ravel()[hot]), cos_sun).astype(np.float32)
    flat[:, hot] = ((1.0 - p) * flat[:, hot]).astype(np.float32)
    rows = np.unique(hot // rho.shape[2])
    window = slice(max(0, int(rows[0]) - 4), int(rows[-1]) + 5)  # rows touched by the halo
    for band in range(rho.shape[0]):
        plane = np.zeros(rho.shape[1:], np.float32)
        plane.ravel()[hot] = emitted[band]
        part = plane[window]
        rho[band, window] += FIRE_PSF_CORE * part + (1.0 - FIRE_PSF_CORE) * blur(part, 0.6)


def _aerosol(rho: np.ndarray, atmos: Atmosphere, cond: Conditions) -> np.ndarray:
    """Haze + smoke as one layer: optical depths add per band (Angstrom exponents 1.3 and the smoke's);
    single-scattering albedo of the smoke when there is smoke, 0.95 (continental haze) otherwise."""
    tau = angstrom_tau(atmos.haze, 1.3) + angstrom_tau(atmos.smoke, cond.smoke_alpha)
    omega = cond.smoke_omega if atmos.smoke.any() else 0.95
    r, t = two_stream_layer(tau, omega, 0.68)
    return add_layer(rho, r, t)


CLOUD_TOP_M = 800.0
"""Height of the thickest cumulus turrets above the cloud base, m (cloud tops are shaded as a surface of height
``CLOUD_TOP_M sqrt(tau / tau_max)``: sunlit and shaded sides, as real cumulus fields show)."""


def cloud_shading(tau: np.ndarray, pixel_m: float, sun_zenith: float, sun_azimuth: float) -> np.ndarray:
    """``(rows, cols)`` float32 factor on the cloud's reflectance: the cloud top as a 3-D surface lit by the sun
    (Lambertian ``cos(i)/cos(theta_s)`` of the surface ``CLOUD_TOP_M sqrt(tau / tau_max)``, half diffuse),
    1 on flat tops, > 1 on sides facing the sun, < 1 on the far sides."""
    top = np.sqrt(np.clip(tau, 0.0, None) / max(float(tau.max()), 1e-6)) * CLOUD_TOP_M
    light = illumination(blur(top, 1.0), pixel_m, sun_zenith, sun_azimuth)[1]
    return np.clip(0.5 + 0.5 * light, 0.4, 1.4).astype(np.float32)


def _clouds(rho: np.ndarray, clouds: Clouds, shade: np.ndarray | None = None) -> np.ndarray:
    for tau, omega, g in ((clouds.tau, _WATER_CLOUD_OMEGA, 0.85), (clouds.cirrus, _ICE_OMEGA, 0.75)):
        idx = np.flatnonzero(tau.ravel() > 0.01)
        if idx.size == 0:
            continue
        flat = rho.reshape(rho.shape[0], -1)
        r, t = two_stream_layer(tau.ravel()[idx][None, :], omega[:, None], g)
        if shade is not None and tau is clouds.tau:
            r = r * shade.ravel()[idx][None, :]
        flat[:, idx] = add_layer(flat[:, idx], r, t)
    return rho


def _cirrus_band(band: np.ndarray, clouds: Clouds, vapour: float) -> np.ndarray:
    """1.38 um: what lies below ~2 km is seen through water vapour; cirrus (above it) is not attenuated."""
    r_low, _ = two_stream_layer(clouds.tau, _WATER_CLOUD_OMEGA[_CIRRUS_BAND], 0.85)
    r_ci, _ = two_stream_layer(clouds.cirrus, _ICE_OMEGA[_CIRRUS_BAND], 0.75)
    below = np.clip(band - r_ci, 0.0, None)
    return (r_ci + vapour * below + (0.2 - vapour) * r_low).astype(np.float32)


def thermal(rng: np.random.Generator, spec: SensorSpec, cond: Conditions, land: Landscape, scars: Scars,
            fires: Fires, clouds: Clouds, light: np.ndarray) -> np.ndarray:
    """Brightness temperatures of the thermal bands (``thermal``, ``thermal2``), ``(2, rows, cols)`` float32, K.

    ``light`` is the ``(rows, cols)`` relative irradiance (sunlit slopes are warmer).
    """
    surface = surface_temperature(rng, land.cover, light, cond.air_k - 2.0)
    fresh = np.exp(-scars.age_days / 30.0) * scars.severity
    surface = surface + 14.0 * fresh * (scars.burned | scars.old)
    surface[land.cover == MATERIAL_ID["water"]] = cond.air_k - 6.0
    split = rng.uniform(0.5, 2.5)
    preset = get_sensor(spec.preset)
    out = []
    for band, offset in (("thermal", 0.0), ("thermal2", split)):
        k1, k2 = preset.encodings[band].planck or _L8_K[band]
        radiance = bt_to_radiance(surface - offset, k1, k2)
        hot = fires.fraction > 0
        radiance[hot] = ((1 - fires.fraction[hot]) * radiance[hot]
                         + fires.fraction[hot] * bt_to_radiance(fires.temperature[hot], k1, k2))
        radiance = _cloud_emission(radiance, clouds, cond.air_k - offset, k1, k2)
        radiance = blur(radiance, 100.0 / 2.355 / spec.pixel_m)
        out.append(radiance_to_bt(radiance, k1, k2))
    return np.stack(out)


def _cloud_emission(radiance: np.ndarray, clouds: Clouds, air_k: float, k1: float, k2: float) -> np.ndarray:
    top_k = air_k - 6.5 * (clouds.height_m + 800.0) / 1000.0
    for tau, temp in ((clouds.tau, top_k), (clouds.cirrus, air_k - 55.0)):
        emis = 1.0 - np.exp(-tau / 2.0)
        radiance = (1.0 - emis) * radiance + emis * bt_to_radiance(np.asarray(temp, np.float32), k1, k2)
    return radiance.astype(np.float32)
