"""Typed, closed configuration: unknown keys are rejected, values validated when loaded.

``ModelConfig`` is saved inside every model bundle, so ``predict`` needs nothing but the bundle.
``PredictConfig`` mirrors ``configs/predict.yaml`` and the ``firemap predict`` options 1:1.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from firemap.archs import ARCHITECTURES, arch_spec, foreign_options
from firemap.bands import CANONICAL_BANDS
from firemap.errors import ConfigError


class Closed(BaseModel):
    """Base for config models: unknown keys are errors (naming the valid keys), instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = [k for k in data if k not in cls.model_fields]
            if unknown:
                valid = list(cls.model_fields)
                close = difflib.get_close_matches(str(unknown[0]), valid, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"unknown key(s) {unknown}{hint}; valid keys: {', '.join(valid)}")
        return data


class ClassInfo(Closed):
    """One output class.

    Attributes:
        name: class name (``fire``, ``smoke``, ``burn_scar``).
        id: value in the class raster (1..254; 0 is background, 255 nodata).
        color: RGB colour for the colour table and QGIS style.
        priority: lower wins where several classes are predicted on one pixel of the class raster.
    """

    name: str
    id: int = Field(ge=1, le=254)
    color: tuple[int, int, int]
    priority: int = 0


DEFAULT_CLASSES: tuple[ClassInfo, ...] = (
    ClassInfo(name="fire", id=1, color=(255, 40, 0), priority=0),
    ClassInfo(name="smoke", id=2, color=(150, 190, 230), priority=1),
    ClassInfo(name="burn_scar", id=3, color=(90, 40, 20), priority=2),
)
"""firemap's classes. The class raster shows one class per pixel by priority fire > smoke > burn_scar."""

Refine = Literal["none", "stride2", "full"]


