"""Open firemap outputs in real QGIS and report what QGIS sees, as JSON on stdout.

Run by ``tests/test_qgis.py`` with the system Python that has QGIS's bindings (Debian ``python3-qgis``)::

    QT_QPA_PLATFORM=offscreen /usr/bin/python3 tests/qgis_check.py SPEC.json

``SPEC.json``::

    {"render": {"crs": "EPSG:32633", "extent": [xmin, ymin, xmax, ymax], "size": [width, height]},
     "layers": [{"name": "classes", "kind": "raster" | "vector", "path": "...",
                 "style": "optional .qml to load explicitly", "probe": [[col, row], ...]}]}

Each layer is opened the way QGIS opens a file the user adds (default style loaded: a ``.qml`` beside it or
the GeoPackage's ``layer_styles``), checked to be valid, then rendered alone on the common render grid;
``probe`` pixels of the rendered image are reported as RGBA. Exit code 1 if a layer is not valid.
This file must not import firemap: it runs outside the project's virtualenv.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsMapLayer,
    QgsMapRendererSequentialJob,
    QgsMapSettings,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor


def renderer_info(layer: QgsMapLayer) -> dict[str, Any]:
    """Renderer type and its classes (paletted raster) or categories (categorized vector)."""
    r = layer.renderer()
    info: dict[str, Any] = {"renderer": r.type() if r else None}
    if r is not None and r.type() == "paletted":
        info["classes"] = [{"value": int(c.value), "label": c.label, "color": c.color.name(),
                            "alpha": c.color.alpha()} for c in r.classes()]
    if r is not None and r.type() == "categorizedSymbol":
        info["attribute"] = r.classAttribute()
        info["categories"] = [{"value": c.value(), "label": c.label(), "color": c.symbol().color().name(),
                               "fill_alpha": c.symbol().color().alpha()} for c in r.categories()]
    return info


def render_probe(layer: QgsMapLayer, render: dict[str, Any], probe: list[list[int]]) -> list[list[int]]:
    """Render ``layer`` alone on the render grid; RGBA of the probed (col, row) pixels."""
    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(QgsCoordinateReferenceSystem(render["crs"]))
    settings.setExtent(QgsRectangle(*render["extent"]))
    settings.setOutputSize(QSize(*render["size"]))
    settings.setBackgroundColor(QColor(0, 0, 0, 0))
    job = QgsMapRendererSequentialJob(settings)
    job.start()
    job.waitForFinished()
    image = job.renderedImage()
    return [list(image.pixelColor(col, row).getRgb()) for col, row in probe]


def open_layer(spec: dict[str, Any]) -> QgsMapLayer:
    """Open a layer as QGIS does when a user adds a file (default style loaded)."""
    if spec["kind"] == "raster":
        return QgsRasterLayer(spec["path"], spec["name"])
    return QgsVectorLayer(spec["path"], spec["name"], "ogr")


def check_layer(spec: dict[str, Any], render: dict[str, Any]) -> dict[str, Any]:
    """Open, optionally restyle, describe and render one layer."""
    layer = open_layer(spec)
    out: dict[str, Any] = {"valid": layer.isValid(), "crs": layer.crs().authid()}
    if not layer.isValid():
        return out
    if spec.get("style"):
        _message, ok = layer.loadNamedStyle(spec["style"])
        out["style_loaded"] = bool(ok)
    if isinstance(layer, QgsVectorLayer):
        out["features"] = layer.featureCount()
        out["fields"] = [f.name() for f in layer.fields()]
        out["geometry_type"] = layer.geometryType()
    else:
        out["size"] = [layer.width(), layer.height()]
    out.update(renderer_info(layer))
    if spec.get("probe"):
        out["probe"] = render_probe(layer, render, spec["probe"])
    return out


def main(spec_path: str) -> int:
    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    app = QgsApplication([], False)
    app.initQgis()
    try:
        report = {"qgis": Qgis.QGIS_VERSION,
                  "layers": {s["name"]: check_layer(s, spec["render"]) for s in spec["layers"]}}
    finally:
        app.exitQgis()
    print(json.dumps(report))
    invalid = [name for name, layer in report["layers"].items() if not layer["valid"]]
    if invalid:
        print(f"invalid layers: {invalid}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
