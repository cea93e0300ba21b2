"""Spectral physics of the simulator: material spectra, solar irradiance, Planck emission, layers.

All reflective quantities are per canonical reflective band, in the order of :data:`REFLECTIVE`
(coastal, blue, green, red, nir, swir1, swir2, cirrus); arrays are ``(8, ...)`` float32.

Sources:

* Material spectra: reflectance read at the band centres (and rounded) from the USGS Spectral Library
  Version 7 (Kokaly et al. 2017, USGS Data Series 1035, splib07a: Lawn_Grass, Grass_Dry, Conifer/Aspen
  leaves, Chaparral, soils, Asphalt, Concrete, Sea water) and the ECOSTRESS spectral library (Meerdink et al.
  2019, RSE 230:111196: vegetation, soils, rocks, man-made materials). Char and ash: Smith & Hudak (2005,
  IJWF 14:245) and Lentile et al. (2009, IJRS 30:2429) field spectra; savanna char that is dark in every band:
  Trigg & Flasse (2000, IJRS 21:3161). Values are representative, not a specific sample.
* Solar irradiance per band: Thuillier et al. (2003, Solar Physics 214:1) spectrum integrated over the OLI
  bands (the usual OLI ESUN values); band edges from Barsi et al. (2014, Remote Sensing 6:10232).
* Planck's law with c1 = 2hc^2 = 1.191042e8 W um^4 m-2 sr-1, c2 = hc/k = 1.4387752e4 um K.
* Layers (smoke, haze, clouds): two-stream quadrature solution for a homogeneous layer (Meador & Weaver 1980,
  J. Atmos. Sci. 37:630) and the adding equation for the surface underneath (e.g. Liou 2002, ch. 6).
* Rayleigh optical depth: Hansen & Travis (1974, Space Sci. Rev. 16:527), Eq. 2.29 fit.
"""

from __future__ import annotations

import numpy as np

REFLECTIVE: tuple[str, ...] = ("coastal", "blue", "green", "red", "nir", "swir1", "swir2", "cirrus")
"""Reflective canonical bands simulated, in array order."""

WAVELENGTH_UM = np.array([0.443, 0.482, 0.561, 0.655, 0.865, 1.609, 2.201, 1.373])
"""Band centres (um), OLI; Sentinel-2 MSI bands are within a few percent."""

BAND_EDGES_UM = np.array([
    [0.435, 0.451], [0.452, 0.512], [0.533, 0.590], [0.636, 0.673], [0.851, 0.879],
    [1.566, 1.651], [2.107, 2.294], [1.363, 1.384],
])
"""Band edges (um) of OLI (Barsi et al. 2014): fire emission is averaged over them."""

ESUN = np.array([1895.3, 2004.6, 1820.8, 1549.5, 951.8, 247.6, 85.5, 367.0])
"""Mean exoatmospheric solar irradiance per band, W m-2 um-1 (Thuillier 2003 over OLI bands)."""

C1 = 1.191042e8  # W um^4 m-2 sr-1
C2 = 1.4387752e4  # um K

