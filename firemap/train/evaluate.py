"""Evaluate a model on labelled scenes through the real predict path (tiling, stitching, thresholds), next to
the classic index baselines.

Metrics (see :mod:`firemap.train.metrics`): per class IoU, F1, precision and recall with pixels pooled over all
scenes and per scene, macro means over the labelled classes, the mean of per-scene IoUs, and for fire the
object-level recall (true fire objects containing at least one predicted fire pixel). Fire objects are counted
the way ``predict`` counts polygons: 4-connected regions (``rasterio.features.shapes``' connectivity), and the
predicted ones by the same :class:`~firemap.vectorize.PolygonCollector` with the same ``min_area``.

Scenes the bundle was trained on (its provenance lists them) are flagged and logged as a WARNING: in-sample
scores say little about new scenes. Baselines, when the scene has the
bands: the single-date NBR rule at its default threshold, the *best* single NBR threshold in hindsight (an
optimistic baseline: chosen on the evaluated scenes themselves), and the classic active-fire rules voted as in
``firemap label`` (Landsat: Schroeder/Murphy/Kumar-Roy; Sentinel-2: the HOTMAP analogue).
"""

from __future__ import annotations

import fnmatch
import glob
import json
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from firemap.config import PredictConfig, validate
from firemap.errors import ConfigError
from firemap.indices import nbr
from firemap.models import Bundle, default_bundle_path, load_bundle
from firemap.predict import classify, iter_predictions
from firemap.raster import SceneInfo, atomic_output, open_scene, read_window
from firemap.train.config import SceneSource
from firemap.train.data import ScenePair, decode_mask, find_pairs
from firemap.train.losses import IGNORE
from firemap.train.metrics import Confusion, mean_of, object_recall

log = logging.getLogger(__name__)

OBJECT_CONNECTIVITY = 1
"""Fire objects are 4-connected regions (connectivity 1), as the polygons of ``predict``."""
NBR_BINS = np.linspace(-1.0, 1.0, 401)
"""Histogram edges for the best-NBR-threshold search (step 0.005)."""


@dataclass
class SceneScore:
    """Scores of one scene.

    Attributes:
        scene: image file name.
        confusion: model confusion counts.
        fire_objects: ``(hit, total)`` true fire clusters hit by the model.
        predicted_pixels: class name -> pixels the model predicted (labelled or not).
        predicted_fire_objects: fire polygons ``predict`` would write (e.g. false alarms on fire-free scenes),
            leaving out predicted fire pixels the labels leave open (255 on valid pixels of a source that labels
            fire: the simulator's lava and industrial hot spots, a real scene's unknown hot spots).
        baselines: baseline name -> confusion counts.
        nbr_hist: ``(2, bins)`` counts of NBR for unburned (0) and burned (1) labelled pixels.
        in_training: the scene is in the bundle's training data (per its provenance).
    """

    scene: str
    confusion: Confusion
    fire_objects: tuple[int, int] = (0, 0)
    predicted_pixels: dict[str, int] = field(default_factory=dict)
    predicted_fire_objects: int = 0
    baselines: dict[str, Confusion] = field(default_factory=dict)
    nbr_hist: np.ndarray | None = None
    in_training: bool = False


