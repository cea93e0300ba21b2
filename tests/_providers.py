"""Tiny fake provider products with the real names and structures (Landsat C2 L1/L2 + MTL, pre-collection L1T,
Sentinel-2 COG folders and SAFE, HLS, STAC items), and the equivalent stacked GeoTIFF of each.

Every product here holds the same reflectance scene (:func:`scene_reflectance`), so a model must give the same
predictions on the product and on :func:`write_stack` of it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from tests.conftest import BANDS, UTM, background

SIZE = 64
"""Scene size in pixels at the finest resolution."""

L2_ID = "LC08_L2SP_044034_20200808_20200918_02_T1"
L1_ID = "LC09_L1TP_044034_20220808_20220810_02_T1"
PRE_ID = "LC80440342015100LGN00"
S2_ID = "S2A_10SEG_20200901_0_L2A"
SAFE_NAME = "S2A_MSIL2A_20200901T184921_N0214_R113_T10SEG_20200901T211303.SAFE"
HLS_ID = "HLS.S30.T10SEG.2020245T184109.v2.0"
SUN_ELEVATION = 52.0
L1_M, L1_A = 2.0e-5, -0.1

_LANDSAT_NUM = {"coastal": 1, "blue": 2, "green": 3, "red": 4, "nir": 5, "swir1": 6, "swir2": 7}
_S2_NAME = {"coastal": "B01", "blue": "B02", "green": "B03", "red": "B04", "nir": "B08", "swir1": "B11",
            "swir2": "B12"}
_S2_RES = {"coastal": 60, "blue": 10, "green": 10, "red": 10, "nir": 10, "swir1": 20, "swir2": 20}


def scene_reflectance(size: int = SIZE, seed: int = 0) -> np.ndarray:
    """``(7, size, size)`` float32 reflectance in coastal + BANDS order: vegetation, a fire square (swir2),
    a smoke patch (blue) and a burn scar (dark nir); features aligned to 6-pixel blocks so 20/60 m bands keep them."""
    refl = np.empty((7, size, size), np.float32)
    refl[1:] = background(size, size, seed)
    refl[0] = refl[1] + 0.01
    refl[6, 12:24, 36:48] = 0.9  # fire
    refl[1, 36:48, 6:18] = 0.45  # smoke (blue)
    refl[4, 42:60, 36:60] = 0.05  # burn scar (nir)
    return refl


def _canon() -> tuple[str, ...]:
    return ("coastal", *BANDS)


def _write(path: Path, data: np.ndarray, transform: Affine, nodata: float | None = 0,
           descriptions: Sequence[str] | None = None, tags: Mapping[str, str] | None = None,
           scales: Sequence[float] | None = None, offsets: Sequence[float] | None = None) -> Path:
    data = data[None] if data.ndim == 2 else data
    profile = {"driver": "GTiff", "count": data.shape[0], "height": data.shape[1], "width": data.shape[2],
               "dtype": str(data.dtype), "crs": UTM, "transform": transform, "nodata": nodata}
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i, d in enumerate(descriptions or (), start=1):
            dst.set_band_description(i, d)
        if tags:
            dst.update_tags(**tags)
        if scales is not None:
            dst.scales = tuple(scales)
        if offsets is not None:
            dst.offsets = tuple(offsets)
    return path


def _dn(refl: np.ndarray, scale: float, offset: float) -> np.ndarray:
    return np.clip(np.round((refl - offset) / scale), 1, 65535).astype(np.uint16)


def transform(res: float) -> Affine:
    """The products' grid: UTM 10N, top-left (500000, 4200000), ``res`` metres."""
    return Affine(res, 0.0, 500000.0, 0.0, -res, 4200000.0)


