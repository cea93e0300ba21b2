"""Transfer learning: initialise a network from ImageNet, a firemap bundle, or an smp/timm encoder state dict,
whatever its bands and classes.

**Band-aware first-conv adaptation.** Every input channel has a name: its canonical band (``red``, ``swir2``,
...) or ``present:<band>`` for a band-presence flag. First-conv kernels are copied from the source channel of
the same name, never by position (smp's default cycles the RGB kernels over the new channels by index, so
which kernel a band inherits silently depends on the band order). Channels the source lacks get:

* reflective/thermal bands: the mean of the source's band kernels, rescaled per output filter to the mean norm
  of the source kernels (a "luminance" kernel of typical magnitude);
* presence flags: zeros (no effect until trained).

When bands are added, all band kernels are multiplied by ``sqrt(n_mapped / n_bands)`` so the first conv's
output variance stays what it was for independent unit-variance inputs. A pure reordering changes nothing,
so a bundle whose bands are reordered gives exactly the same predictions on a scene whose bands are reordered
the same way.

**Heads.** Output rows of the segmentation head are matched by class name; classes the source lacks keep the
fresh initialisation of the new network. Every other tensor is copied when name and shape match.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from firemap.config import ModelConfig, validate
from firemap.errors import BundleError, ConfigError, WeightsError

log = logging.getLogger(__name__)

PRESENCE_PREFIX = "present:"
IMAGENET_BANDS: tuple[str, ...] = ("red", "green", "blue")
"""Channel order of ImageNet-pretrained first convs."""

SENTINEL2_13: tuple[str | None, ...] = (
    "coastal", "blue", "green", "red", None, None, None, "nir", None, None, "cirrus", "swir1", "swir2",
)
"""Channel order of 13-band Sentinel-2 pretrained encoders (B01..B08, B8A, B09, B10, B11, B12)."""

DEFAULT_INIT = "default"
"""``init`` value naming the shipped default model."""

FETCH_TIMEOUT_S = 120.0
"""Longest wait for ``--init imagenet`` weights before giving up."""

_STRIP_PREFIXES = ("module.", "model.", "backbone.", "encoder.")


def channel_names(cfg: ModelConfig) -> list[str]:
    """Names of the network's input channels: ``cfg.bands`` then ``present:<band>`` per optional band."""
    flags = [PRESENCE_PREFIX + b for b in cfg.optional_bands] if cfg.band_presence else []
    return [*cfg.bands, *flags]


def first_conv_key(model: nn.Module) -> str:
    """State-dict key of the encoder's first convolution weight (e.g. ``encoder.conv1.weight``).

    Raises:
        WeightsError: the model has no convolution.
    """
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return f"{name}.weight"
    raise WeightsError("the model has no Conv2d layer to adapt")


def adapt_kernels(weight: torch.Tensor, source: Sequence[str | None], target: Sequence[str]) -> torch.Tensor:
    """Map first-conv kernels from source channels to target channels by name (see the module docstring).

    Args:
        weight: ``(out, len(source), k, k)`` source kernels.
        source: channel names of the source (None = a channel with no canonical meaning, never copied).
        target: channel names of the target.

    Returns:
        ``(out, len(target), k, k)`` kernels.

    Raises:
        WeightsError: ``weight`` does not have ``len(source)`` input channels, or no source band matches.
    """
    if weight.shape[1] != len(source):
        raise WeightsError(f"first conv has {weight.shape[1]} input channels but {len(source)} channel names "
                           f"were given ({list(source)}); set init_bands to one name per channel")
    bands_src = [i for i, n in enumerate(source) if n and not n.startswith(PRESENCE_PREFIX)]
    if not bands_src:
        raise WeightsError(f"no source channel has a band name ({list(source)}); set init_bands")
    w = weight.detach().float()
    typical = w[:, bands_src].flatten(2).norm(dim=2).mean(dim=1)  # (out,)
    mean = w[:, bands_src].mean(dim=1)
    mean = mean * (typical / mean.flatten(1).norm(dim=1).clamp_min(1e-12))[:, None, None]
    out = torch.zeros(w.shape[0], len(target), *w.shape[2:])
    index = {n: i for i, n in enumerate(source) if n}
    mapped, added = 0, 0
    for j, name in enumerate(target):
        if name in index:
            out[:, j] = w[:, index[name]]
            mapped += not name.startswith(PRESENCE_PREFIX)
        elif not name.startswith(PRESENCE_PREFIX):
            out[:, j] = mean
            added += 1
    if added:
        band_cols = [j for j, n in enumerate(target) if not n.startswith(PRESENCE_PREFIX)]
        out[:, band_cols] *= (max(mapped, 1) / len(band_cols)) ** 0.5
    log.info("first conv: %d band kernel(s) mapped by name, %d new (mean kernel)", mapped, added)
    return out.to(weight.dtype)