@dataclass
class EvalReport:
    """An evaluation over a set of scenes.

    Attributes:
        source: dataset name.
        model: model name.
        classes: class names in model order.
        labelled: classes the dataset labels.
        scenes: per-scene scores.
    """

    source: str
    model: str
    classes: tuple[str, ...]
    labelled: tuple[str, ...]
    scenes: list[SceneScore] = field(default_factory=list)

    def pooled(self) -> Confusion:
        """Model confusion counts over all scenes."""
        total = Confusion(self.classes)
        for s in self.scenes:
            total.merge(s.confusion)
        return total

    def pooled_baseline(self, name: str) -> Confusion | None:
        """A baseline's confusion counts over the scenes that had it, or None."""
        have = [s.baselines[name] for s in self.scenes if name in s.baselines]
        if not have:
            return None
        total = Confusion(self.classes)
        for c in have:
            total.merge(c)
        return total

    def best_nbr(self) -> dict[str, float] | None:
        """Best single NBR threshold for burn scars chosen on these scenes (pooled IoU and mean scene IoU)."""
        hists = [s.nbr_hist for s in self.scenes if s.nbr_hist is not None]
        if not hists:
            return None
        pooled = np.sum(np.stack(hists), axis=0)
        iou_pooled = _nbr_iou(pooled)
        per_scene = np.stack([_nbr_iou(h) for h in hists])
        mean_scene = np.nanmean(np.where(np.isfinite(per_scene), per_scene, np.nan), axis=0)
        i, j = int(np.nanargmax(iou_pooled)), int(np.nanargmax(mean_scene))
        return {"threshold_pooled": float(NBR_BINS[i]), "iou_pooled": float(iou_pooled[i]),
                "threshold_scene_mean": float(NBR_BINS[j]), "iou_scene_mean": float(mean_scene[j])}

    def summary(self) -> dict[str, Any]:
        """Flat, JSON-ready metrics (NaN for undefined values)."""
        out: dict[str, Any] = dict(self.pooled().summary())
        for k, name in enumerate(self.classes):
            if name in self.labelled:
                out[f"{name}_iou_scene_mean"] = mean_of([float(s.confusion.iou()[k]) for s in self.scenes])
        if "fire" in self.labelled:
            hit = sum(s.fire_objects[0] for s in self.scenes)
            total = sum(s.fire_objects[1] for s in self.scenes)
            out["fire_object_recall"] = hit / total if total else float("nan")
            out["fire_objects"] = total
        out["predicted_fire_objects"] = sum(s.predicted_fire_objects for s in self.scenes)
        for base in sorted({b for s in self.scenes for b in s.baselines}):
            pooled = self.pooled_baseline(base)
            if pooled is not None:
                out.update({f"baseline_{base}_{k}": v for k, v in pooled.summary().items()
                            if not k.startswith("macro")})
        best = self.best_nbr()
        if best:
            out.update({f"baseline_best_nbr_{k}": v for k, v in best.items()})
        return out

    def to_dict(self) -> dict[str, Any]:
        """Everything, per scene too, as plain JSON-ready data."""
        scenes = []
        for s in self.scenes:
            item: dict[str, Any] = {"scene": s.scene, "in_training": s.in_training, **s.confusion.summary(),
                                    "predicted_pixels": s.predicted_pixels,
                                    "predicted_fire_objects": s.predicted_fire_objects}
            if "fire" in self.labelled:
                item["fire_objects_hit"], item["fire_objects"] = s.fire_objects
            for base, conf in s.baselines.items():
                item.update({f"baseline_{base}_{k}": v for k, v in conf.summary().items() if not k.startswith("macro")})
            scenes.append(item)
        return {"source": self.source, "model": self.model, "labelled": list(self.labelled),
                "summary": self.summary(), "scenes": scenes}


def _nbr_iou(hist: np.ndarray) -> np.ndarray:
    """IoU of ``NBR < t`` for every bin edge t, from ``(2, bins)`` unburned/burned NBR histograms."""
    below = np.concatenate([np.zeros((2, 1)), np.cumsum(hist, axis=1)], axis=1)  # counts with NBR < edge
    tp, fp = below[1], below[0]
    fn = hist[1].sum() - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(tp + fp + fn > 0, tp / (tp + fp + fn), np.nan)


def _mask_rows(msk: rasterio.io.DatasetReader, row_off: int, rows: int) -> np.ndarray:
    return msk.read(window=Window(0, row_off, msk.width, rows))


def _labels_rows(
    msk: rasterio.io.DatasetReader, src: SceneSource, classes: Sequence[str], row_off: int, valid: np.ndarray
) -> np.ndarray:
    labels = decode_mask(_mask_rows(msk, row_off, valid.shape[0]), src, classes, msk.nodata)
    labels[:, ~valid] = IGNORE
    return labels


