"""Tests of the scene simulator: determinism, labels, nodata, encodings, physics and realism."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import rasterio
from scipy import ndimage
from typer.testing import CliRunner

from firemap.bands import get_sensor, resolve_bands, to_physical
from firemap.cli import app
from firemap.errors import BandResolutionError, ConfigError, OutputExistsError
from firemap.raster import open_scene, read_window
from firemap.rules import murphy2016, schroeder2016
from firemap.simulate import (
    FIRE_LABEL_RADIANCE,
    SimulatedScene,
    cloud_fraction,
    iter_tiles,
    labels_path,
    render,
    simulate_scene,
    write_scene,
)
from firemap.simulate.events import Fires
from firemap.simulate.sensor import SENSOR_SPECS, decode, encode
from firemap.simulate.spectra import band_planck, planck_radiance, two_stream_layer

CALFIRE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "s2_calfire"
SENSORS = tuple(SENSOR_SPECS)
PRESETS = {"landsat8": "landsat8-l1", "landsat9": "landsat9-l1", "sentinel2": "sentinel2-l2a", "hls": "hls"}
runner = CliRunner()


def _scene(sensor: str = "landsat8", size: int = 128, seed: int = 0, **kwargs: object) -> SimulatedScene:
    return simulate_scene(sensor, size, size, seed=seed, **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------- API


def test_same_seed_same_scene_other_seed_other_scene() -> None:
    a, b, c = _scene(seed=7), _scene(seed=7), _scene(seed=8)
    assert np.array_equal(a.raw, b.raw) and np.array_equal(a.labels, b.labels)
    assert a.grid == b.grid
    assert not np.array_equal(a.raw, c.raw)


@pytest.mark.parametrize("sensor", SENSORS)
def test_every_requested_class_present_and_shapes(sensor: str) -> None:
    scene = _scene(sensor, seed=3, clouds="some")
    spec = SENSOR_SPECS[sensor]
    assert scene.physical.shape == (len(spec.bands), 128, 128) and scene.physical.dtype == np.float32
    assert scene.raw.dtype == np.dtype(spec.dtype) and scene.raw.shape == scene.physical.shape
    assert scene.labels.shape == (3, 128, 128) and scene.labels.dtype == np.uint8
    assert set(np.unique(scene.labels)) <= {0, 1}
    assert all(scene.labels[i].any() for i in range(3)), "fire, smoke and burn_scar must all be present"
    assert scene.grid.crs.to_epsg() // 100 == 326 and scene.grid.res == (spec.pixel_m, spec.pixel_m)


@pytest.mark.parametrize("seed", range(4))
def test_classes_present_for_many_seeds_even_when_cloudy(seed: int) -> None:
    scene = _scene("sentinel2", size=96, seed=seed, clouds="many", swath_edge=True)
    assert all((scene.labels[i] == 1).any() for i in range(3))


def test_classes_absent_when_not_requested() -> None:
    scene = _scene(seed=2, fire=False, smoke=False, burn_scar=False)
    assert not (scene.labels == 1).any()
    hot = scene.truth.hotspot_fraction is not None and scene.truth.hotspot_fraction.any()
    assert (scene.labels[0] == 255).any() == bool(hot)  # only hot spots are "not labelled"
    assert not scene.truth.fire_fraction.any() and not scene.truth.smoke_tau.any()
    only_smoke = _scene(seed=2, fire=False, burn_scar=False)  # a plume drifting in from an unseen fire
    assert (only_smoke.labels[1] == 1).any() and not (only_smoke.labels[[0, 2]] == 1).any()


def test_switching_one_option_leaves_the_rest_of_the_scene() -> None:
    a, b = _scene(seed=5), _scene(seed=5, smoke=False)
    assert np.array_equal(a.labels[[0, 2]], b.labels[[0, 2]])
    assert np.array_equal(a.truth.cover, b.truth.cover) and np.array_equal(a.truth.cloud_tau, b.truth.cloud_tau)


def test_bad_arguments_raise_typed_errors() -> None:
    with pytest.raises(BandResolutionError, match="landsat8, landsat9, sentinel2, hls"):
        simulate_scene("modis", 64, 64)
    with pytest.raises(ConfigError, match=r"32\.\.16384"):
        simulate_scene("landsat8", 8, 64)
    with pytest.raises(ConfigError, match="none, few, some, many"):
        simulate_scene("landsat8", 64, 64, clouds="overcast")
    with pytest.raises(ConfigError, match="forest"):
        simulate_scene("landsat8", 64, 64, landscape="tundra")
    assert cloud_fraction("some") == 0.15 and cloud_fraction("0.3") == 0.3


# ----------------------------------------------------------------------------------------- nodata, files


def test_swath_edge_nodata_in_raw_labels_and_physical() -> None:
    scene = _scene("landsat8", seed=1, swath_edge=True)
    invalid = ~scene.valid
    assert 0.05 < invalid.mean() < 0.5
    assert (scene.raw[:, invalid] == 0).all() and (scene.raw[:, scene.valid] != 0).all()
    assert (scene.labels[:, invalid] == 255).all() and (scene.labels[:, scene.valid] != 255).all()
    assert (scene.physical[:, invalid] == 0).all()
    hls = _scene("hls", seed=1, swath_edge=True)
    assert (hls.raw[:, ~hls.valid] == -9999).all() and (hls.raw[:, hls.valid] != -9999).all()


@pytest.mark.parametrize("sensor", SENSORS)
def test_written_scene_resolves_without_sensor_and_round_trips(sensor: str, tmp_path: Path) -> None:
    scene = _scene(sensor, size=64, seed=4, swath_edge=True)
    out, lab = write_scene(scene, tmp_path / "sim.tif")
    assert lab == tmp_path / "sim.labels.tif"
    info = open_scene(out)
    bandmap = resolve_bands(info.descriptions, info.count, tags=info.tags)  # no --sensor
    assert bandmap.sensor == PRESETS[sensor]
    assert tuple(bandmap.sources) == scene.bands
    with rasterio.open(out) as src:
        raw = src.read()
        assert src.crs == scene.grid.crs and src.transform == scene.grid.transform
        data, valid = read_window(src, rasterio.windows.Window(0, 0, 64, 64), list(bandmap.sources.values()),
                                  zero_is_nodata=get_sensor(bandmap.sensor).zero_is_nodata)
    physical = to_physical(raw, list(bandmap.sources.values()))
    np.testing.assert_allclose(physical[:, scene.valid], scene.physical[:, scene.valid], rtol=0, atol=1e-4)
    assert np.array_equal(valid, scene.valid)
    np.testing.assert_allclose(data, scene.physical, atol=1e-4)
    with rasterio.open(lab) as src:
        assert src.count == 3 and src.dtypes[0] == "uint8" and src.nodata == 255
        assert src.descriptions == ("fire", "smoke", "burn_scar")
        assert np.array_equal(src.read(), scene.labels)


@pytest.mark.parametrize("sensor", SENSORS)
def test_encoding_error_is_within_half_a_quantization_step(sensor: str) -> None:
    spec = SENSOR_SPECS[sensor]
    rng = np.random.default_rng(0)
    physical = np.stack([rng.uniform(250, 340, (32, 32)) if b.startswith("thermal") else rng.uniform(0, 1, (32, 32))
                         for b in spec.bands]).astype(np.float32)
    valid = np.ones((32, 32), bool)
    back = decode(spec, encode(spec, physical, valid), valid)
    preset = get_sensor(spec.preset)
    for i, band in enumerate(spec.bands):
        enc = preset.encodings[band]
        if enc.planck is None:
            float32_ulps = 4 * np.spacing(np.float32(np.abs(physical[i]).max()))
            assert np.abs(back[i] - physical[i]).max() <= enc.scale / 2 + float32_ulps
        else:  # one DN of radiance is < 0.01 K near 300 K
            assert np.abs(back[i] - physical[i]).max() < 0.01


def test_write_scene_refuses_to_overwrite(tmp_path: Path) -> None:
    scene = _scene(size=48)
    labels_path(tmp_path / "a.tif").write_bytes(b"existing")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        write_scene(scene, tmp_path / "a.tif")
    assert not (tmp_path / "a.tif").exists()  # checked before writing anything
    write_scene(scene, tmp_path / "a.tif", overwrite=True)
    with rasterio.open(tmp_path / "a.labels.tif") as src:
        assert src.count == 3


# --------------------------------------------------------------------------------------------- physics


def _nbr(scene: SimulatedScene) -> np.ndarray:
    nir, swir2 = scene.band("nir"), scene.band("swir2")
    return (nir - swir2) / (nir + swir2 + 1e-6)


def test_nbr_lower_on_scars_than_on_vegetation() -> None:
    for seed in range(3):
        scene = _scene("sentinel2", seed=seed, smoke=False, clouds="none", fire=False)
        t = scene.truth
        vegetation = np.isin(t.cover, [0, 1, 2, 3, 5]) & ~t.burned & ~t.old_burned & (t.cloud_tau == 0)
        nbr = _nbr(scene)
        assert np.median(nbr[scene.labels[2] == 1]) < np.median(nbr[vegetation]) - 0.1


def test_smoke_raises_blue_much_more_than_swir2() -> None:
    smoky, clear = _scene(seed=5, clouds="none"), _scene(seed=5, clouds="none", smoke=False)
    plume = (smoky.labels[1] == 1) & (smoky.truth.fire_fraction == 0)
    d_blue = np.median((smoky.band("blue") - clear.band("blue"))[plume])
    d_swir2 = np.median((smoky.band("swir2") - clear.band("swir2"))[plume])
    assert d_blue > 0.04 and d_blue > 5 * abs(d_swir2)


def _landsat_bands(scene: SimulatedScene) -> dict[str, np.ndarray]:
    return {b: scene.band(b) for b in scene.bands}


def test_fire_pixels_pass_landsat_rules_and_confusers_do_not() -> None:
    """Schroeder et al. 2016 and Murphy et al. 2016 (firemap.rules) on simulated Landsat-8 L1 scenes."""
    counts = {k: [0, 0] for k in ("fire", "water", "cloud", "soil")}
    for seed in range(4):
        scene = _scene("landsat8", size=160, seed=seed, clouds="some")
        bands = _landsat_bands(scene)
        detected = schroeder2016(bands, scene.valid) | murphy2016(bands, scene.valid)
        t, fire = scene.truth, scene.labels[0] == 1
        unlit = t.fire_fraction == 0
        groups = {"fire": fire, "water": t.material("water") & unlit, "cloud": (t.cloud_tau > 4) & unlit,
                  "soil": (t.material("soil") | t.material("dark_soil") | t.material("rock")) & unlit}
        for name, mask in groups.items():
            counts[name][0] += int(mask.sum())
            counts[name][1] += int((detected & mask).sum())
    rates = {k: hit / max(n, 1) for k, (n, hit) in counts.items()}
    assert all(n > 50 for n, _ in counts.values()), counts
    assert rates["fire"] >= 0.8, rates
    assert rates["water"] < 0.01 and rates["cloud"] < 0.01 and rates["soil"] < 0.01, rates


def test_fire_saturates_swir_and_heats_thermal() -> None:
    scene = _scene("landsat8", size=160, seed=1, clouds="none")
    fire = scene.labels[0] == 1
    swir2 = scene.raw[scene.bands.index("swir2")]
    assert swir2.max() == 65535 and (swir2[fire] == 65535).any()
    sin_elevation = np.sin(np.radians(float(scene.tags["SUN_ELEVATION"])))
    assert scene.band("swir2")[fire].max() <= (2e-5 * 65535 - 0.1) / sin_elevation + 1e-5
    bt = scene.band("thermal")
    assert np.median(bt[fire]) > np.median(bt[~fire]) + 3.0
    assert scene.band("swir2")[fire].mean() > scene.band("swir1")[fire].mean() > scene.band("nir")[fire].mean()


def test_cloud_shadow_dims_the_sunlight_not_the_fire_emission(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cloud shadow takes away the direct sunlight a pixel reflects; a fire's own emission stays. The same
    scene rendered in full shadow (every pixel) loses no more SWIR2 on its fire pixels than on its fire-free
    ground, and its fire pixels still stand out from that ground as they do in the sun."""
    sun = _scene("landsat8", size=160, seed=1, clouds="none")
    monkeypatch.setattr(render, "shadow_of", lambda clouds, *_: np.zeros_like(clouds.tau))
    shade = _scene("landsat8", size=160, seed=1, clouds="none")
    assert (shade.labels == sun.labels).all()
    fire = sun.labels[0] == 1
    ground = ~ndimage.binary_dilation(sun.truth.fire_fraction > 0, iterations=3) & sun.valid
    s1, s0 = sun.band("swir2"), shade.band("swir2")
    assert fire.sum() > 20
    assert np.median(s0[ground]) < 0.2 * np.median(s1[ground])  # the shadow is deep in SWIR2 (sky light only)
    lost_fire, lost_ground = np.median((s1 - s0)[fire]), np.median((s1 - s0)[ground])
    assert lost_fire <= lost_ground + 0.01, (lost_fire, lost_ground)
    excess_sun = np.median(s1[fire]) - np.median(s1[ground])
    excess_shade = np.median(s0[fire]) - np.median(s0[ground])
    assert excess_shade >= 0.9 * excess_sun, (excess_shade, excess_sun)


