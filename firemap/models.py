"""Build segmentation networks (segmentation-models-pytorch) and save/load firemap model bundles.

A bundle is one file (``torch.save`` of plain dicts and tensors, loadable with ``weights_only=True``) holding
the weights, the :class:`~firemap.config.ModelConfig` (architecture, encoder, bands, normalization, classes,
tile defaults), training provenance, the versions that made it and, when it could be made, the inference network
exported to TorchScript (:mod:`firemap.export`). ``predict`` needs nothing else.

Importing this module does not import smp, timm or torchvision: :func:`build_model` does, when it runs.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from firemap import __version__
from firemap._compat import ensure_torchvision
from firemap.archs import ARCHITECTURES, arch_spec
from firemap.config import ModelConfig, validate
from firemap.errors import BundleError, ConfigError, ExportError
from firemap.export import (
    check_shapes,
    describe_export,
    export_network,
    export_summary,
    fuse_batchnorm,
    load_adaptable,
    load_network,
    state_fingerprint,
)
from firemap.raster import atomic_output

log = logging.getLogger(__name__)

BUNDLE_FORMAT = "firemap-bundle"
BUNDLE_VERSION = 1
DEFAULT_BUNDLE = "default.firemap.pt"
"""File name of the default model shipped in ``firemap/assets`` (Sentinel-2, HLS and scenes of unknown sensor)."""
DEFAULT_BUNDLES: dict[str, str] = {"generic": DEFAULT_BUNDLE, "landsat": "default-landsat.firemap.pt"}
"""The shipped default model of each sensor family (see :func:`sensor_family`), in ``firemap/assets``. Landsat
scenes get their own: the model fine-tuned on real Landsat fire and fire-free scenes finds fire fronts and fresh
char the generic one misses, but loses on Sentinel-2 burn scars (docs/training.md, "Default models per sensor")."""

DEFAULT_NETWORK_CHOICE = (
    "U-Net / MobileNetV2, chosen by the same-recipe comparison (docs/benchmarks.md, Architecture comparison): "
    "firemap's DeepLabv3+ (ASPP, full-resolution refinement, SANet) finds more fires (simulated fire F1 0.78 vs "
    "0.64, fire object recall 0.67 vs 0.29) but is below U-Net on burn scars (simulated IoU 0.41 vs 0.42; Corumba "
    "Pantanal 0.09 vs 0.21) and calls more fire-free land burned, and the rule was to switch only if it is not "
    "below on burn scars; for fire-first jobs train configs/deeplabv3plus.yaml")
"""Which network the shipped defaults are and why (``firemap info --model default``); README, "The default
models", says the same with the table behind it."""


def _smp() -> Any:
    ensure_torchvision()
    import segmentation_models_pytorch as smp

    return smp


def build_model(cfg: ModelConfig, encoder_weights: str | None = None) -> nn.Module:
    """Build the network described by ``cfg``.

    Args:
        cfg: model config; ``cfg.in_channels`` inputs, ``len(cfg.classes)`` logit outputs.
        encoder_weights: smp pretrained-weights name (e.g. ``imagenet``) or None for random init. Only pass a
            name when the user asked for it: it downloads.

    Returns:
        A module mapping ``(batch, in_channels, H, W)`` float32 to ``(batch, classes, H, W)`` logits, with
        H and W multiples of ``cfg.stride``. The builder is the registry's (:mod:`firemap.archs`); with
        ``cfg.fire_head`` it also carries :func:`firemap.nets.attach_fire_head`'s full-resolution fire head.

    Raises:
        ConfigError: unknown architecture or encoder (the message lists valid names), or an option the
            encoder cannot take (``multi_grid`` without a ResNet encoder).
    """
    try:
        spec = arch_spec(cfg.arch)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    encoders = _smp().encoders.get_encoder_names()
    if cfg.encoder not in encoders:
        raise ConfigError(
            f"unknown encoder {cfg.encoder!r}; e.g. resnet18, resnet34, resnet50, mobilenet_v2, "
            "efficientnet-b0 (see segmentation_models_pytorch.encoders.get_encoder_names())"
        )
    model = spec.build(cfg, encoder_weights)
    if cfg.fire_head:
        from firemap.nets import attach_fire_head

        attach_fire_head(model, cfg)
    return model


