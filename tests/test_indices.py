"""Spectral indices, severity classes and the classic fire rules, pixel by pixel.

Reflectances are chosen so that each inequality of each paper is just met (by 0.0005 reflectance or 0.1% in
a ratio) and just missed, with the other tests of the rule kept clearly passing or failing as stated.
"""

from __future__ import annotations

import numpy as np
import pytest

from firemap.errors import ConfigError, MissingBandsError
from firemap.indices import (
    dnbr,
    dnbr_burn_scar,
    dnbr_severity,
    nbr,
    nbr2,
    nbr_burn_scar,
    ndvi,
    smoke_index,
    smoke_mask,
)
from firemap.rules import (
    L1_SATURATION_REFLECTANCE,
    combine,
    contextual_test,
    get_rule,
    growing_window_radii,
    kumar_roy2018,
    murphy2016,
    schroeder2016,
    schroeder_water,
    sentinel2_fire,
)

BANDS = ("coastal", "blue", "green", "red", "nir", "swir1", "swir2")
VEGETATION = dict(coastal=0.10, blue=0.08, green=0.07, red=0.05, nir=0.30, swir1=0.20, swir2=0.10)
SOIL = dict(coastal=0.12, blue=0.13, green=0.16, red=0.20, nir=0.20, swir1=0.30, swir2=0.30)
C = 10  # centre of the 21 x 21 test scenes


def scene(background: dict[str, float] = VEGETATION, size: int = 21, **centre: float) -> dict[str, np.ndarray]:
    """A uniform ``size x size`` scene with the centre pixel's bands overridden."""
    bands = {k: np.full((size, size), v, dtype=np.float32) for k, v in background.items()}
    for name, value in centre.items():
        bands[name][C, C] = value
    return bands


def put(bands: dict[str, np.ndarray], row: int, col: int, **values: float) -> dict[str, np.ndarray]:
    for name, value in values.items():
        bands[name][row, col] = value
    return bands


def fires_at_centre(rule, bands, **kw) -> bool:
    mask = rule(bands, **kw)
    assert mask.dtype == bool and mask.shape == bands["nir"].shape
    others = mask.copy()
    others[C, C] = False
    assert not others.any(), f"unexpected fire pixels at {np.argwhere(others).tolist()}"
    return bool(mask[C, C])


# ------------------------------------------------------------------------------------------- indices


def test_nbr_nbr2_ndvi_values_and_undefined():
    np.testing.assert_allclose(nbr(np.float32([0.3, 0.1]), np.float32([0.1, 0.3])), [0.5, -0.5], rtol=1e-6)
    np.testing.assert_allclose(nbr2(np.float32([0.2]), np.float32([0.1])), [1 / 3], rtol=1e-6)
    np.testing.assert_allclose(ndvi(np.float32([0.4]), np.float32([0.1])), [0.6], rtol=1e-6)
    out = nbr(np.float32([0.0, np.nan]), np.float32([0.0, 0.1]))
    assert out.dtype == np.float32 and np.isnan(out).all()