def test_clouds_are_bright_and_cold() -> None:
    scene = _scene("landsat8", size=160, seed=2, clouds="many", fire=False, smoke=False)
    cloud, clear = scene.truth.cloud_tau > 10, scene.truth.cloud_tau == 0
    assert np.median(scene.band("blue")[cloud]) > 0.3 > np.median(scene.band("blue")[clear])
    assert np.median(scene.band("thermal")[cloud]) < np.median(scene.band("thermal")[clear]) - 5


def test_planck_and_two_stream_limits() -> None:
    # Wien's displacement law: the peak of B(lambda, 1000 K) lies at 2898/1000 um.
    lam = np.linspace(1.0, 6.0, 2001)
    assert abs(lam[np.argmax(planck_radiance(lam, 1000.0))] - 2.898) < 0.01
    assert band_planck(np.array([1000.0])).shape == (8, 1)
    r, t = two_stream_layer(np.array([0.0, 1e3]), 0.99995, 0.85)
    assert r[0] == pytest.approx(0.0, abs=1e-6) and t[0] == pytest.approx(1.0, abs=1e-6)
    assert r[1] > 0.95 and t[1] < 0.05  # thick conservative layer reflects nearly everything
    r, t = two_stream_layer(np.array([0.5]), 0.9, 0.7)
    assert r[0] + t[0] < 1.0  # absorbing layer loses energy


