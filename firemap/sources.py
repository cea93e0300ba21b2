"""Scenes as providers ship them: folders of per-band files, MTL-described Landsat products, STAC items.

:func:`resolve_source` turns a scene path into one raster GDAL can read by window:

- a multi-band GeoTIFF/VRT is used as it is (or wrapped in a VRT when ``resolution`` asks for another grid);
- a folder of per-band files (Landsat Collection-1/2 L1 and L2 with ``*_MTL.txt/.json/.xml``, pre-collection
  ``*_B1.TIF`` + ``*_MTL.txt``, HLS ``HLS.L30.*.B04.tif``, Sentinel-2 ``B02.tif`` / ``*_B02_10m.jp2`` and SAFE
  folders), an ``*_MTL.txt`` file or a STAC Item JSON becomes a GDAL VRT: one band per canonical band the
  product offers, described by its provider name (``SR_B4``, ``B04``), resampled on the fly to one grid
  (default: the finest of those bands; ``resolution`` for another), with per-band scale/offset/nodata and the
  product's facts (sun elevation, thermal K1/K2, spacecraft, sensor preset) as dataset tags.

The VRT is small XML (absolute source paths) in a per-process temporary folder, named after the product
(``<product id>.vrt``), so outputs are named after the product too. Reading stays windowed: GDAL reads only
the source blocks a window needs, resampling as it goes; nothing is materialised whole.

Scaling per band, in the VRT's GDAL scale/offset (see :mod:`firemap.bands` for the precedence over the sensor
preset): the band file's own scale/offset, else the STAC ``raster:bands`` scale/offset, else the MTL's
(``REFLECTANCE_MULT/ADD_BAND_n``; Landsat L1 reflective bands divided by ``sin(SUN_ELEVATION)``; L1 thermal bands
``RADIANCE_MULT/ADD`` with ``K1/K2_CONSTANT_BAND_n`` tags; L2 ``ST_B10`` ``TEMPERATURE_MULT/ADD``).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import rasterio
from rasterio.errors import RasterioIOError

from firemap.bands import CANONICAL_BANDS, SENSOR_TAG, canonical_for, guess_sensor, sensor_from_product_id
from firemap.errors import GridMismatchError, MissingBandsError, NotARasterError, ProductError

log = logging.getLogger(__name__)

RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt", ".img")
"""File suffixes (case-insensitive) considered band files in a folder."""

_TOKEN = re.compile(r"(?:^|[_.\-])(?P<band>SR_B\d{1,2}|ST_B10|B\d{1,2}A?)(?:_(?P<res>\d+)m)?$", re.IGNORECASE)
_GDAL_TYPES = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
               "int32": "Int32", "float32": "Float32", "float64": "Float64"}
_MTL_SUFFIXES = ("_MTL.txt", "_MTL.json", "_MTL.xml")


@dataclass(frozen=True)
class BandFile:
    """One band of a product: where it is and how its raw values convert.

    Attributes:
        canonical: canonical band name (``red``, ``swir2``...).
        name: the provider's band name (``B04``, ``SR_B4``), used as the VRT band description.
        href: a path GDAL opens (local path, ``/vsicurl/...``, ``/vsis3/...``).
        band: 1-based band index in that file.
        scale: physical = raw * scale + offset, when the product states it (None = not stated).
        offset: see ``scale``.
        nodata: nodata value, when the product states it.
    """

    canonical: str
    name: str
    href: str
    band: int = 1
    scale: float | None = None
    offset: float | None = None
    nodata: float | None = None


@dataclass(frozen=True)
class Product:
    """A multi-file scene: its bands and facts.

    Attributes:
        product_id: the provider's ID (Landsat product ID, STAC item id, SAFE name, folder name).
        layout: ``landsat-mtl``, ``sentinel2``, ``sentinel2-safe``, ``hls``, ``stac``, ``folder`` or ``file``.
        sensor: the firemap sensor preset, or None when the layout does not tell.
        bands: one :class:`BandFile` per canonical band, in canonical order (coastal, blue, ... thermal2).
        tags: dataset tags for the VRT (``SUN_ELEVATION``, ``K1_CONSTANT_BAND_10``, ``SPACECRAFT_ID``...).
        origin: the path the user gave.
    """

    product_id: str
    layout: str
    sensor: str | None
    bands: tuple[BandFile, ...]
    tags: Mapping[str, str] = field(default_factory=dict)
    origin: Path = Path()


def is_product(path: Path) -> bool:
    """True when ``path`` is a multi-file product (folder, ``*_MTL.*`` file or STAC item), not one raster."""
    return path.is_dir() or path.name.endswith(_MTL_SUFFIXES) or path.suffix.lower() == ".json"


def resolve_source(path: str | os.PathLike[str], resolution: float | None = None) -> Path:
    """The raster to read for a scene path: the path itself, or a VRT assembling a product.

    Args:
        path: a raster file, a folder of per-band files, an ``*_MTL.txt/.json/.xml`` or a STAC Item JSON.
        resolution: output pixel size in CRS units; None = the finest band's grid (products) or the file's own.

    Returns:
        A path rasterio opens: ``path`` unchanged for a plain raster at its own resolution, else a temporary
        ``<product id>.vrt`` (bands stacked, described, scaled and resampled on the fly).

    Raises:
        ProductError: an incomplete or self-contradicting product (the message names what is missing and found).
        GridMismatchError: band files in different CRSs.
        NotARasterError: a band file GDAL cannot open.
    """
    p = Path(path)
    if not is_product(p):
        if resolution is None or _same_res(p, resolution):
            return p
        product = _single_file(p)
    else:
        product = find_product(p)
    return write_vrt(product, resolution)


def find_product(path: Path) -> Product:
    """Recognise the layout of a product path and list its bands (no pixels read).

    Raises:
        ProductError: nothing usable, or an MTL/STAC item that contradicts the files.
    """
    if path.suffix.lower() == ".json" and not path.name.endswith("_MTL.json"):
        return stac_product(path)
    folder = path.parent if path.is_file() else path
    mtl = path if path.is_file() else _find_mtl(folder)
    if mtl is not None:
        return landsat_product(folder, mtl)
    items = [j for j in sorted(folder.glob("*.json")) if _is_stac_item(j)]
    if len(items) == 1:
        return stac_product(items[0])
    return folder_product(folder)


# ------------------------------------------------------------------------------------------------ layouts


def _find_mtl(folder: Path) -> Path | None:
    for suffix in _MTL_SUFFIXES:  # .txt first: the classic ODL text every Landsat product has
        found = sorted(folder.glob(f"*{suffix}"))
        if found:
            return found[0]
    return None


def _is_stac_item(path: Path) -> bool:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("type") == "Feature" and isinstance(doc.get("assets"), dict)


def band_token(filename: str) -> str | None:
    """The provider band name in a file name (``..._SR_B4.TIF`` -> ``SR_B4``, ``T29RKH_..._B8A_20m.jp2`` -> ``B8A``)."""
    stem = filename
    while Path(stem).suffix.lower() in (*RASTER_SUFFIXES, ".ovr"):
        stem = stem[: -len(Path(stem).suffix)]
    m = _TOKEN.search(stem)
    return m["band"].upper() if m else None


def _band_files(folder: Path, recursive: bool = False) -> list[Path]:
    files = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(f for f in files if f.is_file() and f.suffix.lower() in RASTER_SUFFIXES and band_token(f.name))


def _folder_sensor(folder: Path, files: Sequence[Path]) -> str | None:
    names = [f.name.upper() for f in files]
    if any(n.startswith("HLS.") for n in names):
        return "hls"
    tokens = [band_token(f.name) for f in files]
    upper = folder.name.upper()
    if "MSIL1C" in upper or upper.endswith("_L1C"):
        return "sentinel2-l1c"
    if "MSIL2A" in upper or upper.endswith("_L2A") or {"B8A", "B11", "B12"} & set(tokens):
        return "sentinel2-l2a"
    return sensor_from_product_id(folder.name) or guess_sensor(tokens)


def folder_product(folder: Path) -> Product:
    """A folder of per-band files without an MTL: Sentinel-2 (COGs or a SAFE), HLS, or bands named ``*_B4.tif``.

    Raises:
        ProductError: no file in the folder maps to a canonical band.
    """
    safe = folder.suffix.upper() == ".SAFE" or (folder / "GRANULE").is_dir()
    files = _band_files(folder, recursive=safe)
    sensor = _folder_sensor(folder, files)
    candidates = []
    for f in files:
        token = band_token(f.name) or ""
        canonical = canonical_for(sensor, token)
        if canonical:
            candidates.append(BandFile(canonical, token, str(f.absolute())))
    if not candidates:
        found = ", ".join(sorted(p.name for p in folder.iterdir())[:12]) or "nothing"
        raise ProductError(
            f"{folder}: no band files firemap can use (expected names like B04.tif, *_B4.TIF, *_SR_B4.TIF, "
            f"*_B02_10m.jp2, HLS.*.B04.tif, or an *_MTL.txt / STAC item); found: {found}"
        )
    layout = "hls" if sensor == "hls" else ("sentinel2-safe" if safe else "folder")
    layout = "sentinel2" if layout == "folder" and sensor and sensor.startswith("sentinel2") else layout
    product_id = folder.name[: -len(".SAFE")] if folder.name.upper().endswith(".SAFE") else folder.name
    if sensor == "hls":
        product_id = _hls_id(files) or product_id
    tags = _sensor_tags(sensor) | (_safe_offset(folder) if safe else {})
    return Product(product_id, layout, sensor, _finest_per_band(candidates), tags, folder)


def _safe_offset(folder: Path) -> dict[str, str]:
    """``BOA_ADD_OFFSET``/``RADIO_ADD_OFFSET`` of a SAFE's product metadata (baseline >= 04.00: -1000 DN), as the tag
    :func:`firemap.bands.band_encoding` applies; empty when the metadata has none."""
    for xml in sorted(folder.glob("MTD_MSIL*.xml")):
        m = re.search(r"<(BOA_ADD_OFFSET|RADIO_ADD_OFFSET)\b[^>]*>\s*(-?[\d.]+)\s*<", xml.read_text(errors="replace"))
        if m:
            return {m[1]: m[2]}
    return {}


def _hls_id(files: Sequence[Path]) -> str | None:
    for f in files:
        m = re.match(r"^(HLS\.[LS]30\.[^.]+\.[^.]+\.v\d+\.\d+)\.", f.name, re.IGNORECASE)
        if m:
            return m[1]
    return None


def _sensor_tags(sensor: str | None) -> dict[str, str]:
    return {SENSOR_TAG: sensor} if sensor else {}


def _finest_per_band(candidates: Iterable[BandFile]) -> tuple[BandFile, ...]:
    """One file per canonical band: the finest resolution (``_10m`` before ``_20m``), else the first listed
    (Sentinel-2 ``B08`` before ``B8A`` for nir, as in :mod:`firemap.bands`)."""
    best: dict[str, tuple[float, int, BandFile]] = {}
    for order, c in enumerate(candidates):
        m = re.search(r"_(\d+)m\.\w+$", c.href)
        key = (float(m[1]) if m else 0.0, order, c)
        if c.canonical not in best or key[:2] < best[c.canonical][:2]:
            best[c.canonical] = key
    return tuple(best[b][2] for b in CANONICAL_BANDS if b in best)


# ------------------------------------------------------------------------------------------------ Landsat MTL


def read_mtl(path: Path) -> dict[str, str]:
    """Flatten a Landsat MTL (ODL ``.txt``, ``.json`` or ``.xml``) to ``KEY -> value``, first occurrence winning.

    Collection-2 L2 MTLs carry the L1 product's record too (``LEVEL1_*`` groups with its file names and
    scaling); those groups are dropped when ``LEVEL2_*`` groups are present.

    Raises:
        ProductError: unreadable file.
    """
    try:
        text = path.read_text(errors="replace")
        suffix = path.suffix.lower()
        if suffix == ".json":
            entries = list(_json_entries(json.loads(text), ""))
        elif suffix == ".xml":
            entries = list(_xml_entries(ET.fromstring(text), ""))
        else:
            entries = list(_odl_entries(text))
    except (OSError, ValueError, ET.ParseError) as exc:
        raise ProductError(f"{path}: not a readable Landsat MTL ({exc})") from None
    level2 = any(g.startswith("LEVEL2_") for g, _, _ in entries)
    out: dict[str, str] = {}
    for group, key, value in entries:
        if not (level2 and group.startswith("LEVEL1_")):
            out.setdefault(key.upper(), value)
    return out


def _odl_entries(text: str) -> Iterable[tuple[str, str, str]]:
    group = ""
    for line in text.splitlines():
        m = re.match(r'^\s*(\w+)\s*=\s*"?(.*?)"?\s*$', line)
        if not m:
            continue
        if m[1] == "GROUP":
            group = m[2].upper()
        elif m[1] != "END_GROUP":
            yield group, m[1], m[2]


def _json_entries(doc: Any, group: str) -> Iterable[tuple[str, str, str]]:
    if isinstance(doc, dict):
        for k, v in doc.items():
            if isinstance(v, dict | list):
                yield from _json_entries(v, str(k).upper())
            else:
                yield group, str(k), str(v)
    elif isinstance(doc, list):
        for v in doc:
            yield from _json_entries(v, group)


def _xml_entries(el: ET.Element, group: str) -> Iterable[tuple[str, str, str]]:
    for child in el:
        if len(child):
            yield from _xml_entries(child, child.tag.upper())
        elif child.text is not None:
            yield group, child.tag, child.text.strip()


def _float(mtl: Mapping[str, str], key: str) -> float | None:
    try:
        return float(mtl[key])
    except (KeyError, ValueError):
        return None


def _mtl_sensor(mtl: Mapping[str, str], path: Path) -> str:
    sat = {"LANDSAT_8": "8", "LANDSAT_9": "9"}.get(mtl.get("SPACECRAFT_ID", "").upper())
    level = (mtl.get("PROCESSING_LEVEL") or mtl.get("DATA_TYPE") or "").upper()
    if sat is None or not level.startswith(("L1", "L2")):
        raise ProductError(
            f"{path}: SPACECRAFT_ID={mtl.get('SPACECRAFT_ID')!r} PROCESSING_LEVEL/DATA_TYPE={level or None!r}; "
            "firemap reads Landsat-8/9 L1 and L2 products (SPACECRAFT_ID LANDSAT_8 or LANDSAT_9)"
        )
    return f"landsat{sat}-{level[:2].lower()}"


def landsat_product(folder: Path, mtl_path: Path) -> Product:
    """A Landsat product described by its MTL: band files, scaling, sun elevation and thermal constants.

    Files are found by the MTL's ``FILE_NAME_BAND_n`` names, else by band suffix (``*_B4.TIF``, ``*_SR_B4.TIF``:
    renamed crops). The MTL must agree with the files: same UTM zone, files inside its corner coordinates.

    Raises:
        ProductError: a band the MTL lists has no file, or the MTL contradicts the files.
    """
    mtl = read_mtl(mtl_path)
    sensor = _mtl_sensor(mtl, mtl_path)
    l1 = sensor.endswith("-l1")
    files = {band_token(f.name): f for f in _band_files(folder)}
    listed = {k[len("FILE_NAME_BAND_"):]: v for k, v in mtl.items() if k.startswith("FILE_NAME_BAND_")}
    bands, missing = [], []
    for key, name in listed.items():
        token = band_token(name) or ("ST_B10" if key == "ST_B10" else f"B{key}")
        canonical = canonical_for(sensor, token)
        if not canonical:
            continue
        path = folder / name if (folder / name).is_file() else files.get(token)
        if path is None:
            missing.append(f"{name} ({canonical})")
            continue
        bands.append(_landsat_band(mtl, sensor, canonical, token, key, path))
    if missing:
        found = ", ".join(sorted(f.name for f in files.values())) or "no band files"
        raise ProductError(f"{mtl_path.name} lists {', '.join(missing)} but {folder} has no such file; found: {found}")
    if not listed:  # an MTL without file names: take the folder's band files
        bands = [_landsat_band(mtl, sensor, c, t, t.split("B")[-1], f) for t, f in files.items()
                 if t and (c := canonical_for(sensor, t))]
    tags = _sensor_tags(sensor) | {k: mtl[k] for k in _MTL_TAGS if k in mtl}
    if l1:
        for n in (10, 11):
            for k in (f"K1_CONSTANT_BAND_{n}", f"K2_CONSTANT_BAND_{n}"):
                if k in mtl:
                    tags[k] = mtl[k]
    product_id = mtl.get("LANDSAT_PRODUCT_ID") or mtl.get("LANDSAT_SCENE_ID") or folder.name
    tags["PRODUCT_ID"] = product_id
    product = Product(product_id, "landsat-mtl", sensor, _finest_per_band(bands), tags, mtl_path)
    _check_mtl_grid(mtl, mtl_path, product)
    return product


_MTL_TAGS = ("SUN_ELEVATION", "SUN_AZIMUTH", "SPACECRAFT_ID", "DATE_ACQUIRED", "SCENE_CENTER_TIME", "CLOUD_COVER")


def _landsat_band(mtl: Mapping[str, str], sensor: str, canonical: str, token: str, key: str, path: Path) -> BandFile:
    """The MTL's scaling for one band: L2 reflectance / ST temperature, L1 sun-corrected TOA or thermal radiance."""
    if token == "ST_B10":
        scale, offset = _float(mtl, "TEMPERATURE_MULT_BAND_ST_B10"), _float(mtl, "TEMPERATURE_ADD_BAND_ST_B10")
    elif canonical in ("thermal", "thermal2"):
        scale, offset = _float(mtl, f"RADIANCE_MULT_BAND_{key}"), _float(mtl, f"RADIANCE_ADD_BAND_{key}")
    else:
        scale, offset = _float(mtl, f"REFLECTANCE_MULT_BAND_{key}"), _float(mtl, f"REFLECTANCE_ADD_BAND_{key}")
        elevation = _float(mtl, "SUN_ELEVATION")
        if sensor.endswith("-l1") and scale is not None and offset is not None and elevation and elevation > 0:
            sin = math.sin(math.radians(elevation))
            scale, offset = scale / sin, offset / sin
    if scale is None or offset is None:
        scale = offset = None
    return BandFile(canonical, token, str(path.absolute()), 1, scale, offset)