def write_stack(path: Path, raw: np.ndarray, descriptions: Sequence[str], res: float = 30.0, **kw: object) -> Path:
    """The equivalent stacked GeoTIFF of a product: ``raw`` ``(bands, rows, cols)`` with descriptions."""
    return _write(path, raw, transform(res), descriptions=descriptions, **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ Landsat


def _mtl_text(groups: Mapping[str, Mapping[str, object]]) -> str:
    lines = ["GROUP = LANDSAT_METADATA_FILE"]
    for name, entries in groups.items():
        lines.append(f"  GROUP = {name}")
        for k, v in entries.items():
            lines.append(f'    {k} = "{v}"' if isinstance(v, str) else f"    {k} = {v}")
        lines.append(f"  END_GROUP = {name}")
    lines += ["END_GROUP = LANDSAT_METADATA_FILE", "END"]
    return "\n".join(lines) + "\n"


def _corners(size: int, res: float) -> dict[str, float]:
    return {"CORNER_UL_PROJECTION_X_PRODUCT": 500000.0 + res / 2, "CORNER_UL_PROJECTION_Y_PRODUCT": 4200000.0 - res / 2,
            "CORNER_LR_PROJECTION_X_PRODUCT": 500000.0 + res * (size - 0.5),
            "CORNER_LR_PROJECTION_Y_PRODUCT": 4200000.0 - res * (size - 0.5)}


def landsat_l2(root: Path, refl: np.ndarray | None = None, utm_zone: int = 10, drop: Sequence[str] = ()) -> Path:
    """A Landsat-8 C2 L2SP folder: ``<ID>_SR_B1..B7.TIF``, ``<ID>_ST_B10.TIF``, ``<ID>_QA_PIXEL.TIF``, ``<ID>_MTL.txt``
    (with the L1 record groups real L2 MTLs carry). ``drop``: canonical bands whose file is left out."""
    refl = scene_reflectance() if refl is None else refl
    folder = root / L2_ID
    files: dict[str, object] = {"LANDSAT_PRODUCT_ID": L2_ID, "PROCESSING_LEVEL": "L2SP"}
    rescale: dict[str, object] = {}
    for canonical, data in zip(_canon(), refl, strict=True):
        n = _LANDSAT_NUM[canonical]
        name = f"{L2_ID}_SR_B{n}.TIF"
        files[f"FILE_NAME_BAND_{n}"] = name
        rescale |= {f"REFLECTANCE_MULT_BAND_{n}": 2.75e-05, f"REFLECTANCE_ADD_BAND_{n}": -0.2}
        if canonical not in drop:
            _write(folder / name, _dn(data, 2.75e-5, -0.2), transform(30))
    files["FILE_NAME_BAND_ST_B10"] = f"{L2_ID}_ST_B10.TIF"
    _write(folder / f"{L2_ID}_ST_B10.TIF", np.full((SIZE, SIZE), 44000, np.uint16), transform(30))
    _write(folder / f"{L2_ID}_QA_PIXEL.TIF", np.full((SIZE, SIZE), 21824, np.uint16), transform(30), nodata=1)
    mtl = {
        "PRODUCT_CONTENTS": files,
        "IMAGE_ATTRIBUTES": {"SPACECRAFT_ID": "LANDSAT_8", "SUN_ELEVATION": SUN_ELEVATION},
        "PROJECTION_ATTRIBUTES": {"UTM_ZONE": utm_zone, "GRID_CELL_SIZE_REFLECTIVE": 30.0, **_corners(SIZE, 30)},
        "LEVEL2_SURFACE_REFLECTANCE_PARAMETERS": rescale,
        "LEVEL2_SURFACE_TEMPERATURE_PARAMETERS": {"TEMPERATURE_MULT_BAND_ST_B10": 0.00341802,
                                                  "TEMPERATURE_ADD_BAND_ST_B10": 149.0},
        "LEVEL1_PROCESSING_RECORD": {"LANDSAT_PRODUCT_ID": L2_ID.replace("L2SP", "L1TP"),
                                     "FILE_NAME_BAND_1": f"{L2_ID.replace('L2SP', 'L1TP')}_B1.TIF",
                                     "FILE_NAME_BAND_9": f"{L2_ID.replace('L2SP', 'L1TP')}_B9.TIF"},
        "LEVEL1_RADIOMETRIC_RESCALING": {"REFLECTANCE_MULT_BAND_1": L1_M, "REFLECTANCE_ADD_BAND_1": L1_A},
    }
    (folder / f"{L2_ID}_MTL.txt").write_text(_mtl_text(mtl))
    return folder


def l2_stack(path: Path, refl: np.ndarray | None = None) -> Path:
    """The stacked equivalent of :func:`landsat_l2`: SR_B2..SR_B7 (uint16 DN)."""
    refl = scene_reflectance() if refl is None else refl
    raw = np.stack([_dn(b, 2.75e-5, -0.2) for b in refl[1:]])
    return write_stack(path, raw, [f"SR_B{_LANDSAT_NUM[c]}" for c in BANDS], nodata=0)


def l1_dn(refl: np.ndarray) -> np.ndarray:
    """Landsat L1 DN whose sun-corrected TOA reflectance ``(M * DN + A) / sin(elevation)`` is ``refl``."""
    sin = math.sin(math.radians(SUN_ELEVATION))
    return _dn(refl * sin, L1_M, L1_A)


def landsat_l1(root: Path, refl: np.ndarray | None = None, collection: int = 2) -> Path:
    """A Landsat L1 folder: Collection-2 ``LC09_L1TP_..._B1..B11.TIF`` + ``_MTL.txt`` (``collection=2``), or a
    pre-collection L1T ``LC8..LGN00_B1..B11.TIF`` + ``_MTL.txt`` (``collection=1``, DATA_TYPE L1T)."""
    refl = scene_reflectance() if refl is None else refl
    pid = L1_ID if collection == 2 else PRE_ID
    folder = root / pid
    files: dict[str, object] = ({"LANDSAT_PRODUCT_ID": pid, "PROCESSING_LEVEL": "L1TP"} if collection == 2
                                else {"LANDSAT_SCENE_ID": pid, "DATA_TYPE": "L1T"})
    rescale: dict[str, object] = {}
    dn = l1_dn(refl)
    for canonical, data in zip(_canon(), dn, strict=True):
        n = _LANDSAT_NUM[canonical]
        files[f"FILE_NAME_BAND_{n}"] = f"{pid}_B{n}.TIF"
        rescale |= {f"REFLECTANCE_MULT_BAND_{n}": L1_M, f"REFLECTANCE_ADD_BAND_{n}": L1_A}
        _write(folder / f"{pid}_B{n}.TIF", data, transform(30), nodata=None)
    for n in (10, 11):
        files[f"FILE_NAME_BAND_{n}"] = f"{pid}_B{n}.TIF"
        rescale |= {f"RADIANCE_MULT_BAND_{n}": 3.342e-4, f"RADIANCE_ADD_BAND_{n}": 0.1}
        _write(folder / f"{pid}_B{n}.TIF", np.full((SIZE, SIZE), 25000, np.uint16), transform(30), nodata=None)
    files["FILE_NAME_BAND_8"] = f"{pid}_B8.TIF"  # panchromatic, 15 m: not a canonical band
    _write(folder / f"{pid}_B8.TIF", np.ones((2 * SIZE, 2 * SIZE), np.uint16), transform(15), nodata=None)
    spacecraft = "LANDSAT_9" if collection == 2 else "LANDSAT_8"
    mtl = {
        "PRODUCT_CONTENTS" if collection == 2 else "PRODUCT_METADATA": files,
        "IMAGE_ATTRIBUTES": {"SPACECRAFT_ID": spacecraft, "SUN_ELEVATION": SUN_ELEVATION},
        "PROJECTION_ATTRIBUTES": {"UTM_ZONE": 10, "GRID_CELL_SIZE_REFLECTIVE": 30.0, **_corners(SIZE, 30)},
        "LEVEL1_RADIOMETRIC_RESCALING": rescale,
        "LEVEL1_THERMAL_CONSTANTS": {"K1_CONSTANT_BAND_10": 799.0284, "K2_CONSTANT_BAND_10": 1329.2405,
                                     "K1_CONSTANT_BAND_11": 475.6581, "K2_CONSTANT_BAND_11": 1198.3494},
    }
    (folder / f"{pid}_MTL.txt").write_text(_mtl_text(mtl))
    return folder


def l1_stack(path: Path, refl: np.ndarray | None = None) -> Path:
    """The stacked equivalent of :func:`landsat_l1`: B2..B7 DN with the MTL's SUN_ELEVATION as a tag."""
    raw = l1_dn(scene_reflectance() if refl is None else refl)[1:]
    return write_stack(path, raw, [f"B{_LANDSAT_NUM[c]}" for c in BANDS], nodata=None,
                       tags={"SUN_ELEVATION": str(SUN_ELEVATION), "PRODUCT_ID": L1_ID})


# ------------------------------------------------------------------------------------------------ Sentinel-2


def _coarsen(band: np.ndarray, factor: int) -> np.ndarray:
    """Block-sample a 10 m band to ``factor`` x 10 m (the value of each block's top-left pixel)."""
    return band[::factor, ::factor]


def s2_raw(refl: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Sentinel-2 L2A DN (reflectance x 10000) per canonical band at its native resolution (10/20/60 m)."""
    refl = scene_reflectance() if refl is None else refl
    return {c: _coarsen(_dn(b, 1e-4, 0.0), _S2_RES[c] // 10) for c, b in zip(_canon(), refl, strict=True)}


def sentinel2_cogs(root: Path, refl: np.ndarray | None = None, drop: Sequence[str] = ()) -> Path:
    """A Sentinel-2 L2A tile as COGs: ``B01.tif`` (60 m) ... ``B12.tif`` (20 m), ``B8A``, ``SCL``, ``TCI``."""
    folder = root / S2_ID
    for c, data in s2_raw(refl).items():
        if c not in drop:
            _write(folder / f"{_S2_NAME[c]}.tif", data, transform(_S2_RES[c]))
    _write(folder / "B8A.tif", s2_raw(refl)["nir"][::2, ::2], transform(20))
    _write(folder / "SCL.tif", np.full((SIZE // 2, SIZE // 2), 4, np.uint8), transform(20))
    _write(folder / "TCI.tif", np.zeros((3, SIZE, SIZE), np.uint8), transform(10))
    return folder


def s2_stack(path: Path, refl: np.ndarray | None = None) -> Path:
    """The stacked equivalent of the Sentinel-2 products on the 10 m grid: 20 m bands repeated 2 x 2 (nearest)."""
    bands = []
    for c in BANDS:
        f = _S2_RES[c] // 10
        bands.append(np.repeat(np.repeat(s2_raw(refl)[c], f, 0), f, 1))
    return write_stack(path, np.stack(bands), [_S2_NAME[c] for c in BANDS], res=10, nodata=0)


def sentinel2_safe(root: Path, refl: np.ndarray | None = None) -> Path:
    """A SAFE folder: ``GRANULE/L2A_*/IMG_DATA/R10m/T10SEG_*_B02_10m.jp2`` etc. (GeoTIFF bytes: GDAL opens by
    content), with 20 m copies of the 10 m bands in R20m as the real product has."""
    folder = root / SAFE_NAME
    img = folder / "GRANULE" / "L2A_T10SEG_A027180_20200901T185313" / "IMG_DATA"
    stem = "T10SEG_20200901T184921"
    (folder / "MTD_MSIL2A.xml").parent.mkdir(parents=True, exist_ok=True)
    (folder / "MTD_MSIL2A.xml").write_text("<n1:Level-2A_User_Product/>")
    for c, data in s2_raw(refl).items():
        res = _S2_RES[c]
        _write(img / f"R{res}m" / f"{stem}_{_S2_NAME[c]}_{res}m.jp2", data, transform(res))
        if res == 10:  # the coarser copies must not win
            _write(img / "R20m" / f"{stem}_{_S2_NAME[c]}_20m.jp2", data[::2, ::2] // 2, transform(20))
    return folder


def hls_folder(root: Path, refl: np.ndarray | None = None) -> Path:
    """An HLS S30 granule: ``HLS.S30.T10SEG.2020245T184109.v2.0.B02.tif`` ... at 30 m (x 0.0001), with Fmask."""
    refl = scene_reflectance() if refl is None else refl
    folder = root / HLS_ID
    names = {"coastal": "B01", "blue": "B02", "green": "B03", "red": "B04", "nir": "B8A", "swir1": "B11",
             "swir2": "B12"}
    for c, data in zip(_canon(), refl, strict=True):
        _write(folder / f"{HLS_ID}.{names[c]}.tif", _dn(data, 1e-4, 0.0).astype(np.int16), transform(30),
               nodata=-9999)
    _write(folder / f"{HLS_ID}.Fmask.tif", np.zeros((SIZE, SIZE), np.uint8), transform(30), nodata=255)
    return folder


def hls_stack(path: Path, refl: np.ndarray | None = None) -> Path:
    """The stacked equivalent of :func:`hls_folder`."""
    refl = scene_reflectance() if refl is None else refl
    raw = np.stack([_dn(b, 1e-4, 0.0).astype(np.int16) for b in refl[1:]])
    return write_stack(path, raw, ["B02", "B03", "B04", "B8A", "B11", "B12"], nodata=-9999,
                       tags={"HLS_PRODUCT": HLS_ID})


def stac_item(root: Path, refl: np.ndarray | None = None, scale: float = 2e-5, offset: float = -0.1,
              with_bands: bool = True) -> Path:
    """A STAC Item (1.0, eo + raster extensions) whose assets are named by common name (``red``, ``swir22``...),
    hrefs relative to the item, and ``raster:bands`` scale/offset that no sensor preset knows."""
    refl = scene_reflectance() if refl is None else refl
    folder = root / "stac"
    assets: dict[str, object] = {"thumbnail": {"href": "./thumb.jpg", "roles": ["thumbnail"]}}
    common = {"coastal": "coastal", "blue": "blue", "green": "green", "red": "red", "nir": "nir08",
              "swir1": "swir16", "swir2": "swir22"}
    if with_bands:
        for c, data in zip(_canon(), refl, strict=True):
            name = f"{common[c]}.tif"
            _write(folder / "data" / name, _dn(data, scale, offset), transform(30))
            assets[common[c]] = {
                "href": f"./data/{name}", "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                "roles": ["data"], "eo:bands": [{"name": common[c], "common_name": common[c]}],
                "raster:bands": [{"nodata": 0, "data_type": "uint16", "scale": scale, "offset": offset}],
            }
    item = {"type": "Feature", "stac_version": "1.0.0", "id": "fake-sat-20200901-T10SEG",
            "stac_extensions": ["https://stac-extensions.github.io/eo/v1.0.0/schema.json",
                                "https://stac-extensions.github.io/raster/v1.1.0/schema.json"],
            "geometry": None, "bbox": [-123.0, 37.0, -122.0, 38.0],
            "properties": {"datetime": "2020-09-01T18:49:21Z", "platform": "fakesat-1"},
            "links": [], "assets": assets}
    path = folder / "fake-sat-20200901-T10SEG.json"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(item, indent=1))
    return path


def stac_stack(path: Path, refl: np.ndarray | None = None, scale: float = 2e-5, offset: float = -0.1) -> Path:
    """The stacked equivalent of :func:`stac_item`: descriptions blue..swir2 and GDAL scale/offset."""
    refl = scene_reflectance() if refl is None else refl
    raw = np.stack([_dn(b, scale, offset) for b in refl[1:]])
    return write_stack(path, raw, list(BANDS), nodata=0, scales=[scale] * 6, offsets=[offset] * 6)