def _head_rows(
    key: str, tensor: torch.Tensor, target: torch.Tensor, src_classes: Sequence[str], dst_classes: Sequence[str]
) -> torch.Tensor | None:
    """Copy head rows by class name; None if ``key`` is not a head tensor with one row per class."""
    if not key.startswith("segmentation_head.") or tensor.shape[0] != len(src_classes):
        return None
    if target.shape[0] != len(dst_classes) or tensor.shape[1:] != target.shape[1:]:
        return None
    out = target.clone()
    for j, name in enumerate(dst_classes):
        if name in src_classes:
            out[j] = tensor[src_classes.index(name)]
    return out


def transfer_state(
    model: nn.Module,
    cfg: ModelConfig,
    state: Mapping[str, torch.Tensor],
    source_channels: Sequence[str | None],
    source_classes: Sequence[str] | None = None,
    whole_network: bool = False,
) -> dict[str, int]:
    """Load ``state`` into ``model`` as far as it fits: first conv by band name, head rows by class name,
    every other tensor when name and shape match.

    Args:
        model: the new network (freshly initialised).
        cfg: its config.
        state: source state dict with the new model's key names (``encoder.`` prefix etc.).
        source_channels: channel names of the source's first conv.
        source_classes: class names of the source head rows, if it has a head.
        whole_network: the source is a whole network (a firemap bundle): warn, naming the modules, when some of
            this network's tensors get nothing from it (e.g. a DeepLabv3+ decoder from a U-Net bundle).

    Returns:
        Counts: ``copied`` tensors, ``adapted`` (first conv and head), ``skipped`` source tensors that did not fit,
        ``fresh`` tensors of this network left at their random initialisation.
    """
    target = model.state_dict()
    conv = first_conv_key(model)
    classes = [c.name for c in cfg.classes]
    new: dict[str, torch.Tensor] = {}
    counts = {"copied": 0, "adapted": 0, "skipped": 0}
    for key, tensor in state.items():
        if key not in target:
            counts["skipped"] += 1
        elif key == conv:
            new[key] = adapt_kernels(tensor, source_channels, channel_names(cfg))
            counts["adapted"] += 1
        elif (rows := _head_rows(key, tensor, target[key], source_classes or [], classes)) is not None:
            new[key] = rows
            counts["adapted"] += 1
        elif tensor.shape == target[key].shape:
            new[key] = tensor
            counts["copied"] += 1
        else:
            counts["skipped"] += 1
    if conv not in new:
        raise WeightsError(f"the init weights have no tensor {conv!r} (the first conv of {cfg.encoder}); they "
                           f"are for another encoder")
    model.load_state_dict(new, strict=False)
    log.info("init: %(copied)d tensors copied, %(adapted)d adapted, %(skipped)d skipped", counts)
    fresh = [k for k in target if k not in new]
    counts["fresh"] = len(fresh)
    if whole_network and fresh:
        log.warning("init: %d of %d tensors of this network start from scratch (%s): the init weights are for "
                    "another architecture or encoder; leave the model's architecture keys out of the config to "
                    "take the init bundle's", len(fresh), len(target), _by_module(fresh))
    return counts


def _by_module(keys: Sequence[str]) -> str:
    """``decoder 58, segmentation_head 2``: state-dict keys counted by top-level module."""
    counts: dict[str, int] = {}
    for key in keys:
        top = key.split(".", 1)[0]
        counts[top] = counts.get(top, 0) + 1
    return ", ".join(f"{name} {n}" for name, n in counts.items())


def _fetch_imagenet(encoder: str) -> dict[str, torch.Tensor]:
    """Download smp's ImageNet weights for ``encoder`` (3 channels), with a hard timeout."""
    from firemap.models import _smp

    smp = _smp()
    result: dict[str, Any] = {}

    def fetch() -> None:
        try:
            result["state"] = smp.encoders.get_encoder(encoder, in_channels=3, weights="imagenet").state_dict()
        except Exception as exc:  # network, hub and key errors alike
            result["error"] = exc

    thread = threading.Thread(target=fetch, daemon=True)
    thread.start()
    thread.join(FETCH_TIMEOUT_S)
    fix = "check access to huggingface.co, or use --init PATH with local weights, or --init none"
    if thread.is_alive():
        raise WeightsError(f"timed out after {FETCH_TIMEOUT_S:.0f} s fetching ImageNet weights for {encoder!r}; {fix}")
    if "error" in result:
        exc = result["error"]
        first = str(exc).splitlines()[0].split(". ")[0][:200] if str(exc) else ""
        raise WeightsError(f"cannot fetch ImageNet weights for encoder {encoder!r} ({type(exc).__name__}: "
                           f"{first}); {fix}")
    return {f"encoder.{k}": v for k, v in result["state"].items()}


def _load_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise WeightsError(f"--init {path}: no such file; give a firemap bundle (.firemap.pt), an smp/timm "
                           "encoder state dict, 'imagenet' or 'none'")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"--init {path}: not a readable model or weights file ({type(exc).__name__}); give a "
                           "firemap bundle (.firemap.pt) or an smp/timm encoder state dict") from None
    if not isinstance(payload, dict):
        raise WeightsError(f"--init {path}: expected a state dict or a firemap bundle, got {type(payload).__name__}")
    return payload


