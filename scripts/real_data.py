"""The real-scene split of ``configs/default_model.yaml``, shared by ``train_default.py`` and ``eval_real.py``.

Everything derived from ``../shared/data`` (VRT stacks of per-band files, VRT crops, weak-label rasters) is written
under a work folder (``runs/...``), never into the repository. Crops are VRT windows (``vrt://...?srcwin=``), so a
training source physically contains only its training rows: a held-out row can reach no tile, no normalization
statistic and no oversampling table.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
import rasterio
import rasterio.shutil
import yaml
from scipy import ndimage

from firemap import CLASS_NAMES
from firemap.label import label_config, label_scene
from firemap.raster import CLASS_NODATA

log = logging.getLogger("real_data")

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs" / "default_model.yaml"


def load_recipe(path: Path = RECIPE) -> dict[str, Any]:
    """The YAML recipe as a dict (paths as written; see :func:`data_path`)."""
    recipe: dict[str, Any] = yaml.safe_load(path.read_text())
    return recipe


def data_path(recipe: dict[str, Any], rel: str) -> Path:
    """A path under the recipe's ``data`` folder (relative to the repository root)."""
    return (REPO / recipe["data"] / rel).resolve()


@dataclass(frozen=True)
class Scene:
    """One real scene of the recipe.

    Attributes:
        name: short name.
        path: the image (a file, or a VRT stack built under the work folder).
        sensor: firemap sensor preset.
        bands: ``--bands`` spec or None.
        split: ``north`` (rows above the middle minus the halo train, the southern half is scored), ``all``
            (trained on whole, not scored as held out), ``none`` (never trained on, scored whole).
        role: ``fire`` (Corumba) or ``fire_free``.
        height: rows.
        width: columns.
        note: what is in it.
        lava: True where hot pixels are lava (a thermal anomaly, not a wildfire: fire 0 if trained on, as in the
            simulator; fire polygons over them are counted apart in validation).
    """

    name: str
    path: Path
    sensor: str
    bands: str | None
    split: str
    role: str
    height: int
    width: int
    note: str = ""
    lava: bool = False


def _vrt_band(i: int, source: Path, src_band: int, shape: tuple[int, int], dst: tuple[int, int], desc: str) -> str:
    return (f'  <VRTRasterBand dataType="UInt16" band="{i}">\n    <Description>{escape(desc)}</Description>\n'
            f"    <NoDataValue>0</NoDataValue>\n    <SimpleSource>\n"
            f'      <SourceFilename relativeToVRT="0">{escape(str(source))}</SourceFilename>\n'
            f"      <SourceBand>{src_band}</SourceBand>\n"
            f'      <SrcRect xOff="0" yOff="0" xSize="{shape[1]}" ySize="{shape[0]}"/>\n'
            f'      <DstRect xOff="0" yOff="0" xSize="{dst[1]}" ySize="{dst[0]}"/>\n'
            f"    </SimpleSource>\n  </VRTRasterBand>\n")


def stack_vrt(files: dict[str, Path], out: Path) -> Path:
    """Stack single-band files (description -> file) into one VRT on the grid of the first file.

    Files of coarser resolution over the same extent are resampled (nearest) onto that grid.
    """
    first = next(iter(files.values()))
    with rasterio.open(first) as ref:
        height, width, crs, transform = ref.height, ref.width, ref.crs, ref.transform
    gt = ", ".join(f"{v:.10g}" for v in transform.to_gdal())
    parts = [f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">\n  <SRS>{escape(crs.to_wkt())}</SRS>\n'
             f"  <GeoTransform>{gt}</GeoTransform>\n"]
    for i, (desc, path) in enumerate(files.items(), start=1):
        with rasterio.open(path) as src:
            parts.append(_vrt_band(i, path, 1, (src.height, src.width), (height, width), desc))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(parts) + "</VRTDataset>\n")
    return out


def crop_vrt(path: Path, out: Path, rows: tuple[int, int]) -> Path:
    """A VRT holding only rows ``[rows[0], rows[1])`` of ``path`` (all columns), metadata kept."""
    with rasterio.open(path) as src:
        width = src.width
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        out.unlink()
    rasterio.shutil.copy(f"vrt://{path.resolve()}?srcwin=0,{rows[0]},{width},{rows[1] - rows[0]}", out,
                         driver="VRT")
    return out


def scenes(recipe: dict[str, Any], work: Path) -> list[Scene]:
    """All real scenes of the recipe (Corumba post-fire first), stacking per-band files into VRTs as needed."""
    out = []
    cor = recipe["corumba"]
    for entry in [{"name": "corumba_20190825", "file": cor["post"], "sensor": cor["sensor"], "split": "corumba",
                   "role": "fire", "note": cor.get("note", "")}, *recipe["fire_free"]]:
        if "stack" in entry:
            path = stack_vrt({d: data_path(recipe, f) for d, f in entry["stack"].items()},
                             work / "stacks" / f"{entry['name']}.vrt")
        else:
            path = data_path(recipe, entry["file"])
        with rasterio.open(path) as src:
            shape = src.height, src.width
        out.append(Scene(entry["name"], path, entry["sensor"], entry.get("bands"), entry["split"],
                         entry.get("role", "fire_free"), *shape, entry.get("note", ""), bool(entry.get("lava"))))
    return out


def train_rows(scene: Scene, recipe: dict[str, Any]) -> tuple[int, int] | None:
    """The rows of a scene that training may read, or None (never trained on)."""
    if scene.split == "corumba":
        return 0, int(recipe["corumba"]["heldout_row"]) - int(recipe["halo"])
    if scene.split == "north":
        return 0, scene.height // 2 - int(recipe["fire_free_halo"])
    if scene.split == "all":
        return 0, scene.height
    return None