def test_fire_emission_strongest_in_swir2_and_nir_only_for_hot_large_fires() -> None:
    from firemap.simulate.spectra import emission_reflectance

    def added(p: float, t: float) -> np.ndarray:
        return emission_reflectance(p * band_planck(np.array([t])), cos_sun=0.8)[:, 0]

    small, big = added(0.01, 800.0), added(0.1, 1300.0)
    nir, swir1, swir2 = 4, 5, 6
    assert small[swir2] > small[swir1] > small[nir] and small[nir] < 1e-3 and small[swir2] > 0.2
    assert big[nir] > 0.1  # a hot, large fire shows in NIR too


def test_scar_spectra_grass_char_dark_everywhere_forest_swir2_above_nir() -> None:
    from firemap.simulate.events import burned_reflectance
    from firemap.simulate.spectra import MATERIAL_ID, SPECTRA

    soil = SPECTRA[MATERIAL_ID["soil"]][:, None]
    grass, conifer = SPECTRA[MATERIAL_ID["dry_grass"]][:, None], SPECTRA[MATERIAL_ID["conifer"]][:, None]
    fresh_grass = burned_reflectance(grass, soil, np.array([0.95]), np.array([1.0]), np.array([True]))
    assert (fresh_grass[2:7] < grass[2:7]).all()  # green..swir2 all darker: fresh savanna char
    forest = burned_reflectance(conifer, soil, np.array([0.8]), np.array([10.0]), np.array([False]))
    assert forest[6, 0] > forest[4, 0] and conifer[6, 0] < conifer[4, 0]  # SWIR2 above NIR after, not before
    old = burned_reflectance(conifer, soil, np.array([0.8]), np.array([3000.0]), np.array([False]))
    assert old[4, 0] > forest[4, 0] + 0.05  # regrowth brings NIR back


