"""Sensors, canonical band names, and the resolution of a file's bands to them.

Every array that leaves this module is in physical units: reflectance (unitless, ~0..1) for the reflective
bands, brightness temperature in kelvin for the thermal bands. A scene's bands are matched to canonical
names in this order:

1. ``--bands`` spec entries (explicit, always win);
2. band descriptions (``B4``, ``B04``, ``B8A``, ``SR_B5``, ``ST_B10``, ``TCI_R``, ``red``, ...), read with the
   sensor preset's naming (``B5`` is nir on Landsat but red-edge on Sentinel-2);
3. the preset's usual stacking by band position, when the file has no usable descriptions.

Without ``--sensor``, the preset is guessed from the descriptions (``TCI_*``/``B8A``/``B12`` -> Sentinel-2,
``SR_B*`` -> Landsat L2, ``B10`` without ``B12`` -> Landsat L1) or from a Landsat product ID in the tags.

The scaling of each band (raw -> physical) has one precedence, shown by ``firemap info``:

1. ``--bands`` ``CANON=SRC:SCALE[:OFFSET]`` (explicit);
2. the file's own metadata: GDAL per-band scale/offset (as written by providers, STAC ``raster:bands`` or an MTL
   via :mod:`firemap.sources`), taken as the complete conversion (Landsat L1 reflectance: including the sun
   elevation); a scale of 1 with offset 0 is GDAL's "unset";
3. the sensor preset (plus the Sentinel-2 radiometric offset and Landsat L1 sun elevation from the tags).

Thermal bands with a Planck conversion (Landsat L1) keep it: the file's scale/offset then give radiance, and K1/K2
come from the tags (``K1_CONSTANT_BAND_10``, as in the MTL) or the preset.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from firemap.errors import BandResolutionError, MissingBandsError

log = logging.getLogger(__name__)

CANONICAL_BANDS: tuple[str, ...] = (
    "coastal",
    "blue",
    "green",
    "red",
    "nir",
    "swir1",
    "swir2",
    "cirrus",
    "thermal",
    "thermal2",
)
"""Canonical band names. Reflective bands are reflectance; ``thermal``/``thermal2`` are brightness temperature (K)."""

THERMAL_BANDS: frozenset[str] = frozenset({"thermal", "thermal2"})
MIN_REFLECTANCE = -0.05
"""Reflectance below this is not a measurement but a failed atmospheric correction (surface reflectance products
over dark water and cloud shadow: the real Landsat L2 Momotombo scene has blue -0.19, nir -0.05 there). Pixels with
a reflective band below it are nodata everywhere firemap reads (predict, label, training, evaluation): networks and
rules alike see a fire's SWIR-over-NIR ratio in them (measured: single-pixel fire polygons over the sea). Noise
around 0 over ordinary dark targets (a few hundredths) stays valid."""

# Approximate band centres in micrometres (Landsat-8 OLI/TIRS; Sentinel-2 within a few %), used by the
# simulator and for documentation.
BAND_WAVELENGTH_UM: dict[str, float] = {
    "coastal": 0.443,
    "blue": 0.482,
    "green": 0.561,
    "red": 0.655,
    "nir": 0.865,
    "swir1": 1.609,
    "swir2": 2.201,
    "cirrus": 1.373,
    "thermal": 10.9,
    "thermal2": 12.0,
}


@dataclass(frozen=True)
class Encoding:
    """How a sensor stores one band: ``physical = raw * scale + offset``.

    For thermal bands with ``planck`` set, ``raw * scale + offset`` is radiance (W m-2 sr-1 um-1) and the
    physical value is the brightness temperature ``K2 / ln(K1 / L + 1)`` in kelvin (Landsat Collection-2 L1).
    """

    scale: float = 1.0
    offset: float = 0.0
    planck: tuple[float, float] | None = None

    def to_physical(self, raw: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Convert raw values (any shape, any numeric dtype) to float32 physical values (into ``out`` if given)."""
        value = np.multiply(raw, np.float32(self.scale), out=out, dtype=np.float32, casting="unsafe")
        if self.offset:
            value += np.float32(self.offset)
        if self.planck is not None:
            k1, k2 = self.planck
            with np.errstate(divide="ignore", invalid="ignore"):
                bt = np.float32(k2) / np.log(np.float32(k1) / np.maximum(value, 1e-6) + 1.0)
            if out is None:
                return bt.astype(np.float32, copy=False)
            out[...] = bt
        return value

    def to_raw(self, physical: np.ndarray) -> np.ndarray:
        """Invert :meth:`to_physical` (float64 out; the caller rounds and clips to its dtype)."""
        value = np.asarray(physical, dtype=np.float64)
        if self.planck is not None:
            k1, k2 = self.planck
            value = k1 / (np.exp(k2 / value) - 1.0)
        return (value - self.offset) / self.scale


