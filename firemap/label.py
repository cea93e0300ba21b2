"""Scene-level jobs of the classic rules: weak-label masks (``firemap label``) and index COGs (``firemap indices``).

Both stream a scene block by block (:func:`firemap.tiling.blocks`), never reading it whole. Contextual fire rules
read each block with a halo of :data:`firemap.rules.RULE_HALO` pixels and keep only the block's inner part, so
results do not depend on the block size. Rows of blocks are gathered into full-width bands of rows, written to the
label raster and fed to the streaming polygonizer, so memory is bounded by ``block_size x scene width``.

Label raster ``<stem>.labels.tif``: uint8, bands ``fire``, ``smoke``, ``burn_scar``; 1 = class present, 0 = absent,
255 = not labelled (nodata, or no rule could label that class on this scene, e.g. no fire rule for the bands
present). It is a multi-label training mask: ``firemap train`` ignores 255.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import rasterio
from pydantic import Field, field_validator

from firemap.bands import BandMap, BandSource, get_sensor
from firemap.config import DEFAULT_CLASSES, Closed, VectorFormat, validate
from firemap.errors import ConfigError, MissingBandsError
from firemap.indices import INDEX_BANDS, dnbr, dnbr_burn_scar, nbr, nbr2, nbr_burn_scar, ndvi, smoke_index, smoke_mask
from firemap.raster import (
    CLASS_NODATA,
    SceneInfo,
    TiledWriter,
    check_same_grid,
    open_scene,
    output_stem,
    read_window,
    staged_outputs,
)
from firemap.rules import (
    RULE_HALO,
    RULE_TESTS,
    RULES,
    Combine,
    FireTest,
    FireTests,
    combine,
    neighbours,
    plan_tests,
    run_tests,
    saturation_mask,
)
from firemap.tiling import blocks

log = logging.getLogger(__name__)

LABEL_CLASSES = tuple(c.name for c in DEFAULT_CLASSES)
"""Bands of the label raster, in order: fire, smoke, burn_scar."""

DEFAULT_RULES: dict[str, tuple[str, ...]] = {
    "landsat": ("schroeder", "murphy", "kumar-roy"), "sentinel2": ("sentinel2",), "hls": ("murphy",),
}
"""Fire rules used without ``--rules``, by sensor family (HLS: HOTMAP, whose tests are ratios and need no coastal)."""

INDEX_NAMES = ("nbr", "nbr2", "ndvi", "dnbr", "smoke")
"""Indices ``firemap indices`` can write."""



class LabelConfig(Closed):
    """Options of ``firemap label``.

    Attributes:
        rules: fire rules (see :data:`firemap.rules.RULES`); None = :data:`DEFAULT_RULES` of the sensor family,
            each running the tests the bands allow (e.g. Schroeder's Eq. 1 only without a coastal band) and
            skipping rules none of whose tests fit; an explicit list fails on a missing band.
        fire_tests: ``all`` tests, or ``unambiguous`` only: confident weak labels, where fire = 1 passes an
            unambiguous test, 255 (not labelled) its 3x3 neighbours and Schroeder's loose candidates
            (``R75 > 1.8 and rho7 - rho5 > 0.17``), 0 elsewhere.
        combine: how several rules' masks are merged.
        nbr_threshold: single-date burn-scar rule ``NBR < nbr_threshold`` (no pre-fire scene).
        min_dnbr: bi-temporal burn-scar rule ``dNBR >= min_dnbr`` (0.1 = Key & Benson's low-severity edge).
        unburnt_dnbr: with a pre-fire scene, burn scar = 0 only where ``dNBR < unburnt_dnbr``; between it and
            ``min_dnbr`` 255 (not labelled). None = no gap (0 below ``min_dnbr``).
        pre_burnt_nbr: with a pre-fire scene, pixels whose pre-fire NBR is below this (already burnt before the
            first date) are 255 in burn_scar: neither positive nor negative. None = off.
        smoke: label smoke with :func:`firemap.indices.smoke_mask` (needs blue, nir, swir2).
        block_size: block edge in pixels.
        min_area: drop polygons smaller than this, m2.
        simplify: polygon simplification tolerance, m.
        vector_format: ``geojson`` (EPSG:4326) or ``gpkg`` (scene CRS).
        sensor: sensor preset for band resolution.
        bands: ``--bands`` spec (applied to the pre-fire scene too).
        overwrite: replace existing outputs.
        allow_no_crs: accept scenes without CRS.
    """

    rules: tuple[str, ...] | None = None
    fire_tests: FireTests = "all"
    combine: Combine = "voting"
    nbr_threshold: float = Field(default=-0.05, ge=-1, le=1)
    min_dnbr: float = Field(default=0.1, ge=-2, le=2)
    unburnt_dnbr: float | None = Field(default=None, ge=-2, le=2)
    pre_burnt_nbr: float | None = Field(default=None, ge=-1, le=1)
    smoke: bool = True
    block_size: int = Field(default=512, ge=16)
    min_area: float = Field(default=0.0, ge=0)
    simplify: float = Field(default=0.0, ge=0)
    vector_format: VectorFormat = "geojson"
    sensor: str | None = None
    bands: str | None = None
    overwrite: bool = False
    allow_no_crs: bool = False

    @field_validator("rules")
    @classmethod
    def _known_rules(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        names = tuple(v.strip().lower() for v in value if v.strip())
        unknown = [n for n in names if n not in RULES]
        if unknown or not names:
            raise ValueError(f"unknown fire rule(s) {unknown or list(value)}; choose from {', '.join(RULES)}")
        return names


def label_config(**options: object) -> LabelConfig:
    """Build a :class:`LabelConfig` from keyword options (None = default).

    Raises:
        ConfigError: an invalid option, in one line.
    """
    cfg: LabelConfig = validate(LabelConfig, {k: v for k, v in options.items() if v is not None}, "options")
    return cfg


@dataclass
class LabelResult:
    """What ``label`` made of one scene.

    Attributes:
        scene: input path.
        outputs: output kind -> path.
        rules: fire rules applied (empty = fire not labelled).
        labelled: class name -> whether the class was labelled.
        rule_text: class name -> the rule that labelled it (``none`` = not labelled).
        skipped: fire tests that did not run, as ``"<rule> <test>: <reason>"``.
        pixels: class name -> labelled pixel count.
        area_ha: class name -> polygon area in hectares (after ``min_area``).
        polygons: class name -> polygon count.
        seconds: wall time.
    """

    scene: Path
    outputs: dict[str, Path] = field(default_factory=dict)
    rules: tuple[str, ...] = ()
    labelled: dict[str, bool] = field(default_factory=dict)
    rule_text: dict[str, str] = field(default_factory=dict)
    pixels: dict[str, int] = field(default_factory=dict)
    area_ha: dict[str, float] = field(default_factory=dict)
    polygons: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    skipped: tuple[str, ...] = ()


# ------------------------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class LabelPlan:
    """What one scene's labelling reads and computes (see :func:`plan_labels`)."""

    rules: tuple[str, ...]
    how: Combine
    names: tuple[str, ...]  # canonical bands read from the scene
    sources: tuple[BandSource, ...]
    zero_is_nodata: bool
    saturation: Mapping[str, float]
    smoke: bool
    burn: Literal["dnbr", "nbr", ""]
    nbr_threshold: float
    min_dnbr: float
    pre_sources: tuple[BandSource, ...] = ()
    pre_zero_is_nodata: bool = False
    tests: Mapping[str, tuple[FireTest, ...]] = field(default_factory=dict)  # rule -> tests run (empty = all)
    skipped: tuple[str, ...] = ()  # "<rule> <test>: <reason>"
    fire_tests: FireTests = "all"
    unburnt_dnbr: float | None = None
    pre_burnt_nbr: float | None = None

    @property
    def halo(self) -> int:
        def halo(rule: str) -> int:  # unambiguous tests look at most at the 3x3 neighbourhood
            contextual = any(not t.unambiguous for t in self.tests.get(rule, ()))
            return RULE_HALO[rule] if contextual else min(RULE_HALO[rule], 1)

        return max((halo(r) for r in self.rules), default=0)


def _bandmap(info: SceneInfo, cfg: LabelConfig) -> BandMap:
    return info.bandmap(cfg.sensor, cfg.bands)


def _missing_error(info: SceneInfo, what: str, missing: Sequence[str], bandmap: BandMap, fix: str) -> MissingBandsError:
    return MissingBandsError(
        f"{info.path.name}: {what} needs band(s) {', '.join(missing)}; the file offers {bandmap.offered()}; "
        f"map them with --bands (e.g. --bands {missing[0]}=N) or {fix}"
    )


def _choose_rules(
    info: SceneInfo, bandmap: BandMap, cfg: LabelConfig
) -> tuple[dict[str, tuple[FireTest, ...]], list[str]]:
    """Rules -> the tests that run, and the skipped tests as ``"<rule> <test>: <reason>"``."""
    present = set(bandmap.sources)
    plans = {r: plan_tests(r, present, cfg.fire_tests) for r in (cfg.rules or DEFAULT_RULES[_family(bandmap)])}
    if cfg.rules is not None:
        for rule, (run, skipped) in plans.items():
            need = [b for t, why in skipped if why != "not unambiguous" for b in t.bands if b not in present]
            if need and (cfg.fire_tests == "all" or not run):  # unambiguous: runs when one of its tests can
                fix = "pick other --rules" + (" or --fire-tests unambiguous" if run else "")
                raise _missing_error(info, f"fire rule {rule!r}", list(dict.fromkeys(need)), bandmap, fix)
    tests = {r: run for r, (run, _) in plans.items() if run}
    lines = [f"{r} {t.name}: {why}" for r, (_, sk) in plans.items() for t, why in sk]
    for line in lines:  # INFO: the CLI prints them under the results and the labels carry FIRE_TESTS_SKIPPED
        log.info("%s: fire test skipped: %s", info.path.name, line)
    if not tests:
        log.warning("%s: no fire rule fits the bands present (%s); fire is not labelled (255)",
                    info.path.name, bandmap.offered())
    return tests, lines


def _family(bandmap: BandMap) -> str:
    return get_sensor(bandmap.sensor).family if bandmap.sensor else "landsat"


def _saturation_levels(bandmap: BandMap) -> dict[str, float]:
    preset = get_sensor(bandmap.sensor) if bandmap.sensor else None
    if preset is None or preset.saturation_raw is None:
        return {}
    raw = np.array([preset.saturation_raw])
    sources = {b: s for b, s in bandmap.sources.items() if b in ("swir1", "swir2")}
    return {b: float(s.encoding.to_physical(raw)[0]) for b, s in sources.items()}


def _zero_fill(bandmap: BandMap) -> bool:
    return bool(bandmap.sensor and get_sensor(bandmap.sensor).zero_is_nodata)


def _pre_fire(info: SceneInfo, pre: SceneInfo, cfg: LabelConfig) -> tuple[tuple[BandSource, ...], bool]:
    check_same_grid(info, pre)
    bandmap = _bandmap(pre, cfg)
    missing = [b for b in INDEX_BANDS["dnbr"] if b not in bandmap.sources]
    if missing:
        raise _missing_error(pre, "the pre-fire scene (dNBR)", missing, bandmap, "pass another --pre-fire scene")
    return tuple(bandmap.sources[b] for b in INDEX_BANDS["dnbr"]), _zero_fill(bandmap)


def plan_labels(info: SceneInfo, cfg: LabelConfig, pre: SceneInfo | None = None) -> LabelPlan:
    """Decide which rules and bands label a scene, before reading pixels.

    Raises:
        MissingBandsError: a named rule, dNBR or the pre-fire scene lacks a band.
        GridMismatchError: the pre-fire scene is on another grid.
    """
    bandmap = _bandmap(info, cfg)
    tests, skipped = _choose_rules(info, bandmap, cfg)
    rules = tuple(tests)
    smoke = cfg.smoke and all(b in bandmap.sources for b in ("blue", "nir", "swir2"))
    burn_ok = all(b in bandmap.sources for b in INDEX_BANDS["nbr"])
    if pre is not None and not burn_ok:
        missing = [b for b in INDEX_BANDS["dnbr"] if b not in bandmap.sources]
        raise _missing_error(info, "dNBR", missing, bandmap, "drop --pre-fire")
    burn: Literal["dnbr", "nbr", ""] = ("dnbr" if pre is not None else "nbr") if burn_ok else ""
    wanted = {b for run in tests.values() for t in run for b in t.bands}
    wanted |= {"blue", "nir", "swir2"} if smoke else set()
    wanted |= set(INDEX_BANDS["nbr"]) if burn else set()
    names = tuple(b for b in bandmap.sources if b in wanted)
    pre_sources, pre_zero = _pre_fire(info, pre, cfg) if pre is not None else ((), False)
    if "swir1" in bandmap.sources and rules:
        names += () if "swir1" in names else ("swir1",)  # saturation mask and Schroeder's Eq. 2 read it
    if "coastal" in bandmap.sources and "schroeder" in rules and "coastal" not in names:
        names += ("coastal",)
    return LabelPlan(rules, cfg.combine, names, tuple(bandmap.sources[b] for b in names), _zero_fill(bandmap),
                     _saturation_levels(bandmap), smoke, burn, cfg.nbr_threshold, cfg.min_dnbr, pre_sources, pre_zero,
                     tests, tuple(skipped), cfg.fire_tests, cfg.unburnt_dnbr, cfg.pre_burnt_nbr)


_plan = plan_labels  # kept for callers of the earlier private name


# ------------------------------------------------------------------------------------ block labelling


def label_block(
    bands: Mapping[str, np.ndarray],
    valid: np.ndarray,
    plan: LabelPlan,
    pre: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Weak labels of one block.

    Args:
        bands: canonical name -> ``(rows, cols)`` reflectance of the block (with its halo).
        valid: ``(rows, cols)`` bool.
        plan: what to compute.
        pre: ``(data (2, rows, cols) nir/swir2 reflectance, valid (rows, cols))`` of the pre-fire scene.

    Returns:
        ``(3, rows, cols)`` uint8: 1 / 0 per class, 255 where invalid or not labelled.
    """
    out = np.full((len(LABEL_CLASSES), *valid.shape), CLASS_NODATA, dtype=np.uint8)
    if plan.rules:
        saturated = saturation_mask(bands, plan.saturation)
        masks = [run_tests(r, plan.tests[r], bands, valid, saturated) for r in plan.rules]
        fire = combine(masks, plan.how)
        out[0] = np.where(valid, fire, CLASS_NODATA)
        if plan.fire_tests == "unambiguous":
            out[0][valid & ~fire & (neighbours(fire) | _loose_candidates(bands))] = CLASS_NODATA
    if plan.smoke:
        smoke = smoke_mask(bands["blue"], bands["swir2"], bands["nir"], bands.get("coastal"))
        out[1] = np.where(valid, smoke, CLASS_NODATA)
    if plan.burn == "nbr":
        out[2] = np.where(valid, nbr_burn_scar(bands["nir"], bands["swir2"], plan.nbr_threshold), CLASS_NODATA)
    elif plan.burn == "dnbr" and pre is not None:
        pre_nbr = nbr(pre[0][0], pre[0][1])
        change = dnbr(pre_nbr, nbr(bands["nir"], bands["swir2"]))
        ok = valid & pre[1] & np.isfinite(change)
        if plan.unburnt_dnbr is not None:
            ok &= (change < plan.unburnt_dnbr) | (change >= plan.min_dnbr)
        if plan.pre_burnt_nbr is not None:
            ok &= ~(pre_nbr < plan.pre_burnt_nbr)
        out[2] = np.where(ok, dnbr_burn_scar(change, plan.min_dnbr), CLASS_NODATA)
    return out


def _loose_candidates(bands: Mapping[str, np.ndarray]) -> np.ndarray:
    """Schroeder et al. (2016) Eq. 3 candidates (``R75 > 1.8 and rho7 - rho5 > 0.17``): possible fires."""
    r5, r7 = bands["nir"], bands["swir2"]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray((r7 > 1.8 * r5) & (r7 - r5 > 0.17))


def _read(
    src: rasterio.io.DatasetReader, window: rasterio.windows.Window, plan: LabelPlan
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    data, valid = read_window(src, window, plan.sources, plan.zero_is_nodata)
    return dict(zip(plan.names, data, strict=True)), valid


def iter_label_rows(
    info: SceneInfo, plan: LabelPlan, block_size: int, pre: SceneInfo | None = None
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Label a scene block by block; yield full-width bands of rows.

    Yields:
        ``(row_off, labels, valid)``: ``labels`` ``(3, rows, width)`` uint8 (see :func:`label_block`),
        ``valid`` ``(rows, width)`` bool of the scene.
    """
    width = info.grid.width
    with contextlib.ExitStack() as stack:
        src = stack.enter_context(rasterio.open(info.path))
        pre_src = stack.enter_context(rasterio.open(pre.path)) if pre is not None else None
        labels = valid = np.empty(0)
        for block in blocks(info.grid.height, width, block_size, plan.halo):
            rows, c0, w = int(block.inner.height), int(block.inner.col_off), int(block.inner.width)
            if c0 == 0:
                labels = np.empty((len(LABEL_CLASSES), rows, width), np.uint8)
                valid = np.empty((rows, width), bool)
            bands, ok = _read(src, block.outer, plan)
            before = read_window(pre_src, block.outer, plan.pre_sources, plan.pre_zero_is_nodata) if pre_src else None
            inner = block.inner_slices
            labels[:, :, c0 : c0 + w] = label_block(bands, ok, plan, before)[:, inner[0], inner[1]]
            valid[:, c0 : c0 + w] = ok[inner]
            if c0 + w == width:
                yield int(block.inner.row_off), labels, valid


def _rule_text(plan: LabelPlan, rule: str) -> str:
    run = plan.tests.get(rule, ())
    if len(run) == len(RULE_TESTS[rule]):
        return rule
    return f"{rule}[{'; '.join(t.name for t in run)}]"


def _describe(plan: LabelPlan) -> dict[str, str]:
    fire = f"{'+'.join(_rule_text(plan, r) for r in plan.rules)} ({plan.how})" if plan.rules else "none"
    burn = {"dnbr": f"dNBR >= {plan.min_dnbr}", "nbr": f"NBR < {plan.nbr_threshold}", "": "none"}[plan.burn]
    if plan.burn == "dnbr" and plan.unburnt_dnbr is not None:
        burn += f", 0 where dNBR < {plan.unburnt_dnbr}, 255 between"
    if plan.burn == "dnbr" and plan.pre_burnt_nbr is not None:
        burn += f", 255 where pre-fire NBR < {plan.pre_burnt_nbr}"
    smoke = "smoke_mask (blue-SWIR2 contrast)" if plan.smoke else "none"
    return {"fire": fire, "smoke": smoke, "burn_scar": burn}


def _labels_writer(tmp: Path, info: SceneInfo, plan: LabelPlan) -> TiledWriter:
    rules = _describe(plan)
    tags = {
        "LABELLER": "firemap label", "VALUES": "1 = class, 0 = not the class, 255 = not labelled / nodata",
        **{f"RULE_{k.upper()}": v for k, v in rules.items()},
        "FIRE_TESTS": plan.fire_tests, "FIRE_TESTS_SKIPPED": " | ".join(plan.skipped) or "none",
    }
    band_tags = {i + 1: {"CLASS": n, "RULE": rules[n], "LABELLED": "no" if rules[n] == "none" else "yes"}
                 for i, n in enumerate(LABEL_CLASSES)}
    return TiledWriter(tmp, info.grid, len(LABEL_CLASSES), "uint8", nodata=CLASS_NODATA,
                       descriptions=list(LABEL_CLASSES), tags=tags, band_tags=band_tags)


def label_scene(
    scene: str | Path, out_dir: str | Path, cfg: LabelConfig | None = None, pre_fire: str | Path | None = None
) -> LabelResult:
    """Weak-label a scene with the classic rules: ``<stem>.labels.tif``, ``<stem>.<geojson|gpkg>``, ``<stem>.qml``.

    Args:
        scene: the (post-fire) scene.
        out_dir: output folder (created if needed).
        cfg: options (default :class:`LabelConfig`).
        pre_fire: a pre-fire scene on the same grid: burn scars by dNBR instead of single-date NBR.

    Returns:
        A :class:`LabelResult`.

    Raises:
        FiremapError subclasses: unreadable scenes, missing bands, grids that differ, outputs that exist.
    """
    from firemap.style import vector_qml
    from firemap.vectorize import PolygonCollector, write_vector_file

    t0 = time.perf_counter()
    cfg = cfg or LabelConfig()
    info = open_scene(scene, cfg.allow_no_crs)
    pre = open_scene(pre_fire, cfg.allow_no_crs) if pre_fire is not None else None
    plan = plan_labels(info, cfg, pre)
    out, stem = Path(out_dir), output_stem(info.path)
    paths = {"labels": out / f"{stem}.labels.tif", "vectors": out / f"{stem}.{cfg.vector_format}",
             "style": out / f"{stem}.qml"}
    rules = _describe(plan)
    collector = PolygonCollector(info.grid, DEFAULT_CLASSES)
    pixels = np.zeros(len(LABEL_CLASSES), np.int64)
    inputs = [info.path] + ([pre.path] if pre else [])
    with staged_outputs(paths, cfg.overwrite, inputs) as tmp:
        with _labels_writer(tmp["labels"], info, plan) as writer:
            for row_off, labels, valid in iter_label_rows(info, plan, cfg.block_size, pre):
                writer.write(labels, row_off)
                masks = labels == 1
                pixels += masks.sum(axis=(1, 2))
                collector.add(row_off, masks, masks.astype(np.float32), valid)
        model = "rules: " + "; ".join(f"{k} {v}" for k, v in rules.items())
        polygons = collector.finish_table(cfg.min_area, cfg.simplify, scene=info.path.name, model=model)
        tmp["style"].write_text(vector_qml(DEFAULT_CLASSES), encoding="utf-8")
        write_vector_file(polygons, tmp["vectors"], cfg.vector_format, DEFAULT_CLASSES,
                          layer=paths["vectors"].stem)
    result = LabelResult(info.path, paths, plan.rules, {n: rules[n] != "none" for n in LABEL_CLASSES}, rules,
                         skipped=plan.skipped)
    for name, count in zip(LABEL_CLASSES, pixels, strict=True):
        result.pixels[name] = int(count)
        result.polygons[name], result.area_ha[name] = polygons.class_totals(name)
    result.seconds = time.perf_counter() - t0
    log.info("%s: labelled in %.1f s (%s)", info.path.name, result.seconds, model)
    return result


# ------------------------------------------------------------------------------------------ indices

INDEX_FORMULAS = {
    "nbr": "(nir - swir2) / (nir + swir2)", "nbr2": "(swir1 - swir2) / (swir1 + swir2)",
    "ndvi": "(nir - red) / (nir + red)", "dnbr": "NBR(pre-fire) - NBR(post-fire)",
    "smoke": "(blue - swir2) / (blue + swir2)",
}
"""Formula of each index, written into its COG's tags."""


def _choose_indices(
    info: SceneInfo, bandmap: BandMap, indices: Sequence[str] | None, pre: SceneInfo | None
) -> tuple[str, ...]:
    if indices is None:
        wanted = ("nbr", "nbr2", "ndvi") + (("dnbr",) if pre is not None else ())
        chosen = tuple(i for i in wanted if all(b in bandmap.sources for b in INDEX_BANDS[i]))
        for skipped in sorted(set(wanted) - set(chosen)):
            missing = [b for b in INDEX_BANDS[skipped] if b not in bandmap.sources]
            log.warning("%s: skipping %s, the scene lacks %s", info.path.name, skipped, ", ".join(missing))
        return chosen
    chosen = tuple(dict.fromkeys(i.strip().lower() for i in indices if i.strip()))
    unknown = [i for i in chosen if i not in INDEX_NAMES]
    if unknown or not chosen:
        raise ConfigError(f"unknown index {unknown or list(indices)}; choose from {', '.join(INDEX_NAMES)}")
    if "dnbr" in chosen and pre is None:
        raise ConfigError("index dnbr needs a pre-fire scene: pass --pre-fire SCENE (same grid) or drop dnbr")
    for index in chosen:
        missing = [b for b in INDEX_BANDS[index] if b not in bandmap.sources]
        if missing:
            raise _missing_error(info, f"index {index!r}", missing, bandmap, "drop it from --index")
    return chosen


def _compute_index(index: str, bands: Mapping[str, np.ndarray], pre_nbr: np.ndarray | None) -> np.ndarray:
    if index == "nbr":
        return nbr(bands["nir"], bands["swir2"])
    if index == "nbr2":
        return nbr2(bands["swir1"], bands["swir2"])
    if index == "ndvi":
        return ndvi(bands["nir"], bands["red"])
    if index == "smoke":
        return smoke_index(bands["blue"], bands["swir2"])
    assert pre_nbr is not None  # dnbr without pre-fire scene is rejected in _choose_indices
    return dnbr(pre_nbr, nbr(bands["nir"], bands["swir2"]))


def write_indices(
    scene: str | Path,
    out_dir: str | Path,
    indices: Sequence[str] | None = None,
    pre_fire: str | Path | None = None,
    sensor: str | None = None,
    bands: str | None = None,
    overwrite: bool = False,
    block_size: int = 512,
    allow_no_crs: bool = False,
) -> dict[str, Path]:
    """Write spectral indices of a scene as float32 COGs ``<stem>.<index>.tif`` (NaN = nodata / undefined).

    Args:
        scene: the (post-fire) scene.
        out_dir: output folder (created if needed).
        indices: names from :data:`INDEX_NAMES`; None = nbr, nbr2, ndvi (+ dnbr with ``pre_fire``), skipping
            those whose bands are absent. Explicit names fail on a missing band.
        pre_fire: pre-fire scene on the same grid (needed by dnbr).
        sensor: sensor preset for band resolution.
        bands: ``--bands`` spec (applied to both scenes).
        overwrite: replace existing outputs.
        block_size: block edge in pixels.
        allow_no_crs: accept scenes without CRS.

    Returns:
        index name -> written path.

    Raises:
        FiremapError subclasses: unknown index, missing band or pre-fire scene, grids that differ, outputs exist.
    """
    cfg = label_config(sensor=sensor, bands=bands, overwrite=overwrite, block_size=block_size,
                       allow_no_crs=allow_no_crs)
    info = open_scene(scene, allow_no_crs)
    pre = open_scene(pre_fire, allow_no_crs) if pre_fire is not None else None
    bandmap = _bandmap(info, cfg)
    chosen = _choose_indices(info, bandmap, indices, pre)
    if not chosen:
        raise MissingBandsError(f"{info.path.name}: no index can be computed from {bandmap.offered()}")
    pre_sources, pre_zero = _pre_fire(info, pre, cfg) if pre is not None and "dnbr" in chosen else ((), False)
    names = tuple(b for b in bandmap.sources if any(b in INDEX_BANDS[i] for i in chosen))
    plan = LabelPlan((), "voting", names, tuple(bandmap.sources[b] for b in names), _zero_fill(bandmap), {},
                 False, "", cfg.nbr_threshold, cfg.min_dnbr, pre_sources, pre_zero)
    out, stem = Path(out_dir), output_stem(info.path)
    paths = {i: out / f"{stem}.{i}.tif" for i in chosen}
    with staged_outputs(paths, overwrite, [info.path] + ([pre.path] if pre else [])) as tmp, \
            contextlib.ExitStack() as stack:
        writers = {}
        for index in paths:
            writers[index] = stack.enter_context(TiledWriter(
                tmp[index], info.grid, 1, "float32", nodata=float("nan"), descriptions=[index],
                tags={"INDEX": index, "FORMULA": INDEX_FORMULAS[index], "UNITS": "unitless"},
                overview_resampling="average"))
        _stream_indices(info, pre, plan, block_size, writers)
    log.info("%s: wrote %s", info.path.name, ", ".join(str(p) for p in paths.values()))
    return paths


def _stream_indices(
    info: SceneInfo, pre: SceneInfo | None, plan: LabelPlan, block_size: int, writers: Mapping[str, TiledWriter]
) -> None:
    with contextlib.ExitStack() as stack:
        src = stack.enter_context(rasterio.open(info.path))
        pre_src = stack.enter_context(rasterio.open(pre.path)) if pre is not None and plan.pre_sources else None
        for block in blocks(info.grid.height, info.grid.width, block_size, 0):
            bands, valid = _read(src, block.outer, plan)
            pre_nbr = None
            if pre_src is not None:
                before, pre_valid = read_window(pre_src, block.outer, plan.pre_sources, plan.pre_zero_is_nodata)
                pre_nbr = np.where(pre_valid, nbr(before[0], before[1]), np.nan)
            for index, writer in writers.items():
                values = np.where(valid, _compute_index(index, bands, pre_nbr), np.nan).astype(np.float32)
                writer.write(values, int(block.inner.row_off), int(block.inner.col_off))


__all__ = [
    "DEFAULT_RULES", "INDEX_FORMULAS", "INDEX_NAMES", "LABEL_CLASSES", "LabelConfig", "LabelPlan", "LabelResult",
    "check_same_grid", "iter_label_rows", "label_block", "label_config", "label_scene", "output_stem", "plan_labels",
    "write_indices",
]