MATERIALS: dict[str, tuple[float, ...]] = {
    #             coastal blue   green  red    nir    swir1  swir2  cirrus(surface)
    "conifer":    (0.020, 0.025, 0.050, 0.030, 0.260, 0.120, 0.050, 0.060),
    "broadleaf":  (0.020, 0.024, 0.060, 0.032, 0.400, 0.200, 0.090, 0.100),
    "shrub":      (0.030, 0.038, 0.060, 0.052, 0.290, 0.300, 0.190, 0.130),
    "grass":      (0.035, 0.045, 0.090, 0.060, 0.350, 0.250, 0.130, 0.120),
    "dry_grass":  (0.050, 0.065, 0.100, 0.140, 0.280, 0.380, 0.290, 0.200),
    "crop":       (0.030, 0.035, 0.080, 0.040, 0.450, 0.220, 0.100, 0.110),
    "soil":       (0.100, 0.130, 0.200, 0.270, 0.320, 0.420, 0.380, 0.380),
    "dark_soil":  (0.040, 0.050, 0.070, 0.090, 0.130, 0.190, 0.170, 0.170),
    "rock":       (0.160, 0.180, 0.220, 0.260, 0.300, 0.360, 0.320, 0.330),
    "water":      (0.050, 0.045, 0.040, 0.020, 0.009, 0.005, 0.004, 0.004),
    "urban":      (0.090, 0.100, 0.120, 0.140, 0.190, 0.230, 0.210, 0.210),
    "roof":       (0.270, 0.290, 0.320, 0.340, 0.370, 0.420, 0.380, 0.400),
    "tile_roof":  (0.060, 0.070, 0.100, 0.200, 0.280, 0.380, 0.350, 0.330),
    "char":       (0.030, 0.033, 0.038, 0.043, 0.070, 0.130, 0.155, 0.110),
    "ash":        (0.150, 0.170, 0.210, 0.240, 0.270, 0.300, 0.280, 0.290),
    "npv":        (0.050, 0.065, 0.100, 0.140, 0.250, 0.330, 0.260, 0.240),
    # --- wider landscape library (appended: the ids above stay stable) ---
    "wet_grass":  (0.032, 0.038, 0.072, 0.055, 0.260, 0.175, 0.085, 0.090),
    "black_char": (0.028, 0.030, 0.035, 0.040, 0.065, 0.072, 0.060, 0.060),
    "white_ash":  (0.260, 0.290, 0.330, 0.360, 0.400, 0.430, 0.380, 0.400),
    "laterite":   (0.040, 0.055, 0.090, 0.170, 0.210, 0.280, 0.240, 0.240),
    "tailings":   (0.055, 0.065, 0.115, 0.175, 0.300, 0.390, 0.270, 0.300),
    "reg":        (0.090, 0.110, 0.160, 0.230, 0.270, 0.320, 0.290, 0.300),
    "sand":       (0.130, 0.160, 0.240, 0.340, 0.400, 0.490, 0.460, 0.450),
    "salt":       (0.450, 0.500, 0.540, 0.560, 0.570, 0.520, 0.440, 0.500),
    "basalt":     (0.045, 0.047, 0.050, 0.055, 0.062, 0.058, 0.050, 0.055),
    "tephra":     (0.055, 0.060, 0.065, 0.070, 0.080, 0.078, 0.068, 0.070),
    "metal_roof": (0.300, 0.330, 0.360, 0.370, 0.380, 0.360, 0.300, 0.330),
    "beach":      (0.180, 0.210, 0.270, 0.320, 0.360, 0.420, 0.380, 0.380),
    "wet_soil":   (0.030, 0.035, 0.050, 0.065, 0.095, 0.110, 0.080, 0.080),
}
"""Surface reflectance spectra (bands of :data:`REFLECTIVE`). ``npv``: scorched foliage and dead wood; ``char``:
the fresh burned surface (black carbon with grey ash on mineral soil): darkest in the visible and rising towards
the SWIR (pure charcoal reaches only ~0.08 at 2.2 um, but burned ground in Landsat/Sentinel-2 scenes reads
0.1-0.2 in SWIR2: Pereira et al. 1999, in *Remote Sensing of Large Wildfires*; Smith et al. 2010); ``ash``:
white ash of complete combustion (grey ash on soil; ``white_ash`` is the pure white ash of very complete
combustion, Smith & Hudak 2005: brighter than the unburned surface in every band).

The wider library (tropical savanna, wetland, laterite, desert, volcanic, coastal city landscapes):

* ``wet_grass``: green flooded/wetland grass (ECOSTRESS vegetation "grass" spectra with water-saturated
  background: high NIR, low SWIR); checked against the unburned vegetation of the Corumba (Pantanal) Landsat-8
  scene of 2019-08-25 (TOA nir 0.24, swir1 0.18, swir2 0.09).
* ``black_char``: fresh black char of a complete grass/savanna burn, dark and nearly flat in every band
  (Trigg & Flasse 2000: savanna char below 0.1 from the visible to 2.2 um, rising slowly with wavelength;
  Smith & Hudak 2005: black char < 0.1). Mixed with the few percent of unburned cover it reproduces the fresh
  Corumba scars (nir 0.11, swir2 0.09, NBR 0.0-0.2, measured by ``scripts/sim_vs_real.py``).
* ``laterite``: red lateritic soil / oxisol (USGS splib07 and ECOSTRESS soil spectra of hematite/goethite-rich
  soils: a steep rise from blue to red, the ferric-iron band near 0.9 um flattening NIR, high SWIR).
* ``tailings``: iron-ore mine tailings and mud, reddish brown, bright in SWIR1 (Brumadinho Landsat-8 L2SP
  2019-01-30, mud pixels swir2 > 0.2, blue < 0.12, red > green: blue 0.06, red 0.15, nir 0.29, swir1 0.33,
  swir2 0.22 median). Each scene scales them by U(0.8, 1.8) (dry tailings are brighter than wet mud: Lobell &
  Asner 2002), so swir2 reaches ~0.5-0.7 in some scenes. (The Brumadinho pixels with swir2 up to 0.7 are
  clouds: blue > 0.25; its brightest cloud-free soil reads swir2 0.40-0.49.)
* ``reg``: desert pavement with rock varnish; ``sand``: quartz dune sand with iron-oxide coatings (USGS splib07
  / ECOSTRESS "sand" spectra; the Sahara Sentinel-2 tile 29RKH: red 0.34, nir 0.39, swir1 0.48, swir2 0.46);
  ``salt``: halite/gypsum salt pan (ECOSTRESS evaporites: very bright in the visible, gypsum/water bands lower
  the SWIR).
* ``basalt``: fresh basaltic lava and dark rock (USGS splib07 / ECOSTRESS basalt: 0.04-0.08, nearly flat,
  lower in the SWIR; Momotombo Landsat-8 2015: nir 0.07, swir1 0.06, swir2 0.05); ``tephra``: dark volcanic
  ash and scoria fields (a little brighter).
* ``metal_roof``: industrial roofs (ECOSTRESS man-made galvanized/painted metal: bright, flat, dropping in SWIR2);
  ``beach``: beach sand (USGS splib07 "beach sand"); ``wet_soil``: wet organic floodplain soil (soil moisture
  darkens every band and the SWIR most: Lobell & Asner 2002, SSSAJ 66:722).

All values are rounded band-centre readings of representative spectra, not a specific sample; each scene
randomises them (see :mod:`firemap.simulate.landscape`)."""