@dataclass
class Bundle:
    """A loaded model bundle.

    Attributes:
        config: the model config.
        model: the network in eval mode on CPU.
        provenance: training data, recipe and metrics (free-form, JSON-like).
        firemap_version: version that wrote the bundle.
        path: where it was loaded from, if anywhere.
        exported: the bundle's exported network without its archive (:func:`firemap.export.export_summary`), or
            None when it has none.
        runtime: what ``model`` is: ``eager`` (the smp network), ``torchscript`` (the exported network, for
            inference only: ``load_bundle(..., inference=True)``) or ``torchscript-adaptable`` (the exported
            :class:`~firemap.export.AdaptableNetwork`, with ``keep_batchnorm``); predict's adapted copies are
            ``eager-adapted`` / ``torchscript-adapted``.
    """

    config: ModelConfig
    model: nn.Module
    provenance: dict[str, Any] = field(default_factory=dict)
    firemap_version: str = __version__
    path: Path | None = None
    exported: dict[str, Any] | None = None
    runtime: str = "eager"

    @property
    def name(self) -> str:
        """Short model name for outputs (file stem, or the provenance name)."""
        return str(self.provenance.get("name") or (self.path.name.split(".")[0] if self.path else "unnamed"))


def _versions() -> dict[str, str]:
    smp = _smp()
    return {
        "firemap": __version__,
        "torch": str(torch.__version__),
        "segmentation_models_pytorch": str(smp.__version__),
    }


def save_bundle(
    path: str | os.PathLike[str],
    model: nn.Module,
    config: ModelConfig,
    provenance: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    export: bool = True,
) -> Path:
    """Write a bundle atomically (temporary name, then rename).

    Args:
        path: the ``.firemap.pt`` file to write.
        model: the network (its ``state_dict`` is saved; the model itself is not changed).
        config: its config.
        provenance: free-form, JSON-like.
        overwrite: replace an existing ``path``.
        export: also store the inference network exported to TorchScript (:mod:`firemap.export`), so that
            ``predict`` loads it with torch alone. A network that cannot be exported is saved without it (logged).

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
    """
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "bundle_version": BUNDLE_VERSION,
        "config": config.model_dump(mode="json"),
        "state_dict": state,
        "provenance": dict(provenance or {}),
        "versions": _versions(),
    }
    if export:
        try:
            payload["exported"] = export_network(model, _shapes(config), state_fingerprint(state))
        except ExportError as exc:
            log.warning("%s: saved without an exported network: %s", path, exc)
    with atomic_output(path, overwrite) as tmp:
        torch.save(payload, tmp)
    log.info("saved model bundle %s", path)
    return Path(path)


def _shapes(config: ModelConfig) -> list[tuple[int, int, int, int]]:
    return check_shapes(config.in_channels, config.tile_size, config.stride)


def export_bundle(path: str | os.PathLike[str], out: str | os.PathLike[str] | None = None,
                  overwrite: bool = False) -> Path:
    """Add the exported inference network to an existing bundle (``firemap export``).

    The weights, config, provenance and versions are kept as they are; the bundle is rebuilt through smp once,
    exported (:func:`firemap.export.export_network`) and written atomically to ``out`` (default: ``path`` itself,
    which needs ``overwrite``).

    Raises:
        BundleError: ``path`` is not a readable bundle.
        ExportError: the network cannot be exported faithfully.
        OutputExistsError: the output exists and ``overwrite`` is False.
    """
    p = Path(path)
    payload = _read_payload(p)
    bundle = load_bundle(p)
    payload["exported"] = export_network(bundle.model, _shapes(bundle.config), state_fingerprint(payload["state_dict"]))
    target = Path(out) if out is not None else p
    with atomic_output(target, overwrite) as tmp:
        torch.save(payload, tmp)
    log.info("wrote %s with its exported network", target)
    return target