@dataclass(frozen=True)
class SensorPreset:
    """A sensor product: its band naming, usual stacking, encoding and grid.

    Attributes:
        name: preset name used by ``--sensor``.
        family: ``landsat``, ``sentinel2`` or ``hls``.
        aliases: upper-case band description -> canonical band.
        stacks: band count -> canonical name per 1-based position (None = a band firemap does not use).
        encodings: canonical band -> encoding of this product.
        resolution_m: native pixel size of the reflective bands, metres.
        zero_is_nodata: the product fills outside the swath with 0 (Landsat L1/L2, Sentinel-2).
        saturation_raw: raw value at which the sensor saturates, if any.
    """

    name: str
    family: str
    aliases: Mapping[str, str]
    stacks: Mapping[int, tuple[str | None, ...]]
    encodings: Mapping[str, Encoding]
    resolution_m: float
    zero_is_nodata: bool = True
    saturation_raw: float | None = None
    description: str = ""

    def stack_for(self, count: int) -> tuple[str | None, ...] | None:
        """The assumed canonical band per position for a file of ``count`` bands, or None."""
        return self.stacks.get(count)


def _numbered(prefix: str, mapping: Mapping[int, str], pad: bool = True) -> dict[str, str]:
    out = {}
    for number, canonical in mapping.items():
        out[f"{prefix}{number}"] = canonical
        if pad:
            out[f"{prefix}{number:02d}"] = canonical
    return out


_CANONICAL_ALIASES = {name.upper(): name for name in CANONICAL_BANDS} | {
    "SWIR16": "swir1",
    "SWIR22": "swir2",
    "NIR08": "nir",
    "LWIR11": "thermal",
    "LWIR12": "thermal2",
}
_LANDSAT_NUM = {
    1: "coastal",
    2: "blue",
    3: "green",
    4: "red",
    5: "nir",
    6: "swir1",
    7: "swir2",
    9: "cirrus",
    10: "thermal",
    11: "thermal2",
}
_S2_NUM = {1: "coastal", 2: "blue", 3: "green", 4: "red", 8: "nir", 10: "cirrus", 11: "swir1", 12: "swir2"}
_TCI = {"TCI_R": "red", "TCI_G": "green", "TCI_B": "blue"}
# Sentinel-2 TCI is an 8-bit visual product. Measured on a real pair: TCI_R = 0.098 * B4_DN + 3.9 (r = 0.99),
# so reflectance = (TCI - 3.9) / 980; it saturates near 0.255.
TCI_ENCODING = Encoding(scale=1.0 / 980.0, offset=-3.9 / 980.0)

# Landsat Collection-2: L1 TOA reflectance = 2e-5 DN - 0.1; L2 SR = 2.75e-5 DN - 0.2; L2 ST = 0.00341802 DN + 149 K.
# L1 thermal radiance = 3.342e-4 DN + 0.1 with K1/K2 from the Landsat-8 and -9 MTL files.
_L1_REFL = Encoding(2e-5, -0.1)
_L2_REFL = Encoding(2.75e-5, -0.2)
_L2_ST = Encoding(0.00341802, 149.0)
_L8_TIRS = {
    "thermal": Encoding(3.342e-4, 0.1, (774.8853, 1321.0789)),
    "thermal2": Encoding(3.342e-4, 0.1, (480.8883, 1201.1442)),
}
_L9_TIRS = {
    "thermal": Encoding(3.8e-4, 0.1, (799.0284, 1329.2405)),
    "thermal2": Encoding(3.49e-4, 0.1, (475.6581, 1198.3494)),
}
_REFLECTIVE = tuple(b for b in CANONICAL_BANDS if b not in THERMAL_BANDS)