MATERIAL_NAMES: tuple[str, ...] = tuple(MATERIALS)
MATERIAL_ID: dict[str, int] = {name: i for i, name in enumerate(MATERIAL_NAMES)}
SPECTRA = np.array([MATERIALS[m] for m in MATERIAL_NAMES], dtype=np.float32)
"""``(materials, 8)`` reflectance table, rows in :data:`MATERIAL_NAMES` order."""

SKY_FRACTION = np.array([0.30, 0.27, 0.21, 0.17, 0.12, 0.07, 0.05, 0.08], dtype=np.float32)
"""Share of diffuse skylight in the irradiance of a clear sky (Rayleigh + background aerosol, sun ~40 deg
zenith; decreasing roughly as lambda^-2). It lights slopes facing away from the sun and cloud shadows."""


def planck_radiance(wavelength_um: np.ndarray | float, temperature_k: np.ndarray | float) -> np.ndarray:
    """Blackbody spectral radiance B(lambda, T), W m-2 sr-1 um-1 (Planck's law; arrays broadcast)."""
    lam = np.asarray(wavelength_um, dtype=np.float64)
    t = np.asarray(temperature_k, dtype=np.float64)
    with np.errstate(over="ignore"):
        return C1 / (lam**5 * np.expm1(C2 / (lam * t)))


def band_planck(temperature_k: np.ndarray, samples: int = 7) -> np.ndarray:
    """Planck radiance averaged over each reflective band (flat response across :data:`BAND_EDGES_UM`).

    Args:
        temperature_k: ``(n,)`` temperatures, K.
        samples: quadrature points per band.

    Returns:
        ``(8, n)`` float64 band-mean radiance, W m-2 sr-1 um-1.
    """
    t = np.asarray(temperature_k, dtype=np.float64)
    frac = (np.arange(samples) + 0.5) / samples
    lams = BAND_EDGES_UM[:, :1] + frac[None, :] * (BAND_EDGES_UM[:, 1:] - BAND_EDGES_UM[:, :1])  # (8, s)
    return planck_radiance(lams[:, :, None], t[None, None, :]).mean(axis=1)


def emission_reflectance(radiance: np.ndarray, cos_sun: float) -> np.ndarray:
    """Express emitted radiance as apparent reflectance: ``pi L / (E_sun cos(theta_s))`` (Earth-Sun 1 AU).

    Args:
        radiance: ``(8, n)`` band radiance, W m-2 sr-1 um-1.
        cos_sun: cosine of the solar zenith angle.

    Returns:
        ``(8, n)`` apparent reflectance added by the emitter.
    """
    return np.pi * radiance / (ESUN[:, None] * cos_sun)


def angstrom_tau(tau550: np.ndarray, alpha: float) -> np.ndarray:
    """Spectral aerosol optical depth ``tau(lambda) = tau550 (lambda / 0.55)^-alpha`` (Angstrom 1929).

    Args:
        tau550: optical depth at 550 nm, any shape ``S``.
        alpha: Angstrom exponent (biomass-burning smoke 1.2-2.1, Eck et al. 1999, JGR 104:31333).

    Returns:
        ``(8, *S)`` float32 optical depth per reflective band.
    """
    factors = ((WAVELENGTH_UM / 0.55) ** (-alpha)).astype(np.float32)
    return factors.reshape(-1, *([1] * np.ndim(tau550))) * np.asarray(tau550, dtype=np.float32)


