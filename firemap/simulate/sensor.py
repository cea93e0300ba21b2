"""What each simulated sensor records: its bands, grid, radiometric noise, saturation and file encoding.

The encodings are those of :mod:`firemap.bands` (the same objects readers use), so a written scene decodes
back to the simulated physical values within one quantization step:

* Landsat-8/9 Collection-2 L1: uint16 DN, TOA reflectance ``2e-5 DN - 0.1``; thermal radiance
  ``ML DN + AL`` and brightness temperature ``K2 / ln(K1/L + 1)``; 0 = fill outside the swath; DN 65535 is
  saturation (TOA reflectance 1.21).
* Sentinel-2 L2A: uint16 surface reflectance x 10000, 0 = nodata.
* HLS v2 L30: int16 surface reflectance x 10000, thermal brightness temperature in 0.01 degC, -9999 = nodata.

Noise: ``sigma(rho) = sqrt(sigma0^2 + k rho)`` per band (read noise + photon noise). sigma0 gives OLI's
noise-equivalent reflectance of ~3-8e-4 (Morfitt et al. 2015, Remote Sensing 7:2208) and MSI's ~1-2e-3
(Gascon et al. 2017, Remote Sensing 9:584); TIRS NEdT ~0.05 K at 300 K (Montanaro et al. 2014, Remote
Sensing 6:11753). Saturation: OLI saturates at the top of its 16-bit L1 range; for MSI we assume saturation at
reflectance 1.6 (an approximation: MSI's SWIR Lmax is of that order for a high sun; intense fires saturate B12).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from firemap.bands import band_encoding, get_sensor
from firemap.errors import BandResolutionError

_ALL = ("coastal", "blue", "green", "red", "nir", "swir1", "swir2", "cirrus", "thermal", "thermal2")


@dataclass(frozen=True)
class SensorSpec:
    """A simulated sensor product.

    Attributes:
        name: simulator name (``landsat8``, ``landsat9``, ``sentinel2``, ``hls``).
        preset: the :data:`firemap.bands.SENSORS` preset its files resolve to.
        bands: canonical bands written, in file order.
        descriptions: band descriptions written (resolved by :func:`firemap.bands.resolve_bands` alone).
        pixel_m: pixel size, metres.
        dtype: file data type.
        nodata: file nodata value.
        toa: reflectance is top-of-atmosphere (L1: Rayleigh path radiance included), else surface.
        saturation: reflectance at which the reflective bands saturate.
        noise0: read-noise reflectance per reflective band (coastal..cirrus).
        nedt: thermal noise-equivalent temperature difference, K.
        tags: dataset tags written with the scene.
    """

    name: str
    preset: str
    bands: tuple[str, ...]
    descriptions: tuple[str, ...]
    pixel_m: float
    dtype: str
    nodata: int
    toa: bool
    saturation: float
    noise0: tuple[float, ...]
    nedt: float = 0.05
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def thermal(self) -> bool:
        """The sensor has thermal bands."""
        return "thermal" in self.bands


_OLI_NOISE = (0.0008, 0.0007, 0.0006, 0.0005, 0.0005, 0.0004, 0.0004, 0.0003)
_MSI_NOISE = (0.002, 0.0015, 0.0012, 0.0012, 0.0012, 0.0015, 0.0015, 0.002)
_L1_DESC = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B9", "B10", "B11")

SENSOR_SPECS: dict[str, SensorSpec] = {
    "landsat8": SensorSpec("landsat8", "landsat8-l1", _ALL, _L1_DESC, 30.0, "uint16", 0, True, 2e-5 * 65535 - 0.1,
                           _OLI_NOISE, tags={"SPACECRAFT_ID": "LANDSAT_8", "PROCESSING_LEVEL": "L1TP"}),
    "landsat9": SensorSpec("landsat9", "landsat9-l1", _ALL, _L1_DESC, 30.0, "uint16", 0, True, 2e-5 * 65535 - 0.1,
                           _OLI_NOISE, tags={"SPACECRAFT_ID": "LANDSAT_9", "PROCESSING_LEVEL": "L1TP"}),
    "sentinel2": SensorSpec("sentinel2", "sentinel2-l2a", _ALL[:7], ("B01", "B02", "B03", "B04", "B08", "B11", "B12"),
                            20.0, "uint16", 0, False, 1.6, _MSI_NOISE, tags={"PRODUCT_TYPE": "S2MSI2A"}),
    "hls": SensorSpec("hls", "hls", _ALL, _ALL, 30.0, "int16", -9999, False, 1.3, _OLI_NOISE,
                      tags={"HLS_PRODUCT": "L30", "SENSOR": "OLI_TIRS"}),
}
"""Simulated sensors by name. Sentinel-2 is simulated on its 20 m grid (the SWIR bands' native resolution)."""

_PRESET_TO_NAME = {spec.preset: name for name, spec in SENSOR_SPECS.items()}


def sensor_spec(name: str) -> SensorSpec:
    """The :class:`SensorSpec` for a simulator name or a matching preset name (``landsat8-l1`` -> landsat8).

    Raises:
        BandResolutionError: unknown name; the message lists the valid ones.
    """
    key = name.strip().lower()
    key = _PRESET_TO_NAME.get(key, key)
    if key not in SENSOR_SPECS:
        raise BandResolutionError(
            f"unknown sensor {name!r} for simulation; choose one of: {', '.join(SENSOR_SPECS)}"
        )
    return SENSOR_SPECS[key]


def add_noise(rng: np.random.Generator, spec: SensorSpec, physical: np.ndarray, cos_sun: float = 1.0) -> np.ndarray:
    """Add sensor noise and saturation to ``(bands, rows, cols)`` physical values (``spec.bands`` order).

    Reflective bands: Gaussian noise ``sqrt(sigma0^2 + k rho)`` with ``k = 4 sigma0^2`` (photon noise doubles the
    variance at reflectance ~0.25), then clipped to ``[0, spec.saturation / cos_sun]``: detectors saturate at a
    radiance, i.e. at an un-normalized reflectance ``rho * cos(sun zenith)`` of ``spec.saturation`` (for OLI
    exactly the top of the 16-bit L1 range). Thermal: ``spec.nedt`` K.
    """
    out = np.empty_like(physical)
    for i, band in enumerate(spec.bands):
        noise = rng.standard_normal(physical.shape[1:], dtype=np.float32)
        if band.startswith("thermal"):
            out[i] = physical[i] + spec.nedt * noise
            continue
        s0 = spec.noise0[_ALL.index(band)]
        sigma = np.sqrt(s0 * s0 * (1.0 + 4.0 * np.maximum(physical[i], 0.0)))
        out[i] = np.clip(physical[i] + sigma * noise, 0.0, spec.saturation / cos_sun)
    return out


def encode(
    spec: SensorSpec, physical: np.ndarray, valid: np.ndarray, tags: Mapping[str, str] | None = None
) -> np.ndarray:
    """Physical values -> the sensor's raw file values, nodata where ``valid`` is False.

    Args:
        spec: the sensor.
        physical: ``(bands, rows, cols)`` float32 reflectance / brightness temperature (K).
        valid: ``(rows, cols)`` bool.
        tags: the scene's tags (Landsat L1 DN depend on ``SUN_ELEVATION``, see
            :func:`firemap.bands.band_encoding`).

    Returns:
        ``(bands, rows, cols)`` array of ``spec.dtype``; valid pixels never equal the nodata value.
    """
    preset = get_sensor(spec.preset)
    info = np.iinfo(spec.dtype)
    low = max(info.min, spec.nodata + 1) if spec.nodata <= 0 else info.min
    raw = np.empty(physical.shape, dtype=spec.dtype)
    for i, band in enumerate(spec.bands):
        values = np.rint(band_encoding(preset, band, tags).to_raw(physical[i]))
        raw[i] = np.clip(values, low, info.max).astype(spec.dtype)
    raw[:, ~valid] = spec.nodata
    return raw


def decode(
    spec: SensorSpec, raw: np.ndarray, valid: np.ndarray, tags: Mapping[str, str] | None = None
) -> np.ndarray:
    """Raw file values -> ``(bands, rows, cols)`` float32 physical values as a reader sees them (0 at nodata)."""
    preset = get_sensor(spec.preset)
    out = np.stack([band_encoding(preset, b, tags).to_physical(raw[i]) for i, b in enumerate(spec.bands)])
    out[:, ~valid] = 0.0
    return out.astype(np.float32)


def swath_mask(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Valid-data mask with a straight, tilted swath edge (Landsat WRS-2 scenes are rotated ~8-14 deg, so
    the fill outside the swath forms wedges): 10-35% of the scene falls outside. ``(rows, cols)`` bool."""
    rows, cols = np.indices(shape, dtype=np.float32)
    angle = np.radians(rng.uniform(8.0, 14.0))
    side = rng.choice([-1.0, 1.0])
    x = side * (cols - shape[1] / 2) + np.tan(angle) * (rows - shape[0] / 2)
    cut = np.quantile(x, 1.0 - rng.uniform(0.1, 0.35))
    return x < cut
