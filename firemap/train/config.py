"""Typed, closed training configuration, mirrored 1:1 by ``configs/{deeplabv3plus,unet,finetune}.yaml``.

Unknown keys are errors everywhere. ``model`` holds :class:`~firemap.config.ModelConfig` fields; ``mean`` and
``std`` may be left out, in which case they are computed from the training data (see
:func:`firemap.train.data.band_statistics`) and stored in the bundle.
"""

from __future__ import annotations

import difflib
import logging
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from firemap.bands import CANONICAL_BANDS
from firemap.config import Closed, ConfigError, Device, ModelConfig, Precision, read_yaml_mapping, validate
from firemap.errors import FiremapError

log = logging.getLogger(__name__)

SELECT_METRICS = ("iou", "f1", "precision", "recall", "iou_scene_mean")
"""Per-class validation metrics ``<class>_<metric>`` that ``select_metric`` may name (plus ``macro_iou``,
``macro_f1``, and any of these prefixed by ``<validation source name>/``)."""


class SceneSource(Closed):
    """Image GeoTIFFs with aligned mask GeoTIFFs (same grid), e.g. a real burn-scar dataset.

    Attributes:
        kind: ``scenes``.
        name: short name for logs and metrics (default: the images folder name).
        images: a folder of ``*.tif``, a glob, or a list of files.
        masks: folder holding one mask per image with the same file name; None = ``<stem>.labels.tif``
            beside each image (what ``firemap simulate`` writes).
        mask_format: ``values``: one band whose values map to classes via ``mask_values``;
            ``bands``: one 0/1 band per class named in ``mask_bands`` (255 = not labelled), as written by
            ``firemap simulate`` and ``firemap label``.
        mask_values: class name -> mask values meaning that class (``values`` format).
        mask_bands: class name of each mask band (``bands`` format).
        ignore_values: mask values that mean "not labelled" (besides the mask file's declared nodata).
        labelled: classes this dataset labels; the others are ignored in the loss and the metrics (partial
            labels). Default: the classes of ``mask_values`` / ``mask_bands``.
        exclude: image file stems to leave out (e.g. a held-out validation scene).
        sensor: sensor preset for band resolution (guessed from band descriptions when None).
        bands: ``--bands`` spec for band resolution.
        weight: sampling weight in the training mixture.
    """

    kind: Literal["scenes"] = "scenes"
    name: str | None = None
    images: str | list[str]
    masks: str | None = None
    mask_format: Literal["values", "bands"] = "values"
    mask_values: dict[str, list[int]] = Field(default_factory=lambda: {"burn_scar": [1]})
    mask_bands: list[str] = Field(default_factory=lambda: ["fire", "smoke", "burn_scar"])
    ignore_values: list[int] = Field(default_factory=lambda: [255])
    labelled: list[str] | None = None
    exclude: list[str] = Field(default_factory=list)
    sensor: str | None = None
    bands: str | None = None
    weight: float = Field(default=1.0, gt=0)

    @property
    def labelled_classes(self) -> list[str]:
        """The classes this dataset labels."""
        if self.labelled is not None:
            return list(self.labelled)
        return list(self.mask_values) if self.mask_format == "values" else list(self.mask_bands)

    @property
    def label(self) -> str:
        """Name used in logs and metric keys."""
        if self.name:
            return self.name
        first = self.images if isinstance(self.images, str) else (self.images[0] if self.images else "scenes")
        return Path(first).name or "scenes"


class SimulatorOptions(Closed):
    """Simulator settings that are not drawn per scene (:func:`firemap.simulate.simulate_scene` arguments).

    Attributes:
        landscape: land-cover mix (a key of ``firemap.simulate.landscape.LANDSCAPES``); None = a random one per
            scene.
        haze: add background aerosol (unlabelled).
    """

    landscape: str | None = None
    haze: bool = True

    @field_validator("landscape")
    @classmethod
    def _known_landscape(cls, value: str | None) -> str | None:
        from firemap.simulate.landscape import LANDSCAPES

        if value is not None and value not in LANDSCAPES:
            raise ValueError(f"unknown landscape {value!r}; choose one of: {', '.join(LANDSCAPES)} (or null = random)")
        return value


