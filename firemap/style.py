"""QGIS styles (QML) for the class raster and the polygons, and where to put them so QGIS applies them.

QGIS applies a style automatically when a layer is opened if ``<file without extension>.qml`` lies beside
the file, or (GeoPackage) if the file's ``layer_styles`` table holds a default style for the layer. The
outputs of ``firemap predict`` for a scene ``<stem>`` are styled like this (checked with QGIS 3.22 in
``tests/test_qgis.py``):

- ``<stem>.classes.qml``: the raster style (paletted: class names and colours; background 0 and nodata 255
  transparent). QGIS loads it automatically for ``<stem>.classes.tif``.
- ``<stem>.qml``: ONE QML document carrying both the raster style and the vector style (categorized by
  ``class``, semi-transparent fill, solid outline). A raster layer reads only the raster part and a vector
  layer only the vector part, so this file is the class raster's style (Layer Properties > Style > Load
  Style) and is also picked up automatically by ``<stem>.geojson`` / ``<stem>.gpkg``. A raster-only
  ``<stem>.qml`` would be silently ignored by the vector layer (QGIS keeps its single-symbol default).
- ``<stem>.gpkg`` additionally embeds the vector style as the default in its ``layer_styles`` table (QGIS's
  schema), so the style travels with the file when it is copied alone. QGIS hides that table from the
  layer list. (:func:`firemap.vectorize.write_vectors` embeds it while writing the file.)

A raster-only ``<stem>.qml`` (the first idea) was checked and rejected: QGIS 3.22 loads it for
``<stem>.geojson`` without error but keeps the single-symbol default, so the polygons would not be styled.
"""

from __future__ import annotations

import datetime
import logging
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from firemap.config import ClassInfo
from firemap.raster import atomic_output

log = logging.getLogger(__name__)

QGIS_VERSION = "3.22.0"
"""QGIS version written in the styles (the oldest LTR they are tested with)."""
FILL_ALPHA = 102
"""Polygon fill opacity, 0-255 (40 %); outlines are opaque."""
OUTLINE_WIDTH_MM = 0.4
_DOCTYPE = "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
_POLYGON_GEOMETRY_TYPE = "2"  # QgsWkbTypes::PolygonGeometry


def raster_qml(classes: Sequence[ClassInfo]) -> str:
    """QML of a paletted (unique values) renderer for the uint8 class raster.

    One palette entry per class (value = class id, label = class name, opaque class colour). Values not in
    the palette are drawn transparent: background 0 and nodata 255 (which the file also declares as nodata).
    Resampling is nearest neighbour, as classes must not be interpolated.
    """
    root = _qgis_root()
    _add_raster_pipe(root, classes)
    ET.SubElement(root, "blendMode").text = "0"
    return _serialize(root)


def vector_qml(classes: Sequence[ClassInfo]) -> str:
    """QML of a categorized renderer on the ``class`` attribute for the polygon layer.

    Each class gets a simple fill in its colour at :data:`FILL_ALPHA` and a solid opaque outline of
    :data:`OUTLINE_WIDTH_MM` mm; the legend shows the class names.
    """
    root = _qgis_root()
    _add_vector_renderer(root, classes)
    return _serialize(root)


def combined_qml(classes: Sequence[ClassInfo]) -> str:
    """One QML with both the raster and the vector style: each layer type reads its own part."""
    root = _qgis_root()
    _add_vector_renderer(root, classes)
    _add_raster_pipe(root, classes)
    ET.SubElement(root, "blendMode").text = "0"
    return _serialize(root)


def _qgis_root() -> ET.Element:
    return ET.Element("qgis", {"version": QGIS_VERSION, "styleCategories": "AllStyleCategories",
                               "hasScaleBasedVisibilityFlag": "0", "minScale": "1e+08", "maxScale": "0"})


def _serialize(root: ET.Element) -> str:
    ET.indent(root)
    return _DOCTYPE + ET.tostring(root, encoding="unicode") + "\n"


def _hex(color: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*color)


def _add_raster_pipe(root: ET.Element, classes: Sequence[ClassInfo]) -> None:
    pipe = ET.SubElement(root, "pipe")
    provider = ET.SubElement(pipe, "provider")
    ET.SubElement(provider, "resampling", {"enabled": "false", "maxOversampling": "2",
                                           "zoomedInResamplingMethod": "nearestNeighbour",
                                           "zoomedOutResamplingMethod": "nearestNeighbour"})
    renderer = ET.SubElement(pipe, "rasterrenderer", {"type": "paletted", "band": "1", "opacity": "1",
                                                      "alphaBand": "-1", "nodataColor": ""})
    ET.SubElement(renderer, "rasterTransparency")
    palette = ET.SubElement(renderer, "colorPalette")
    for c in sorted(classes, key=lambda c: c.id):
        ET.SubElement(palette, "paletteEntry", {"value": str(c.id), "color": _hex(c.color), "alpha": "255",
                                                "label": c.name})
    ET.SubElement(pipe, "brightnesscontrast", {"brightness": "0", "contrast": "0", "gamma": "1"})
    ET.SubElement(pipe, "huesaturation", {"saturation": "0", "grayscaleMode": "0", "invertColors": "0",
                                          "colorizeOn": "0", "colorizeRed": "255", "colorizeGreen": "128",
                                          "colorizeBlue": "128", "colorizeStrength": "100"})
    ET.SubElement(pipe, "rasterresampler", {"maxOversampling": "2"})