def _check_mtl_grid(mtl: Mapping[str, str], mtl_path: Path, product: Product) -> None:
    """The MTL's UTM zone and corner coordinates must agree with the band files' CRS and bounds."""
    zone = mtl.get("UTM_ZONE")
    ul = (_float(mtl, "CORNER_UL_PROJECTION_X_PRODUCT"), _float(mtl, "CORNER_UL_PROJECTION_Y_PRODUCT"))
    lr = (_float(mtl, "CORNER_LR_PROJECTION_X_PRODUCT"), _float(mtl, "CORNER_LR_PROJECTION_Y_PRODUCT"))
    cell = _float(mtl, "GRID_CELL_SIZE_REFLECTIVE") or 30.0
    for band in product.bands:
        with _open(band.href) as src:
            epsg = src.crs.to_epsg() if src.crs else None
            if zone and epsg and epsg in range(32601, 32761) and epsg % 100 != int(float(zone)):
                raise ProductError(
                    f"{mtl_path.name} says UTM_ZONE {zone} but {Path(band.href).name} is in EPSG:{epsg} "
                    f"(zone {epsg % 100}); the MTL belongs to another scene"
                )
            if None in (*ul, *lr):
                continue
            tol = 2 * max(cell, *src.res)
            b = src.bounds
            inside = (b.left >= ul[0] - tol and b.right <= lr[0] + tol
                      and b.top <= ul[1] + tol and b.bottom >= lr[1] - tol)
            if not inside:
                raise ProductError(
                    f"{Path(band.href).name} covers x {b.left:.0f}..{b.right:.0f}, y {b.bottom:.0f}..{b.top:.0f} "
                    f"but {mtl_path.name} says the scene spans x {ul[0]:.0f}..{lr[0]:.0f}, y {lr[1]:.0f}..{ul[1]:.0f}; "
                    "the MTL belongs to another scene"
                )