class SimulatorSource(Closed):
    """The physically based simulator (:mod:`firemap.simulate`) as an infinite seeded source of tiles.

    Training tiles are random crops of a pool of simulated scenes, redrawn every epoch (``pool_scenes`` > 0): a
    256 px tile costs about as much to simulate as a training step, so cropping several tiles per scene keeps
    the CPU on the network. With ``pool_scenes: 0`` every tile is a fresh simulated scene.

    Attributes:
        kind: ``simulator``.
        name: short name for logs and metrics.
        sensor: simulated sensor (``sentinel2``, ``landsat8``, ``landsat9``, ``hls``).
        weight: sampling weight in the training mixture.
        p_fire: probability that a scene has an active fire (the others teach "no fire here").
        p_smoke: probability of a smoke plume.
        p_burn_scar: probability of a burn scar.
        clouds: cloud covers drawn from (names of ``firemap.simulate.CLOUD_LEVELS`` or fractions).
        p_swath_edge: probability of a nodata wedge along one side.
        pool_scenes: scenes per epoch and data worker (0 = one scene per tile).
        pool_size: their size in pixels.
        scenes: for validation sources: number of simulated hold-out scenes.
        scene_size: for validation sources: their size in pixels.
        options: simulator settings not drawn per scene (:class:`SimulatorOptions`: ``landscape``, ``haze``).
    """

    kind: Literal["simulator"] = "simulator"
    name: str | None = None
    sensor: str = "sentinel2"
    weight: float = Field(default=1.0, gt=0)
    p_fire: float = Field(default=0.6, ge=0, le=1)
    p_smoke: float = Field(default=0.5, ge=0, le=1)
    p_burn_scar: float = Field(default=0.8, ge=0, le=1)
    clouds: list[str | float] = Field(default_factory=lambda: list[str | float](["none", "few", "some"]))
    p_swath_edge: float = Field(default=0.1, ge=0, le=1)
    pool_scenes: int = Field(default=24, ge=0)
    pool_size: int = Field(default=384, ge=32)
    scenes: int = Field(default=4, ge=1)
    scene_size: int = Field(default=320, ge=32)
    options: SimulatorOptions = Field(default_factory=SimulatorOptions)

    @field_validator("sensor")
    @classmethod
    def _simulated_sensor(cls, value: str) -> str:
        from firemap.simulate.sensor import sensor_spec

        try:
            return sensor_spec(value).name
        except FiremapError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("clouds")
    @classmethod
    def _cloud_levels(cls, value: list[str | float]) -> list[str | float]:
        from firemap.simulate import cloud_fraction

        for level in value:
            try:
                cloud_fraction(level)
            except FiremapError as exc:
                raise ValueError(str(exc)) from None
        return value

    @property
    def label(self) -> str:
        """Name used in logs and metric keys."""
        return self.name or f"sim-{self.sensor}"


Source = Annotated[SceneSource | SimulatorSource, Field(discriminator="kind")]


