"""Band resolution: descriptions, sensor stacks, --bands specs, encodings, errors."""

from __future__ import annotations

import numpy as np
import pytest

from firemap.bands import (
    SENSORS,
    TCI_ENCODING,
    Encoding,
    get_sensor,
    guess_sensor,
    parse_band_spec,
    resolve_bands,
    to_physical,
)
from firemap.errors import BandResolutionError, MissingBandsError


def indexes(bandmap) -> dict[str, int]:
    return {k: v.index for k, v in bandmap.sources.items()}


def test_sentinel2_tci_crops_resolve_without_sensor() -> None:
    m = resolve_bands(("TCI_R", "TCI_G", "TCI_B", "B8", "B12"), 5)
    assert m.sensor == "sentinel2-l2a"
    assert indexes(m) == {"blue": 3, "green": 2, "red": 1, "nir": 4, "swir2": 5}
    # TCI_R = 0.098 * B4_DN + 3.9  ->  B4 reflectance 0.1 (DN 1000) gives TCI 101.9
    assert m.sources["red"].encoding.to_physical(np.array([101.9]))[0] == pytest.approx(0.1, abs=1e-4)
    assert m.sources["nir"].encoding.to_physical(np.array([2500]))[0] == pytest.approx(0.25)


def test_band_numbers_mean_different_things_per_sensor() -> None:
    landsat = resolve_bands(["B5", "B7"], 2, sensor="landsat8-l1")
    s2 = resolve_bands(["B5", "B8", "B12"], 3, sensor="sentinel2-l2a")
    assert indexes(landsat) == {"nir": 1, "swir2": 2}
    assert indexes(s2) == {"nir": 2, "swir2": 3}  # B5 is red-edge on Sentinel-2: unused


def test_sentinel2_first_nir_name_wins_and_offset_tag_applies() -> None:
    m = resolve_bands(["B8A", "B8", "B12"], 3, sensor="sentinel2-l2a", tags={"BOA_ADD_OFFSET_B8": "-1000"})
    assert indexes(m)["nir"] == 1  # first match wins: B8A listed first here
    assert m.sources["swir2"].encoding.to_physical(np.array([2000]))[0] == pytest.approx(0.1)


@pytest.mark.parametrize(("count", "expected"), [
    (10, {"coastal": 1, "swir2": 7, "cirrus": 8, "thermal": 9, "thermal2": 10}),
    (11, {"coastal": 1, "swir2": 7, "cirrus": 9, "thermal": 10, "thermal2": 11}),
    (7, {"coastal": 1, "nir": 5, "swir2": 7}),
])
def test_landsat_l1_stacks_without_descriptions(count: int, expected: dict[str, int]) -> None:
    m = resolve_bands([None] * count, count, sensor="landsat8-l1")
    got = indexes(m)
    assert {k: got[k] for k in expected} == expected


def test_landsat_l1_encoding_and_thermal_planck() -> None:
    m = resolve_bands([None] * 10, 10, sensor="landsat8-l1")
    assert m.sources["swir2"].encoding.to_physical(np.array([30000]))[0] == pytest.approx(2e-5 * 30000 - 0.1)
    bt = m.sources["thermal"].encoding.to_physical(np.array([30000.0]))[0]
    radiance = 3.342e-4 * 30000 + 0.1
    assert bt == pytest.approx(1321.0789 / np.log(774.8853 / radiance + 1), rel=1e-5)
    assert 280 < bt < 320
    # to_raw inverts to_physical, thermal included
    assert m.sources["thermal"].encoding.to_raw(np.array([bt]))[0] == pytest.approx(30000, rel=1e-4)


def test_hls_chip_layout_and_guessing() -> None:
    m = resolve_bands([None] * 10, 10, sensor="hls")
    assert indexes(m)["swir1"] == 6 and indexes(m)["thermal"] == 9
    assert m.sources["thermal"].encoding.to_physical(np.array([2000]))[0] == pytest.approx(293.15)
    assert guess_sensor(["SR_B4", "SR_B5"]) == "landsat8-l2"
    assert guess_sensor([None, None]) is None


def test_spec_overrides_and_scales() -> None:
    m = resolve_bands(["a", "b", "c"], 3, spec="red=1,nir=b:0.001,swir2=3:2:-1")
    assert indexes(m) == {"red": 1, "nir": 2, "swir2": 3}
    assert m.sources["nir"].encoding == Encoding(0.001, 0.0)
    assert m.sources["swir2"].encoding.to_physical(np.array([1.0]))[0] == pytest.approx(1.0)
    assert parse_band_spec(" red = 4 ") == {"red": ("4", None, None)}


@pytest.mark.parametrize(("spec", "match"), [
    ("purple=1", "unknown canonical band 'purple'"),
    ("red", "expected CANON=SRC"),
    ("red=9", "file has bands 1..3"),
    ("red=B99", "band descriptions are"),
    ("red=1:x", "bad scale/offset"),
])
def test_spec_errors_are_clear(spec: str, match: str) -> None:
    with pytest.raises(BandResolutionError, match=match):
        resolve_bands(["a", "b", "c"], 3, spec=spec)


def test_missing_bands_error_names_missing_and_offered() -> None:
    m = resolve_bands(("TCI_R", "TCI_G", "TCI_B", "B8", "B12"), 5)
    with pytest.raises(MissingBandsError, match=r"lacks band\(s\) swir1.*offers .*red=band 1 'TCI_R'"):
        m.select(["red", "swir1"])
    assert m.select(["red"], ["swir1"]) == [m.sources["red"], None]


def test_unknown_sensor_lists_valid_names() -> None:
    with pytest.raises(BandResolutionError, match="landsat8-l1"):
        get_sensor("modis")
    assert set(SENSORS) == {"landsat8-l1", "landsat9-l1", "landsat8-l2", "landsat9-l2", "sentinel2-l1c",
                            "sentinel2-l2a", "hls"}


def test_to_physical_shapes_and_dtype() -> None:
    m = resolve_bands(("TCI_R", "B12"), 2)
    raw = np.stack([np.full((2, 3), 255.0), np.full((2, 3), 10000.0)])
    out = to_physical(raw, [m.sources["red"], m.sources["swir2"]])
    assert out.dtype == np.float32 and out.shape == (2, 2, 3)
    assert out[0, 0, 0] == pytest.approx(TCI_ENCODING.to_physical(np.array([255.0]))[0])
    assert out[0, 0, 0] == pytest.approx(0.256, abs=0.002)  # TCI saturates near 0.255 reflectance
    assert out[1, 0, 0] == pytest.approx(1.0)


def test_landsat_l1_sun_elevation_correction_from_tags() -> None:
    plain = resolve_bands([None] * 7, 7, sensor="landsat8-l1")
    corrected = resolve_bands([None] * 7, 7, sensor="landsat8-l1", tags={"SUN_ELEVATION": "30.0"})
    dn = np.array([20000.0])
    uncorrected = 2e-5 * 20000 - 0.1
    assert plain.sources["red"].encoding.to_physical(dn)[0] == pytest.approx(uncorrected)
    assert corrected.sources["red"].encoding.to_physical(dn)[0] == pytest.approx(uncorrected / 0.5)
    l2 = resolve_bands([None] * 7, 7, sensor="landsat8-l2", tags={"SUN_ELEVATION": "30.0"})
    assert l2.sources["red"].encoding.to_physical(dn)[0] == pytest.approx(2.75e-5 * 20000 - 0.2)  # SR: none
