"""Build segmentation networks (segmentation-models-pytorch) and save/load firemap model bundles.

A bundle is one file (``torch.save`` of plain dicts and tensors, loadable with ``weights_only=True``) holding
the weights, the :class:`~firemap.config.ModelConfig` (architecture, encoder, bands, normalization, classes,
tile defaults), training provenance, and the versions that made it. ``predict`` needs nothing else.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from firemap import __version__
from firemap._compat import ensure_torchvision
from firemap.archs import ARCHITECTURES, arch_spec
from firemap.config import ModelConfig, validate
from firemap.errors import BundleError, ConfigError
from firemap.raster import atomic_output

log = logging.getLogger(__name__)

BUNDLE_FORMAT = "firemap-bundle"
BUNDLE_VERSION = 1
DEFAULT_BUNDLE = "default.firemap.pt"
"""File name of the default model shipped in ``firemap/assets``."""


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
        H and W multiples of ``cfg.stride``. The builder is the registry's (:mod:`firemap.archs`).

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
    return spec.build(cfg, encoder_weights)


@dataclass
class Bundle:
    """A loaded model bundle.

    Attributes:
        config: the model config.
        model: the network in eval mode on CPU.
        provenance: training data, recipe and metrics (free-form, JSON-like).
        firemap_version: version that wrote the bundle.
        path: where it was loaded from, if anywhere.
    """

    config: ModelConfig
    model: nn.Module
    provenance: dict[str, Any] = field(default_factory=dict)
    firemap_version: str = __version__
    path: Path | None = None

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
) -> Path:
    """Write a bundle atomically (temporary name, then rename).

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
    """
    payload = {
        "format": BUNDLE_FORMAT,
        "bundle_version": BUNDLE_VERSION,
        "config": config.model_dump(mode="json"),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "provenance": dict(provenance or {}),
        "versions": _versions(),
    }
    with atomic_output(path, overwrite) as tmp:
        torch.save(payload, tmp)
    log.info("saved model bundle %s", path)
    return Path(path)


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
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise BundleError(f"{p}: weight {key!r} holds NaN or infinite values; the file is damaged or training "
                              "diverged: re-export it or retrain with a lower learning rate")


def load_bundle(path: str | os.PathLike[str] | None = None) -> Bundle:
    """Load a bundle (``None`` = the default model shipped with firemap).

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
    model = build_model(config)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise BundleError(
            f"{p}: weights do not match the bundle's architecture "
            f"({str(exc).splitlines()[0]}); the file is damaged or was edited"
        ) from None
    model.eval()
    versions = payload.get("versions", {})
    return Bundle(config, model, payload.get("provenance", {}), versions.get("firemap", "?"), p)


def describe_bundle(bundle: Bundle) -> list[tuple[str, str]]:
    """What ``firemap info --model`` shows: architecture, bands, classes, thresholds, provenance and metrics."""
    c = bundle.config
    arch = f"{c.arch} / {c.encoder}, {arch_spec(c.arch).describe(c)}"
    params = sum(p.numel() for p in bundle.model.parameters())
    rows = [
        ("model", f"{bundle.name} (firemap {bundle.firemap_version}){f', {bundle.path}' if bundle.path else ''}"),
        ("network", f"{arch}; {params / 1e6:.2f} M parameters"),
        ("bands", ", ".join(f"{b} (optional)" if b in c.optional_bands else b for b in c.bands)
         + ("; + band-presence channels" if c.band_presence and c.optional_bands else "")),
        ("classes", ", ".join(f"{k.id}={k.name}" for k in c.classes)),
        ("thresholds", ", ".join(f"{k}={v:g}" for k, v in c.class_thresholds().items())),
        ("tiling", f"{c.tile_size} px tiles, {c.overlap} px overlap"),
    ]
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


def fuse_batchnorm(model: nn.Module) -> int:
    """Fold eval-mode BatchNorm layers into the convolutions before them, in place (inference only).

    Applies to every ``nn.Sequential`` holding a ``Conv2d`` directly followed by a ``BatchNorm2d`` (the pattern of
    smp's encoders and decoders); the BatchNorm becomes an ``Identity``. Outputs are unchanged up to float
    rounding. Never call it on a model that will be trained.

    Returns:
        The number of layers folded.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    if model.training:
        raise ValueError("fuse_batchnorm needs a model in eval mode")
    folded = 0
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module._modules.items())
        for (name_a, a), (name_b, b) in itertools.pairwise(children):
            if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d) and b.track_running_stats:
                module._modules[name_a] = fuse_conv_bn_eval(a, b)
                module._modules[name_b] = nn.Identity()
                folded += 1
    return folded


def default_bundle_path() -> Path:
    """Path of the shipped default model.

    Raises:
        BundleError: the package was installed without it.
    """
    path = Path(str(resources.files("firemap") / "assets" / DEFAULT_BUNDLE))
    if not path.is_file():
        raise BundleError(f"no default model at {path}; pass --model PATH or train one with scripts/train_default.py")
    return path


__all__ = [
    "ARCHITECTURES", "Bundle", "build_model", "default_bundle_path", "describe_bundle", "fuse_batchnorm",
    "load_bundle", "save_bundle",
]