# ------------------------------------------------------------------------------------------------ STAC


_STAC_COMMON = {"swir16": "swir1", "swir22": "swir2", "nir08": "nir", "lwir11": "thermal", "lwir12": "thermal2",
                "lwir": "thermal"}


def _href(item: Path, href: str) -> str:
    """A GDAL path for an asset href: relative to the item, a local copy beside the item, or /vsicurl/ /vsis3/."""
    if "://" not in href:
        p = Path(href)
        return str(p if p.is_absolute() else (item.parent / p).absolute())
    local = item.parent / href.rsplit("/", 1)[-1].split("?")[0]
    if local.is_file():
        return str(local.absolute())
    scheme, rest = href.split("://", 1)
    return {"s3": f"/vsis3/{rest}", "gs": f"/vsigs/{rest}"}.get(scheme, f"/vsicurl/{href}")


def _asset_band(key: str, asset: Mapping[str, Any], sensor: str | None) -> tuple[str, str] | None:
    """(canonical, provider name) of a single-band data asset, or None."""
    eo = asset.get("eo:bands") or []
    href = str(asset.get("href", ""))
    token = band_token(href.rsplit("/", 1)[-1].split("?")[0]) or band_token(key.replace(".TIF", "").replace(".tif", ""))
    if token and (canonical := canonical_for(sensor, token)):
        return canonical, token
    names = [str(b.get("common_name") or b.get("name") or "") for b in eo if isinstance(b, dict)]
    if len(names) == 1 and names[0]:
        name = _STAC_COMMON.get(names[0].lower(), names[0].lower())
        canonical = canonical_for(None, name)
        return (canonical, names[0]) if canonical else None
    return None