_L1_STACKS: dict[int, tuple[str | None, ...]] = {
    7: ("coastal", "blue", "green", "red", "nir", "swir1", "swir2"),
    10: ("coastal", "blue", "green", "red", "nir", "swir1", "swir2", "cirrus", "thermal", "thermal2"),
    11: ("coastal", "blue", "green", "red", "nir", "swir1", "swir2", None, "cirrus", "thermal", "thermal2"),
}
_L2_STACKS: dict[int, tuple[str | None, ...]] = {
    7: _L1_STACKS[7],
    8: (*_L1_STACKS[7], "thermal"),
}
_S2_L1C_ORDER = ("coastal", "blue", "green", "red", None, None, None, "nir", None, None, "cirrus", "swir1", "swir2")
_S2_STACKS: dict[int, tuple[str | None, ...]] = {
    13: _S2_L1C_ORDER,  # B01..B08, B8A, B09, B10, B11, B12
    12: ("coastal", "blue", "green", "red", None, None, None, "nir", None, None, "swir1", "swir2"),  # L2A: no B10
    10: ("blue", "green", "red", None, None, None, "nir", None, "swir1", "swir2"),  # 10+20 m bands
    4: ("blue", "green", "red", "nir"),
}


def _landsat(name: str, level: str, tirs: Mapping[str, Encoding]) -> SensorPreset:
    l1 = level == "l1"
    aliases = _CANONICAL_ALIASES | _numbered("B", _LANDSAT_NUM) | _numbered("SR_B", _LANDSAT_NUM, pad=False)
    aliases |= {"ST_B10": "thermal"}
    encodings = dict.fromkeys(_REFLECTIVE, _L1_REFL if l1 else _L2_REFL)
    encodings |= dict(tirs) if l1 else {"thermal": _L2_ST}
    scale = "TOA = 2e-5*DN - 0.1" if l1 else "SR = 2.75e-5*DN - 0.2, ST = 0.00341802*DN + 149 K"
    stacks = _L1_STACKS if l1 else _L2_STACKS
    return SensorPreset(
        name=name,
        family="landsat",
        aliases=aliases,
        stacks=stacks,
        encodings=encodings,
        resolution_m=30.0,
        saturation_raw=65535.0,
        description=f"Collection-2 {level.upper()} ({scale}); without descriptions assumes bands "
        + ("1-7 (7 bands), 1-7,9,10,11 (10 bands) or 1-11 (11 bands)" if l1 else "SR_B1-7 (+ST_B10)"),
    )


def _sentinel2(name: str, level: str) -> SensorPreset:
    aliases = _CANONICAL_ALIASES | _numbered("B", _S2_NUM) | _TCI | {"B8A": "nir"}
    encodings: dict[str, Encoding] = dict.fromkeys(_REFLECTIVE, Encoding(1e-4, 0.0))
    return SensorPreset(
        name=name,
        family="sentinel2",
        aliases=aliases,
        stacks=_S2_STACKS,
        encodings=encodings,
        resolution_m=10.0,
        saturation_raw=65535.0,
        description=f"{level.upper()} reflectance = DN/10000 (offset -1000 DN applied when the file's tags "
        "carry BOA_ADD_OFFSET/RADIO_ADD_OFFSET, baseline >= 04.00); TCI_R/G/B = (TCI-3.9)/980; without "
        "descriptions assumes B01..B12 in order (13 bands L1C, 12 bands L2A), 10 bands = B02-B08,B8A,B11,B12",
    )


def _hls() -> SensorPreset:
    s30 = _numbered("B", {1: "coastal", 2: "blue", 3: "green", 4: "red", 10: "cirrus", 11: "swir1", 12: "swir2"})
    # HLS harmonizes on the narrow NIR: B8A in S30 (B08 is unused), B05 in L30. B05/B06/B07 differ between
    # L30 (nir/swir1/swir2) and S30 (red-edge): descriptions alone cannot tell, so S30 names win only for
    # files carrying S30-only names (B8A, B11, B12).
    aliases = _CANONICAL_ALIASES | s30 | {"B8A": "nir"} | {"FMASK": ""}
    encodings = dict.fromkeys(_REFLECTIVE, Encoding(1e-4, 0.0))
    encodings |= {"thermal": Encoding(0.01, 273.15), "thermal2": Encoding(0.01, 273.15)}
    stacks: dict[int, tuple[str | None, ...]] = {
        10: _L1_STACKS[10],  # L30: B01-B07, B09, B10, B11
        13: ("coastal", "blue", "green", "red", None, None, None, None, "nir", None, "cirrus", "swir1", "swir2"),
        6: ("blue", "green", "red", "nir", "swir1", "swir2"),  # the common 6-band (Prithvi) stack
    }
    return SensorPreset(
        name="hls",
        family="hls",
        aliases=aliases,
        stacks=stacks,
        encodings=encodings,
        resolution_m=30.0,
        zero_is_nodata=False,
        description="HLS v2 reflectance x 0.0001, thermal 0.01 degC; without descriptions assumes L30 order "
        "B01-B07,B09,B10,B11 (10 bands), S30 B01-B12+B8A (13) or blue,green,red,nir,swir1,swir2 (6)",
    )