def test_fire_label_threshold_is_the_documented_radiance() -> None:
    scene = _scene(seed=6)
    radiance = Fires(scene.truth.fire_fraction, scene.truth.fire_temperature).swir2_radiance()
    visible = scene.truth.cloud_tau < 4
    assert np.array_equal(scene.labels[0] == 1, (radiance >= FIRE_LABEL_RADIANCE) & visible & scene.valid)


# --------------------------------------------------------------------------------------- realism (real data)


def _real_calfire() -> dict[int, np.ndarray]:
    """Real Sentinel-2 red/nir/swir2 reflectance by class (0 unburned, 1 burned), ``(3, n)`` each."""
    pooled: dict[int, list[np.ndarray]] = {0: [], 1: []}
    for path in sorted((CALFIRE / "images").glob("*.tif")):
        with rasterio.open(path) as src:
            raw, descriptions = src.read(), src.descriptions
        sources = resolve_bands(descriptions, raw.shape[0]).select(["red", "nir", "swir2"])
        phys = to_physical(raw[[s.index - 1 for s in sources]], sources)
        with rasterio.open(CALFIRE / "masks" / path.name) as src:
            mask = src.read(1)
        valid = (raw != 0).any(axis=0)
        for c in (0, 1):
            pooled[c].append(phys[:, valid & (mask == c)])
    return {c: np.concatenate(v, axis=1) for c, v in pooled.items()}


CALIFORNIA = ("forest", "mediterranean", "savanna", "agricultural", "arid")
"""The landscapes of the Californian crops (the others are for other biomes)."""


