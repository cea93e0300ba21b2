"""Classic active-fire rules for Landsat-8/9 OLI and Sentinel-2 MSI, and their combination.

Every rule takes ``bands``: a mapping of canonical band name (see :mod:`firemap.bands`) to a ``(rows, cols)``
float32 **top-of-atmosphere reflectance** array, and an optional ``valid`` ``(rows, cols)`` bool mask (False =
nodata; non-finite values are always invalid). It returns a ``(rows, cols)`` bool fire mask, False on invalid
pixels. OLI band numbers map to canonical names as: 1 coastal, 2 blue, 3 green, 4 red, 5 nir, 6 swir1, 7 swir2
(``rho7`` below is the swir2 reflectance, ``R75 = rho7 / rho5``).

Sources (equation numbers as printed in the papers; the public implementations used to check them are
pereira-gha/activefire ``src/landsat/L8_FIRE_ALL_MASKS_v3.py`` and C. Waigl's ``l8fire`` code):

* Schroeder, W., Oliva, P., Giglio, L., Quayle, B., Lorenz, E., Morelli, F. (2016). Active fire detection using
  Landsat-8/OLI data. Remote Sensing of Environment 185, 210-220. Daytime algorithm, Eqs. 1-9.
* Murphy, S.W., de Souza Filho, C.R., Wright, R., Sabatino, G., Correa Pabon, R. (2016). HOTMAP: Global hot
  target detection at moderate spatial resolution. Remote Sensing of Environment 177, 78-88. Eqs. 2-3.
  (The issue text cites "RSE 178"; the HOTMAP article is RSE 177:78-88.)
* Kumar, S.S., Roy, D.P. (2018). Global operational land imager Landsat-8 reflectance-based active fire
  detection algorithm. International Journal of Digital Earth 11(2), 154-178. Eqs. 8-9, 12-16.

What is not implemented: the multi-temporal tests of Schroeder et al. and Kumar & Roy (they need an image time
series) and the night-time algorithm of Schroeder et al. Contextual windows need the scene around each pixel:
run these rules on blocks with a halo of at least :data:`CONTEXT_HALO` pixels (see :mod:`firemap.label`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage

from firemap.errors import ConfigError, MissingBandsError

log = logging.getLogger(__name__)

Bands = Mapping[str, np.ndarray]
"""Canonical band name -> ``(rows, cols)`` float32 reflectance."""

EPSILON = float(np.finfo(np.float64).eps)
"""Replaces a zero denominator in band ratios (zeros only: a positive reflectance is never replaced)."""

L1_SATURATION_REFLECTANCE = 2e-5 * 65535 - 0.1
"""TOA reflectance of the largest Landsat Collection-2 L1 DN (65535): values at or above it are saturated."""

SCHROEDER_RADIUS = 30
"""Half-size of the 61x61 background window of Schroeder et al. (2016), Eqs. 4-5."""

KUMAR_ROY_SIZES = tuple(range(5, 62, 2))
"""Background window sizes tried in turn by Kumar & Roy (2018): 5x5, 7x7, ..., 61x61."""

KUMAR_ROY_MIN_BACKGROUND = 0.25
"""Kumar & Roy (2018): the window grows until at least 25% of its pixels are valid background."""

CONTEXT_HALO = 31
"""Halo (pixels) that makes every rule here independent of the block size: a 30-pixel window radius plus the
1-pixel neighbourhood that decides which pixels are unambiguous fires (Kumar & Roy Eq. 13)."""

RULE_HALO: dict[str, int] = {"schroeder": SCHROEDER_RADIUS, "murphy": 1, "kumar-roy": CONTEXT_HALO, "sentinel2": 1}
"""Halo (pixels) each rule needs for block-size independent results (window radius + neighbourhood)."""

RULE_BANDS: dict[str, tuple[str, ...]] = {
    "schroeder": ("coastal", "blue", "green", "red", "nir", "swir1", "swir2"),
    "murphy": ("nir", "swir1", "swir2"),
    "kumar-roy": ("blue", "green", "red", "nir", "swir1", "swir2"),
    "sentinel2": ("nir", "swir1", "swir2"),
}
"""Canonical bands each rule reads (all of its tests)."""


@dataclass(frozen=True)
class FireTest:
    """One test (group of equations) of a fire rule, with the bands it reads.

    Attributes:
        rule: rule name (key of :data:`RULES`).
        name: the equations, as printed in the paper.
        bands: canonical bands the test reads.
        unambiguous: the test alone declares a fire (no background window or neighbourhood needed).
    """

    rule: str
    name: str
    bands: tuple[str, ...]
    unambiguous: bool


RULE_TESTS: dict[str, tuple[FireTest, ...]] = {
    "schroeder": (
        FireTest("schroeder", "Eq. 1 (unambiguous)", ("nir", "swir2"), True),
        FireTest("schroeder", "Eq. 2 (saturated/folded SWIR)", ("coastal", "nir", "swir1", "swir2"), True),
        FireTest("schroeder", "Eqs. 3-9 (candidates, water mask, 61x61 contextual test)", RULE_BANDS["schroeder"],
                 False),
    ),
    "murphy": (
        FireTest("murphy", "Eq. 2 (unambiguous)", RULE_BANDS["murphy"], True),
        FireTest("murphy", "Eq. 3 (hot 3x3 neighbours)", RULE_BANDS["murphy"], False),
    ),
    "kumar-roy": (
        FireTest("kumar-roy", "Eqs. 12-13 (unambiguous)", RULE_BANDS["kumar-roy"], True),
        FireTest("kumar-roy", "Eqs. 8-9, 14-16 (potential fires, growing-window contextual test)",
                 RULE_BANDS["kumar-roy"], False),
    ),
    "sentinel2": (
        FireTest("sentinel2", "HOTMAP Eq. 2 (unambiguous)", RULE_BANDS["sentinel2"], True),
        FireTest("sentinel2", "HOTMAP Eq. 3 (hot 3x3 neighbours)", RULE_BANDS["sentinel2"], False),
    ),
}
"""The tests of each rule. A rule whose bands allow only some of its tests runs those (see :func:`plan_tests`):
without a coastal band Schroeder et al. keep Eq. 1 and lose Eq. 2 and the contextual test (its water mask,
Eq. 7, reads the coastal band)."""

FireTests = Literal["all", "unambiguous"]
"""Which tests to run: every test the bands allow, or only the unambiguous ones (confident weak labels)."""


def plan_tests(
    rule: str, present: Collection[str], which: FireTests = "all"
) -> tuple[tuple[FireTest, ...], tuple[tuple[FireTest, str], ...]]:
    """Split a rule's tests into those that run and those skipped (with the reason).

    Args:
        rule: rule name.
        present: canonical bands the scene has.
        which: ``all`` or ``unambiguous`` (the other tests are skipped by choice).

    Returns:
        ``(run, skipped)``; ``skipped`` pairs each test with ``"needs <bands>"`` or ``"not unambiguous"``.
        ``run`` is empty when even the rule's first unambiguous test lacks a band.
    """
    run: list[FireTest] = []
    skipped: list[tuple[FireTest, str]] = []
    for test in RULE_TESTS[rule]:
        missing = [b for b in test.bands if b not in present]
        if which == "unambiguous" and not test.unambiguous:
            skipped.append((test, "not unambiguous"))
        elif missing:
            skipped.append((test, f"needs {', '.join(missing)}"))
        else:
            run.append(test)
    return tuple(run), tuple(skipped)

_CHUNK = 256  # candidates whose windows are gathered at once (61x61: ~8 MB per float64 band)


def _get(bands: Bands, names: Sequence[str], rule: str) -> list[np.ndarray]:
    missing = [n for n in names if n not in bands]
    if missing:
        raise MissingBandsError(
            f"rule {rule!r} needs band(s) {', '.join(missing)} (it reads {', '.join(names)}); got "
            f"{', '.join(bands) or 'none'}; map them with --bands or pick another --rules"
        )
    return [np.asarray(bands[n], dtype=np.float32) for n in names]


def _valid(arrays: Sequence[np.ndarray], valid: np.ndarray | None) -> np.ndarray:
    ok = np.ones(arrays[0].shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool).copy()
    for a in arrays:
        ok &= np.isfinite(a)
    return ok


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with zero denominators replaced by :data:`EPSILON` (never positive ones).

    Args:
        num: numerator, any shape, float.
        den: denominator, same shape.

    Returns:
        float32 ratio of the same shape; ``num / EPSILON`` (huge) where ``den == 0``.
    """
    safe = np.where(den == 0, EPSILON, den.astype(np.float64))  # zeros only; positive values are kept
    return (num / safe).astype(np.float32)