_HLS_L30_ALIASES = _numbered("B", {5: "nir", 6: "swir1", 7: "swir2", 9: "cirrus", 10: "thermal", 11: "thermal2"})

SENSORS: dict[str, SensorPreset] = {
    p.name: p
    for p in (
        _landsat("landsat8-l1", "l1", _L8_TIRS),
        _landsat("landsat9-l1", "l1", _L9_TIRS),
        _landsat("landsat8-l2", "l2", {}),
        _landsat("landsat9-l2", "l2", {}),
        _sentinel2("sentinel2-l1c", "l1c"),
        _sentinel2("sentinel2-l2a", "l2a"),
        _hls(),
    )
}
"""Sensor presets by ``--sensor`` name."""


SENSOR_ALIASES: dict[str, str] = {"landsat8": "landsat8-l1", "landsat9": "landsat9-l1", "sentinel2": "sentinel2-l2a"}
"""Short sensor names -> the preset they mean. They are the names ``firemap simulate`` and ``demo`` use (the
simulator writes Landsat L1 DN and Sentinel-2 L2A), so ``--sensor`` takes the same words everywhere."""


def get_sensor(name: str) -> SensorPreset:
    """Return the preset called ``name`` (or named by one of :data:`SENSOR_ALIASES`, e.g. ``sentinel2``).

    Raises:
        BandResolutionError: unknown name (the message lists the valid ones).
    """
    key = name.strip().lower()
    try:
        return SENSORS[SENSOR_ALIASES.get(key, key)]
    except KeyError:
        aliases = ", ".join(f"{a} = {p}" for a, p in SENSOR_ALIASES.items())
        raise BandResolutionError(f"unknown sensor {name!r}; choose one of: {', '.join(SENSORS)} (short names: "
                                  f"{aliases})") from None


@dataclass(frozen=True)
class BandSource:
    """Where a canonical band comes from in a file and how to turn it into physical units.

    Attributes:
        canonical: canonical band name.
        index: 1-based band index in the file.
        encoding: raw -> physical conversion.
        description: the file's description of that band, if any.
    """

    canonical: str
    index: int
    encoding: Encoding
    description: str | None = None
    scaling: str = "preset"
    """Where ``encoding`` came from: ``--bands``, ``file`` (GDAL scale/offset), ``preset`` or ``none``."""

    def label(self) -> str:
        """Human-readable ``band N 'DESC'`` for messages."""
        return f"band {self.index}" + (f" {self.description!r}" if self.description else "")


@dataclass(frozen=True)
class BandMap:
    """The result of band resolution for one file.

    Attributes:
        sources: canonical name -> source band, for every band that resolved.
        sensor: the preset used (given or guessed), or None.
        count: number of bands in the file.
        descriptions: the file's band descriptions (None where absent), by position.
    """

    sources: Mapping[str, BandSource]
    sensor: str | None
    count: int
    descriptions: tuple[str | None, ...] = field(default_factory=tuple)

    def offered(self) -> str:
        """What the file offers, for error messages: resolved bands, then unresolved ones."""
        parts = [f"{s.canonical}={s.label()}" for s in self.sources.values()]
        used = {s.index for s in self.sources.values()}
        free = [
            f"band {i + 1}" + (f" {d!r}" if d else "") for i, d in enumerate(self.descriptions) if i + 1 not in used
        ]
        if free:
            parts.append("unresolved: " + ", ".join(free))
        return "; ".join(parts) if parts else f"{self.count} unnamed bands"

    def select(self, required: Sequence[str], optional: Sequence[str] = ()) -> list[BandSource | None]:
        """Sources for ``required`` then ``optional`` bands, in that order (None for absent optional ones).

        Raises:
            MissingBandsError: a required band did not resolve; the message lists what the file offers.
        """
        missing = [b for b in required if b not in self.sources]
        if missing:
            raise MissingBandsError(
                f"scene lacks band(s) {', '.join(missing)} needed by the model; it offers {self.offered()}; "
                f"map them with --bands (e.g. --bands {missing[0]}=4) or pass the right --sensor"
            )
        return [self.sources[b] for b in required] + [self.sources.get(b) for b in optional]