def eval_rows(scene: Scene, recipe: dict[str, Any]) -> tuple[int, int] | None:
    """The held-out rows of a scene that validation scores, or None (trained on whole)."""
    if scene.split == "corumba":
        return int(recipe["corumba"]["heldout_row"]), scene.height
    if scene.split == "north":
        return scene.height // 2, scene.height
    if scene.split == "none":
        return 0, scene.height
    return None


def corumba_labels(recipe: dict[str, Any], folder: Path, image: Path, pre: Path, options: dict[str, Any]) -> Path:
    """``firemap label`` of a Corumba image against its pre-fire image (same grid), with ``options``."""
    cfg = label_config(**{"sensor": recipe["corumba"]["sensor"], "overwrite": True, **options})
    result = label_scene(image, folder, cfg, pre_fire=pre)
    return result.outputs["labels"]


def _write_labels(path: Path, valid: np.ndarray, hot: np.ndarray, scar: np.ndarray, profile: dict[str, Any],
                  **tags: str) -> Path:
    """Write bands-format labels ``(fire, smoke, burn_scar)`` uint8: fire 0 on valid pixels away from ``hot``
    (255 there), smoke 255, burn_scar ``scar`` (0/1) on valid pixels; 255 off ``valid``. Arrays ``(rows, cols)``."""
    out = np.full((3, *valid.shape), CLASS_NODATA, np.uint8)
    out[0] = np.where(valid & ~hot, 0, CLASS_NODATA)
    out[2] = np.where(valid, scar.astype(np.uint8), CLASS_NODATA)
    profile = {**profile, "driver": "GTiff", "count": 3, "dtype": "uint8", "nodata": CLASS_NODATA,
               "compress": "deflate"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(out)
        dst.descriptions = CLASS_NAMES
        dst.update_tags(**tags)
    return path


def negative_labels(scene: Scene, image: Path, folder: Path) -> Path:
    """Labels of a fire-free scene: fire 0 and burn_scar 0 on valid pixels, smoke 255 (not labelled).

    Pixels that pass an unambiguous fire test or Schroeder's loose candidate test, and their 2-pixel surroundings,
    are fire 255 (a rule's false alarm, an unknown hot spot, or on ``lava`` scenes lava: neither taught as fire nor
    as "no fire", as the simulator leaves its lava and industrial hot spots unlabelled).
    """
    cfg = label_config(sensor=scene.sensor, bands=scene.bands, fire_tests="unambiguous", combine="union",
                       rules=("schroeder", "murphy"), smoke=False, overwrite=True)
    result = label_scene(image, folder / "rules", cfg)
    with rasterio.open(result.outputs["labels"]) as src:
        labels, profile = src.read(), src.profile
    valid = labels[2] != CLASS_NODATA  # burn_scar: NBR labelled wherever nir/swir2 are valid
    hot = ndimage.binary_dilation((labels[0] != 0) & valid, iterations=2) & valid
    path = _write_labels(folder / f"{image.name.split('.')[0]}.labels.tif", valid, hot, np.zeros_like(valid),
                         profile, LABELLER="scripts/real_data.py negative_labels",
                         HOT_PIXELS_UNLABELLED=str(int(hot.sum())))
    log.info("%s: fire-free labels, %d hot pixels left unlabelled", scene.name, int(hot.sum()))
    return path


CALIFORNIA_HOT_SWIR2 = 0.35
"""California crops: pixels with swir2 (B12) reflectance >= this (a real flaming front, as on FRENCH_20240704, or
bright bare soil, as on DOVE_20241019) and 2 px around them are fire 255 (not labelled); the rest is fire 0."""


def california_labels(data: Path, names: list[str], folder: Path) -> Path:
    """Masks in the bands format (fire, smoke, burn_scar) for the California Sentinel-2 crops ``names``.

    burn_scar comes from the CAL FIRE perimeter mask (value 1); smoke is 255; **fire is 0** on valid pixels except
    near bright SWIR2 (:data:`CALIFORNIA_HOT_SWIR2`), 255 there. Without it the crops give the fire head no
    negative example at all (the crops label burn scars only), and a fine-tuning that teaches fire on Landsat
    scenes called fire on 40 spots of the six crops (shipped v2: 2, both on FRENCH's real front).

    Returns:
        The folder of masks, named like the images.
    """
    from rasterio.windows import Window

    from firemap.bands import model_sources, resolve_bands
    from firemap.raster import open_scene, read_window

    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        info = open_scene(data / "images" / f"{name}.tif")
        bandmap = resolve_bands(info.descriptions, info.count, None, None, info.tags, info.scales, info.offsets)
        sources, zero = model_sources(bandmap, ("swir2",))
        with rasterio.open(info.path) as src:
            (swir2,), valid = read_window(src, Window(0, 0, info.grid.width, info.grid.height), sources, zero)
        with rasterio.open(data / "masks" / f"{name}.tif") as src:
            mask, profile = src.read(1), src.profile
        hot = ndimage.binary_dilation((swir2 >= CALIFORNIA_HOT_SWIR2) & valid, iterations=2)
        _write_labels(folder / f"{name}.tif", valid, hot, mask == 1, profile,
                      LABELLER="scripts/real_data.py california_labels", HOT_PIXELS_UNLABELLED=str(int(hot.sum())))
        log.info("%s: California labels, %d bright-SWIR2 pixels left unlabelled for fire", name, int(hot.sum()))
    return folder
