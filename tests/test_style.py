"""The class raster's embedded colour table and the styles written beside it, read back from the files."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import rasterio

from firemap.config import DEFAULT_CLASSES, PredictConfig
from firemap.models import Bundle
from firemap.predict import predict_scene
from tests.conftest import background


def test_class_raster_colour_table_and_style(tmp_path: Path, write_tif: object, threshold_bundle: Bundle) -> None:
    image = background(64, 64)
    image[5, 10:20, 10:20] = 0.9  # fire
    scene = write_tif(image)  # type: ignore[operator]
    result = predict_scene(scene, tmp_path / "out", threshold_bundle, PredictConfig(tile_size=64, overlap=16,
                                                                                     device="cpu"))
    with rasterio.open(result.outputs["classes"]) as src:
        table, values = src.colormap(1), src.read(1)
    assert set(np.unique(values)) == {0, 1}
    # TIFF palettes have no alpha: background comes back opaque, so it is white, never black
    assert table[0] == (255, 255, 255, 255)
    assert [table[c.id] for c in DEFAULT_CLASSES] == [(*c.color, 255) for c in DEFAULT_CLASSES]
    assert table[255] == (0, 0, 0, 0)  # nodata: transparent
    # the QGIS style beside it lists only the classes: QGIS draws background 0 and nodata 255 transparent
    qml = result.outputs["classes"].with_suffix(".qml")
    root = ET.fromstring(qml.read_text(encoding="utf-8").split("\n", 1)[1])
    entries = [(e.get("value"), e.get("color"), e.get("label")) for e in root.iter("paletteEntry")]
    assert entries == [("1", "#ff2800", "fire"), ("2", "#96bee6", "smoke"), ("3", "#5a2814", "burn_scar")]