def _simulated_calfire(seeds: range) -> dict[int, np.ndarray]:
    pooled: dict[int, list[np.ndarray]] = {0: [], 1: []}
    for seed in seeds:
        scene = _scene("sentinel2", size=160, seed=seed, fire=False, smoke=False, clouds="none",
                       landscape=CALIFORNIA[seed % len(CALIFORNIA)])
        index = [scene.bands.index(b) for b in ("red", "nir", "swir2")]
        for c in (0, 1):
            pooled[c].append(scene.physical[index][:, scene.labels[2] == c])
    return {c: np.concatenate(v, axis=1) for c, v in pooled.items()}


@pytest.mark.skipif(not CALFIRE.is_dir(), reason="shared/data/s2_calfire not present")
def test_burned_and_unburned_reflectance_overlap_real_sentinel2_crops() -> None:
    real, sim = _real_calfire(), _simulated_calfire(range(8))
    for c, band in itertools.product((0, 1), range(3)):
        r10, rmed, r90 = np.percentile(real[c][band], [10, 50, 90])
        s10, smed, s90 = np.percentile(sim[c][band], [10, 50, 90])
        where = (f"class {c} band {('red', 'nir', 'swir2')[band]}: real {r10:.3f}/{rmed:.3f}/{r90:.3f} "
                 f"sim {s10:.3f}/{smed:.3f}/{s90:.3f}")
        assert r10 <= smed <= r90, where
        assert s10 - 0.01 <= rmed <= s90 + 0.01, where
    # and the burned/unburned contrast has the real sign: NIR drops on scars
    assert np.median(sim[1][1]) < np.median(sim[0][1]) and np.median(real[1][1]) < np.median(real[0][1])


# ----------------------------------------------------------------------------------------------- tiles, CLI


def test_tile_stream_is_seeded_and_per_worker() -> None:
    def take(**kwargs: object) -> list[tuple[np.ndarray, np.ndarray]]:
        return list(itertools.islice(iter_tiles("landsat8", 64, seed=3, bands=("swir2", "nir", "red"),  # type: ignore[arg-type]
                                                crops_per_scene=2, **kwargs), 3))

    first, again, other = take(worker=(0, 2)), take(worker=(0, 2)), take(worker=(1, 2))
    image, labels = first[0]
    assert image.shape == (3, 64, 64) and image.dtype == np.float32
    assert labels.shape == (3, 64, 64) and labels.dtype == np.uint8
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0][0], other[0][0])
    with pytest.raises(ConfigError, match="thermal"):
        next(iter_tiles("sentinel2", 64, bands=("red", "thermal")))


def test_simulated_tiles_dataset_yields_tensors() -> None:
    import torch

    from firemap.simulate import SimulatedTiles

    loader = torch.utils.data.DataLoader(SimulatedTiles("sentinel2", 32, seed=1, scene_size=64), batch_size=2)
    images, labels = next(iter(loader))
    assert images.shape == (2, 7, 32, 32) and labels.shape == (2, 3, 32, 32) and labels.dtype == torch.uint8