def model_sources(
    bandmap: BandMap, bands: Sequence[str], optional: Sequence[str] = (), name: str = ""
) -> tuple[list[BandSource | None], bool]:
    """Sources for a model's ``bands`` in that order (None for absent ``optional`` ones), and whether the file's
    sensor fills outside its swath with 0 (so all-zero pixels are nodata).

    Raises:
        MissingBandsError: a band that is not optional is missing; ``name`` (the file) prefixes the message.
    """
    required = [b for b in bands if b not in optional]
    try:
        selected = bandmap.select(required, optional)
    except MissingBandsError as exc:
        raise MissingBandsError(f"{name}: {exc}" if name else str(exc)) from None
    by_name = dict(zip([*required, *optional], selected, strict=True))
    zero_fill = bool(bandmap.sensor and get_sensor(bandmap.sensor).zero_is_nodata)
    return [by_name[b] for b in bands], zero_fill


def guess_sensor(descriptions: Sequence[str | None], tags: Mapping[str, str] | None = None) -> str | None:
    """Guess the sensor preset from band descriptions (and dataset tags); None when they do not tell.

    Tags: a key starting with ``HLS`` (e.g. ``HLS_PROCESSING_TIME``) means HLS; ``SPACECRAFT_ID=LANDSAT_9``
    picks the Landsat-9 L1 thermal calibration instead of Landsat-8's.
    """
    names = {(d or "").strip().upper() for d in descriptions}
    keys = {str(k).upper(): str(v).strip().upper() for k, v in (tags or {}).items()}
    if keys.get(SENSOR_TAG, "").lower() in SENSORS:
        return keys[SENSOR_TAG].lower()
    if any(k.startswith("HLS") for k in keys):
        return "hls"
    from_id = sensor_from_product_id(keys.get("LANDSAT_PRODUCT_ID") or keys.get("PRODUCT_ID") or "")
    if from_id:
        return from_id
    if names & {"TCI_R", "TCI_G", "TCI_B", "B8A", "B12", "B08"}:
        return "sentinel2-l2a"
    if any(n.startswith(("SR_B", "ST_B")) for n in names):
        return "landsat8-l2"
    if names & {"B10", "B11"} and not names & {"B12"}:
        return "landsat9-l1" if keys.get("SPACECRAFT_ID", "").replace(" ", "_") == "LANDSAT_9" else "landsat8-l1"
    return None


SENSOR_TAG = "FIREMAP_SENSOR"
"""Dataset tag naming the sensor preset of a scene assembled by :mod:`firemap.sources` (wins over guessing)."""

_LANDSAT_ID = re.compile(r"^L[COTEM]0(?P<sat>[89])_(?P<level>L1|L2)\w{2}_\d{6}_\d{8}_\d{8}_\d{2}_\w{2}$")


def sensor_from_product_id(product_id: str) -> str | None:
    """``landsat8-l2`` etc. from a Collection-2 Landsat product ID (``LC08_L2SP_...``), else None."""
    m = _LANDSAT_ID.match(product_id.strip().upper())
    return f"landsat{m['sat']}-{m['level'].lower()}" if m else None


def canonical_for(sensor: str | None, description: str) -> str | None:
    """The canonical band a provider's band name (``B04``, ``SR_B5``, ``B8A``, ``swir16``) means for ``sensor``."""
    return _lookup_alias(get_sensor(sensor) if sensor else None, description)[0] or None


_SPEC_ITEM = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9_]+)\s*=\s*(?P<src>[^:]+?)\s*(?::(?P<scale>[^:]+))?(?::(?P<off>[^:]+))?$"
)


