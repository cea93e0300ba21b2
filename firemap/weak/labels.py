"""Image-level labels: which classes a scene, or a window of it, shows (present / absent / unknown).

A label file is a CSV or a YAML list. Each entry names a scene (a path, relative to the label file), optionally a
pixel window of it, and for each class whether it is present, absent or unknown:

CSV (header required; ``col,row,width,height`` optional, all four or none; blank = the whole scene)::

    scene,col,row,width,height,burn_scar,smoke
    scenes/CANAL.tif,0,0,32,32,yes,no
    scenes/CANAL.tif,32,0,32,32,?,no

YAML::

    - {scene: scenes/CANAL.tif, window: [0, 0, 32, 32], burn_scar: yes, smoke: no}
    - {scene: scenes/DOVE.tif, burn_scar: present}          # the whole scene

Accepted values: present = ``1, yes, y, true, present``; absent = ``0, no, n, false, absent``; unknown =
blank, ``?, unknown, na``. Classes not given are unknown.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rasterio.windows import Window

from firemap.config import DEFAULT_CLASSES
from firemap.errors import InputFileError, LabelFileError

log = logging.getLogger(__name__)

CLASSES = tuple(c.name for c in DEFAULT_CLASSES)
"""Classes an image-level label may name: fire, smoke, burn_scar."""

PRESENT, ABSENT = 1, 0
_PRESENT = {"1", "yes", "y", "true", "present"}
_ABSENT = {"0", "no", "n", "false", "absent"}
_UNKNOWN = {"", "?", "unknown", "na", "none"}
_WINDOW_KEYS = ("col", "row", "width", "height")


@dataclass(frozen=True)
class ImageLabel:
    """The image-level labels of one scene or window.

    Attributes:
        scene: the scene file.
        window: the pixel window (col_off, row_off, width, height) of the scene, or None for the whole scene.
        classes: class name -> :data:`PRESENT` or :data:`ABSENT`; classes not listed are unknown.
    """

    scene: Path
    window: Window | None
    classes: Mapping[str, int] = field(default_factory=dict)

    def known(self, names: Sequence[str]) -> bool:
        """Whether every class of ``names`` is labelled (present or absent) here."""
        return all(n in self.classes for n in names)


def _value(raw: Any, where: str, name: str) -> int | None:
    text = ("" if raw is None else str(raw)).strip().lower()
    if text in _PRESENT:
        return PRESENT
    if text in _ABSENT:
        return ABSENT
    if text in _UNKNOWN:
        return None
    raise LabelFileError(
        f"{where}: {name}={raw!r} is not a label; use present (1/yes/present), absent (0/no/absent) or unknown "
        "(blank/?/unknown)"
    )


def _window(raw: Any, where: str) -> Window | None:
    if raw is None or (isinstance(raw, Sequence) and not isinstance(raw, str) and all(
            v is None or str(v).strip() == "" for v in raw)):
        return None
    try:
        values = [int(str(v).strip()) for v in (raw.replace(",", " ").split() if isinstance(raw, str) else raw)]
    except (TypeError, ValueError):
        values = []
    if len(values) != 4 or values[2] <= 0 or values[3] <= 0 or values[0] < 0 or values[1] < 0:
        raise LabelFileError(
            f"{where}: window {raw!r} must be 4 integers col, row, width, height (pixels, width and height > 0); "
            "leave it out for the whole scene"
        )
    return Window(*values)


def _entry(row: Mapping[str, Any], base: Path, where: str) -> ImageLabel:
    keys = {str(k).strip().lower(): v for k, v in row.items() if k is not None}
    unknown = sorted(set(keys) - {"scene", "window", *_WINDOW_KEYS, *CLASSES})
    if unknown:
        raise LabelFileError(
            f"{where}: unknown column(s) {unknown}; accepted: scene, window (or col,row,width,height), "
            f"{', '.join(CLASSES)}"
        )
    scene = str(keys.get("scene") or "").strip()
    if not scene:
        raise LabelFileError(f"{where}: no scene path; every entry needs scene: PATH (relative to the label file)")
    path = Path(scene) if Path(scene).is_absolute() else base / scene
    if not path.is_file():
        raise InputFileError(f"{where}: scene {path} not found; paths are relative to the label file's folder")
    window = _window(keys.get("window", [keys.get(k) for k in _WINDOW_KEYS]), where)
    classes = {n: v for n in CLASSES if n in keys and (v := _value(keys[n], where, n)) is not None}
    return ImageLabel(path, window, classes)


def _rows(path: Path) -> Iterable[tuple[str, Mapping[str, Any]]]:
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise LabelFileError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        data = data.get("labels") if isinstance(data, dict) else data
        if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
            raise LabelFileError(f"{path}: expected a YAML list of entries like {{scene: a.tif, burn_scar: yes}}")
        return ((f"{path.name} entry {i + 1}", d) for i, d in enumerate(data))
    reader = csv.DictReader(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    if not reader.fieldnames or "scene" not in [f.strip().lower() for f in reader.fieldnames]:
        raise LabelFileError(f"{path}: the CSV needs a header with a 'scene' column, e.g. scene,burn_scar")
    return ((f"{path.name} line {i + 2}", r) for i, r in enumerate(reader))


def read_labels(path: str | Path) -> list[ImageLabel]:
    """Read a label file (``.csv``, or ``.yaml``/``.yml``).

    Returns:
        The entries in file order.

    Raises:
        InputFileError: the file or a scene it names does not exist.
        LabelFileError: bad header, column, window or value (the message names file, line and the fix).
    """
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"{p}: no such label file; give a CSV or YAML of scene,[window],class labels")
    labels = [_entry(row, p.parent, where) for where, row in _rows(p)]
    if not labels:
        raise LabelFileError(f"{p}: no entries; add lines like scene,burn_scar / a.tif,yes")
    if not any(lab.classes for lab in labels):
        raise LabelFileError(f"{p}: every label is unknown; mark at least one class present or absent")
    log.info("%s: %d labelled windows in %d scenes", p.name, len(labels), len({lab.scene for lab in labels}))
    return labels


def labelled_classes(labels: Sequence[ImageLabel]) -> tuple[str, ...]:
    """Classes labelled present somewhere in ``labels`` (in :data:`CLASSES` order): those a CAM is learned for."""
    return tuple(n for n in CLASSES if any(lab.classes.get(n) == PRESENT for lab in labels))


def write_labels(labels: Sequence[ImageLabel], path: str | Path, classes: Sequence[str] = CLASSES) -> Path:
    """Write labels as a CSV that :func:`read_labels` reads back (scene paths relative to the file when possible)."""
    p = Path(path)
    names = {True: "present", False: "absent"}
    lines = [",".join(("scene", *_WINDOW_KEYS, *classes))]
    for lab in labels:
        try:
            scene = str(lab.scene.resolve().relative_to(p.parent.resolve()))
        except ValueError:
            scene = str(lab.scene.resolve())
        w = lab.window
        win = ["", "", "", ""] if w is None else [str(int(v)) for v in (w.col_off, w.row_off, w.width, w.height)]
        vals = [names[lab.classes[c] == PRESENT] if c in lab.classes else "" for c in classes]
        lines.append(",".join([scene, *win, *vals]))
    p.write_text("\n".join(lines) + "\n")
    return p


__all__ = ["ABSENT", "CLASSES", "PRESENT", "ImageLabel", "LabelFileError", "labelled_classes", "read_labels",
           "write_labels"]