def neighbours(mask: np.ndarray) -> np.ndarray:
    """Pixels in the 3x3 neighbourhood of ``mask`` (the mask itself included), ``(rows, cols)`` bool."""
    return ndimage.binary_dilation(mask, structure=np.ones((3, 3), dtype=bool))


def saturation_mask(bands: Bands, levels: Mapping[str, float], names: Sequence[str] = ("swir1", "swir2")) -> np.ndarray:
    """Pixels where any of ``names`` reaches its saturation level.

    Args:
        bands: canonical name -> ``(rows, cols)`` reflectance.
        levels: canonical name -> reflectance of the sensor's largest raw value (e.g.
            :data:`L1_SATURATION_REFLECTANCE`); bands without a level are never saturated.
        names: the bands to check (HOTMAP checks OLI bands 6 and 7).

    Returns:
        ``(rows, cols)`` bool.
    """
    shape = next(iter(bands.values())).shape
    out = np.zeros(shape, dtype=bool)
    for name in names:
        if name in bands and name in levels:
            out |= np.asarray(bands[name]) >= np.float32(levels[name]) - np.float32(1e-6)
    return out


# --------------------------------------------------------------------------------------------------------
# Contextual (background window) statistics, shared by Schroeder et al. and Kumar & Roy
# --------------------------------------------------------------------------------------------------------