def _stac_sensor(doc: Mapping[str, Any]) -> str | None:
    props = doc.get("properties") or {}
    item_id = str(doc.get("id", ""))
    platform = str(props.get("platform") or props.get("constellation") or "").lower()
    if item_id.upper().startswith("HLS."):
        return "hls"
    if platform.startswith("sentinel-2") or item_id.upper().startswith("S2"):
        return "sentinel2-l1c" if "L1C" in item_id.upper() else "sentinel2-l2a"
    if sensor := sensor_from_product_id(item_id):
        return sensor
    if platform in ("landsat-8", "landsat-9"):
        return f"landsat{platform[-1]}-l2" if "L2" in item_id.upper() else f"landsat{platform[-1]}-l1"
    return None


def stac_product(path: Path) -> Product:
    """A STAC Item: one band per data asset that maps to a canonical band, with ``raster:bands`` scale,
    offset and nodata. Remote hrefs use a local file of the same name beside the item when there is one.

    Raises:
        ProductError: not a STAC Item, or no asset maps to a band firemap uses.
    """
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ProductError(f"{path}: not a readable STAC Item JSON ({exc})") from None
    if not (isinstance(doc, dict) and doc.get("type") == "Feature" and isinstance(doc.get("assets"), dict)):
        raise ProductError(f"{path}: not a STAC Item (expected type 'Feature' with 'assets')")
    sensor = _stac_sensor(doc)
    candidates = []
    for key, asset in doc["assets"].items():
        roles = asset.get("roles") or ["data"]
        found = _asset_band(key, asset, sensor) if "data" in roles else None
        if found is None:
            continue
        rb = (asset.get("raster:bands") or [{}])[0]
        href = _href(path, str(asset.get("href", "")))
        candidates.append(BandFile(found[0], found[1], href, 1, _opt(rb.get("scale")), _opt(rb.get("offset")),
                                   _opt(rb.get("nodata"))))
    if not candidates:
        raise ProductError(
            f"{path.name}: STAC item {doc.get('id')!r} has no data asset that is a band firemap uses (coastal, blue, "
            f"green, red, nir, swir1, swir2, cirrus, thermal); found assets: {', '.join(doc['assets']) or 'none'}"
        )
    local_first = sorted(enumerate(candidates), key=lambda ic: (ic[1].href.startswith("/vsi"), ic[0]))
    props = doc.get("properties") or {}
    tags = _sensor_tags(sensor) | {"PRODUCT_ID": str(doc.get("id", path.stem))}
    if "view:sun_elevation" in props:
        tags["SUN_ELEVATION"] = str(props["view:sun_elevation"])
    bands = _finest_per_band(c for _, c in local_first)
    return Product(str(doc.get("id") or path.stem), "stac", sensor, bands, tags, path)