class DataConfig(Closed):
    """Training and validation data.

    Attributes:
        train: sources mixed by their ``weight``.
        val: hold-out sources, evaluated scene by scene through the predict path after each epoch.
        tile_size: training tile size, pixels (a multiple of the network stride).
        batch_size: tiles per step.
        oversample: class name -> probability that a tile of a scene source is centred on a pixel of that
            class (rare-class oversampling; fire is often < 0.1 % of pixels).
        stats_tiles: tiles drawn to compute the normalization statistics.
        num_workers: DataLoader worker processes (0 = in the training process).
    """

    train: list[Source]
    val: list[Source] = Field(default_factory=list)
    tile_size: int = Field(default=256, ge=32)
    batch_size: int = Field(default=8, ge=1)
    oversample: dict[str, float] = Field(default_factory=lambda: {"fire": 0.3, "burn_scar": 0.2})
    stats_tiles: int = Field(default=48, ge=1)
    num_workers: int = Field(default=0, ge=0)

    @field_validator("train")
    @classmethod
    def _some_training_data(cls, value: list[Any]) -> list[Any]:
        if not value:
            raise ValueError("needs at least one source (kind: scenes or kind: simulator)")
        return value

    @field_validator("oversample")
    @classmethod
    def _probabilities(cls, value: dict[str, float]) -> dict[str, float]:
        if any(not 0.0 <= p <= 1.0 for p in value.values()) or sum(value.values()) > 1.0:
            raise ValueError(f"oversample probabilities must be in [0, 1] and sum to <= 1, got {value}")
        return value


class AugmentConfig(Closed):
    """Augmentation valid for any number of bands, applied identically to image and mask.

    Geometric transforms run through albumentations (nearest-neighbour masks, unlabelled fill); radiometric ones
    are done here on physical values (albumentations' photometric transforms clip floats to [0, 1], which would
    cut the hot SWIR of fire pixels).

    Attributes:
        flip: random horizontal and vertical flips.
        rot90: random 90 degree rotations.
        affine_p: probability of a random affine (scale, rotation).
        scale: affine scale range.
        rotate: affine rotation range, +- degrees.
        brightness: global multiplicative gain range, +- fraction (illumination).
        gain: per-band multiplicative gain range, +- fraction (calibration, atmosphere).
        offset: per-band additive offset range, +- reflectance.
        noise: Gaussian sensor noise, reflectance standard deviation.
        band_dropout: probability that each optional band is dropped from a sample (teaches the model to do
            without it; the band-presence channel tells it).
        saturate_visible: probability of clipping blue/green/red at 0.255, the saturation of Sentinel-2's
            8-bit TCI product (used by real datasets that ship TCI instead of B2-B4).
    """

    flip: bool = True
    rot90: bool = True
    affine_p: float = Field(default=0.3, ge=0, le=1)
    scale: tuple[float, float] = (0.75, 1.33)
    rotate: float = Field(default=15.0, ge=0)
    brightness: float = Field(default=0.15, ge=0, lt=1)
    gain: float = Field(default=0.08, ge=0, lt=1)
    offset: float = Field(default=0.01, ge=0)
    noise: float = Field(default=0.004, ge=0)
    band_dropout: float = Field(default=0.3, ge=0, le=1)
    saturate_visible: float = Field(default=0.0, ge=0, le=1)