def parse_band_spec(spec: str) -> dict[str, tuple[str, float | None, float | None]]:
    """Parse ``--bands`` text: ``CANON=SRC[:SCALE[:OFFSET]],...``.

    SRC is a 1-based band index or a band description. Example: ``red=3,nir=B8:0.0001,swir2=6:2e-5:-0.1``.

    Returns:
        canonical name -> (source, scale or None, offset or None).

    Raises:
        BandResolutionError: malformed item or unknown canonical name.
    """
    out: dict[str, tuple[str, float | None, float | None]] = {}
    for item in filter(str.strip, spec.split(",")):
        m = _SPEC_ITEM.match(item)
        if not m:
            raise BandResolutionError(f"bad --bands item {item!r}; expected CANON=SRC[:SCALE[:OFFSET]], e.g. red=3")
        name = m["name"].lower()
        if name not in CANONICAL_BANDS:
            raise BandResolutionError(
                f"unknown canonical band {m['name']!r} in --bands; choose from {', '.join(CANONICAL_BANDS)}"
            )
        if name in out:
            raise BandResolutionError(
                f"--bands names {name} twice ({item!r}); give each canonical band once"
            )
        try:
            scale = float(m["scale"]) if m["scale"] else None
            offset = float(m["off"]) if m["off"] else None
        except ValueError:
            raise BandResolutionError(f"bad scale/offset in --bands item {item!r}; use numbers") from None
        _check_scaling(item, scale, offset)
        out[name] = (m["src"], scale, offset)
    return out


MAX_SCALE = 1e6
"""Largest ``--bands`` scale or offset magnitude accepted: beyond it float32 physical values overflow or lose
all meaning (reflectance is ~0..1, brightness temperatures a few hundred K)."""


def _check_scaling(item: str, scale: float | None, offset: float | None) -> None:
    if scale is not None and not (math.isfinite(scale) and 1.0 / MAX_SCALE <= abs(scale) <= MAX_SCALE and scale > 0):
        raise BandResolutionError(
            f"bad scale {scale!r} in --bands item {item!r}: it must be a positive number between {1 / MAX_SCALE:g} and "
            f"{MAX_SCALE:g} (physical = raw * SCALE + OFFSET), e.g. 0.0001 for reflectance x 10000"
        )
    if offset is not None and not (math.isfinite(offset) and abs(offset) <= MAX_SCALE):
        raise BandResolutionError(
            f"bad offset {offset!r} in --bands item {item!r}: it must be a finite number within +-{MAX_SCALE:g}"
        )


def _lookup_alias(preset: SensorPreset | None, description: str) -> tuple[str | None, Encoding | None]:
    key = description.strip().upper()
    if key in _TCI:
        return _TCI[key], TCI_ENCODING
    if preset is None:
        return _CANONICAL_ALIASES.get(key), None
    canonical = preset.aliases.get(key) or None
    if preset.family == "hls" and canonical is None:
        canonical = _HLS_L30_ALIASES.get(key)
    return canonical, None


def _s2_offset(tags: Mapping[str, str] | None) -> float:
    """Reflectance offset of Sentinel-2 baseline >= 04.00 products (-1000 DN = -0.1), read from tags."""
    for key, value in (tags or {}).items():
        if key.upper().startswith(("BOA_ADD_OFFSET", "RADIO_ADD_OFFSET")):
            try:
                return float(value) / 10000.0
            except ValueError:
                continue
    return 0.0


def _sun_elevation(tags: Mapping[str, str] | None) -> float | None:
    """Sun elevation in degrees from a ``SUN_ELEVATION`` tag (Landsat MTL name), if present and sane."""
    for key, value in (tags or {}).items():
        if key.upper() == "SUN_ELEVATION":
            try:
                elevation = float(value)
            except ValueError:
                return None
            return elevation if 0.0 < elevation <= 90.0 else None
    return None


def band_encoding(preset: SensorPreset | None, canonical: str, tags: Mapping[str, str] | None = None) -> Encoding:
    """The encoding of ``canonical`` in a file of ``preset`` with dataset ``tags``.

    Applies, on top of the preset's scaling: the Sentinel-2 radiometric offset of processing baseline >= 04.00
    (``BOA_ADD_OFFSET``/``RADIO_ADD_OFFSET`` tags), and for Landsat Collection-2 L1 reflective bands the USGS
    sun-elevation correction ``rho = (M * DN + A) / sin(SUN_ELEVATION)`` when the file carries a
    ``SUN_ELEVATION`` tag (from the MTL). Without that tag L1 reflectance is left uncorrected (too low by
    ``sin(elevation)``, ~0.7 at 45 degrees): copy ``SUN_ELEVATION`` from the MTL into the GeoTIFF tags, or give
    the corrected scale with ``--bands``.
    """
    if preset is None:
        return Encoding()
    enc = preset.encodings.get(canonical, Encoding())
    if preset.family == "sentinel2":
        enc = replace(enc, offset=enc.offset + _s2_offset(tags))
    elevation = _sun_elevation(tags)
    if preset.name.endswith("-l1") and canonical not in THERMAL_BANDS and elevation is not None:
        sin = math.sin(math.radians(elevation))
        enc = replace(enc, scale=enc.scale / sin, offset=enc.offset / sin)
    if enc.planck is not None:
        enc = replace(enc, planck=_planck_from_tags(canonical, tags) or enc.planck)
    return enc


