"""The architecture registry: one entry per network, owning its builder, its input multiple and its options.

Each :class:`ArchSpec` says which :class:`~firemap.config.ModelConfig` fields the architecture reads (anything
else must stay at its default, or the config is rejected), which multiple the tile size must be (the network's
total downsampling) and how ``firemap info --model`` describes it. ``ModelConfig`` validates ``arch`` against
:data:`ARCHITECTURES`, ``ModelConfig.stride`` asks the spec, and :func:`firemap.models.build_model` calls the
builder, so adding an architecture is one entry here.

This module imports no torch: builders import the network code when they run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from firemap.config import ModelConfig

Builder = Callable[["ModelConfig", "str | None"], "nn.Module"]

COMMON_FIELDS = frozenset({
    "arch", "encoder", "bands", "optional_bands", "band_presence", "mean", "std", "classes", "tile_size",
    "overlap", "thresholds", "bn_adapt", "fire_head", "fire_gate",
})
"""ModelConfig fields every architecture reads."""

DEEPLAB_FIELDS = frozenset({"output_stride", "atrous_rates", "decoder_channels", "multi_grid", "refine",
                            "refine_channels", "sanet"})
"""The DeepLabv3+ options (see :class:`~firemap.config.ModelConfig`)."""


@dataclass(frozen=True)
class ArchSpec:
    """One architecture.

    Attributes:
        name: the ``arch`` value in configs and bundles.
        build: ``(config, encoder_weights) -> nn.Module`` mapping ``(batch, in_channels, H, W)`` to
            ``(batch, classes, H, W)`` logits.
        stride: ``config -> int``: H and W must be multiples of it (the network's total downsampling).
        options: ModelConfig fields beyond :data:`COMMON_FIELDS` that this architecture reads.
        describe: ``config -> str``: the variant in one line, for ``firemap info --model``.
    """

    name: str
    build: Builder
    stride: Callable[[ModelConfig], int]
    options: frozenset[str]
    describe: Callable[[ModelConfig], str]


def _build_deeplabv3plus(cfg: ModelConfig, encoder_weights: str | None) -> nn.Module:
    from firemap.nets import deeplabv3plus

    return deeplabv3plus(cfg, encoder_weights)


def _build_unet(cfg: ModelConfig, encoder_weights: str | None) -> nn.Module:
    from firemap.nets import unet

    return unet(cfg, encoder_weights)


def _deeplab_stride(cfg: ModelConfig) -> int:
    # The encoder stops downsampling at the output stride (deeper stages are dilated). The SANet attention
    # branch pools the stride-4 features by 2 and the refinement stages halve twice: both need stride 8 at least.
    return 16 if cfg.output_stride == 16 else 8


def _describe_deeplab(cfg: ModelConfig) -> str:
    parts = [f"output stride {cfg.output_stride}", f"ASPP rates {cfg.rates} (separable, image pooling)"]
    if cfg.multi_grid:
        parts.append(f"multi-grid {cfg.multi_grid}")
    parts.append({"none": "stride-4 decoder, x4 bilinear",
                  "stride2": f"stride-2 refinement ({cfg.refine_channels} ch)",
                  "full": f"stride-2 + full-resolution refinement ({cfg.refine_channels} ch)"}[cfg.refine])
    if cfg.sanet:
        parts.append("SANet squeeze-and-attention decoder")
    return ", ".join(parts)


ARCHITECTURES: dict[str, ArchSpec] = {
    "deeplabv3plus": ArchSpec("deeplabv3plus", _build_deeplabv3plus, _deeplab_stride, DEEPLAB_FIELDS,
                              _describe_deeplab),
    "unet": ArchSpec("unet", _build_unet, lambda cfg: 32, frozenset({"decoder_channels"}),
                     lambda cfg: f"decoder widths from {cfg.decoder_channels}"),
}
"""Architecture name -> spec. Networks output one logit per class (multi-label, sigmoid outside)."""


def arch_spec(name: str) -> ArchSpec:
    """The spec of architecture ``name``.

    Raises:
        ValueError: unknown name (the message lists the valid ones).
    """
    spec = ARCHITECTURES.get(name)
    if spec is None:
        raise ValueError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}")
    return spec


def foreign_options(cfg: ModelConfig, defaults: dict[str, Any]) -> list[str]:
    """Fields of ``cfg`` set away from their ``defaults`` that its architecture does not read."""
    reads = COMMON_FIELDS | arch_spec(cfg.arch).options
    return sorted(k for k, v in defaults.items() if k not in reads and getattr(cfg, k) != v)


__all__ = ["ARCHITECTURES", "ArchSpec", "arch_spec", "foreign_options"]