def _opt(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _single_file(path: Path) -> Product:
    """All bands of one multi-band raster, as a product (to resample it to another ``resolution``)."""
    with _open(str(path)) as src:
        names = [d or f"band{i}" for i, d in enumerate(src.descriptions, start=1)]
        bands = tuple(BandFile("", n, str(path.absolute()), i) for i, n in enumerate(names, start=1))
        tags = dict(src.tags())
    return Product(path.stem, "file", None, bands, tags, path)


# ------------------------------------------------------------------------------------------------ VRT


@dataclass(frozen=True)
class _Meta:
    crs: Any
    transform: Any
    width: int
    height: int
    dtype: str
    nodata: float | None
    scale: float
    offset: float


def _open(href: str) -> Any:
    try:
        return rasterio.open(href)
    except RasterioIOError as exc:
        raise NotARasterError(f"{href}: not a raster GDAL can read ({str(exc).splitlines()[0]})") from None


def _meta(band: BandFile) -> _Meta:
    with _open(band.href) as src:
        i = band.band - 1
        return _Meta(src.crs, src.transform, src.width, src.height, src.dtypes[i], src.nodatavals[i],
                     src.scales[i] if src.scales[i] is not None else 1.0,
                     src.offsets[i] if src.offsets[i] is not None else 0.0)


def _same_res(path: Path, resolution: float) -> bool:
    with _open(str(path)) as src:
        return bool(math.isclose(src.res[0], resolution) and math.isclose(src.res[1], resolution))


def vrt_xml(product: Product, resolution: float | None = None) -> str:
    """The GDAL VRT of a product: its bands stacked on one grid, resampled on the fly.

    The grid is the finest band's (its CRS, bounds and transform), or those bounds at ``resolution`` CRS units
    per pixel. Coarser bands are upsampled with GDAL's ``mode`` (for whole-number ratios such as 20 m -> 10 m, the
    value of the one source pixel a target pixel falls in: raw values kept, as nearest neighbour), finer bands
    averaged. Not ``nearest``: GDAL's nearest-neighbour over-sampling path reads ~40x slower (measured in
    ``scripts/bench_providers.py``).

    Raises:
        GridMismatchError: band files in different CRSs.
    """
    metas = [_meta(b) for b in product.bands]
    crs = metas[0].crs
    for b, m in zip(product.bands, metas, strict=True):
        if m.crs != crs:
            raise GridMismatchError(
                f"{product.product_id}: {Path(b.href).name} is in {m.crs} but {Path(product.bands[0].href).name} in "
                f"{crs}; firemap stacks bands of one CRS only (reproject them first with gdalwarp)"
            )
    finest = min(metas, key=lambda m: abs(m.transform.a))
    left, top = finest.transform.c, finest.transform.f
    right, bottom = left + finest.width * finest.transform.a, top + finest.height * finest.transform.e
    if resolution:
        rx, ry = resolution, -resolution
        width, height = max(1, round((right - left) / rx)), max(1, round((bottom - top) / ry))
    else:
        rx, ry, width, height = finest.transform.a, finest.transform.e, finest.width, finest.height
    dtypes = {m.dtype for m in metas}
    dtype = dtypes.pop() if len(dtypes) == 1 else "float32"
    bands_xml = [_band_xml(i, b, m, (left, top, rx, ry), dtype) for i, (b, m) in
                 enumerate(zip(product.bands, metas, strict=True), start=1)]
    tags = "".join(f'<MDI key="{escape(k)}">{escape(str(v))}</MDI>' for k, v in product.tags.items())
    tags += f'<MDI key="FIREMAP_LAYOUT">{escape(product.layout)}</MDI>'
    tags += f'<MDI key="FIREMAP_SOURCE">{escape(str(product.origin))}</MDI>'
    wkt = escape(crs.to_wkt()) if crs else ""
    return (
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">'
        + (f'<SRS dataAxisToSRSAxisMapping="1,2">{wkt}</SRS>' if wkt else "")
        + f"<GeoTransform>{left!r}, {rx!r}, 0.0, {top!r}, 0.0, {ry!r}</GeoTransform>"
        + f"<Metadata>{tags}</Metadata>"
        + "".join(bands_xml)
        + "</VRTDataset>"
    )


def _band_xml(index: int, band: BandFile, meta: _Meta, grid: tuple[float, float, float, float], dtype: str) -> str:
    left, top, rx, ry = grid
    t = meta.transform
    dst = ((t.c - left) / rx, (t.f - top) / ry, meta.width * t.a / rx, meta.height * t.e / ry)
    resampling = "average" if abs(t.a) < abs(rx) * 0.999 else "mode"
    nodata = band.nodata if band.nodata is not None else meta.nodata
    scale = band.scale if meta.scale == 1.0 and meta.offset == 0.0 else meta.scale  # the file's own wins
    offset = band.offset if meta.scale == 1.0 and meta.offset == 0.0 else meta.offset
    parts = [f'<VRTRasterBand dataType="{_GDAL_TYPES.get(dtype, "Float32")}" band="{index}">',
             f"<Description>{escape(band.name)}</Description>"]
    if nodata is not None:
        parts.append(f"<NoDataValue>{nodata!r}</NoDataValue>")
    if scale is not None:
        parts.append(f"<Offset>{(offset or 0.0)!r}</Offset><Scale>{scale!r}</Scale>")
    parts += [
        f'<ComplexSource resampling="{resampling}">',
        f'<SourceFilename relativeToVRT="0">{escape(band.href)}</SourceFilename>',
        f"<SourceBand>{band.band}</SourceBand>",
        f'<SrcRect xOff="0" yOff="0" xSize="{meta.width}" ySize="{meta.height}"/>',
        '<DstRect xOff="{!r}" yOff="{!r}" xSize="{!r}" ySize="{!r}"/>'.format(*dst),
    ]
    if nodata is not None:
        parts.append(f"<NODATA>{nodata!r}</NODATA>")
    parts.append("</ComplexSource></VRTRasterBand>")
    return "".join(parts)


_VRT_DIR: Path | None = None


def _vrt_dir() -> Path:
    global _VRT_DIR
    if _VRT_DIR is None or not _VRT_DIR.is_dir():
        _VRT_DIR = Path(tempfile.mkdtemp(prefix="firemap-vrt-"))
        atexit.register(shutil.rmtree, _VRT_DIR, True)
    return _VRT_DIR


def product_stem(product_id: str) -> str:
    """A file stem for outputs named after a product ID (dots, which end a stem, become underscores)."""
    return re.sub(r"[^A-Za-z0-9_\-]", "_", product_id) or "scene"


def write_vrt(product: Product, resolution: float | None = None) -> Path:
    """Write the product's VRT (see :func:`vrt_xml`) as ``<product stem>.vrt`` in a per-process temp folder.

    The folder is keyed by the product origin and resolution, so two products with the same ID do not collide;
    it is removed when the process exits.
    """
    if not product.bands:
        raise MissingBandsError(f"{product.origin}: the product has no band firemap uses")
    key = hashlib.sha1(f"{Path(product.origin).resolve()}|{resolution}".encode()).hexdigest()[:12]
    folder = _vrt_dir() / key
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{product_stem(product.product_id)}.vrt"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    tmp.write_text(vrt_xml(product, resolution))
    os.replace(tmp, path)
    log.debug("%s: %s product %s -> %s", product.origin, product.layout, product.product_id, path)
    return path


def describe_product(vrt: Path) -> list[tuple[str, str]]:
    """``firemap info`` rows for an assembled product: layout, product ID, source and band files."""
    with rasterio.open(vrt) as src:
        tags = src.tags()
        files = src.files[1:]
    rows = [("layout", tags.get("FIREMAP_LAYOUT", "file")), ("product", tags.get("PRODUCT_ID", vrt.stem)),
            ("source", tags.get("FIREMAP_SOURCE", str(vrt)))]
    if files:
        rows.append(("band files", ", ".join(Path(f).name for f in files)))
    return rows


__all__ = [
    "BandFile",
    "Product",
    "band_token",
    "describe_product",
    "find_product",
    "folder_product",
    "is_product",
    "landsat_product",
    "product_stem",
    "read_mtl",
    "resolve_source",
    "stac_product",
    "vrt_xml",
    "write_vrt",
]