def _encoder_state(payload: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Normalise a foreign state dict's keys to ``encoder.<timm/torchvision name>``."""
    for nested in ("state_dict", "model", "model_state_dict"):
        if isinstance(payload.get(nested), Mapping):
            payload = payload[nested]
    out = {}
    for key, value in payload.items():
        if not isinstance(value, torch.Tensor):
            continue
        k = key
        while k.startswith(_STRIP_PREFIXES):
            k = k.split(".", 1)[1]
        out[f"encoder.{k}"] = value
    return out


def _default_channels(n: int) -> tuple[str | None, ...]:
    if n == 3:
        return IMAGENET_BANDS
    if n == 13:
        return SENTINEL2_13
    raise WeightsError(f"the init weights' first conv has {n} input channels and firemap cannot guess their "
                       "bands; set init_bands (one canonical band name or null per channel)")


def init_path(init: str) -> Path:
    """The file an ``init`` value names: ``default`` is the shipped model (as in ``info --model default``)."""
    if init == DEFAULT_INIT:
        from firemap.models import default_bundle_path

        return default_bundle_path()
    return Path(os.path.expanduser(init))


def init_bundle_config(init: str) -> dict[str, Any] | None:
    """The model config (a plain dict) of an ``init`` that is a firemap bundle; None for ``none``, ``imagenet``
    and encoder state dicts.

    Raises:
        WeightsError: ``init`` names a missing or unreadable file.
        BundleError: a firemap bundle without a valid config.
    """
    if init in ("none", "imagenet"):
        return None
    path = init_path(init)
    payload = _load_file(path)
    if payload.get("format") != "firemap-bundle":
        return None
    try:
        cfg: ModelConfig = validate(ModelConfig, payload.get("config") or {}, source=f"{path} config")
    except ConfigError as exc:
        raise BundleError(f"--init {path}: bundle config invalid: {exc}") from None
    return cfg.model_dump(mode="json")


def init_weights(
    model: nn.Module, cfg: ModelConfig, init: str, init_bands: Sequence[str | None] | None = None
) -> dict[str, Any]:
    """Initialise ``model`` (built by :func:`firemap.models.build_model` with random weights) from ``init``.

    Args:
        model: the network.
        cfg: its config.
        init: ``none``, ``imagenet`` (smp's pretrained encoder; downloads with a timeout), ``default`` (the
            shipped model), or a path to a firemap bundle or an smp/timm encoder state dict (e.g. a Sentinel-2
            pretrained ResNet).
        init_bands: canonical band per input channel of a state dict (default: RGB for 3, S2 order for 13).

    Returns:
        Provenance: what was loaded and the transfer counts.

    Raises:
        WeightsError: weights cannot be fetched/read or do not fit the encoder.
    """
    if init == "none":
        return {"init": "none"}
    if init == "imagenet":
        counts = transfer_state(model, cfg, _fetch_imagenet(cfg.encoder), list(init_bands or IMAGENET_BANDS))
        return {"init": "imagenet", **counts}
    path = init_path(init)
    payload = _load_file(path)
    if payload.get("format") == "firemap-bundle":
        try:
            src_cfg = validate(ModelConfig, payload["config"], source=f"{path} config")
        except ConfigError as exc:
            raise BundleError(f"--init {path}: bundle config invalid: {exc}") from None
        counts = transfer_state(model, cfg, payload["state_dict"], channel_names(src_cfg),
                                [c.name for c in src_cfg.classes], whole_network=True)
        return {"init": str(path), "init_kind": "bundle", "init_name": payload.get("provenance", {}).get("name"),
                **counts}
    state = _encoder_state(payload)
    conv = first_conv_key(model)
    if conv not in state:
        raise WeightsError(f"--init {path}: no tensor {conv.removeprefix('encoder.')!r} (first conv of "
                           f"{cfg.encoder}); the state dict is for another encoder")
    channels = list(init_bands) if init_bands else list(_default_channels(state[conv].shape[1]))
    counts = transfer_state(model, cfg, state, channels)
    return {"init": str(path), "init_kind": "state_dict", **counts}


def freeze_bn_stats(model: nn.Module) -> int:
    """Put every BatchNorm layer in eval mode (running statistics used and kept; weight and bias still train).

    Call after ``model.train()``. Returns the number of layers frozen.
    """
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in layers:
        m.eval()
    return len(layers)


def set_encoder_trainable(model: nn.Module, trainable: bool) -> None:
    """Freeze or unfreeze the encoder's parameters (``--freeze-encoder-epochs``)."""
    encoder = getattr(model, "encoder", None)
    if encoder is None:
        raise WeightsError("the model has no .encoder to freeze")
    for p in encoder.parameters():
        p.requires_grad_(trainable)


__all__ = [
    "DEFAULT_INIT", "IMAGENET_BANDS", "PRESENCE_PREFIX", "SENTINEL2_13", "adapt_kernels", "channel_names",
    "first_conv_key", "freeze_bn_stats", "init_bundle_config", "init_path", "init_weights", "set_encoder_trainable",
    "transfer_state",
]
