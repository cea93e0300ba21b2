"""Spectral indices (NBR, NBR2, NDVI, dNBR, a smoke index) and the burn-scar and smoke rules built on them.

All functions take reflectance arrays of any shape (normally ``(rows, cols)`` float32, unitless) and return
float32 (indices, NaN where undefined) or bool masks. The active-fire rules live in :mod:`firemap.rules` and are
re-exported here, so ``from firemap.indices import schroeder2016`` works too.

Sources:

* NBR: Key, C.H., Benson, N.C. (2006). Landscape Assessment (LA): sampling and analysis methods. In FIREMON:
  Fire Effects Monitoring and Inventory System, USDA Forest Service Gen. Tech. Rep. RMRS-GTR-164-CD, LA 1-55.
  ``NBR = (nir - swir2) / (nir + swir2)`` (Landsat TM bands 4 and 7); ``dNBR = NBR_pre - NBR_post``.
* dNBR severity classes: the USGS FIREMON / Key & Benson (2006) table (dNBR x 1000: < -250 enhanced regrowth
  high, -250..-101 enhanced regrowth low, -100..99 unburned, 100..269 low, 270..439 moderate-low, 440..659
  moderate-high, >= 660 high severity).
* NBR2: ``(swir1 - swir2) / (swir1 + swir2)``, the USGS Landsat surface-reflectance-derived spectral index.
* NDVI: Rouse, J.W. et al. (1974), ``(nir - red) / (nir + red)``.
"""

from __future__ import annotations

import numpy as np

from firemap.rules import (
    CONTEXT_HALO,
    RULES,
    combine,
    get_rule,
    kumar_roy2018,
    murphy2016,
    schroeder2016,
    sentinel2_fire,
)


def normalized_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(a - b) / (a + b)`` as float32; NaN where ``a + b == 0`` or an input is not finite."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    total = a + b
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(total != 0, (a - b) / total, np.nan)
    return out.astype(np.float32, copy=False)


def nbr(nir: np.ndarray, swir2: np.ndarray) -> np.ndarray:
    """Normalized Burn Ratio (Key & Benson 2006): ``(nir - swir2) / (nir + swir2)``, float32, NaN if undefined."""
    return normalized_difference(nir, swir2)


def nbr2(swir1: np.ndarray, swir2: np.ndarray) -> np.ndarray:
    """NBR2 (USGS): ``(swir1 - swir2) / (swir1 + swir2)``, float32, NaN where undefined."""
    return normalized_difference(swir1, swir2)


def ndvi(nir: np.ndarray, red: np.ndarray) -> np.ndarray:
    """NDVI (Rouse et al. 1974): ``(nir - red) / (nir + red)``, float32, NaN where undefined."""
    return normalized_difference(nir, red)


def dnbr(pre_nbr: np.ndarray, post_nbr: np.ndarray) -> np.ndarray:
    """Differenced NBR (Key & Benson 2006): ``pre - post`` (positive = vegetation lost), float32."""
    return (np.asarray(pre_nbr, dtype=np.float32) - np.asarray(post_nbr, dtype=np.float32)).astype(np.float32)


def smoke_index(blue: np.ndarray, swir2: np.ndarray, coastal: np.ndarray | None = None) -> np.ndarray:
    """Visible-minus-SWIR2 contrast: ``(vis - swir2) / (vis + swir2)``, ``vis`` = blue (or mean of coastal, blue).

    Rationale: smoke is a layer of fine particles (radius ~0.1-0.3 um) whose aerosol optical depth falls steeply
    with wavelength (Angstrom exponent ~1-2), so it brightens the coastal/blue bands by path radiance while
    2.2 um sees through it almost unchanged; this is why the MODIS dark-target aerosol retrieval uses 2.1 um to
    estimate the surface under the aerosol (Kaufman et al. 1997, JGR 102:17051). Over vegetation and soils the
    clear-sky blue reflectance is below SWIR2 (index < 0); a smoke plume pushes it above (index > 0). Water
    (dark SWIR2) and clouds also score high, which :func:`smoke_mask` screens out.

    Args:
        blue: ``(rows, cols)`` reflectance.
        swir2: ``(rows, cols)`` reflectance.
        coastal: optional ``(rows, cols)`` reflectance, averaged with blue when given (stronger smoke signal).

    Returns:
        float32 ``(rows, cols)`` in [-1, 1], NaN where undefined.
    """
    vis = np.asarray(blue, dtype=np.float32)
    if coastal is not None:
        vis = ((vis + np.asarray(coastal, dtype=np.float32)) / 2).astype(np.float32)
    return normalized_difference(vis, swir2)