def _windows(padded: np.ndarray, ys: np.ndarray, xs: np.ndarray, radius: int) -> np.ndarray:
    """``(n, 2r+1, 2r+1)`` contiguous copies of the windows whose top-left corners are (ys, xs) of ``padded``."""
    size = 2 * radius + 1
    view = np.lib.stride_tricks.sliding_window_view(padded, (size, size))
    return np.ascontiguousarray(view[ys, xs])


def _masked_mean_std(values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population standard deviation of ``values[i][mask[i]]`` for each window i (NaN if empty)."""
    count = mask.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(mask, values, 0.0).sum(axis=(1, 2)) / count
        dev = np.where(mask, values - mean[:, None, None], 0.0)
        std = np.sqrt((dev * dev).sum(axis=(1, 2)) / count)
    return mean, std


def contextual_test(
    candidates: np.ndarray,
    background: np.ndarray,
    r75: np.ndarray,
    rho7: np.ndarray,
    radii: np.ndarray | int,
) -> np.ndarray:
    """Confirm candidate fire pixels against their background window.

    Implements Schroeder et al. (2016) Eqs. 4-5, reused by Kumar & Roy (2018) Eqs. 8-9, for each candidate::

        R75  > mean(R75_bg)  + max(3 * std(R75_bg),  0.8)     (Eq. 4)
        rho7 > mean(rho7_bg) + max(3 * std(rho7_bg), 0.08)    (Eq. 5)

    over the background pixels of the ``(2r+1) x (2r+1)`` window centred on the candidate (population
    standard deviation; a window without background pixels confirms nothing). Pixels beyond the array edge
    count as absent, so a block read with a halo of ``r`` gives the same answer as the whole scene.

    Args:
        candidates: ``(rows, cols)`` bool, the pixels to test.
        background: ``(rows, cols)`` bool, pixels allowed in the statistics.
        r75: ``(rows, cols)`` float, rho7 / rho5.
        rho7: ``(rows, cols)`` float, swir2 reflectance.
        radii: window half-size, one int for all or a ``(rows, cols)`` int array (read at the candidates).

    Returns:
        ``(rows, cols)`` bool, the confirmed candidates.
    """
    ys, xs = np.nonzero(candidates)
    out = np.zeros(candidates.shape, dtype=bool)
    if ys.size == 0:
        return out
    cand_radii = np.full(ys.size, radii) if np.isscalar(radii) else np.asarray(radii)[ys, xs]
    big = int(cand_radii.max())
    pads = ((big, big), (big, big))
    padded = [np.pad(background, pads), np.pad(r75.astype(np.float64), pads), np.pad(rho7.astype(np.float64), pads)]
    for r in np.unique(cand_radii):  # gather each window at its own size: (2r+1)^2 values, contiguous
        pick = np.nonzero(cand_radii == r)[0]
        for start in range(0, pick.size, _CHUNK):
            y, x = ys[pick[start : start + _CHUNK]], xs[pick[start : start + _CHUNK]]
            win_bg, win_r75, win_r7 = (_windows(p, y + big - r, x + big - r, int(r)) for p in padded)
            mean_r75, std_r75 = _masked_mean_std(win_r75, win_bg)
            mean_r7, std_r7 = _masked_mean_std(win_r7, win_bg)
            eq4 = r75[y, x] > mean_r75 + np.maximum(3 * std_r75, 0.8)  # Schroeder Eq. 4 / Kumar & Roy Eq. 8
            eq5 = rho7[y, x] > mean_r7 + np.maximum(3 * std_r7, 0.08)  # Schroeder Eq. 5 / Kumar & Roy Eq. 9
            out[y, x] = eq4 & eq5
    return out


def growing_window_radii(candidates: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Per-candidate window half-size of Kumar & Roy (2018): the smallest of 5x5, 7x7, ..., 61x61 in which
    at least 25% of the window's pixels are valid background; -1 where even 61x61 has too few.

    The share is of the full window area; pixels beyond the array edge are not background, so the result does
    not depend on the block size (counts are exact integer box sums).

    Returns:
        ``(rows, cols)`` int16 half-sizes (meaningful at ``candidates``; -1 elsewhere).
    """
    radii = np.full(candidates.shape, -1, dtype=np.int16)
    ys, xs = np.nonzero(candidates)
    if ys.size == 0:
        return radii
    big = KUMAR_ROY_SIZES[-1] // 2
    padded = np.pad(background.astype(np.int32), big + 1)
    integral = padded.cumsum(0).cumsum(1)
    chosen = np.full(ys.size, -1, dtype=np.int16)
    for size in reversed(KUMAR_ROY_SIZES):  # reversed: the last assignment is the smallest size that passes
        r = size // 2
        y0, y1, x0, x1 = ys + big - r, ys + big + r + 1, xs + big - r, xs + big + r + 1
        count = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
        chosen[count >= KUMAR_ROY_MIN_BACKGROUND * size * size] = r
    radii[ys, xs] = chosen
    return radii


# --------------------------------------------------------------------------------------------------------
# Schroeder et al. (2016)
# --------------------------------------------------------------------------------------------------------


def schroeder_water(bands: Bands) -> np.ndarray:
    """Water mask of Schroeder et al. (2016), Eqs. 7-9: ``(rows, cols)`` bool."""
    r1, r2, r3, r4, r5, r6, r7 = _get(bands, RULE_BANDS["schroeder"], "schroeder")
    eq7 = (r4 > r5) & (r5 > r6) & (r6 > r7) & (r1 - r7 < 0.2)  # Eq. 7
    eq8 = r3 > r2  # Eq. 8 (turbid / shallow water)
    eq9 = (r1 > r2) & (r2 > r3) & (r3 > r4)  # Eq. 9 (deep, clear water)
    return eq7 & (eq8 | eq9)


def schroeder_unambiguous(bands: Bands, valid: np.ndarray | None = None) -> np.ndarray:
    """Unambiguous fires of Schroeder et al. (2016): Eq. 1, or Eq. 2 when the coastal band is there.

    Eq. 1: ``R75 > 2.5 and rho7 - rho5 > 0.3 and rho7 > 0.5`` (nir, swir2). Eq. 2 (saturated or folded SWIR:
    ``rho6 > 0.8 and rho1 < 0.2 and (rho5 > 0.4 or rho7 < 0.1)``) also reads coastal and swir1 and is skipped
    without them.

    Args:
        bands: canonical name -> ``(rows, cols)`` TOA reflectance; needs nir, swir2 (coastal, swir1 for Eq. 2).
        valid: ``(rows, cols)`` bool, False = nodata. None = all valid.

    Returns:
        ``(rows, cols)`` bool.
    """
    r5, r7 = arrays = _get(bands, ("nir", "swir2"), "schroeder")
    ok = _valid(arrays, valid)
    out = (ratio(r7, r5) > 2.5) & (r7 - r5 > 0.3) & (r7 > 0.5)  # Eq. 1: unambiguous fire
    if "coastal" in bands and "swir1" in bands:
        r1, r6 = _get(bands, ("coastal", "swir1"), "schroeder")
        out |= (r6 > 0.8) & (r1 < 0.2) & ((r5 > 0.4) | (r7 < 0.1))  # Eq. 2: saturated / folded SWIR
    return out & ok


def schroeder2016(bands: Bands, valid: np.ndarray | None = None) -> np.ndarray:
    """Daytime active fire pixels of Schroeder et al. (2016, RSE 185:210-220) for Landsat-8/9 OLI.

    Unambiguous fires pass Eq. 1, or Eq. 2 (saturated or folded SWIR: a hot pixel whose band-7 DN wrapped
    around reads dark in band 7 but stays very bright in band 6). Candidates pass Eq. 3 and Eq. 6 and are
    confirmed by the 61x61 contextual test (Eqs. 4-5) against background pixels: valid, rho7 > 0, not an
    unambiguous fire, not water (Eqs. 7-9). Water pixels are never fire.

    Args:
        bands: canonical name -> ``(rows, cols)`` TOA reflectance; needs coastal, blue, green, red, nir, swir1,
            swir2.
        valid: ``(rows, cols)`` bool, False = nodata (never fire, never background). None = all valid.

    Returns:
        ``(rows, cols)`` bool fire mask.

    Raises:
        MissingBandsError: a band is missing.
    """
    _, _, _, _, r5, r6, r7 = arrays = _get(bands, RULE_BANDS["schroeder"], "schroeder")
    ok = _valid(arrays, valid)
    r75, r76 = ratio(r7, r5), ratio(r7, r6)
    unambiguous = schroeder_unambiguous(bands, ok)  # Eqs. 1-2
    water = schroeder_water(bands)  # Eqs. 7-9
    eq3 = (r75 > 1.8) & (r7 - r5 > 0.17)  # Eq. 3: candidate fire
    eq6 = r76 > 1.6  # Eq. 6: candidate must also be bright in band 7 relative to band 6
    candidates = eq3 & eq6 & ok & ~unambiguous & ~water
    background = ok & (r7 > 0) & (r5 > 0) & ~unambiguous & ~water  # r5 > 0: R75 defined
    confirmed = contextual_test(candidates, background, r75, r7, SCHROEDER_RADIUS)  # Eqs. 4-5, 61x61
    return (unambiguous | confirmed) & ~water


# --------------------------------------------------------------------------------------------------------
# Murphy et al. (2016) HOTMAP and its Sentinel-2 analogue
# --------------------------------------------------------------------------------------------------------


def _hotmap_unambiguous(nir: np.ndarray, swir1: np.ndarray, swir2: np.ndarray, ok: np.ndarray) -> np.ndarray:
    return (ratio(swir2, swir1) >= 1.4) & (ratio(swir2, nir) >= 1.4) & (swir2 >= 0.15) & ok  # Eq. 2


def murphy_unambiguous(bands: Bands, valid: np.ndarray | None = None) -> np.ndarray:
    """Unambiguous hot pixels of HOTMAP (Murphy et al. 2016) Eq. 2, without the Eq. 3 neighbour extension.

    ``rho7/rho6 >= 1.4 and rho7/rho5 >= 1.4 and rho7 >= 0.15``; also the Sentinel-2 analogue on B8A/B11/B12.

    Args:
        bands: canonical name -> ``(rows, cols)`` reflectance; needs nir, swir1, swir2.
        valid: ``(rows, cols)`` bool, False = nodata. None = all valid.

    Returns:
        ``(rows, cols)`` bool.
    """
    nir, swir1, swir2 = arrays = _get(bands, RULE_BANDS["murphy"], "murphy")
    return _hotmap_unambiguous(nir, swir1, swir2, _valid(arrays, valid))


def _hotmap(
    nir: np.ndarray, swir1: np.ndarray, swir2: np.ndarray, ok: np.ndarray, saturated: np.ndarray
) -> np.ndarray:
    unambiguous = _hotmap_unambiguous(nir, swir1, swir2, ok)  # Eq. 2
    hot_neighbour = ((ratio(swir1, nir) >= 2.0) & (swir1 >= 0.5)) | saturated  # Eq. 3 (zero nir -> epsilon)
    return unambiguous | (neighbours(unambiguous) & hot_neighbour & ok)  # Eq. 3 applies in the 3x3 window


def murphy2016(
    bands: Bands,
    valid: np.ndarray | None = None,
    saturated: np.ndarray | None = None,
    saturation_level: float = L1_SATURATION_REFLECTANCE,
) -> np.ndarray:
    """Hot pixels of HOTMAP (Murphy et al. 2016, RSE 177:78-88) for Landsat-8/9 OLI.

    Eq. 2 (unambiguous): ``rho7/rho6 >= 1.4 and rho7/rho5 >= 1.4 and rho7 >= 0.15``. Eq. 3: a pixel in the
    3x3 neighbourhood of an Eq.-2 pixel is also hot if ``rho6/rho5 >= 2 and rho6 >= 0.5``, or if band 6 or 7
    is saturated. Zero denominators are replaced by epsilon; positive ones are kept (a widely copied public
    implementation replaces the positive band-5 values instead, which makes ``rho6/rho5 >= 2`` always true).

    Args:
        bands: canonical name -> ``(rows, cols)`` TOA reflectance; needs nir, swir1, swir2.
        valid: ``(rows, cols)`` bool, False = nodata. None = all valid.
        saturated: ``(rows, cols)`` bool, pixels whose band 6 or 7 is saturated (e.g. from the QA_RADSAT band).
            None derives it as swir1 or swir2 ``>= saturation_level``.
        saturation_level: reflectance of the saturated raw value (default: Landsat C2 L1 DN 65535).

    Returns:
        ``(rows, cols)`` bool fire mask.
    """
    nir, swir1, swir2 = arrays = _get(bands, RULE_BANDS["murphy"], "murphy")
    ok = _valid(arrays, valid)
    if saturated is None:
        saturated = saturation_mask(bands, {"swir1": saturation_level, "swir2": saturation_level})
    return _hotmap(nir, swir1, swir2, ok, saturated)


def sentinel2_fire(
    bands: Bands,
    valid: np.ndarray | None = None,
    saturated: np.ndarray | None = None,
    saturation_level: float = 65535 / 10000,
) -> np.ndarray:
    """Sentinel-2 MSI analogue of HOTMAP on B8A (nir), B11 (swir1) and B12 (swir2).

    Same tests and thresholds as :func:`murphy2016` (Murphy et al. 2016 Eqs. 2-3): ``B12/B11 >= 1.4 and
    B12/B8A >= 1.4 and B12 >= 0.15``, plus 3x3 neighbours with ``B11/B8A >= 2 and B11 >= 0.5`` or saturation.
    MSI B8A/B11/B12 (865/1610/2190 nm) sit within 1% of OLI bands 5/6/7 (865/1609/2201 nm), which is why the
    reflectance thresholds carry over; the transfer is used in the Sentinel-2 active-fire evaluations of Hu,
    Ban & Nascetti (2021, Int. J. Appl. Earth Obs. Geoinf. 101:102347) and in public Sentinel-2 ports of HOTMAP.
    A file whose ``nir`` resolved to the broad B8 (842 nm) instead of B8A works the same to within a few %.

    Args:
        bands: canonical name -> ``(rows, cols)`` TOA (L1C) or surface (L2A) reflectance; needs nir, swir1, swir2.
        valid: ``(rows, cols)`` bool, False = nodata. None = all valid.
        saturated: ``(rows, cols)`` bool saturation of B11 or B12; None derives it from ``saturation_level``.
        saturation_level: reflectance of the saturated raw value (L1C/L2A: DN 65535 / 10000).

    Returns:
        ``(rows, cols)`` bool fire mask.
    """
    nir, swir1, swir2 = arrays = _get(bands, RULE_BANDS["sentinel2"], "sentinel2")
    ok = _valid(arrays, valid)
    if saturated is None:
        saturated = saturation_mask(bands, {"swir1": saturation_level, "swir2": saturation_level})
    return _hotmap(nir, swir1, swir2, ok, saturated)


# --------------------------------------------------------------------------------------------------------
# Kumar & Roy (2018) GOLI
# --------------------------------------------------------------------------------------------------------


def kumar_roy_water(bands: Bands) -> np.ndarray:
    """Water mask of Kumar & Roy (2018) Eq. 16: ``rho2 > rho3 > rho4 > rho5``; ``(rows, cols)`` bool."""
    r2, r3, r4, r5 = _get(bands, ("blue", "green", "red", "nir"), "kumar-roy")
    return (r2 > r3) & (r3 > r4) & (r4 > r5)  # Eq. 16


def kumar_roy_unambiguous(bands: Bands, valid: np.ndarray | None = None) -> np.ndarray:
    """Unambiguous fires of Kumar & Roy (2018): Eq. 12, or Eq. 13 next to an Eq.-12 pixel.

    Args:
        bands: canonical name -> ``(rows, cols)`` TOA reflectance; needs blue, green, red, nir, swir1, swir2.
        valid: ``(rows, cols)`` bool, False = nodata. None = all valid.

    Returns:
        ``(rows, cols)`` bool.
    """
    arrays = _get(bands, RULE_BANDS["kumar-roy"], "kumar-roy")
    _, _, r4, _, r6, r7 = arrays
    ok = _valid(arrays, valid)
    eq12 = (r4 <= 0.53 * r7 - 0.214) & ok  # Eq. 12: unambiguous fire
    eq13 = neighbours(eq12) & (r4 <= 0.35 * r6 - 0.044) & ok  # Eq. 13: unambiguous, next to an Eq.-12 pixel
    return eq12 | eq13


def kumar_roy2018(bands: Bands, valid: np.ndarray | None = None) -> np.ndarray:
    """Daytime active fire pixels of the GOLI algorithm (Kumar & Roy 2018, IJDE 11:154-178).

    Unambiguous fires pass Eq. 12, or Eq. 13 in the 3x3 neighbourhood of an Eq.-12 pixel. Potential fires
    pass Eq. 14 or Eq. 15 and are confirmed by the contextual Eqs. 8-9 (Schroeder's Eqs. 4-5) in the smallest
    window of 5x5 .. 61x61 with at least 25% valid background (valid, rho7 > 0, not unambiguous or potential
    fire, not water); a candidate without such a window is rejected. Water (Eq. 16) is never fire.

    Args:
        bands: canonical name -> ``(rows, cols)`` TOA reflectance; needs blue, green, red, nir, swir1, swir2.
        valid: ``(rows, cols)`` bool, False = nodata. None = all valid.

    Returns:
        ``(rows, cols)`` bool fire mask.
    """
    _, _, r4, r5, r6, r7 = arrays = _get(bands, RULE_BANDS["kumar-roy"], "kumar-roy")
    ok = _valid(arrays, valid)
    unambiguous = kumar_roy_unambiguous(bands, ok)  # Eqs. 12-13
    eq14 = r4 <= 0.53 * r7 - 0.125  # Eq. 14: potential fire
    eq15 = r6 <= 1.08 * r7 - 0.048  # Eq. 15: potential fire
    potential = (eq14 | eq15) & ok & ~unambiguous
    water = kumar_roy_water(bands)  # Eq. 16
    background = ok & (r7 > 0) & (r5 > 0) & ~unambiguous & ~potential & ~water  # r5 > 0: R75 defined
    radii = growing_window_radii(potential & ~water, background)  # 5x5 .. 61x61, >= 25% background
    testable = potential & ~water & (radii >= 0)
    confirmed = contextual_test(testable, background, ratio(r7, r5), r7, np.maximum(radii, 0))  # Eqs. 8-9
    return (unambiguous | confirmed) & ~water


# --------------------------------------------------------------------------------------------------------
# Registry and combination
# --------------------------------------------------------------------------------------------------------

RuleFunction = Callable[..., np.ndarray]

RULES: dict[str, RuleFunction] = {
    "schroeder": schroeder2016,
    "murphy": murphy2016,
    "kumar-roy": kumar_roy2018,
    "sentinel2": sentinel2_fire,
}
"""Fire rules by ``--rules`` name."""

UNAMBIGUOUS: dict[str, RuleFunction] = {
    "schroeder": schroeder_unambiguous,
    "murphy": murphy_unambiguous,
    "kumar-roy": kumar_roy_unambiguous,
    "sentinel2": murphy_unambiguous,
}
"""The unambiguous tests of each rule (the Sentinel-2 analogue shares HOTMAP's Eq. 2)."""

Combine = Literal["voting", "intersection", "union"]


def run_tests(
    rule: str, tests: Sequence[FireTest], bands: Bands, valid: np.ndarray | None = None,
    saturated: np.ndarray | None = None,
) -> np.ndarray:
    """Fire mask of a rule restricted to ``tests`` (from :func:`plan_tests`).

    All of a rule's tests = the rule itself; only unambiguous ones = :data:`UNAMBIGUOUS` (Schroeder's Eq. 2 joins
    Eq. 1 when its bands are present).

    Returns:
        ``(rows, cols)`` bool fire mask.

    Raises:
        ConfigError: no test to run.
    """
    if not tests:
        raise ConfigError(f"rule {rule!r}: no test to run; its bands are missing")
    if len(tests) == len(RULE_TESTS[rule]):
        extra = {"saturated": saturated} if rule in ("murphy", "sentinel2") else {}
        return get_rule(rule)(bands, valid, **extra)
    if any(not t.unambiguous for t in tests):
        raise ConfigError(f"rule {rule!r}: its contextual tests cannot run without its unambiguous ones")
    return UNAMBIGUOUS[rule](bands, valid)


def get_rule(name: str) -> RuleFunction:
    """The rule called ``name``.

    Raises:
        ConfigError: unknown name (the message lists the valid ones).
    """
    try:
        return RULES[name.strip().lower()]
    except KeyError:
        raise ConfigError(f"unknown fire rule {name!r}; choose from {', '.join(RULES)}") from None


def combine(masks: Sequence[np.ndarray], how: Combine = "voting", min_votes: int | None = None) -> np.ndarray:
    """Combine boolean masks of the same shape.

    Args:
        masks: ``(rows, cols)`` bool masks (at least one).
        how: ``intersection`` (all agree), ``union`` (any), or ``voting``: at least ``min_votes`` masks agree;
            the default is a strict majority (2 of 3, 2 of 2, 1 of 1).
        min_votes: votes needed for ``voting``.

    Returns:
        ``(rows, cols)`` bool.

    Raises:
        ConfigError: no masks, unknown ``how``, or ``min_votes`` outside 1..len(masks).
    """
    if not masks:
        raise ConfigError("combine needs at least one mask; pass one or more --rules")
    stack = np.stack([np.asarray(m, dtype=bool) for m in masks])
    if how == "intersection":
        return np.asarray(stack.all(axis=0))
    if how == "union":
        return np.asarray(stack.any(axis=0))
    if how != "voting":
        raise ConfigError(f"unknown combination {how!r}; choose voting, intersection or union")
    votes = len(masks) // 2 + 1 if min_votes is None else min_votes
    if not 1 <= votes <= len(masks):
        raise ConfigError(f"min_votes {votes} must be between 1 and the number of rules ({len(masks)})")
    return stack.sum(axis=0, dtype=np.int16) >= votes


__all__ = [
    "CONTEXT_HALO",
    "EPSILON",
    "KUMAR_ROY_MIN_BACKGROUND",
    "KUMAR_ROY_SIZES",
    "L1_SATURATION_REFLECTANCE",
    "RULES",
    "RULE_BANDS",
    "RULE_HALO",
    "RULE_TESTS",
    "SCHROEDER_RADIUS",
    "UNAMBIGUOUS",
    "Bands",
    "Combine",
    "FireTest",
    "FireTests",
    "combine",
    "contextual_test",
    "get_rule",
    "growing_window_radii",
    "kumar_roy2018",
    "kumar_roy_unambiguous",
    "kumar_roy_water",
    "murphy2016",
    "murphy_unambiguous",
    "neighbours",
    "plan_tests",
    "ratio",
    "run_tests",
    "saturation_mask",
    "schroeder2016",
    "schroeder_unambiguous",
    "schroeder_water",
    "sentinel2_fire",
]