class _SceneScorer:
    """Scores one scene's probability rows at one set of thresholds (several scorers share one prediction)."""

    def __init__(self, name: str, info: SceneInfo, src: SceneSource, bundle: Bundle,
                 thresholds: dict[str, float]) -> None:
        from firemap.vectorize import PolygonCollector

        self.classes = tuple(c.name for c in bundle.config.classes)
        self.score = SceneScore(name, Confusion(self.classes))
        self.k_fire = self.classes.index("fire") if "fire" in self.classes else None
        fire = [c for c in bundle.config.classes if c.name == "fire"]
        self.polygons = PolygonCollector(info.grid, fire)  # fire objects exactly as predict's polygons
        self.truth_fire: list[np.ndarray] = []
        self.pred_fire: list[np.ndarray] = []
        self.src, self.bundle, self.thresholds = src, bundle, thresholds

    def update(self, block: Any, labels: np.ndarray) -> None:
        masks, _ = classify(block.probs, block.valid, self.bundle.config.classes, self.thresholds)
        score, k_fire = self.score, self.k_fire
        score.confusion.update(masks, labels)
        for k, name in enumerate(self.classes):
            score.predicted_pixels[name] = score.predicted_pixels.get(name, 0) + int(masks[k].sum())
        if k_fire is not None:
            fire_rows = slice(k_fire, k_fire + 1)
            counted = masks[fire_rows]
            if "fire" in self.src.labelled_classes:  # unlabelled hot spots: neither a hit nor a false alarm
                counted = counted & ~((labels[k_fire] == IGNORE) & block.valid)[None]
            self.polygons.add(block.row_off, counted, block.probs[fire_rows], block.valid)
            self.truth_fire.append(labels[k_fire] == 1)
            self.pred_fire.append(masks[k_fire])

    def finish(self, min_area: float) -> SceneScore:
        score = self.score
        if self.k_fire is not None and self.pred_fire:
            score.predicted_fire_objects = len(self.polygons.finish_table(min_area))
            if "fire" in self.src.labelled_classes:
                score.fire_objects = object_recall(np.concatenate(self.truth_fire), np.concatenate(self.pred_fire),
                                                   connectivity=OBJECT_CONNECTIVITY)
        return score


def _score_model(
    info: SceneInfo, pair: ScenePair, src: SceneSource, bundle: Bundle, cfg: PredictConfig,
    progress: Callable[[int], None] | None, candidates: Sequence[dict[str, float]] = ({},),
) -> list[SceneScore]:
    """One prediction of the scene, scored at ``cfg.thresholds`` updated by each of ``candidates``."""
    classes = tuple(c.name for c in bundle.config.classes)
    scorers = [_SceneScorer(pair.image.name, info, src, bundle,
                            bundle.config.class_thresholds({**(cfg.thresholds or {}), **cand}))
               for cand in candidates]
    with rasterio.open(pair.mask) as msk:
        for block in iter_predictions(info, bundle, cfg, progress):
            labels = _labels_rows(msk, src, classes, block.row_off, block.valid)
            for scorer in scorers:
                scorer.update(block, labels)
    return [scorer.finish(cfg.min_area) for scorer in scorers]


def _baseline_rows(info: SceneInfo, cfg: PredictConfig) -> Iterator[tuple[int, np.ndarray, np.ndarray]] | None:
    """``firemap label``'s classic rules (fire voting, NBR burn scar) as rows, or None if no rule applies."""
    from firemap import label

    lcfg = label.label_config(sensor=cfg.sensor, bands=cfg.bands, smoke=False, allow_no_crs=cfg.allow_no_crs)
    quiet = logging.getLogger(label.__name__)
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "no fire rule fits the bands" is expected here, not a warning for the user
    try:
        plan = label._plan(info, lcfg, None)
    except Exception as exc:  # a missing band only means: no baseline for this scene
        log.info("%s: no classic baseline (%s)", info.path.name, exc)
        return None
    finally:
        quiet.setLevel(level)
    if not plan.rules and not plan.burn:
        return None
    return label.iter_label_rows(info, plan, lcfg.block_size)


def _score_baselines(info: SceneInfo, pair: ScenePair, src: SceneSource, classes: tuple[str, ...],
                     cfg: PredictConfig, score: SceneScore) -> None:
    from firemap.label import LABEL_CLASSES

    rows = _baseline_rows(info, cfg)
    if rows is None:
        return
    labelled = set(src.labelled_classes)
    with rasterio.open(pair.mask) as msk:
        for row_off, weak, valid in rows:
            labels = _labels_rows(msk, src, classes, row_off, valid)
            for name, rule in (("fire", "fire_rules"), ("burn_scar", "nbr")):
                if name not in classes or name not in labelled or (weak[LABEL_CLASSES.index(name)] == IGNORE).all():
                    continue
                k = classes.index(name)
                pred = np.zeros((len(classes), *valid.shape), bool)
                pred[k] = weak[LABEL_CLASSES.index(name)] == 1
                only = np.full_like(labels, IGNORE)
                only[k] = labels[k]
                score.baselines.setdefault(rule, Confusion(classes)).update(pred, only)