class OptimConfig(Closed):
    """Optimizer and learning-rate schedule.

    Attributes:
        optimizer: ``adamw`` or ``sgd`` (momentum, as in the DeepLabv3 paper).
        lr: base (decoder) learning rate.
        encoder_lr_mult: encoder learning rate = ``lr * encoder_lr_mult`` (lower when fine-tuning).
        weight_decay: decoupled (AdamW) or L2 (SGD) weight decay.
        momentum: SGD momentum.
        warmup_steps: linear warm-up steps.
        poly_power: poly schedule power: ``lr * (1 - step / total) ** power`` (0.9 in DeepLabv3).
        grad_clip: max global gradient norm (0 = no clipping).
    """

    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(default=1e-3, gt=0)
    encoder_lr_mult: float = Field(default=1.0, ge=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    warmup_steps: int = Field(default=50, ge=0)
    poly_power: float = Field(default=0.9, ge=0)
    grad_clip: float = Field(default=1.0, ge=0)


class LossConfig(Closed):
    """Multi-label loss (one sigmoid per class), masked where unlabelled or nodata.

    Attributes:
        kind: ``bce_dice`` (default), ``focal_dice``, ``bce`` or ``focal``.
        dice_weight: weight of the Dice term.
        focal_gamma: focal-loss focusing parameter.
        focal_alpha: focal-loss positive-class weight (None = unweighted).
        class_weights: class name -> loss weight (default 1).
        pos_weights: class name -> weight of that class's positive pixels in the BCE/focal term (default 1).
    """

    kind: Literal["bce_dice", "focal_dice", "bce", "focal"] = "bce_dice"
    dice_weight: float = Field(default=1.0, ge=0)
    focal_gamma: float = Field(default=2.0, ge=0)
    focal_alpha: float | None = Field(default=None, ge=0, le=1)
    class_weights: dict[str, float] = Field(default_factory=dict)
    pos_weights: dict[str, float] = Field(default_factory=dict)


class TrainConfig(Closed):
    """Everything ``firemap train`` / ``firemap finetune`` needs.

    Attributes:
        name: model name, recorded in the bundle and used in outputs.
        model: :class:`~firemap.config.ModelConfig` fields (``mean``/``std`` optional: computed when absent).
            With a firemap bundle as ``init``, the keys left out are the bundle's (:func:`inherit_init_model`).
        init: ``none`` (random), ``imagenet`` (smp pretrained encoder; downloads), ``default`` (the shipped
            model), or a path to a firemap bundle or an smp/timm encoder state dict.
        init_bands: canonical band of each input channel of an ``init`` state dict (None = unused channel);
            default: red, green, blue for 3 channels, Sentinel-2 B01..B12 order for 13.
        freeze_encoder_epochs: train only the decoder and head for this many first epochs.
        freeze_bn_stats: keep every BatchNorm layer's running mean and variance as ``init`` left them (the
            layers normalize with them in training too; their scale and shift still learn). For fine-tuning a
            bundle on a narrow mixture without moving the statistics its other data relied on.
        train_only: names of the network's top-level parts to train (e.g. ``[fire_head]``: a full-resolution
            fire head added to a trained bundle); every other part is frozen, weights and BatchNorm statistics
            (empty = train everything).
        data: training and validation data.
        augment: augmentation.
        optim: optimizer and schedule.
        loss: loss.
        epochs: epochs (validation and checkpoints after each).
        steps_per_epoch: optimizer steps per epoch (the sources are infinite streams).
        seed: random seed (data, weights, augmentation).
        device: ``auto`` picks CUDA when available.
        precision: ``auto`` = fp16 autocast with GradScaler on CUDA, fp32 on CPU; ``bf16`` autocast is about
            2x faster on CPUs with bf16 support.
        channels_last: use channels-last memory format (10-35 % faster on CPU).
        threads: torch CPU threads (None = torch default).
        out: run folder: ``best.firemap.pt``, ``last.firemap.pt``, ``train_state.pt``, ``log.csv``.
        resume: continue from ``out/train_state.pt``.
        overwrite: allow an existing run folder to be reused from scratch.
        select_metric: validation metric that picks the best checkpoint: ``macro_iou`` (mean over sources of the
            macro IoU over labelled classes) or ``<class>_iou`` / ``<class>_f1``.
        tensorboard: also log to TensorBoard (when installed).
    """

    name: str = "firemap-model"
    model: dict[str, Any] = Field(default_factory=dict)
    init: str = "none"
    init_bands: list[str | None] | None = None
    freeze_encoder_epochs: int = Field(default=0, ge=0)
    freeze_bn_stats: bool = False
    train_only: list[str] = Field(default_factory=list)
    data: DataConfig
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    epochs: int = Field(default=10, ge=1)
    steps_per_epoch: int = Field(default=100, ge=1)
    seed: int = 0
    device: Device = "auto"
    precision: Precision = "auto"
    channels_last: bool = True
    threads: int | None = Field(default=None, ge=1)
    out: str = "runs/train"
    resume: bool = False
    overwrite: bool = False
    select_metric: str = "macro_iou"
    tensorboard: bool = False

    @field_validator("init_bands")
    @classmethod
    def _canonical(cls, value: list[str | None] | None) -> list[str | None] | None:
        bad = [b for b in value or [] if b is not None and b not in CANONICAL_BANDS]
        if bad:
            raise ValueError(f"unknown band(s) {bad}; canonical bands are {list(CANONICAL_BANDS)} (or null)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        mc = self.model_config_with_stats(None)
        names = {c.name for c in mc.classes}
        for src in [*self.data.train, *self.data.val]:
            if isinstance(src, SceneSource):
                unknown = set(src.labelled_classes) - names
                if unknown:
                    raise ValueError(f"source {src.label!r} labels {sorted(unknown)}, not among the model "
                                     f"classes {sorted(names)}")
        for key in [*self.data.oversample, *self.loss.class_weights, *self.loss.pos_weights]:
            if key not in names:
                raise ValueError(f"class {key!r} (oversample/class_weights/pos_weights) is not a model class "
                                 f"{sorted(names)}")
        if self.data.tile_size % mc.stride:
            raise ValueError(f"data.tile_size {self.data.tile_size} is not a multiple of the network stride "
                             f"{mc.stride}")
        if self.train_only and self.freeze_encoder_epochs:
            raise ValueError("train_only and freeze_encoder_epochs both choose what trains; set one of them")
        self._check_select_metric([c.name for c in mc.classes])
        return self

    def _check_select_metric(self, classes: list[str]) -> None:
        """``select_metric`` must name a metric validation computes, or best.firemap.pt would never be written."""
        source, _, metric = self.select_metric.rpartition("/")
        valid = ["macro_iou", "macro_f1", *(f"{c}_{m}" for c in classes for m in SELECT_METRICS)]
        valid += ["fire_object_recall"] if "fire" in classes else []
        labels = [s.label for s in self.data.val]
        if metric not in valid or (source and source not in labels):
            close = difflib.get_close_matches(metric, valid, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            prefix = f" or <source>/<metric> with <source> in {labels}" if labels else ""
            raise ValueError(f"select_metric {self.select_metric!r} is not a validation metric; {hint}use one of "
                             f"{', '.join(valid)}{prefix}")
        cls = next((c for c in classes if metric.startswith(c + "_")), None)
        vals = [s for s in self.data.val if not source or s.label == source]
        if cls and vals and not any(isinstance(s, SimulatorSource) or cls in s.labelled_classes for s in vals):
            raise ValueError(f"select_metric {self.select_metric!r}: no validation source labels {cls!r}, so it "
                             "is never computed; use macro_iou or a class the validation data labels")

    def model_config_with_stats(
        self, stats: tuple[tuple[float, ...], tuple[float, ...]] | None
    ) -> ModelConfig:
        """The :class:`ModelConfig`, with ``stats = (mean, std)`` filled in (placeholders when None and absent).

        Raises:
            ValueError: invalid model fields (turned into ConfigError by the loaders).
        """
        data = dict(self.model)
        bands = data.get("bands", ModelConfig.model_fields["bands"].default)
        if stats is not None:
            data["mean"], data["std"] = stats
        elif "mean" not in data and "std" not in data:
            data["mean"], data["std"] = (0.0,) * len(bands), (1.0,) * len(bands)
        try:
            return ModelConfig.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(x) for x in err["loc"])
            raise ValueError(f"model{'.' + where if where else ''}: {err['msg']}") from None

    @property
    def has_stats(self) -> bool:
        """True when the config gives ``model.mean`` and ``model.std`` itself."""
        return "mean" in self.model and "std" in self.model


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    node = data
    *parents, last = key.split(".")
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {} if child is None else child
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {key!r}: {part!r} is not a mapping in the config")
        node = child
    node[last] = value


_NOT_ARCHITECTURE = frozenset({"bands", "optional_bands", "band_presence", "mean", "std", "classes", "tile_size",
                               "overlap", "thresholds", "bn_adapt"})


def inherit_init_model(data: dict[str, Any]) -> dict[str, Any]:
    """Fill the ``model`` keys a config leaves out from its ``init`` bundle (``init: default`` or a path).

    A fine-tuned model is by default the init bundle's network: architecture, encoder, bands, classes, tiling and
    calibrated ``thresholds`` (carried over as they are, not recalibrated). Keys the config gives win; an
    architecture key that differs from the bundle's is logged as a WARNING, since the parts that no longer fit
    (e.g. the whole decoder) then start from scratch. ``mean``/``std`` are left to
    :func:`firemap.train.loop.resolve_model_config` (bundle statistics for the bands it shares).

    Args:
        data: the raw config mapping (after command-line overrides).

    Returns:
        ``data`` with the ``model`` section completed (unchanged when ``init`` is not a firemap bundle).

    Raises:
        WeightsError, BundleError: ``init`` names a missing or unreadable file.
    """
    from firemap.transfer import init_bundle_config

    init, given = data.get("init", "none"), data.get("model") or {}
    base = init_bundle_config(init) if isinstance(init, str) else None
    if base is None or not isinstance(given, dict):
        return data
    differ = {k: (given[k], base[k]) for k in base if k not in _NOT_ARCHITECTURE and k in given
              and _plain(given[k]) != _plain(base[k])}
    if differ:
        what = ", ".join(f"model.{k} {v!r} (bundle: {b!r})" for k, (v, b) in differ.items())
        log.warning("%s differ from the init bundle %s: the tensors that no longer fit start from scratch (the "
                    "init log line says which); leave these keys out to fine-tune the bundle's own network", what,
                    init)
    inherited = {k: v for k, v in base.items() if k not in given and k not in ("mean", "std")}
    if "classes" in given:
        names = {c.get("name") if isinstance(c, dict) else getattr(c, "name", None) for c in given["classes"]}
        inherited["thresholds"] = {k: v for k, v in inherited.get("thresholds", {}).items() if k in names}
    if "bands" in given:
        inherited["optional_bands"] = [b for b in inherited.get("optional_bands", []) if b in given["bands"]]
    if inherited.get("thresholds"):
        log.info("thresholds %s carried over from the init bundle (calibrated for it, not recalibrated; set "
                 "model.thresholds or --threshold to change them)", inherited["thresholds"])
    if inherited.get("bn_adapt"):
        log.info("bn_adapt %g carried over from the init bundle: validation and predict adapt BatchNorm to each "
                 "scene (set model.bn_adapt: 0 to use the training statistics)", inherited["bn_adapt"])
    log.info("model keys from the init bundle %s: %s", init, ", ".join(k for k in inherited))
    return {**data, "model": {**inherited, **given}}


def _plain(value: Any) -> Any:
    """Lists and tuples compare equal (YAML gives lists, bundles tuples)."""
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def load_train_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Load a training YAML (see ``configs/``), applying ``overrides`` (non-None values; dotted keys such as
    ``optim.lr`` or ``data.batch_size`` reach into sections).

    Raises:
        ConfigError: missing file, bad YAML, unknown keys or invalid values (one line).
    """
    data = read_yaml_mapping(path)
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(data, key, value)
    cfg: TrainConfig = validate(TrainConfig, inherit_init_model(data), source=str(path))
    return cfg


def train_config_from_dict(data: dict[str, Any], source: str = "train config") -> TrainConfig:
    """Validate a training config given as a dict.

    Raises:
        ConfigError: unknown keys or invalid values (one line).
    """
    cfg: TrainConfig = validate(TrainConfig, inherit_init_model(data), source)
    return cfg


__all__ = [
    "SELECT_METRICS", "AugmentConfig", "ConfigError", "DataConfig", "LossConfig", "OptimConfig", "SceneSource",
    "SimulatorOptions", "SimulatorSource", "TrainConfig", "inherit_init_model", "load_train_config",
    "train_config_from_dict",
]