class ModelConfig(Closed):
    """Everything needed to rebuild a network and feed it: saved in each bundle.

    Attributes:
        arch: a name in :data:`firemap.archs.ARCHITECTURES`: ``deeplabv3plus`` (DeepLabv3+ with ASPP) or ``unet``.
            Fields an architecture does not read must stay at their defaults.
        encoder: smp encoder name (``resnet18``, ``mobilenet_v2``, ``efficientnet-b0``, ...).
        output_stride: DeepLabv3+ encoder output stride (8 or 16).
        atrous_rates: ASPP rates; (6, 12, 18) at OS16, doubled at OS8 (DeepLabv3 paper). None = that default.
        decoder_channels: decoder width (DeepLabv3+: ASPP and decoder; U-Net: first decoder stage, halving).
        multi_grid: DeepLabv3+ with a ResNet encoder: unit rates of the last block's residual units (DeepLabv3
            paper's Multi_Grid, e.g. (1, 2, 4)); unit ``i`` gets ``multi_grid[i % len]`` x the block's dilation.
            None = every unit at the block's dilation (smp's default).
        refine: DeepLabv3+ decoder resolution: ``none`` (smp's stride-4 decoder, logits upsampled x4),
            ``stride2`` (plus a stride-2 low-level skip, logits upsampled x2) or ``full`` (stride-2 skip, then the
            normalized input bands and a shallow stride-1 branch joined at full resolution, two 3x3 convolutions
            and the head at full resolution: sees one-pixel fires).
        refine_channels: width of the refinement stages (the full-resolution convolutions use half).
        sanet: DeepLabv3+: two squeeze-and-attention modules (SANet, Zhong et al. CVPR 2020) on the decoder
            features.
        fire_head: width of a full-resolution fire head (:class:`firemap.nets.FireHead`, any architecture;
            0 = none): six 3x3 convolutions on the normalized input at full resolution whose logit becomes the
            fire class's, gated by the network's own fire logit (``min(head, network + fire_gate)``). It tells a
            fire pixel from the warm halo around it, which a stride-2 network cannot (docs/training.md, "A
            full-resolution fire head"). Needs a ``fire`` class.
        fire_gate: logit margin of that gate: the head can call fire only where the network's fire logit is
            above ``logit(threshold) - fire_gate`` (the network supplies the context: cloud, lava, roofs; the head
            the pixel).
        bands: canonical input bands, in network channel order.
        optional_bands: subset of ``bands`` the model can do without (filled with their mean, i.e. 0 after
            normalization, and flagged in the band-presence channels).
        band_presence: append one 0/1 channel per optional band telling whether the scene has it.
        mean: per-band normalization mean (physical units), same order as ``bands``.
        std: per-band normalization std, same order as ``bands``.
        classes: output classes, in network output order (one sigmoid each: multi-label).
        tile_size: default tile size, pixels.
        overlap: default tile overlap, pixels.
        thresholds: calibrated default probability threshold per class name (classes not listed: 0.5);
            ``PredictConfig.thresholds`` (``--threshold``) overrides them class by class.
        bn_adapt: weight in [0, 1] of each scene's own BatchNorm statistics at inference, mixed with the training
            ones (:mod:`firemap.adapt`; 0 = training statistics, the exported network usable);
            ``PredictConfig.bn_adapt`` (``--bn-adapt``) overrides it.
    """

    arch: str = "deeplabv3plus"
    encoder: str = "resnet18"
    output_stride: Literal[8, 16] = 16
    atrous_rates: tuple[int, int, int] | None = None
    decoder_channels: int = 256
    multi_grid: tuple[int, ...] | None = None
    refine: Refine = "none"
    refine_channels: int = Field(default=32, ge=8)
    sanet: bool = False
    fire_head: int = Field(default=0, ge=0)
    fire_gate: float = Field(default=6.0, ge=0)
    bands: tuple[str, ...] = ("blue", "green", "red", "nir", "swir1", "swir2")
    optional_bands: tuple[str, ...] = ()
    band_presence: bool = False
    mean: tuple[float, ...] = (0.08, 0.10, 0.12, 0.25, 0.25, 0.18)
    std: tuple[float, ...] = (0.05, 0.05, 0.07, 0.10, 0.10, 0.10)
    classes: tuple[ClassInfo, ...] = DEFAULT_CLASSES
    tile_size: int = 256
    overlap: int = 64
    thresholds: dict[str, float] = Field(default_factory=dict)
    bn_adapt: float = Field(default=0.0, ge=0.0, le=1.0)

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, arch: str) -> str:
        arch_spec(arch)
        return arch

    @field_validator("multi_grid")
    @classmethod
    def _positive_rates(cls, grid: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if grid is not None and (not grid or min(grid) < 1):
            raise ValueError(f"multi_grid {grid}: give one rate >= 1 per unit, e.g. [1, 2, 4]")
        return grid

    @field_validator("bands")
    @classmethod
    def _known_bands(cls, bands: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [b for b in bands if b not in CANONICAL_BANDS]
        if unknown:
            raise ValueError(f"unknown band(s) {unknown}; canonical bands are {list(CANONICAL_BANDS)}")
        if len(set(bands)) != len(bands):
            raise ValueError(f"bands repeat: {list(bands)}")
        return bands

    @model_validator(mode="after")
    def _consistent(self) -> ModelConfig:
        if len(self.mean) != len(self.bands) or len(self.std) != len(self.bands):
            raise ValueError(
                f"mean/std need one value per band ({len(self.bands)}): got {len(self.mean)}/{len(self.std)}"
            )
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be > 0, got {self.std}")
        extra = set(self.optional_bands) - set(self.bands)
        if extra:
            raise ValueError(f"optional_bands {sorted(extra)} are not in bands {list(self.bands)}")
        ids = [c.id for c in self.classes]
        if len(set(ids)) != len(ids):
            raise ValueError(f"class ids repeat: {ids}")
        names = {c.name for c in self.classes}
        bad = {k: v for k, v in self.thresholds.items() if k not in names or not 0.0 < v < 1.0}
        if bad:
            raise ValueError(f"thresholds {bad}: need a class name in {sorted(names)} and a probability in (0, 1)")
        if self.fire_head and "fire" not in names:
            raise ValueError(f"fire_head needs a class named 'fire' (classes: {sorted(names)}); set fire_head: 0")
        foreign = foreign_options(self, {k: f.get_default(call_default_factory=True)
                                         for k, f in type(self).model_fields.items()})
        if foreign:
            users = sorted(a for a, spec in ARCHITECTURES.items() if set(foreign) <= spec.options)
            raise ValueError(f"{', '.join(foreign)} do(es) not apply to arch {self.arch!r}; "
                             f"{'use arch ' + ' or '.join(users) if users else 'remove them'}")
        validate_tiling(self.tile_size, self.overlap, self.stride)
        return self

    def class_thresholds(self, overrides: dict[str, float] | None = None) -> dict[str, float]:
        """Probability threshold per class name: 0.5, then the bundle's calibrated ones, then ``overrides``."""
        return {c.name: 0.5 for c in self.classes} | self.thresholds | dict(overrides or {})

    @property
    def stride(self) -> int:
        """The factor the tile size must be divisible by (the network's total downsampling, from the registry)."""
        return arch_spec(self.arch).stride(self)

    @property
    def rates(self) -> tuple[int, int, int]:
        """The ASPP atrous rates in use."""
        if self.atrous_rates is not None:
            return self.atrous_rates
        return (6, 12, 18) if self.output_stride == 16 else (12, 24, 36)

    @property
    def in_channels(self) -> int:
        """Network input channels: bands plus presence flags."""
        return len(self.bands) + (len(self.optional_bands) if self.band_presence else 0)


def validate_tiling(tile_size: int, overlap: int, stride: int) -> None:
    """Check a tile size and overlap against a network stride.

    Raises:
        ConfigError: tile size not a positive multiple of ``stride``, or overlap outside ``[0, tile_size)``.
    """
    if tile_size <= 0 or tile_size % stride:
        lo = max(stride, tile_size // stride * stride)
        raise ConfigError(
            f"tile size {tile_size} is not divisible by the network stride {stride}; use {lo} or {lo + stride}"
        )
    if not 0 <= overlap < tile_size:
        raise ConfigError(f"overlap {overlap} must be >= 0 and smaller than the tile size {tile_size}")


Tta = Literal["none", "flip", "d4"]
VectorFormat = Literal["geojson", "gpkg"]
Device = Literal["auto", "cpu", "cuda"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
Runtime = Literal["auto", "torch", "openvino"]


class PredictConfig(Closed):
    """Options of ``firemap predict`` (None = take the bundle's default).

    Attributes:
        tile_size: tile size, pixels (multiple of the network stride).
        overlap: tile overlap, pixels.
        batch_size: tiles per forward pass, or ``auto``: on CUDA the largest batch the free device memory holds
            (:func:`firemap.accel.batch_size_for_memory`), on the CPU 8.
        device: ``auto`` picks CUDA when available.
        precision: ``auto`` = fp16 autocast on CUDA, fp32 on CPU; ``bf16`` is ~2x faster on CPUs with
            AVX-512 bf16 at a small accuracy cost (emulated, so slower and not faster, on AVX2-only CPUs).
        runtime: ``torch`` (the bundle's exported TorchScript network, else smp), ``openvino`` (CPU, fp32; needs
            the optional ``openvino`` package) or ``auto``: OpenVINO when installed for CPU fp32 jobs of at least
            :data:`firemap.runtimes.OPENVINO_MIN_TILES` tiles, else torch.
        cuda_graphs: on CUDA, capture the full-batch forward pass as a CUDA graph and replay it (ignored on the
            CPU and with TTA or multi-scale inference).
        tta: test-time augmentation: none, flip (horizontal flip, as in DeepLabv3) or d4 (8 flips/rotations).
        tta_scales: multi-scale inference: each tile is also predicted resized by these factors (each with the
            ``tta`` views) and the probabilities averaged; (1.0,) = single scale. DeepLabv3 uses 0.5-1.75.
        crf: refine the probabilities with a local mean-field CRF on the reflectance bands
            (:mod:`firemap.crf`; off by default).
        bn_adapt: weight in [0, 1] of the scene's own BatchNorm statistics (:mod:`firemap.adapt`); None = the
            bundle's ``bn_adapt``.
        thresholds: probability threshold per class name (default 0.5).
        min_area: drop polygons smaller than this, square metres.
        simplify: simplification tolerance, metres (0 = none).
        vector_format: ``geojson`` (RFC 7946, EPSG:4326) or ``gpkg`` (scene CRS).
        save_probs: also write ``<stem>.probs.tif``.
        overwrite: replace existing outputs.
        sensor: sensor preset for band resolution.
        bands: ``--bands`` spec.
        allow_no_crs: accept scenes without CRS (outputs in pixel coordinates).
        resolution: pixel size (CRS units) to resample multi-file products (and scenes) to; None = the finest
            band's grid (see :mod:`firemap.sources`).
    """

    tile_size: int | None = None
    overlap: int | None = None
    batch_size: int | Literal["auto"] = 8
    device: Device = "auto"
    precision: Precision = "auto"
    runtime: Runtime = "auto"
    cuda_graphs: bool = False
    tta: Tta = "none"
    tta_scales: tuple[float, ...] = (1.0,)
    crf: bool = False
    bn_adapt: float | None = Field(default=None, ge=0.0, le=1.0)
    thresholds: dict[str, float] = Field(default_factory=dict)
    min_area: float = Field(default=0.0, ge=0)
    simplify: float = Field(default=0.0, ge=0)
    vector_format: VectorFormat = "geojson"
    save_probs: bool = False
    overwrite: bool = False
    sensor: str | None = None
    bands: str | None = None
    allow_no_crs: bool = False
    resolution: float | None = Field(default=None, gt=0)

    @field_validator("batch_size", mode="before")
    @classmethod
    def _batch_size(cls, value: Any) -> int | str:
        if value == "auto":
            return "auto"
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = 0
        if isinstance(value, bool) or number < 1 or (number != value and str(number) != str(value).strip()):
            raise ValueError(f"{value!r} is not a batch size: give a positive integer (e.g. 8) or auto")
        return number

    @field_validator("tta_scales")
    @classmethod
    def _scales(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(not 0.25 <= s <= 4.0 for s in value) or len(set(value)) != len(value):
            raise ValueError(f"tta_scales {list(value)}: give distinct factors in [0.25, 4], e.g. 0.75,1,1.25")
        return value

    @field_validator("thresholds")
    @classmethod
    def _probabilities(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in value.items() if not 0.0 < v < 1.0}
        if bad:
            raise ValueError(f"thresholds must be in (0, 1): {bad}")
        return value


def parse_thresholds(items: list[str] | None, class_names: tuple[str, ...] | list[str]) -> dict[str, float]:
    """Parse ``--threshold CLASS=P`` items.

    Raises:
        ConfigError: malformed item, unknown class, or P outside (0, 1).
    """
    out: dict[str, float] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or name not in class_names:
            raise ConfigError(f"bad --threshold {item!r}; use CLASS=P with CLASS in {list(class_names)}, e.g. fire=0.4")
        try:
            p = float(value)
        except ValueError:
            raise ConfigError(f"bad --threshold {item!r}: {value!r} is not a number") from None
        if not 0.0 < p < 1.0:
            raise ConfigError(f"bad --threshold {item!r}: probability must be in (0, 1)")
        out[name] = p
    return out


def parse_scales(text: str | None) -> tuple[float, ...] | None:
    """Parse ``--tta-scales 0.75,1,1.25`` (None stays None: take the default).

    Raises:
        ConfigError: an item that is not a number.
    """
    if text is None:
        return None
    try:
        return tuple(float(item) for item in text.split(","))
    except ValueError:
        raise ConfigError(f"bad --tta-scales {text!r}: use comma-separated numbers, e.g. 0.75,1,1.25") from None


def load_yaml(path: str | Path, model: type[Closed], overrides: dict[str, Any] | None = None) -> Any:
    """Load a YAML file into ``model``, applying ``overrides`` (non-None values) on top.

    Raises:
        ConfigError: missing file, bad YAML, unknown keys or invalid values (first error in one line).
    """
    data = read_yaml_mapping(path)
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return validate(model, data, source=str(path))


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML file whose top level is a mapping of options.

    Raises:
        ConfigError: missing/unreadable file, bad YAML, or a top level that is not a mapping (one line).
    """
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config ({exc.strerror}); see configs/ for examples") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of options at the top level")
    return data


def validate(model: type[Closed], data: dict[str, Any], source: str = "config") -> Any:
    """Build ``model`` from ``data``, turning pydantic's report into a one-line :class:`ConfigError`."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "(top level)"
        if source == "command line":
            where = "--" + where.replace("_", "-")
        raise ConfigError(f"{source}: {where}: {err['msg'].removeprefix('Value error, ')}") from None