def test_cli_simulate_writes_scene_and_labels(tmp_path: Path) -> None:
    out = tmp_path / "s2.tif"
    args = ["simulate", str(out), "--sensor", "sentinel2", "--width", "64", "--height", "48", "--seed", "2",
            "--no-smoke", "--clouds", "none"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert str(out) in result.output and str(labels_path(out)) in result.output
    with rasterio.open(out) as src:
        assert (src.width, src.height, src.count, src.dtypes[0]) == (64, 48, 7, "uint16")
    with rasterio.open(labels_path(out)) as src:
        labels = src.read()
    assert labels[0].any() and not labels[1].any() and labels[2].any()
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "--overwrite" in again.output
    bad = runner.invoke(app, ["simulate", str(tmp_path / "x.tif"), "--clouds", "lots"])
    assert bad.exit_code == 1 and "lots" in bad.output


def test_predict_reads_simulated_scenes_like_real_ones(tmp_path: Path, threshold_bundle: object) -> None:
    """The predict path (band guessing, L1 scaling, zero-fill nodata) on a written scene, with the conftest
    ThresholdNet (fire where swir2 > 0.5 reflectance)."""
    from firemap.config import PredictConfig
    from firemap.predict import predict_scene

    scene = _scene("landsat8", size=96, seed=1, swath_edge=True, clouds="none")
    out, _ = write_scene(scene, tmp_path / "sim.tif")
    result = predict_scene(out, tmp_path / "pred", threshold_bundle, PredictConfig())  # type: ignore[arg-type]
    with rasterio.open(result.outputs["classes"]) as src:
        classes = src.read(1)
    assert np.array_equal(classes == 255, ~scene.valid)
    fire = scene.labels[0] == 1
    hot = scene.band("swir2") > 0.5
    assert (hot & fire).sum() >= 5
    assert ((classes == 1) == hot)[scene.valid].mean() > 0.99  # swir2 read back as reflectance, on its pixel


# ------------------------------------------------------------------------ fronts, scar ages, landscapes, memory


@pytest.mark.parametrize("landscape", ["savanna", "mediterranean"])
def test_fire_fronts_are_continuous_lines_on_the_downwind_side(landscape: str) -> None:
    """Pooled over 4 scenes: >= 75% of the flaming labelled pixels lie in 8-connected lines of >= 30 px (dots
    and short dashes would not), the longest spans >= 60 px, and fronts burn downwind of their scar."""
    from scipy import ndimage

    in_lines, total, longest = 0, 0, 0
    for seed in range(4):
        scene = _scene("sentinel2", size=256, seed=seed, landscape=landscape, clouds="none", smoke=False)
        flaming = (scene.labels[0] == 1) & (scene.truth.fire_temperature >= 800)
        parts, _ = ndimage.label(flaming, np.ones((3, 3)))
        sizes = np.bincount(parts.ravel())[1:]
        in_lines, total = in_lines + int(sizes[sizes >= 30].sum()), total + int(flaming.sum())
        for index in np.flatnonzero(sizes >= 30):
            ys, xs = np.nonzero(parts == index + 1)
            longest = max(longest, int(max(np.ptp(ys), np.ptp(xs))))
        wind = np.radians(float(scene.tags["WIND_TOWARDS_DEG"]))
        rows, cols = np.indices(flaming.shape)
        downwind = -rows * np.cos(wind) + cols * np.sin(wind)
        assert downwind[flaming].mean() > downwind[scene.labels[2] == 1].mean()  # the head burns downwind
    assert total > 200 and in_lines / total >= 0.75, (in_lines, total)
    assert longest >= 60


def test_flaming_zone_has_sub_pixel_fractions_and_smouldering_behind() -> None:
    scene = _scene("sentinel2", size=256, seed=0, landscape="savanna", clouds="none", smoke=False)
    t = scene.truth
    flaming, smouldering = t.fire_temperature >= 800, (t.fire_temperature > 0) & (t.fire_temperature < 800)
    assert flaming.sum() > 100 and smouldering.sum() > 0
    p = t.fire_fraction[flaming]
    assert p.min() > 1e-4 and p.max() <= 0.2 and np.percentile(p, 90) / np.percentile(p, 10) > 3


def _fresh_char(scene: SimulatedScene) -> np.ndarray:
    t = scene.truth
    return t.burned & (t.age_days <= 16) & (t.fire_fraction == 0) & (t.smoke_tau < 0.1) & (t.cloud_tau == 0)


def test_fresh_char_is_dark_in_every_band_with_nbr_near_zero_like_corumba() -> None:
    """Real Corumba 2019-08-25 fresh char (scripts/sim_vs_real.py): TOA nir 0.105 (0.09-0.12), swir2 0.093
    (0.08-0.11), NBR 0.06 (0.01-0.10); the simulated wetland fire's fresh char must fall in those bands."""
    scenes = [_scene("landsat8", size=256, seed=seed, landscape="wetland", clouds="none", smoke=False)
              for seed in range(3)]
    chars = [_fresh_char(scene) for scene in scenes]
    assert sum(int(c.sum()) for c in chars) > 2000

    def pooled(values: list[np.ndarray]) -> float:
        return float(np.median(np.concatenate([v[c] for v, c in zip(values, chars, strict=True)])))

    nir, swir2 = pooled([s.band("nir") for s in scenes]), pooled([s.band("swir2") for s in scenes])
    assert 0.085 <= nir <= 0.13 and 0.075 <= swir2 <= 0.12, (nir, swir2)
    assert 0.0 <= pooled([_nbr(s) for s in scenes]) <= 0.15
    for band in ("green", "red", "nir", "swir1", "swir2"):
        assert pooled([s.band(band) for s in scenes]) < 0.14, band


REAL_SCENES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real_scenes"


def _read_reflectance(path: Path) -> dict[str, np.ndarray]:
    with rasterio.open(path) as src:
        raw = src.read().astype(np.float32)
        names = [src.tags(i + 1).get("STANDARD_NAME") for i in range(src.count)]
        scale, offset = np.array(src.scales)[:, None, None], np.array(src.offsets)[:, None, None]
    return dict(zip(names, raw * scale + offset, strict=True)) | {"valid": (raw != 0).all(axis=0)}


@pytest.mark.skipif(not (REAL_SCENES / "landsat8_corumba_2019").is_dir(), reason="shared real scenes not present")
def test_simulated_fresh_char_inside_the_real_corumba_char_distribution() -> None:
    """Real char: dNBR (2019-08-09 -> 08-25) > 0.27 and NBR < 0.2 on 08-25, not burnt before (NBR < 0.1 on 08-09)."""
    folder = REAL_SCENES / "landsat8_corumba_2019"
    post = _read_reflectance(next(folder.glob("*20190825*.tif")))
    pre = _read_reflectance(next(folder.glob("*20190809*.tif")))

    def nbr(x: dict[str, np.ndarray]) -> np.ndarray:
        return (x["nir"] - x["swir2"]) / (x["nir"] + x["swir2"] + 1e-6)

    char = (nbr(pre) - nbr(post) > 0.27) & (nbr(post) < 0.2) & (nbr(pre) >= 0.1) & post["valid"] & pre["valid"]
    scenes = [_scene("landsat8", size=256, seed=seed, landscape="wetland", clouds="none", smoke=False)
              for seed in range(3)]
    for band in ("nir", "swir1", "swir2"):
        low, high = np.percentile(post[band][char], [10, 90])
        sim = np.median(np.concatenate([s.band(band)[_fresh_char(s)] for s in scenes]))
        assert low - 0.01 <= sim <= high + 0.01, (band, low, sim, high)


def test_scar_ages_fresh_black_white_ash_brown_and_regrowth() -> None:
    from firemap.simulate.events import burned_reflectance
    from firemap.simulate.spectra import MATERIAL_ID, SPECTRA

    grass, soil = SPECTRA[MATERIAL_ID["grass"]][:, None], SPECTRA[MATERIAL_ID["soil"]][:, None]
    shrub = SPECTRA[MATERIAL_ID["shrub"]][:, None]

    def nbr(r: np.ndarray) -> float:
        return float((r[4, 0] - r[6, 0]) / (r[4, 0] + r[6, 0]))

    one, yes, no = np.array([0.95]), np.array([True]), np.array([False])
    fresh = burned_reflectance(grass, soil, one, np.array([2.0]), yes, black=0.95)
    assert (fresh[1:7, 0] < 0.13).all() and -0.1 <= nbr(fresh) <= 0.2  # black char: dark everywhere
    ash = burned_reflectance(shrub, soil, one, np.array([2.0]), no, black=0.2, ash=0.6)
    assert (ash[1:4, 0] > shrub[1:4, 0] + 0.05).all()  # white ash: brighter than the vegetation in the visible
    brown = burned_reflectance(shrub, soil, np.array([0.8]), np.array([60.0]), no)
    assert nbr(brown) < -0.05  # older brown scar: NBR negative
    regrown = burned_reflectance(shrub, soil, np.array([0.8]), np.array([400.0]), no)
    assert regrown[4, 0] > brown[4, 0] + 0.03 and nbr(regrown) > nbr(brown) + 0.1


LANDSCAPE_CHECKS = {  # material: (band, low, high) of the median surface reflectance (Sentinel-2 L2A, clear sky)
    "tropical_savanna": {"laterite": ("red", 0.1, 0.3)},
    "wetland": {"wet_grass": ("nir", 0.18, 0.4), "water": ("nir", 0.0, 0.03)},
    "laterite": {"tailings": ("swir1", 0.2, 0.8), "laterite": ("swir2", 0.15, 0.35)},
    "desert": {"sand": ("swir2", 0.35, 0.6), "salt": ("blue", 0.35, 0.7), "reg": ("swir2", 0.2, 0.4)},
    "volcanic": {"basalt": ("nir", 0.02, 0.1), "tephra": ("swir2", 0.03, 0.12)},
    "coastal_city": {"roof": ("blue", 0.2, 0.45), "beach": ("swir2", 0.18, 0.5), "water": ("red", 0.0, 0.04)},
}


@pytest.mark.parametrize("landscape", sorted(LANDSCAPE_CHECKS))
def test_landscape_spectra_within_their_ranges_and_randomised_per_scene(landscape: str) -> None:
    medians = []
    for seed in (0, 1):
        scene = _scene("sentinel2", size=192, seed=seed, landscape=landscape, clouds="none", fire=False, smoke=False,
                       burn_scar=False, haze=False)
        assert scene.tags["LANDSCAPE"] == landscape
        seen = {}
        for material, (band, low, high) in LANDSCAPE_CHECKS[landscape].items():
            where = scene.truth.material(material)
            assert where.sum() >= 10, (landscape, material, seed)
            seen[material] = float(np.median(scene.band(band)[where]))
            assert low <= seen[material] <= high, (landscape, material, band, seen[material])
        medians.append(seen)
    assert medians[0] != medians[1]  # spectra are drawn per scene


def test_tailings_like_brumadinho_mud_and_brighter_when_dry() -> None:
    """Real Brumadinho L2SP mud (swir2 > 0.2, not cloud): swir2 median 0.22, 10-90% 0.20-0.28; dry tailings
    (scaled up to 1.8x per scene) reach ~0.5-0.7."""
    medians, tops = [], []
    for seed in range(6):
        scene = _scene("hls", size=160, seed=seed, landscape="laterite", clouds="none", fire=False, smoke=False,
                       burn_scar=False, haze=False)
        swir2 = scene.band("swir2")[scene.truth.material("tailings")]
        medians.append(np.median(swir2))
        tops.append(np.percentile(swir2, 99))
    assert 0.18 <= np.median(medians) <= 0.45 and min(medians) >= 0.15
    assert 0.45 <= max(tops) <= 0.85


@pytest.mark.parametrize(("landscape", "code"), [("volcanic", 1), ("coastal_city", 2)])
def test_lava_and_industrial_hot_spots_are_rendered_but_not_labelled_fire(landscape: str, code: int) -> None:
    for seed in range(6):
        scene = _scene("landsat8", size=256, seed=seed, landscape=landscape, clouds="none", fire=False, smoke=False,
                       burn_scar=False)
        hot = scene.truth.hotspot_fraction > 0
        if hot.any():
            break
    assert hot.any(), "no hot spot in 6 seeds"
    near = ndimage.binary_dilation(hot, np.ones((3, 3), bool))
    assert (scene.labels[0][near] == 255).all()  # fire: not labelled (neither fire nor "no fire")
    assert (scene.labels[0][~near] == 0).all()  # no wildfire in this scene
    assert (scene.labels[2][hot] != 255).all()  # burn scar still labelled there
    swir2 = scene.band("swir2")
    assert swir2[hot].max() > 0.3 and swir2[hot].max() > np.percentile(swir2[~hot], 99.9)
    cold = _scene("landsat8", size=256, seed=seed, landscape=landscape, clouds="none", fire=False, smoke=False,
                  burn_scar=False, hotspots=False)
    assert not cold.truth.hotspot_fraction.any() and np.array_equal(cold.truth.cover, scene.truth.cover)
    del code


def test_smoke_is_emitted_at_the_front_and_drifts_downwind() -> None:
    scene = _scene("landsat8", size=256, seed=4, landscape="savanna", clouds="none")
    t = scene.truth
    wind = np.radians(float(scene.tags["WIND_TOWARDS_DEG"]))
    rows, cols = np.indices(t.smoke_tau.shape)
    downwind = -rows * np.cos(wind) + cols * np.sin(wind)
    fire = scene.labels[0] == 1
    plume = t.smoke_tau >= 0.3
    assert plume.sum() > 200
    assert np.average(downwind, weights=t.smoke_tau) > downwind[fire].mean()
    assert np.median(t.smoke_tau[fire]) < np.percentile(t.smoke_tau, 99)  # thin over the front, thick downwind
    texture = t.smoke_tau[plume] / np.median(t.smoke_tau[plume])
    assert 0.15 < texture.std() < 2.0  # turbulent, not a smooth band


def test_memory_is_checked_up_front_with_the_size_that_fits(monkeypatch: pytest.MonkeyPatch) -> None:
    import firemap.simulate as sim

    with pytest.raises(ConfigError, match=r"8192 x 8192 .* GB .*--size \d+"):
        sim.check_memory(8192, 8192, available=int(23e9))
    sim.check_memory(1024, 1024, available=int(23e9))
    assert sim.estimate_memory(8192, 8192) > 23e9 > sim.estimate_memory(4096, 4096)
    monkeypatch.setattr(sim, "available_memory", lambda: int(0.2e9))
    with pytest.raises(ConfigError, match="GB"):
        simulate_scene("landsat8", 64, 64)
    result = runner.invoke(app, ["simulate", "/nonexistent/x.tif", "--size", "64"])
    assert result.exit_code == 1 and "GB" in result.output and len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("landscape", ["wetland", "volcanic", "coastal_city", "desert"])
def test_new_landscapes_reproducible_by_seed(landscape: str) -> None:
    a, b = (_scene("landsat8", size=96, seed=9, landscape=landscape) for _ in range(2))
    assert np.array_equal(a.raw, b.raw) and np.array_equal(a.labels, b.labels)
    c = _scene("landsat8", size=96, seed=10, landscape=landscape)
    assert not np.array_equal(a.raw, c.raw)