def _planck_from_tags(canonical: str, tags: Mapping[str, str] | None) -> tuple[float, float] | None:
    """Landsat thermal constants (K1, K2) from ``K1_CONSTANT_BAND_10``/``K2_...`` tags (MTL names), if present."""
    band = {"thermal": 10, "thermal2": 11}.get(canonical)
    keys = {str(k).upper(): v for k, v in (tags or {}).items()}
    try:
        return float(keys[f"K1_CONSTANT_BAND_{band}"]), float(keys[f"K2_CONSTANT_BAND_{band}"])
    except (KeyError, ValueError):
        return None


def _file_encoding(
    enc: Encoding, index: int, scales: Sequence[float | None] | None, offsets: Sequence[float | None] | None
) -> Encoding | None:
    """The encoding from the file's GDAL scale/offset of band ``index`` (1-based), keeping ``enc``'s Planck
    constants; None when the file declares none (GDAL reports scale 1, offset 0 when unset)."""
    scale = scales[index - 1] if scales and index <= len(scales) else None
    offset = offsets[index - 1] if offsets and index <= len(offsets) else None
    scale = 1.0 if scale is None else float(scale)
    offset = 0.0 if offset is None else float(offset)
    if scale == 1.0 and offset == 0.0:
        return None
    return Encoding(scale, offset, enc.planck)


def _apply_file_scaling(
    sources: dict[str, BandSource], scales: Sequence[float | None] | None, offsets: Sequence[float | None] | None
) -> None:
    """Replace preset encodings by the file's own scale/offset where it declares them (precedence level 2)."""
    for canonical, src in list(sources.items()):
        enc = _file_encoding(src.encoding, src.index, scales, offsets)
        if enc is not None:
            sources[canonical] = replace(src, encoding=enc, scaling="file")


def _from_descriptions(
    preset: SensorPreset | None, descriptions: Sequence[str | None], tags: Mapping[str, str] | None
) -> dict[str, BandSource]:
    sources: dict[str, BandSource] = {}
    for i, desc in enumerate(descriptions):
        if not desc:
            continue
        canonical, enc = _lookup_alias(preset, desc)
        if not canonical or canonical in sources:
            continue  # first match wins (Sentinel-2 B8 before B8A)
        enc = enc or band_encoding(preset, canonical, tags)
        sources[canonical] = BandSource(canonical, i + 1, enc, desc)
    return sources


def _from_stack(
    preset: SensorPreset, count: int, descriptions: Sequence[str | None], tags: Mapping[str, str] | None
) -> dict[str, BandSource]:
    stack = preset.stack_for(count)
    if stack is None:
        return {}
    return {
        name: BandSource(
            name, i + 1, band_encoding(preset, name, tags), descriptions[i] if i < len(descriptions) else None
        )
        for i, name in enumerate(stack)
        if name
    }


def _index_of(src: str, descriptions: Sequence[str | None], count: int) -> int:
    if src.isdigit():
        index = int(src)
        if not 1 <= index <= count:
            raise BandResolutionError(f"--bands refers to band {index}, but the file has bands 1..{count}")
        return index
    for i, desc in enumerate(descriptions):
        if desc and desc.strip().upper() == src.strip().upper():
            return i + 1
    named = ", ".join(repr(d) for d in descriptions if d) or "none"
    raise BandResolutionError(f"--bands refers to band {src!r}, but the file's band descriptions are: {named}")


