"""One sensor vocabulary: the short names of simulate/demo are accepted wherever --sensor is, with a fixed mapping."""

from __future__ import annotations

from pathlib import Path

import pytest

from firemap.bands import SENSOR_ALIASES, SENSORS, get_sensor, resolve_bands
from firemap.errors import BandResolutionError
from firemap.simulate.sensor import SENSOR_SPECS, sensor_spec


@pytest.mark.parametrize("name", sorted(SENSOR_SPECS))
def test_every_simulator_name_is_a_sensor_name(name: str) -> None:
    """The simulator's names resolve to the preset its files are written for, and back."""
    assert get_sensor(name).name == SENSOR_SPECS[name].preset
    assert sensor_spec(get_sensor(name).name).name == name


def test_aliases_point_at_presets() -> None:
    assert SENSOR_ALIASES == {"landsat8": "landsat8-l1", "landsat9": "landsat9-l1", "sentinel2": "sentinel2-l2a"}
    assert all(p in SENSORS for p in SENSOR_ALIASES.values()) and not set(SENSOR_ALIASES) & set(SENSORS)
    assert get_sensor(" Sentinel2 ") is SENSORS["sentinel2-l2a"]


def test_unknown_sensor_lists_presets_and_short_names() -> None:
    with pytest.raises(BandResolutionError, match=r"'sentinel-2'.*sentinel2-l2a, hls \(short names: landsat8 = "
                                                  r"landsat8-l1, landsat9 = landsat9-l1, sentinel2 = sentinel2-l2a\)"):
        get_sensor("sentinel-2")


def test_short_name_resolves_like_the_preset(tmp_path: Path) -> None:
    from firemap.simulate import simulate_scene, write_scene

    path, _ = write_scene(simulate_scene("sentinel2", 32, 32, seed=0), tmp_path / "s2.tif")
    import rasterio

    with rasterio.open(path) as src:
        args = (src.descriptions, src.count)
        short = resolve_bands(*args, "sentinel2", None, src.tags())
        full = resolve_bands(*args, "sentinel2-l2a", None, src.tags())
    assert short.sensor == full.sensor == "sentinel2-l2a"
    assert {b: (s.index, s.encoding) for b, s in short.sources.items()} == \
        {b: (s.index, s.encoding) for b, s in full.sources.items()}
    assert short.sources["swir2"].encoding.scale == pytest.approx(1e-4)


def test_predict_accepts_the_short_name(tmp_path: Path, threshold_bundle: object) -> None:
    from firemap.config import PredictConfig
    from firemap.predict import predict_scene
    from firemap.simulate import simulate_scene, write_scene

    path, _ = write_scene(simulate_scene("sentinel2", 64, 64, seed=1), tmp_path / "s2.tif")
    cfg = PredictConfig(sensor="sentinel2", tile_size=64, overlap=16, device="cpu")
    result = predict_scene(path, tmp_path / "out", threshold_bundle, cfg)  # type: ignore[arg-type]
    assert result.outputs["classes"].is_file()