def smoke_mask(
    blue: np.ndarray,
    swir2: np.ndarray,
    nir: np.ndarray,
    coastal: np.ndarray | None = None,
    threshold: float = 0.1,
    min_blue: float = 0.1,
    max_blue: float = 0.3,
    min_nir: float = 0.1,
) -> np.ndarray:
    """Weak smoke label: hazy (bright blue), blue above SWIR2, neither water nor opaque cloud.

    ``smoke_index > threshold`` and ``min_blue < blue < max_blue`` (clear vegetation and dark forest, the
    surfaces whose SWIR2 is low enough to score high, stay below 0.1 in TOA blue; bright soils and roofs that
    exceed it have a high SWIR2 and a negative index; an opaque cloud is brighter than 0.3 in blue) and
    ``nir > min_nir`` (water and shadows are dark in nir). The thresholds are heuristic defaults for TOA
    reflectance, not from a paper; a weak label, meant to be refined by training.

    Returns:
        ``(rows, cols)`` bool.
    """
    b = np.asarray(blue, dtype=np.float32)
    index = smoke_index(b, swir2, coastal)
    return (index > threshold) & (b > min_blue) & (b < max_blue) & (np.asarray(nir) > min_nir)


SEVERITY_EDGES = (-0.25, -0.1, 0.1, 0.27, 0.44, 0.66)
"""dNBR class edges (Key & Benson 2006 / USGS): a value equal to an edge belongs to the class above it."""

SEVERITY_CLASSES: dict[int, str] = {
    1: "enhanced regrowth, high", 2: "enhanced regrowth, low", 3: "unburned", 4: "low severity",
    5: "moderate-low severity", 6: "moderate-high severity", 7: "high severity",
}
"""uint8 value -> class name of :func:`dnbr_severity`; 255 = nodata."""

SEVERITY_NODATA = 255


def dnbr_severity(dnbr_values: np.ndarray) -> np.ndarray:
    """USGS / Key & Benson (2006) burn-severity classes of (unscaled) dNBR.

    ``< -0.25`` -> 1 enhanced regrowth high, ``[-0.25, -0.1)`` -> 2 enhanced regrowth low, ``[-0.1, 0.1)`` -> 3
    unburned, ``[0.1, 0.27)`` -> 4 low, ``[0.27, 0.44)`` -> 5 moderate-low, ``[0.44, 0.66)`` -> 6 moderate-high,
    ``>= 0.66`` -> 7 high; NaN -> 255. The table lists dNBR x 1000 as integers (e.g. low = 100..269), so the
    edges fall at -250, -100, 100, 270, 440 and 660. Comparisons happen in the input's float precision, so
    ``np.float32(0.44)`` is class 6.

    Args:
        dnbr_values: dNBR, any shape, float.

    Returns:
        uint8 classes of the same shape (see :data:`SEVERITY_CLASSES`).
    """
    values = np.asarray(dnbr_values)
    if not np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float64)
    edges = np.asarray(SEVERITY_EDGES, dtype=values.dtype)
    classes = (np.searchsorted(edges, values, side="right") + 1).astype(np.uint8)
    classes[~np.isfinite(values)] = SEVERITY_NODATA
    return classes


def nbr_burn_scar(nir: np.ndarray, swir2: np.ndarray, threshold: float = -0.05) -> np.ndarray:
    """Single-date burn-scar rule: ``NBR < threshold``.

    Char and ash lower nir and raise swir2, so burned ground has a low NBR. The default is a middle ground:
    on the six Sentinel-2 California crops in ``shared/data/s2_calfire`` NBR < 0.1 scores IoU 0.29 against the
    fire perimeters and the best threshold there, -0.09, 0.54 (see docs/rules.md); dark water and shadows also
    pass, so use a pre-fire scene (:func:`dnbr_burn_scar`) when there is one.

    Returns:
        ``(rows, cols)`` bool (False where NBR is undefined).
    """
    return nbr(nir, swir2) < threshold


def dnbr_burn_scar(dnbr_values: np.ndarray, min_dnbr: float = 0.1) -> np.ndarray:
    """Bi-temporal burn-scar rule: ``dNBR >= min_dnbr`` (default 0.1, the low-severity edge of Key & Benson).

    Returns:
        bool of the input's shape (False where dNBR is undefined).
    """
    values = np.asarray(dnbr_values)
    return values >= np.asarray(min_dnbr, dtype=values.dtype)


INDEX_BANDS: dict[str, tuple[str, ...]] = {
    "nbr": ("nir", "swir2"), "nbr2": ("swir1", "swir2"), "ndvi": ("nir", "red"), "dnbr": ("nir", "swir2"),
    "smoke": ("blue", "swir2"),
}
"""Canonical bands each index needs (dNBR: in both the pre- and the post-fire scene)."""


__all__ = [
    "CONTEXT_HALO", "INDEX_BANDS", "RULES", "SEVERITY_CLASSES", "SEVERITY_EDGES", "SEVERITY_NODATA", "combine",
    "dnbr", "dnbr_burn_scar", "dnbr_severity", "get_rule", "kumar_roy2018", "murphy2016", "nbr", "nbr2",
    "nbr_burn_scar", "ndvi", "normalized_difference", "schroeder2016", "sentinel2_fire", "smoke_index",
    "smoke_mask",
]