def _nbr_histogram(info: SceneInfo, pair: ScenePair, src: SceneSource, classes: tuple[str, ...],
                   cfg: PredictConfig) -> np.ndarray | None:
    if "burn_scar" not in src.labelled_classes or "burn_scar" not in classes:
        return None
    bandmap = info.bandmap(cfg.sensor, cfg.bands)
    if not {"nir", "swir2"} <= set(bandmap.sources):
        return None
    sources = [bandmap.sources["nir"], bandmap.sources["swir2"]]
    hist = np.zeros((2, len(NBR_BINS) - 1))
    k = classes.index("burn_scar")
    with rasterio.open(info.path) as img, rasterio.open(pair.mask) as msk:
        for r0 in range(0, info.grid.height, 512):
            n = min(512, info.grid.height - r0)
            data, valid = read_window(img, Window(0, r0, info.grid.width, n), sources)
            labels = _labels_rows(msk, src, classes, r0, valid)[k]
            index = nbr(data[0], data[1])
            ok = np.isfinite(index) & (labels != IGNORE)
            for t in (0, 1):
                sel = ok & (labels == t)
                hist[t] += np.histogram(np.clip(index[sel], -1, 1 - 1e-9), NBR_BINS)[0]
    return hist


def evaluate_source(
    bundle: Bundle,
    src: SceneSource,
    cfg: PredictConfig,
    baselines: bool = True,
    progress: Callable[[Path, int], Callable[[int], None]] | None = None,
) -> EvalReport:
    """Evaluate ``bundle`` on every scene of ``src``.

    Args:
        bundle: the model (its network is moved to the configured device).
        src: the labelled scenes (mask format, labelled classes, band resolution).
        cfg: predict options (tile size, overlap, TTA, thresholds, device, precision). ``cfg.sensor``/``bands``
            default to the source's.
        baselines: also score the classic index baselines.
        progress: called with (scene path, tile count); returns a callback advanced by tiles done.

    Returns:
        The report.
    """
    from firemap.predict import tile_grid

    cfg = cfg.model_copy(update={"sensor": cfg.sensor or src.sensor, "bands": cfg.bands or src.bands})
    classes = tuple(c.name for c in bundle.config.classes)
    report = EvalReport(src.label, bundle.name, classes, tuple(c for c in classes if c in src.labelled_classes))
    for pair in find_pairs(src):
        info = open_scene(pair.image, cfg.allow_no_crs)
        tick = progress(pair.image, len(tile_grid(info, bundle, cfg))) if progress else None
        (score,) = _score_model(info, pair, src, bundle, cfg, tick)
        score.in_training = in_training_data(pair.image, bundle.provenance)
        if score.in_training:
            log.warning("%s is in the training data of %s: its scores are in-sample and overstate what the model "
                        "does on new scenes", pair.image.name, bundle.name)
        if baselines:
            _score_baselines(info, pair, src, classes, cfg, score)
            score.nbr_hist = _nbr_histogram(info, pair, src, classes, cfg)
        report.scenes.append(score)
        log.info("%s: %s", pair.image.name, {k: round(v, 4) for k, v in score.confusion.summary().items()})
    return report



def evaluate_thresholds(
    bundle: Bundle,
    src: SceneSource,
    cfg: PredictConfig,
    candidates: Sequence[dict[str, float]],
) -> list[EvalReport]:
    """Evaluate ``bundle`` on every scene of ``src`` at several threshold settings, predicting each scene once.

    Equal to ``[evaluate_source(bundle, src, cfg with thresholds updated by c, baselines=False) for c in
    candidates]`` at one network pass per scene instead of one per candidate (threshold calibration).

    Args:
        bundle: the model.
        src: the labelled scenes.
        cfg: predict options; ``cfg.thresholds`` are the starting point each candidate updates.
        candidates: class name -> probability threshold in [0, 1], per setting (e.g. ``[{"fire": 0.5},
            {"fire": 0.6}]``).

    Returns:
        One report per candidate, in order.
    """
    cfg = cfg.model_copy(update={"sensor": cfg.sensor or src.sensor, "bands": cfg.bands or src.bands})
    classes = tuple(c.name for c in bundle.config.classes)
    labelled = tuple(c for c in classes if c in src.labelled_classes)
    reports = [EvalReport(src.label, bundle.name, classes, labelled) for _ in candidates]
    for pair in find_pairs(src):
        info = open_scene(pair.image, cfg.allow_no_crs)
        in_training = in_training_data(pair.image, bundle.provenance)
        for report, score in zip(reports, _score_model(info, pair, src, bundle, cfg, None, candidates), strict=True):
            score.in_training = in_training
            report.scenes.append(score)
    return reports