def resolve_bands(
    descriptions: Sequence[str | None],
    count: int,
    sensor: str | None = None,
    spec: str | None = None,
    tags: Mapping[str, str] | None = None,
    scales: Sequence[float | None] | None = None,
    offsets: Sequence[float | None] | None = None,
) -> BandMap:
    """Match a file's bands to canonical bands and choose each band's scaling (see the module docstring).

    Args:
        descriptions: the file's band descriptions by position (None or '' where absent).
        count: number of bands in the file.
        sensor: a preset name (see :data:`SENSORS`) or a short name (:data:`SENSOR_ALIASES`); guessed from the
            descriptions when None.
        spec: ``--bands`` text, see :func:`parse_band_spec`.
        tags: the file's dataset tags (Sentinel-2 radiometric offset, sun elevation, thermal constants).
        scales: the file's GDAL scale per band (physical = raw * scale + offset); None/1.0 where unset.
        offsets: the file's GDAL offset per band; None/0.0 where unset.

    Returns:
        The :class:`BandMap`; bands that did not resolve are simply absent (see :meth:`BandMap.select`).

    Raises:
        BandResolutionError: unknown sensor, malformed spec, or a spec naming a band the file lacks.
    """
    descriptions = tuple((d or None) for d in list(descriptions) + [None] * (count - len(descriptions)))[:count]
    name = sensor or guess_sensor(descriptions, tags)
    preset = get_sensor(name) if name else None
    sources = _from_descriptions(preset, descriptions, tags)
    if preset is not None and not sources:
        sources = _from_stack(preset, count, descriptions, tags)
    if preset is None:
        sources = {k: replace(v, scaling="none") for k, v in sources.items()}
    _apply_file_scaling(sources, scales, offsets)
    for canonical, (src, scale, offset) in parse_band_spec(spec or "").items():
        index = _index_of(src, descriptions, count)
        enc = band_encoding(preset, canonical, tags)
        alias_enc = _lookup_alias(preset, descriptions[index - 1] or "")[1]
        enc = alias_enc or enc
        origin = "preset" if preset is not None or alias_enc else "none"
        file_enc = _file_encoding(enc, index, scales, offsets)
        if file_enc is not None:
            enc, origin = file_enc, "file"
        if scale is not None or offset is not None:
            enc = Encoding(scale if scale is not None else enc.scale, offset if offset is not None else enc.offset)
            origin = "--bands"
        sources[canonical] = BandSource(canonical, index, enc, descriptions[index - 1], origin)
    ordered = {b: sources[b] for b in CANONICAL_BANDS if b in sources}
    log.debug("resolved bands (sensor=%s): %s", name, {k: v.label() for k, v in ordered.items()})
    return BandMap(sources=ordered, sensor=preset.name if preset is not None else None, count=count,
                   descriptions=descriptions)


def to_physical(raw: np.ndarray, sources: Sequence[BandSource]) -> np.ndarray:
    """Convert raw bands to physical units.

    Args:
        raw: ``(bands, rows, cols)`` raw values, one band per entry of ``sources``, any numeric dtype.
        sources: the source of each band.

    Returns:
        ``(bands, rows, cols)`` float32: reflectance (unitless) or brightness temperature (K) for thermal bands.
    """
    if raw.shape[0] != len(sources):
        raise ValueError(f"got {raw.shape[0]} raw bands for {len(sources)} sources")
    out = np.empty(raw.shape, dtype=np.float32)
    for i, src in enumerate(sources):
        src.encoding.to_physical(raw[i], out=out[i])
    return out


def check_reflectance_range(values: np.ndarray, name: str) -> str | None:
    """Return a warning text when reflectance values (any shape, float) look mis-scaled, else None."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    median = float(np.median(finite))
    if not -0.2 <= median <= 1.5:
        return (
            f"band {name} has median reflectance {median:.3g} after scaling; the scale looks wrong "
            f"(set it with --bands {name}=N:SCALE or pick the right --sensor)"
        )
    return None


__all__ = [
    "BAND_WAVELENGTH_UM",
    "CANONICAL_BANDS",
    "SENSORS",
    "SENSOR_ALIASES",
    "SENSOR_TAG",
    "TCI_ENCODING",
    "THERMAL_BANDS",
    "BandMap",
    "BandSource",
    "Encoding",
    "SensorPreset",
    "canonical_for",
    "check_reflectance_range",
    "get_sensor",
    "guess_sensor",
    "parse_band_spec",
    "resolve_bands",
    "sensor_from_product_id",
    "to_physical",
]