def _read_payload(p: Path) -> dict[str, Any]:
    if not p.is_file():
        raise BundleError(f"{p}: no such model bundle; pass --model PATH to a .firemap.pt file")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt/foreign files
        raise BundleError(
            f"{p}: not a readable firemap model bundle ({type(exc).__name__}); re-export or re-download it"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{p}: not a firemap model bundle (no '{BUNDLE_FORMAT}' header)")
    version = payload.get("bundle_version", 0)
    if not isinstance(version, int) or version > BUNDLE_VERSION:
        raise BundleError(
            f"{p}: bundle format {version!r} is newer than this firemap ({__version__}) reads; upgrade firemap"
        )
    for key in ("config", "state_dict"):
        if not isinstance(payload.get(key), dict):
            raise BundleError(
                f"{p}: the bundle has no '{key}' (keys: {', '.join(map(str, payload))}); the file is damaged or "
                "was not written by firemap: re-export or re-download it"
            )
    return payload


def _check_finite(p: Path, config: ModelConfig, state: Mapping[str, Any]) -> None:
    """Refuse NaN/inf weights, normalization statistics or thresholds: they would silently map nothing."""
    stats = {"mean": config.mean, "std": config.std, "thresholds": tuple(config.thresholds.values())}
    for name, values in stats.items():
        if not all(math.isfinite(v) for v in values):
            raise BundleError(f"{p}: the bundle's normalization {name} {list(values)} is not finite; the file is "
                              "damaged or was trained on bad data: re-export or retrain it")
    for key, tensor in state.items():
        if not isinstance(tensor, torch.Tensor):
            raise BundleError(f"{p}: weight {key!r} is a {type(tensor).__name__}, not a tensor; the file is damaged")
        if tensor.is_floating_point() and not _all_finite(tensor):
            raise BundleError(f"{p}: weight {key!r} holds NaN or infinite values; the file is damaged or training "
                              "diverged: re-export it or retrain with a lower learning rate")


def _all_finite(tensor: torch.Tensor) -> bool:
    """Whether a float tensor holds no NaN/inf, checked in numpy: single-threaded, without the OpenMP start-up
    and barriers torch pays on each of a network's hundreds of small tensors (0.1-0.7 s of predict's start-up
    on 2 shared cores, 10 ms this way)."""
    t = tensor.detach().cpu()
    if t.dtype not in (torch.float32, torch.float64, torch.float16):
        t = t.float()  # bfloat16 and other types numpy lacks
    return bool(np.isfinite(t.numpy()).all())


def load_bundle(
    path: str | os.PathLike[str] | None = None, inference: bool = False, exported: bool = True,
    keep_batchnorm: bool | None = None,
) -> Bundle:
    """Load a bundle (``None`` = the default model shipped with firemap).

    Args:
        path: the ``.firemap.pt`` file.
        inference: return the network for inference only: the bundle's exported TorchScript network when it has
            a usable one (no smp, timm or torchvision imported, nothing built), else the smp network with its
            BatchNorm folded (:func:`fuse_batchnorm`). Either maps ``(batch, in_channels, H, W)`` float32 to
            ``(batch, classes, H, W)`` logits with the same values up to float rounding; neither can be trained.
        exported: with ``inference``, use the exported network when there is one (False: always the smp network,
            e.g. for CUDA, where the frozen TorchScript constants would stay on the CPU).
        keep_batchnorm: with ``inference``, return a network whose BatchNorm statistics can be adapted to a scene
            (:mod:`firemap.adapt`): the bundle's exported :class:`~firemap.export.AdaptableNetwork` when it has
            one (torch alone, runtime ``torchscript-adaptable``), else the smp network with its BatchNorm layers;
            None = when the bundle's config asks for it (``bn_adapt > 0``).

    Raises:
        BundleError: missing, unreadable, foreign or inconsistent bundle (weights not matching the config).
    """
    p = Path(path) if path is not None else default_bundle_path()
    payload = _read_payload(p)
    try:
        config = validate(ModelConfig, payload["config"], source=f"{p} config")
    except ConfigError as exc:
        raise BundleError(f"{p}: bundle config invalid: {exc}") from None
    _check_finite(p, config, payload["state_dict"])
    entry = payload.get("exported")
    summary = export_summary(entry) if isinstance(entry, dict) else None
    versions = payload.get("versions", {})
    meta = (payload.get("provenance", {}), versions.get("firemap", "?"), p, summary)
    if keep_batchnorm is None:
        keep_batchnorm = config.bn_adapt > 0
    if inference and exported and isinstance(entry, dict):
        loaded = _load_exported(p, entry, payload["state_dict"], keep_batchnorm)
        if loaded is not None:
            return Bundle(config, loaded[0], *meta, runtime=loaded[1])
    if inference and keep_batchnorm:
        inference = False
        log.debug("%s: keeping BatchNorm layers for test-time adaptation", p)
    model = build_model(config)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise BundleError(
            f"{p}: weights do not match the bundle's architecture "
            f"({str(exc).splitlines()[0]}); the file is damaged or was edited"
        ) from None
    model.eval()
    if inference:
        log.debug("folded %d BatchNorm layers into convolutions", fuse_batchnorm(model))
    return Bundle(config, model, *meta)


def _load_exported(p: Path, entry: Mapping[str, Any], state: Mapping[str, torch.Tensor],
                   keep_batchnorm: bool) -> tuple[nn.Module, str] | None:
    """The bundle's exported network and its runtime name: the folded one, or with ``keep_batchnorm`` the
    BatchNorm-adaptable one; None (logged) when the bundle has no usable one."""
    try:
        if not keep_batchnorm:
            network: nn.Module = load_network(entry, state_fingerprint(state))
            runtime = str(entry.get("format"))
        elif isinstance(entry.get("adaptable"), dict):
            network = load_adaptable(entry["adaptable"], state, state_fingerprint(state))
            runtime = "torchscript-adaptable"
        else:
            log.debug("%s: no BatchNorm-adaptable export; keeping the smp network's BatchNorm layers", p)
            return None
    except ExportError as exc:
        log.warning("%s: %s; building the network through smp instead", p, exc)
        return None
    log.debug("%s: loaded the exported network (%s)", p, runtime)
    return network, runtime


def describe_bundle(bundle: Bundle) -> list[tuple[str, str]]:
    """What ``firemap info --model`` shows: architecture, bands, classes, thresholds, provenance and metrics."""
    c = bundle.config
    arch = f"{c.arch} / {c.encoder}, {arch_spec(c.arch).describe(c)}"
    if c.fire_head:
        arch += f"; full-resolution fire head ({c.fire_head} ch, gate {c.fire_gate:g})"
    params = sum(p.numel() for p in bundle.model.parameters())
    rows = [
        ("model", f"{bundle.name} (firemap {bundle.firemap_version}){f', {bundle.path}' if bundle.path else ''}"),
        ("network", f"{arch}; {params / 1e6:.2f} M parameters"),
        ("bands", ", ".join(f"{b} (optional)" if b in c.optional_bands else b for b in c.bands)
         + ("; + band-presence channels" if c.band_presence and c.optional_bands else "")),
        ("classes", ", ".join(f"{k.id}={k.name}" for k in c.classes)),
        ("thresholds", ", ".join(f"{k}={v:g}" for k, v in c.class_thresholds().items())),
        ("tiling", f"{c.tile_size} px tiles, {c.overlap} px overlap"),
        ("batchnorm", f"adapted to each scene, weight {c.bn_adapt:g} (--bn-adapt; firemap.adapt; {_adapts_how(bundle)})"
         if c.bn_adapt else f"training statistics (--bn-adapt W adapts them to each scene; {_adapts_how(bundle)})"),
        ("exported", describe_export(bundle.exported)),
    ]
    if bundle.path is not None and _is_shipped_default(bundle.path):
        rows.append(("why this network", DEFAULT_NETWORK_CHOICE))
    prov = bundle.provenance
    for key in ("trained", "heldout_real_scene", "training_seconds", "machine", "real_data", "reproduce"):
        if prov.get(key) is not None:
            rows.append((key.replace("_", " "), str(prov[key])))
    metrics = prov.get("metrics")
    if isinstance(metrics, dict):
        for group, values in metrics.items():
            if isinstance(values, dict):
                shown = {k: v for k, v in values.items() if isinstance(v, int | float) and not k.startswith("baseline")}
                base = {k: v for k, v in values.items() if k.startswith("baseline") and isinstance(v, int | float)}
                text = ", ".join(f"{k} {v:g}" for k, v in list(shown.items())[:8])
                if base:
                    text += "; baselines: " + ", ".join(f"{k[9:]} {v:g}" for k, v in base.items())
                rows.append((group, text))
            else:
                rows.append((group, str(values)))
    return rows


def _is_shipped_default(path: Path) -> bool:
    """Whether ``path`` is one of the shipped defaults of :data:`DEFAULT_BUNDLES`."""
    return any(Path(path).resolve() == _asset(name).resolve() for name in DEFAULT_BUNDLES.values())


def _asset(name: str) -> Path:
    """A file of the package's ``assets`` folder (the shipped bundles)."""
    return Path(str(resources.files("firemap") / "assets" / name))


def _adapts_how(bundle: Bundle) -> str:
    """How predict would adapt this bundle's BatchNorm: with its exported adaptable graphs, or through smp."""
    if isinstance(bundle.exported, dict) and isinstance(bundle.exported.get("adaptable"), dict):
        return "with torch alone: the exported BatchNorm-adaptable graphs"
    return "through smp: no BatchNorm-adaptable export, add it with firemap export MODEL --overwrite"


def sensor_family(sensor: str | None) -> str:
    """The key of :data:`DEFAULT_BUNDLES` for a sensor preset name (``landsat8-l1`` -> ``landsat``; Sentinel-2,
    HLS and None -> ``generic``)."""
    return "landsat" if sensor and sensor.lower().startswith("landsat") else "generic"


def default_bundle_path(sensor: str | None = None) -> Path:
    """Path of the shipped default model for scenes of ``sensor`` (a preset name; None = the generic one).

    Raises:
        BundleError: the package was installed without it.
    """
    path = _asset(DEFAULT_BUNDLES[sensor_family(sensor)])
    if not path.is_file():
        raise BundleError(f"no default model at {path}; pass --model PATH or train one with scripts/train_default.py")
    return path


__all__ = [
    "ARCHITECTURES", "DEFAULT_BUNDLES", "Bundle", "build_model", "default_bundle_path", "describe_bundle",
    "export_bundle", "fuse_batchnorm", "load_bundle", "save_bundle", "sensor_family",
]