def in_training_data(image: Path, provenance: dict[str, Any]) -> bool:
    """Whether a bundle was trained on ``image``, from its provenance.

    Bundles list their training scenes by file name (``train_scenes``). For older bundles the training scene
    sources are matched instead: an image listed by path, or one in the same images folder (the same folder, or
    one ending in the same two path components, e.g. ``s2_calfire/images``) and not excluded.

    Args:
        image: an image file.
        provenance: the bundle's provenance.
    """
    listed = provenance.get("train_scenes")
    if isinstance(listed, dict):
        return any(image.name in names for names in listed.values())
    data = provenance.get("data")
    for src in data.get("train", []) if isinstance(data, dict) else []:
        if not isinstance(src, dict) or src.get("kind") != "scenes":
            continue
        if image.name.split(".")[0] in src.get("exclude", []):
            continue
        images = src.get("images")
        if isinstance(images, list):
            if any(Path(p).name == image.name for p in images):
                return True
        elif isinstance(images, str):
            folder = Path(images)
            if glob.has_magic(images):
                if not fnmatch.fnmatch(image.name, folder.name):
                    continue
                folder = folder.parent
            if _same_folder(image.parent, folder):
                return True
    return False


def _same_folder(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    tail_a, tail_b = a.resolve().parts[-2:], b.parts[-2:]
    return len(tail_b) == 2 and tail_a == tail_b


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.integer | np.floating):
        return _json_safe(value.item())
    return value


def evaluate(
    model: str | os.PathLike[str] | None,
    src: SceneSource,
    cfg: PredictConfig,
    json_path: str | os.PathLike[str] | None = None,
    baselines: bool = True,
    progress: Callable[[Path, int], Callable[[int], None]] | None = None,
) -> EvalReport:
    """``firemap evaluate``: load a bundle (None = the shipped default of the source's sensor family), evaluate,
    optionally write JSON.

    Raises:
        FiremapError subclasses: unreadable bundle, missing images/masks, bands that do not fit, existing JSON
        without ``cfg.overwrite``.
    """
    bundle = load_bundle(model if model is not None else default_bundle_path(cfg.sensor or src.sensor))
    report = evaluate_source(bundle, src, cfg, baselines, progress)
    if json_path is not None:
        with atomic_output(json_path, cfg.overwrite) as tmp:
            tmp.write_text(json.dumps(_json_safe(report.to_dict()), indent=2))
    return report


def scene_source(
    images: str | os.PathLike[str],
    masks: str | os.PathLike[str] | None,
    mask_format: str = "values",
    mask_values: Sequence[str] | None = None,
    labelled: Sequence[str] | None = None,
    sensor: str | None = None,
    bands: str | None = None,
) -> SceneSource:
    """Build a :class:`SceneSource` from ``firemap evaluate`` options.

    Args:
        images: folder (or glob) of image GeoTIFFs.
        masks: folder of masks with the images' file names (None = ``<stem>.labels.tif`` beside them).
        mask_format: ``values`` or ``bands``.
        mask_values: ``CLASS=V[,V...]`` items for the ``values`` format (default ``burn_scar=1``).
        labelled: classes the masks label (default: those of the mask format).
        sensor: sensor preset.
        bands: ``--bands`` spec.

    Raises:
        ConfigError: malformed item or invalid option.
    """
    data: dict[str, Any] = {"images": str(images), "masks": str(masks) if masks else None,
                            "mask_format": mask_format, "sensor": sensor, "bands": bands}
    if mask_values:
        values: dict[str, list[int]] = {}
        for item in mask_values:
            name, sep, rest = item.partition("=")
            try:
                values[name.strip()] = [int(v) for v in rest.split(",") if v.strip()]
            except ValueError:
                sep = ""
            if not sep or not values.get(name.strip()):
                raise ConfigError(f"bad --mask-value {item!r}; use CLASS=V[,V...], e.g. burn_scar=1")
        data["mask_values"] = values
    if labelled:
        data["labelled"] = [c.strip() for item in labelled for c in item.split(",") if c.strip()]
    return validate(SceneSource, {k: v for k, v in data.items() if v is not None}, "evaluate options")


__all__ = [
    "OBJECT_CONNECTIVITY", "EvalReport", "SceneScore", "evaluate", "evaluate_source", "in_training_data",
    "scene_source",
]