def test_dnbr_is_pre_minus_post():
    pre, post = nbr(np.float32([0.35]), np.float32([0.1])), nbr(np.float32([0.1]), np.float32([0.25]))
    assert dnbr(pre, post)[0] == pytest.approx(0.5555556 - (-0.4285714), abs=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dnbr_severity_class_edges(dtype):
    # (value, class): each USGS edge belongs to the class above it; just below stays in the class below.
    cases = [(-0.6, 1), (-0.2501, 1), (-0.25, 2), (-0.1001, 2), (-0.1, 3), (0.0, 3), (0.0999, 3), (0.1, 4),
             (0.2699, 4), (0.27, 5), (0.4399, 5), (0.44, 6), (0.6599, 6), (0.66, 7), (1.3, 7)]
    values = np.array([v for v, _ in cases] + [np.nan], dtype=dtype)
    classes = dnbr_severity(values)
    assert classes.dtype == np.uint8
    assert classes.tolist() == [c for _, c in cases] + [255]


def test_burn_scar_rules():
    assert nbr_burn_scar(np.float32([0.1, 0.3]), np.float32([0.2, 0.1]), threshold=0.0).tolist() == [True, False]
    assert dnbr_burn_scar(np.float32([0.0999, 0.1, 0.5, np.nan])).tolist() == [False, True, True, False]


def test_smoke_index_rises_with_blue_haze_and_mask_screens_water_and_cloud():
    clear = smoke_index(np.float32(0.04), np.float32(0.10))
    smoky = smoke_index(np.float32(0.14), np.float32(0.11))
    assert clear < 0 < smoky
    blue = np.float32([0.14, 0.04, 0.06, 0.45])  # smoke over vegetation, clear vegetation, water, cloud
    swir2 = np.float32([0.11, 0.10, 0.005, 0.30])
    nir = np.float32([0.25, 0.30, 0.02, 0.50])
    assert smoke_mask(blue, swir2, nir).tolist() == [True, False, False, False]


# ------------------------------------------------------------------------------ Schroeder et al. 2016


def test_schroeder_background_is_not_fire():
    assert not schroeder2016(scene()).any()
    assert not schroeder2016(scene(SOIL)).any()


@pytest.mark.parametrize(
    ("centre", "fire"),
    [
        # Eq. 1; band 6 keeps R76 <= 1.6 so the candidate path (Eq. 6) is closed.
        (dict(nir=0.20, swir1=0.45, swir2=0.5005), True),  # R75 2.50, d 0.30, rho7 > 0.5: all met
        (dict(nir=0.19, swir1=0.45, swir2=0.4995), False),  # rho7 > 0.5 missed
        (dict(nir=0.2395, swir1=0.45, swir2=0.60), True),  # R75 = 2.505
        (dict(nir=0.2405, swir1=0.45, swir2=0.60), False),  # R75 = 2.495 missed
        # Eq. 2, the saturated / folded case: rho6 > 0.8 and rho1 < 0.2 and (rho5 > 0.4 or rho7 < 0.1)
        (dict(coastal=0.19, nir=0.41, swir1=0.8005, swir2=0.05), True),
        (dict(coastal=0.19, nir=0.41, swir1=0.7995, swir2=0.05), False),  # rho6 missed
        (dict(coastal=0.2005, nir=0.41, swir1=0.8005, swir2=0.05), False),  # rho1 missed
        (dict(coastal=0.19, nir=0.395, swir1=0.8005, swir2=0.0995), True),  # rho7 < 0.1 branch
        (dict(coastal=0.19, nir=0.395, swir1=0.8005, swir2=0.1005), False),  # both branches missed
    ],
)
def test_schroeder_unambiguous_equations(centre, fire):
    assert fires_at_centre(schroeder2016, scene(**centre)) is fire


@pytest.mark.parametrize(
    ("centre", "fire"),
    [
        # Candidates (rho7 < 0.5: Eq. 1 closed) on vegetation: background R75 0.33, rho7 0.10, std 0, so the
        # contextual thresholds are R75 > 1.133 and rho7 > 0.18.
        (dict(nir=0.1295, swir1=0.18, swir2=0.30), True),  # Eq. 3: d = 0.1705, R75 2.32; Eq. 6: R76 1.67
        (dict(nir=0.1305, swir1=0.18, swir2=0.30), False),  # Eq. 3: rho7 - rho5 = 0.1695 missed
        (dict(nir=0.2495, swir1=0.25, swir2=0.45), True),  # Eq. 3: R75 = 1.804
        (dict(nir=0.2505, swir1=0.25, swir2=0.45), False),  # Eq. 3: R75 = 1.796 missed
        (dict(nir=0.1295, swir1=0.1874, swir2=0.30), True),  # Eq. 6: R76 = 1.601
        (dict(nir=0.1295, swir1=0.1876, swir2=0.30), False),  # Eq. 6: R76 = 1.599 missed
        (dict(nir=0.005, swir1=0.10, swir2=0.1805), True),  # Eq. 5: rho7 > 0.10 + 0.08
        (dict(nir=0.005, swir1=0.10, swir2=0.1795), False),  # Eq. 5 missed
    ],
)
def test_schroeder_candidate_and_contextual_equations(centre, fire):
    assert fires_at_centre(schroeder2016, scene(**centre)) is fire


@pytest.mark.parametrize(("rho7", "fire"), [(0.461, True), (0.459, False)])
def test_schroeder_eq4_ratio_against_bright_soil(rho7, fire):
    # Soil background: R75 = 1.5, std 0 -> Eq. 4 needs R75 > 2.3 (rho5 = 0.2: rho7 > 0.46).
    assert fires_at_centre(schroeder2016, scene(SOIL, nir=0.2, swir1=0.2, swir2=rho7)) is fire


def test_schroeder_eq5_uses_three_sigma_of_a_varied_background():
    bands = scene(size=21)
    rng = np.random.default_rng(3)
    bands["swir2"] = rng.uniform(0.05, 0.25, (21, 21)).astype(np.float32)
    background = np.ones((21, 21), bool)
    background[C, C] = False
    values = bands["swir2"][background].astype(np.float64)
    threshold = values.mean() + max(3 * values.std(), 0.08)  # independent of the implementation
    assert 3 * values.std() > 0.08
    for rho7, fire in ((threshold + 0.002, True), (threshold - 0.002, False)):
        put(bands, C, C, nir=0.01, swir1=0.05, swir2=rho7)
        assert bool(schroeder2016(bands)[C, C]) is fire


def test_schroeder_unambiguous_fires_are_left_out_of_the_background():
    # A candidate beside a large unambiguous fire front: if the front entered the background statistics,
    # mean + 3 std of rho7 would exceed the candidate; it must not.
    bands = put(scene(), C, C, nir=0.1295, swir1=0.18, swir2=0.30)
    for col in range(21):
        put(bands, 2, col, nir=0.2, swir1=0.45, swir2=1.0)
    mask = schroeder2016(bands)
    assert mask[C, C] and mask[2].all()


def test_schroeder_water_mask_and_water_is_never_fire():
    deep = dict(coastal=0.12, blue=0.10, green=0.08, red=0.06, nir=0.03, swir1=0.02, swir2=0.01)
    turbid = dict(coastal=0.10, blue=0.11, green=0.14, red=0.12, nir=0.06, swir1=0.03, swir2=0.02)
    assert schroeder_water(scene(deep)).all() and schroeder_water(scene(turbid)).all()
    assert not schroeder_water(scene()).any() and not schroeder_water(scene(SOIL)).any()
    # An Eq.-2 (folded) pixel that is also water by Eqs. 7-9 is rejected.
    glint = dict(coastal=0.15, blue=0.2, green=0.5, red=0.95, nir=0.9, swir1=0.85, swir2=0.05)
    assert not fires_at_centre(schroeder2016, scene(**glint))
    assert fires_at_centre(schroeder2016, scene(**(glint | {"red": 0.5})))


def test_invalid_pixels_are_never_fire_nor_background():
    bands = scene(nir=0.2, swir1=0.45, swir2=0.6)
    valid = np.ones((21, 21), bool)
    valid[C, C] = False
    for rule in (schroeder2016, murphy2016, kumar_roy2018, sentinel2_fire):
        assert not rule(bands, valid=valid).any()
    bands["swir2"][0, 0] = np.nan
    assert not schroeder2016(bands)[0, 0]


def test_missing_band_error_names_the_band():
    with pytest.raises(MissingBandsError, match="coastal"):
        schroeder2016({k: v for k, v in scene().items() if k != "coastal"})


# ------------------------------------------------------------------------------- Murphy et al. 2016


@pytest.mark.parametrize(
    ("centre", "fire"),
    [
        (dict(nir=0.10, swir1=0.10, swir2=0.15), True),  # Eq. 2: both ratios 1.5, rho7 = 0.15
        (dict(nir=0.10, swir1=0.10, swir2=0.1495), False),  # rho7 >= 0.15 missed
        (dict(nir=0.10, swir1=0.2135, swir2=0.30), True),  # rho7/rho6 = 1.405
        (dict(nir=0.10, swir1=0.2145, swir2=0.30), False),  # rho7/rho6 = 1.399 missed
        (dict(nir=0.2135, swir1=0.10, swir2=0.30), True),  # rho7/rho5 = 1.405
        (dict(nir=0.2145, swir1=0.10, swir2=0.30), False),  # rho7/rho5 = 1.399 missed
        (dict(nir=0.0, swir1=0.10, swir2=0.30), True),  # zero band 5 -> epsilon -> ratio passes
    ],
)
def test_murphy_eq2(centre, fire):
    assert fires_at_centre(murphy2016, scene(**centre)) is fire


HOT = dict(nir=0.10, swir1=0.30, swir2=0.60)  # an Eq.-2 pixel at the centre


@pytest.mark.parametrize(
    ("neighbour", "fire"),
    [
        (dict(nir=0.25, swir1=0.5005, swir2=0.30), True),  # Eq. 3: rho6/rho5 = 2.002, rho6 >= 0.5
        (dict(nir=0.24, swir1=0.4995, swir2=0.30), False),  # rho6 >= 0.5 missed
        (dict(nir=0.2745, swir1=0.55, swir2=0.30), True),  # rho6/rho5 = 2.004
        (dict(nir=0.2755, swir1=0.55, swir2=0.30), False),  # rho6/rho5 = 1.996 missed
        (dict(nir=0.35, swir1=0.55, swir2=0.30), False),  # ratio 1.57: the public bug would flag this
        (dict(nir=0.0, swir1=0.55, swir2=0.30), True),  # zero band 5 -> epsilon (the paper's intent)
        (dict(nir=0.9, swir1=0.9, swir2=L1_SATURATION_REFLECTANCE), True),  # saturated band 7, not Eq. 2
        (dict(nir=0.3, swir1=L1_SATURATION_REFLECTANCE, swir2=0.3), True),  # saturated band 6
    ],
)
def test_murphy_eq3_neighbourhood(neighbour, fire):
    for row, col in ((C, C + 1), (C + 1, C + 1)):  # edge and corner neighbours
        bands = put(scene(**HOT), row, col, **neighbour)
        mask = murphy2016(bands)
        assert mask[C, C] and bool(mask[row, col]) is fire
    far = murphy2016(put(scene(**HOT), C, C + 2, **neighbour))  # two pixels away: outside the 3x3 window
    assert not far[C, C + 2]


def test_murphy_zero_band5_is_the_only_value_replaced_by_epsilon():
    # The widely copied public code does np.where(b5 > 0, eps, b5): every positive band 5 becomes epsilon,
    # so rho6/rho5 >= 2 always holds and any neighbour with rho6 >= 0.5 is flagged. The paper's test:
    bands = put(scene(**HOT), C, C + 1, nir=0.40, swir1=0.60, swir2=0.2)  # ratio 1.5
    assert not murphy2016(bands)[C, C + 1]
    buggy = np.where(bands["nir"] > 0, np.finfo(float).eps, bands["nir"])  # what the bug would compute
    assert (bands["swir1"] / buggy)[C, C + 1] >= 2.0
    bands["nir"][C, C + 1] = 0.0
    assert murphy2016(bands)[C, C + 1]


def test_murphy_explicit_saturation_mask():
    bands = put(scene(**HOT), C, C + 1, nir=0.3, swir1=0.2, swir2=0.3)
    saturated = np.zeros((21, 21), bool)
    assert not murphy2016(bands, saturated=saturated)[C, C + 1]
    saturated[C, C + 1] = True
    assert murphy2016(bands, saturated=saturated)[C, C + 1]


def test_sentinel2_analogue_thresholds():
    assert fires_at_centre(sentinel2_fire, scene(nir=0.10, swir1=0.10, swir2=0.15))
    assert not fires_at_centre(sentinel2_fire, scene(nir=0.10, swir1=0.10, swir2=0.1495))
    # fresh char: dark nir, swir2 ~ swir1 -> B12/B11 < 1.4 rejects it
    assert not fires_at_centre(sentinel2_fire, scene(nir=0.08, swir1=0.18, swir2=0.20))
    with pytest.raises(MissingBandsError, match="swir1"):
        sentinel2_fire({"nir": np.zeros((2, 2)), "swir2": np.zeros((2, 2))})


# ------------------------------------------------------------------------------- Kumar & Roy 2018


@pytest.mark.parametrize(
    ("centre", "fire"),
    [
        # Eq. 12: rho4 <= 0.53 rho7 - 0.214 = 0.104 (rho7 0.6); rho5 = 0.6 makes R75 = 1 so that the
        # contextual path (Eq. 8: R75 > 1.133) cannot confirm the pixel instead.
        (dict(red=0.1035, nir=0.6, swir1=0.3, swir2=0.6), True),
        (dict(red=0.1045, nir=0.6, swir1=0.3, swir2=0.6), False),
        # Eq. 14 (potential): rho4 <= 0.53 rho7 - 0.125 = 0.087 (rho7 0.4); Eq. 15 closed (rho6 0.4 > 0.384).
        (dict(red=0.0865, nir=0.15, swir1=0.40, swir2=0.40), True),
        (dict(red=0.0875, nir=0.15, swir1=0.40, swir2=0.40), False),
        # Eq. 15 (potential): rho6 <= 1.08 rho7 - 0.048 = 0.276 (rho7 0.3); Eq. 14 closed (rho4 0.05 > 0.034).
        (dict(nir=0.10, swir1=0.2755, swir2=0.30), True),
        (dict(nir=0.10, swir1=0.2765, swir2=0.30), False),
        # Eq. 9 (context): rho7 > 0.10 + 0.08 for a potential fire (Eq. 15 holds: 0.10 <= 0.1459); red
        # below nir, or Eq. 16 would call the pixel water.
        (dict(red=0.004, nir=0.005, swir1=0.10, swir2=0.1805), True),
        (dict(red=0.004, nir=0.005, swir1=0.10, swir2=0.1795), False),
    ],
)
def test_kumar_roy_equations(centre, fire):
    assert fires_at_centre(kumar_roy2018, scene(**centre)) is fire


@pytest.mark.parametrize(("red", "fire"), [(0.1305, True), (0.1315, False)])
def test_kumar_roy_eq13_neighbour(red, fire):
    # Eq. 13: rho4 <= 0.35 rho6 - 0.044 = 0.131 (rho6 0.5), only next to an Eq.-12 pixel; Eqs. 14-15 closed.
    eq12 = dict(red=0.05, nir=0.6, swir1=0.3, swir2=0.6)
    neighbour = dict(red=red, nir=0.3, swir1=0.5, swir2=0.2)
    mask = kumar_roy2018(put(scene(**eq12), C, C + 1, **neighbour))
    assert mask[C, C] and bool(mask[C, C + 1]) is fire
    assert not kumar_roy2018(put(scene(**eq12), C, C + 2, **neighbour))[C, C + 2]


def test_kumar_roy_water_is_never_fire():
    fire_like = dict(blue=0.3, green=0.2, red=0.1, nir=0.05, swir1=0.3, swir2=0.8)  # Eq. 12 holds
    assert not fires_at_centre(kumar_roy2018, scene(**fire_like))  # rho2 > rho3 > rho4 > rho5: water
    assert fires_at_centre(kumar_roy2018, scene(**(fire_like | {"green": 0.35})))


def test_growing_window_needs_a_quarter_of_valid_background():
    candidates = np.zeros((21, 21), bool)
    candidates[C, C] = True
    background = np.zeros((21, 21), bool)
    ring7 = np.zeros((21, 21), bool)
    ring7[C - 3 : C + 4, C - 3 : C + 4] = True
    ring7[C - 2 : C + 3, C - 2 : C + 3] = False
    inner = [(C - 2, C - 2), (C - 2, C), (C - 2, C + 2), (C, C - 2), (C, C + 2), (C + 2, C - 2)]
    for r, c in inner:  # 6 of 25 = 24% in the 5x5 window
        background[r, c] = True
    assert growing_window_radii(candidates, background)[C, C] == -1  # 6/49, 6/81, ... never 25%
    assert growing_window_radii(candidates, background | ring7)[C, C] == 3  # 5x5 fails, 7x7 passes
    background[C + 2, C + 2] = True  # 7 of 25 = 28%
    assert growing_window_radii(candidates, background)[C, C] == 2
    assert growing_window_radii(candidates, np.zeros((21, 21), bool))[C, C] == -1


def test_kumar_roy_candidate_without_enough_background_is_rejected():
    bands = scene(nir=0.10, swir1=0.2755, swir2=0.30)  # potential fire by Eq. 15 (see above)
    valid = np.zeros((21, 21), bool)
    valid[C, C] = True
    assert not kumar_roy2018(bands, valid=valid).any()  # no 5x5..61x61 window has 25% background
    valid[C - 3 : C + 4, C - 3 : C + 4] = True  # a valid 7x7 island: 48/49 background in 7x7
    assert kumar_roy2018(bands, valid=valid)[C, C]


# ------------------------------------------------------------------ contextual test vs a brute force


def _reference_context(candidates, background, r75, rho7, radius):
    out = np.zeros(candidates.shape, bool)
    for y, x in np.argwhere(candidates):
        t, b, lft, rgt = max(0, y - radius), y + radius + 1, max(0, x - radius), x + radius + 1
        bg = background[t:b, lft:rgt]
        if not bg.any():
            continue
        a, v = r75[t:b, lft:rgt][bg].astype(np.float64), rho7[t:b, lft:rgt][bg].astype(np.float64)
        out[y, x] = r75[y, x] > a.mean() + max(3 * a.std(), 0.8) and rho7[y, x] > v.mean() + max(3 * v.std(), 0.08)
    return out


def test_contextual_test_matches_a_brute_force_loop_on_a_planted_hot_pixel():
    rng = np.random.default_rng(7)
    shape = (90, 110)
    rho5 = rng.uniform(0.1, 0.4, shape).astype(np.float32)
    rho7 = rng.uniform(0.05, 0.3, shape).astype(np.float32)
    rho7[45, 50], rho5[45, 50] = 0.9, 0.15  # the planted hot pixel
    r75 = rho7 / rho5
    background = rng.random(shape) > 0.2
    candidates = rng.random(shape) > 0.9
    candidates[45, 50] = True
    ours = contextual_test(candidates, background, r75, rho7, 30)
    assert ours[45, 50]
    np.testing.assert_array_equal(ours, _reference_context(candidates, background, r75, rho7, 30))
    radii = rng.integers(2, 31, shape)
    ours = contextual_test(candidates, background, r75, rho7, radii)
    ref = np.zeros(shape, bool)
    for r in np.unique(radii[candidates]):
        sel = candidates & (radii == r)
        ref |= _reference_context(sel, background, r75, rho7, int(r))
    np.testing.assert_array_equal(ours, ref)


# ----------------------------------------------------------------------------------------- combine


def test_combine_voting_intersection_union():
    a, b, c = (np.array(v, bool) for v in ([1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 0, 0]))
    assert combine([a, b, c], "voting").tolist() == [True, False, False, False]
    assert combine([a, b, c], "voting", min_votes=1).tolist() == [True, True, True, False]
    assert combine([a, b, c], "intersection").tolist() == [True, False, False, False]
    assert combine([a, b, c], "union").tolist() == [True, True, True, False]
    assert combine([a], "voting").tolist() == a.tolist()
    a2 = np.array([1, 1, 0, 1], bool)
    assert combine([a, a2, b], "voting").tolist() == [True, True, False, False]
    with pytest.raises(ConfigError, match="voting, intersection or union"):
        combine([a], "majority")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        combine([a, b], "voting", min_votes=3)
    with pytest.raises(ConfigError, match="unknown fire rule"):
        get_rule("giglio")