def _add_vector_renderer(root: ET.Element, classes: Sequence[ClassInfo]) -> None:
    renderer = ET.SubElement(root, "renderer-v2", {"type": "categorizedSymbol", "attr": "class",
                                                   "symbollevels": "0", "enableorderby": "0",
                                                   "forceraster": "0", "referencescale": "-1"})
    categories = ET.SubElement(renderer, "categories")
    symbols = ET.SubElement(renderer, "symbols")
    for i, c in enumerate(classes):
        ET.SubElement(categories, "category", {"symbol": str(i), "value": c.name, "label": c.name,
                                               "render": "true"})
        symbols.append(_fill_symbol(str(i), c.color))
    ET.SubElement(root, "layerGeometryType").text = _POLYGON_GEOMETRY_TYPE


def _fill_symbol(name: str, color: tuple[int, int, int]) -> ET.Element:
    rgb = ",".join(str(v) for v in color)
    props = {"color": f"{rgb},{FILL_ALPHA}", "style": "solid", "outline_color": f"{rgb},255",
             "outline_style": "solid", "outline_width": str(OUTLINE_WIDTH_MM), "outline_width_unit": "MM",
             "joinstyle": "miter"}
    symbol = ET.Element("symbol", {"type": "fill", "name": name, "alpha": "1", "clip_to_extent": "1",
                                   "force_rhr": "0"})
    layer = ET.SubElement(symbol, "layer", {"class": "SimpleFill", "enabled": "1", "locked": "0", "pass": "0"})
    options = ET.SubElement(layer, "Option", {"type": "Map"})  # read by QGIS >= 3.20
    for k, v in props.items():
        ET.SubElement(options, "Option", {"name": k, "type": "QString", "value": v})
        ET.SubElement(layer, "prop", {"k": k, "v": v})  # read by older QGIS 3
    return symbol


def write_qml(path: str | os.PathLike[str], text: str, overwrite: bool = False) -> Path:
    """Write a QML document atomically.

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
    """
    final = Path(path)
    with atomic_output(final, overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return final


def embed_gpkg_style(
    path: str | os.PathLike[str], layer: str, classes: Sequence[ClassInfo], name: str = "firemap"
) -> None:
    """Store the vector style as the default style of ``layer`` in a GeoPackage's ``layer_styles`` table.

    Uses the table QGIS creates ("Save as default" in a GeoPackage; columns f_table_catalog,
    f_table_schema, f_table_name, f_geometry_column, styleName, styleQML, styleSLD, useAsDefault,
    description, owner, ui, update_time), registered in ``gpkg_contents`` as an attributes table by GDAL.
    QGIS applies the newest default style of a layer when it opens it.

    Args:
        path: an existing GeoPackage (e.g. the temporary file of :func:`firemap.vectorize.write_vectors`).
        layer: the feature table to style.
        classes: the classes.
        name: style name shown in QGIS.
    """
    import pandas as pd  # only here: predict writing GeoJSON imports neither (start-up)
    import pyogrio

    geometry_column = pyogrio.read_info(path, layer=layer)["geometry_name"] or "geom"
    row = pd.DataFrame({
        "f_table_catalog": [""], "f_table_schema": [""], "f_table_name": [layer],
        "f_geometry_column": [geometry_column], "styleName": [name], "styleQML": [vector_qml(classes)],
        "styleSLD": [""], "useAsDefault": [True], "description": ["firemap classes"], "owner": [""],
        "ui": [""], "update_time": [pd.Timestamp(datetime.datetime.now(datetime.timezone.utc))],
    })
    exists = "layer_styles" in pyogrio.list_layers(path)[:, 0]
    pyogrio.write_dataframe(row, path, layer="layer_styles", driver="GPKG", append=exists,
                            layer_options=None if exists else {"FID": "id"})


def write_styles(
    out_dir: str | os.PathLike[str],
    stem: str,
    classes: Sequence[ClassInfo],
    vector_format: Literal["geojson", "gpkg"] = "geojson",
    overwrite: bool = False,
) -> list[Path]:
    """Write the QGIS style files of a scene's outputs (see the module docstring for why these files).

    Writes ``<stem>.qml`` (raster + vector style in one document: the class raster's style, and auto-applied
    by QGIS to ``<stem>.geojson`` and ``<stem>.gpkg``) and ``<stem>.classes.qml`` (auto-applied to
    ``<stem>.classes.tif``). Both vector formats get the same files; a GeoPackage also carries the style
    inside, written with it by :func:`firemap.vectorize.write_vectors` (this function never modifies it).

    Args:
        out_dir: the output folder.
        stem: the scene's file stem.
        classes: the classes.
        vector_format: format of the polygon output, ``geojson`` or ``gpkg``.
        overwrite: replace existing QML files.

    Returns:
        The QML files written.

    Raises:
        OutputExistsError: a QML file exists and ``overwrite`` is False.
        ValueError: unknown ``vector_format``.
    """
    if vector_format not in ("geojson", "gpkg"):
        raise ValueError(f"unknown vector format {vector_format!r}; use 'geojson' or 'gpkg'")
    out = Path(out_dir)
    return [
        write_qml(out / f"{stem}.qml", combined_qml(classes), overwrite),
        write_qml(out / f"{stem}.classes.qml", raster_qml(classes), overwrite),
    ]