def two_stream_layer(tau: np.ndarray, omega: np.ndarray | float, g: float) -> tuple[np.ndarray, np.ndarray]:
    """Reflectance and diffuse transmittance of a homogeneous scattering layer (two-stream, quadrature).

    ``gamma1 = sqrt(3)/2 (2 - omega (1 + g))``, ``gamma2 = sqrt(3)/2 omega (1 - g)``,
    ``k = sqrt(gamma1^2 - gamma2^2)``, ``R_inf = gamma2 / (gamma1 + k)``;
    ``R = R_inf (1 - e^{-2 k tau}) / (1 - R_inf^2 e^{-2 k tau})``,
    ``T = (1 - R_inf^2) e^{-k tau} / (1 - R_inf^2 e^{-2 k tau})`` (Meador & Weaver 1980).

    Args:
        tau: optical depth, any shape (broadcast with ``omega``).
        omega: single-scattering albedo (clipped to <= 0.99995 to keep ``k`` > 0).
        g: asymmetry parameter.

    Returns:
        ``(R, T)`` float32 arrays of the broadcast shape.
    """
    w = np.minimum(np.asarray(omega, dtype=np.float32), np.float32(0.99995))
    half_root3 = np.float32(0.8660254)
    gamma1 = half_root3 * (2.0 - w * (1.0 + g))
    gamma2 = half_root3 * w * (1.0 - g)
    k = np.sqrt((gamma1 - gamma2) * (gamma1 + gamma2))  # factored: accurate when omega -> 1
    r_inf = gamma2 / (gamma1 + k)
    e1 = np.exp(-k * np.asarray(tau, dtype=np.float32))
    e2 = e1 * e1
    denom = 1.0 - r_inf * r_inf * e2
    return (r_inf * (1.0 - e2) / denom).astype(np.float32), ((1.0 - r_inf * r_inf) * e1 / denom).astype(np.float32)


def add_layer(
    below: np.ndarray, r_layer: np.ndarray, t_layer: np.ndarray, tint: np.ndarray | float = 1.0
) -> np.ndarray:
    """Adding equation: a layer over a Lambertian surface, ``R + tint T^2 rho / (1 - R min(rho, 1))``.

    The ``min`` keeps emitters (fires, whose apparent reflectance can exceed 1) from being multiply
    reflected between the layer and the ground, which only applies to reflected sunlight.

    Args:
        below: reflectance under the layer, any shape.
        r_layer: layer reflectance (same shape or broadcastable).
        t_layer: layer diffuse transmittance.
        tint: extra factor on the transmitted part (e.g. water-vapour transmittance).

    Returns:
        Reflectance seen from above, float32.
    """
    return (r_layer + tint * t_layer**2 * below / (1.0 - r_layer * np.minimum(below, 1.0))).astype(np.float32)


def rayleigh_tau(wavelength_um: np.ndarray = WAVELENGTH_UM, pressure_ratio: float = 1.0) -> np.ndarray:
    """Rayleigh optical depth ``0.008569 l^-4 (1 + 0.0113 l^-2 + 0.00013 l^-4)`` (Hansen & Travis 1974)."""
    lam = np.asarray(wavelength_um, dtype=np.float64)
    return pressure_ratio * 0.008569 * lam**-4 * (1.0 + 0.0113 * lam**-2 + 0.00013 * lam**-4)


def rayleigh_path(cos_sun: float, cos_view: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Single-scattering Rayleigh path reflectance and two-way transmittance per reflective band.

    ``rho_R = tau_R P(Theta) / (4 mu_s mu_v)`` with ``P = 3/4 (1 + cos^2 Theta)`` (nadir view:
    ``cos Theta = -mu_s``); the surface signal is attenuated by ``exp(-tau_R m / 2)`` (half of the Rayleigh
    scattering is forward and still reaches the sensor as diffuse light), ``m = 1/mu_s + 1/mu_v``.

    Returns:
        ``(path, transmittance)``: two ``(8,)`` float32 arrays.
    """
    tau = rayleigh_tau()
    phase = 0.75 * (1.0 + cos_sun**2)
    path = tau * phase / (4.0 * cos_sun * cos_view)
    trans = np.exp(-0.5 * tau * (1.0 / cos_sun + 1.0 / cos_view))
    return path.astype(np.float32), trans.astype(np.float32)


def radiance_to_bt(radiance: np.ndarray, k1: float, k2: float) -> np.ndarray:
    """Brightness temperature from band radiance with a sensor's calibration constants: ``K2 / ln(K1/L + 1)``."""
    return (k2 / np.log(k1 / np.maximum(radiance, 1e-6) + 1.0)).astype(np.float32)


def bt_to_radiance(bt: np.ndarray, k1: float, k2: float) -> np.ndarray:
    """Band radiance of a brightness temperature: ``K1 / (exp(K2 / T) - 1)`` (inverse of :func:`radiance_to_bt`)."""
    return (k1 / np.expm1(k2 / np.asarray(bt, dtype=np.float64))).astype(np.float32)
