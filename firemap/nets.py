"""The networks behind :data:`firemap.archs.ARCHITECTURES`: smp models and firemap's DeepLabv3+ variants.

``deeplabv3plus`` with ``refine="none"``, no SANet and no multi-grid is smp's ``DeepLabV3Plus`` unchanged (the
bundles written before these options existed rebuild to the same module names and weights). The other variants
keep smp's encoder and its DeepLabv3+ decoder (ASPP with image-level pooling and separable convolutions, the
stride-4 low-level skip) and add:

* ``refine="stride2"``: the decoder features (projected to ``refine_channels``) upsampled to stride 2, joined
  with the encoder's stride-2 features, one 3x3 convolution; logits there, upsampled x2.
* ``refine="full"``: the same stride-2 stage, then upsampled to full resolution and joined with the normalized
  input bands and a shallow stride-1 branch (one 3x3 convolution), two 3x3 convolutions and the 1x1 head at full
  resolution. A one-pixel fire reaches the head through the spectral path instead of being a sixteenth of a
  stride-4 cell.
* ``sanet``: two squeeze-and-attention modules (Zhong et al., "Squeeze-and-Attention Networks for Semantic
  Segmentation", CVPR 2020) on the stride-4 decoder features.
* ``multi_grid``: the DeepLabv3 paper's unit rates for the last ResNet block.

Any architecture can carry a full-resolution fire head (``fire_head`` > 0, :func:`attach_fire_head`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from firemap._compat import ensure_torchvision
from firemap.config import ModelConfig
from firemap.errors import ConfigError


def _smp() -> Any:
    ensure_torchvision()
    import segmentation_models_pytorch as smp

    return smp


def conv_bn_relu(cin: int, cout: int, kernel: int = 3, dilation: int = 1) -> nn.Sequential:
    """``Conv2d`` (no bias, same padding) + ``BatchNorm2d`` + ``ReLU`` (foldable by ``fuse_batchnorm``)."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=dilation * (kernel // 2), dilation=dilation,
                                   bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SqueezeAttention(nn.Module):
    """A squeeze-and-attention module (SANet, CVPR 2020): ``out = attn * main(x) + attn``.

    The main branch is a 3x3 convolution at full feature resolution; the attention branch average-pools ``x``
    by 2 ("squeeze" spatially, not to 1x1 as squeeze-and-excitation does), convolves, and its sigmoid is
    upsampled back, so it rescales the main branch pixel-group by pixel-group; ``+ attn`` is the paper's
    residual term. ``(batch, cin, H, W) -> (batch, cout, H, W)``, H and W even.
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.main = conv_bn_relu(cin, cout)
        self.attention = nn.Sequential(nn.AvgPool2d(2, 2), conv_bn_relu(cin, cout), nn.Conv2d(cout, cout, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attn = torch.sigmoid(self.attention(x))
        attn = F.interpolate(attn, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return attn * self.main(x) + attn


class Refinement(nn.Module):
    """Decoder features (stride 4) -> stride 2 (low-level skip) -> optionally full resolution (input bands).

    Args:
        decoder_channels: channels of the stride-4 decoder features.
        skip_channels: channels of the encoder's stride-2 features.
        in_channels: network input channels (normalized bands + presence flags).
        width: stride-2 width; the full-resolution stage uses ``width // 2``.
        full: go on to full resolution.
    """

    def __init__(self, decoder_channels: int, skip_channels: int, in_channels: int, width: int, full: bool) -> None:
        super().__init__()
        half = max(width // 2, 8)
        self.project = conv_bn_relu(decoder_channels, width, 1)
        self.skip = conv_bn_relu(skip_channels, half, 1)
        self.fuse2 = conv_bn_relu(width + half, width)
        self.full = full
        if full:
            self.stem = conv_bn_relu(in_channels, half)
            self.fuse1 = nn.Sequential(conv_bn_relu(width + half + in_channels, half), conv_bn_relu(half, half))
        self.out_channels = half if full else width

    def forward(self, decoded: torch.Tensor, skip: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``(B, decoder_channels, H/4, W/4)``, ``(B, skip_channels, H/2, W/2)``, ``(B, in, H, W)`` -> features."""
        y = F.interpolate(self.project(decoded), size=skip.shape[-2:], mode="bilinear", align_corners=False)
        y = self.fuse2(torch.cat([y, self.skip(skip)], 1))
        if not self.full:
            return y
        y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse1(torch.cat([y, self.stem(x), x], 1))


class DeepLabV3PlusRefined(nn.Module):
    """smp's DeepLabv3+ encoder and decoder with optional SANet modules and a refinement stage.

    ``(batch, in_channels, H, W)`` float32 -> ``(batch, classes, H, W)`` logits; H and W multiples of the
    :mod:`firemap.archs` stride.
    """

    def __init__(self, cfg: ModelConfig, encoder_weights: str | None) -> None:
        super().__init__()
        smp = _smp()
        self.encoder = smp.encoders.get_encoder(cfg.encoder, in_channels=cfg.in_channels, depth=5,
                                                weights=encoder_weights, output_stride=cfg.output_stride)
        channels = self.encoder.out_channels
        self.decoder = smp.decoders.deeplabv3.decoder.DeepLabV3PlusDecoder(
            encoder_channels=channels, encoder_depth=5, out_channels=cfg.decoder_channels, atrous_rates=cfg.rates,
            output_stride=cfg.output_stride, aspp_separable=True, aspp_dropout=0.5,
        )
        width = cfg.decoder_channels
        self.attention = (nn.Sequential(SqueezeAttention(width, width), SqueezeAttention(width, width))
                          if cfg.sanet else nn.Identity())
        self.refine: Refinement | None = None
        head_in = width
        if cfg.refine != "none":
            self.refine = Refinement(width, channels[1], cfg.in_channels, cfg.refine_channels, cfg.refine == "full")
            head_in = self.refine.out_channels
        self.head = nn.Conv2d(head_in, len(cfg.classes), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(x)
        y = self.attention(self.decoder(features))
        if self.refine is not None:
            y = self.refine(y, features[1], x)
        logits = self.head(y)
        if logits.shape[-2:] != x.shape[-2:]:
            logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=True)
        return logits


FIRE_HEAD_DILATIONS = (1, 1, 2, 2, 1, 1)
"""Dilations of the fire head's 3x3 convolutions: a 17 x 17 px receptive field at full resolution."""


class FireHead(nn.Module):
    """A full-resolution fire localiser: 3x3 conv-BN-ReLU layers (dilations :data:`FIRE_HEAD_DILATIONS`) and a
    1x1 logit, never downsampling, so a one-pixel fire and its warm neighbours stay apart.

    ``(batch, in_channels, H, W)`` normalized input -> ``(batch, 1, H, W)`` fire logit.
    """

    def __init__(self, in_channels: int, width: int) -> None:
        super().__init__()
        layers, cin = [], in_channels
        for d in FIRE_HEAD_DILATIONS:
            layers.append(conv_bn_relu(cin, width, dilation=d))
            cin = width
        self.body = nn.Sequential(*layers)
        self.logit = nn.Conv2d(width, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logit(self.body(x))


def _gate_fire(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor, *, index: int,
               gate: float) -> torch.Tensor:
    """Forward hook: the fire logit becomes ``min(head(x), network_fire_logit + gate)``."""
    head: nn.Module = module.fire_head  # type: ignore[assignment]
    fire = torch.minimum(head(inputs[0]), output[:, index:index + 1] + gate)
    return torch.cat([output[:, :index], fire, output[:, index + 1:]], 1)


def attach_fire_head(model: nn.Module, cfg: ModelConfig) -> nn.Module:
    """Give ``model`` a :class:`FireHead` (``cfg.fire_head`` wide) as its child ``fire_head``, in place.

    A forward hook replaces the fire logit of the network's output by ``min(head, network + cfg.fire_gate)``:
    the head places fire to the pixel, the network's own fire logit keeps the context (a sure no-fire there stays
    no-fire). Every other class and every existing parameter name is unchanged, so weights of the same network
    without a head load into it (the head starts untrained). ``(batch, in_channels, H, W)`` -> ``(batch,
    classes, H, W)`` logits as before.
    """
    names = [c.name for c in cfg.classes]
    model.fire_head = FireHead(cfg.in_channels, cfg.fire_head)
    model.register_forward_hook(partial(_gate_fire, index=names.index("fire"), gate=float(cfg.fire_gate)))
    return model


def apply_multi_grid(encoder: nn.Module, grid: Sequence[int], name: str = "encoder") -> list[int]:
    """Set the DeepLabv3 multi-grid unit rates on a ResNet encoder's last block (``layer4``), in place.

    Unit ``i`` of ``layer4`` gets dilation ``grid[i % len(grid)]`` times the block's current dilation (2 at output
    stride 16, 4 at 8) on its 3x3 convolutions, padding to match (the output size is unchanged).

    Returns:
        The dilation given to each unit.

    Raises:
        ConfigError: the encoder has no ResNet ``layer4``.
    """
    block = getattr(encoder, "layer4", None)
    if not isinstance(block, nn.Sequential):
        raise ConfigError(f"multi_grid needs a ResNet encoder (resnet18/34/50/...); {name} has no layer4: "
                          "remove multi_grid or choose a resnet encoder")
    rates = []
    for i, unit in enumerate(block):
        convs = [m for m in unit.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
        rate = grid[i % len(grid)] * convs[0].dilation[0]
        for conv in convs:
            conv.dilation, conv.padding = (rate, rate), (rate, rate)
        rates.append(rate)
    return rates


def deeplabv3plus(cfg: ModelConfig, encoder_weights: str | None) -> nn.Module:
    """DeepLabv3+ per ``cfg`` (smp's own model when no firemap option is set; see the module docstring)."""
    if cfg.refine == "none" and not cfg.sanet:
        model = _smp().DeepLabV3Plus(
            encoder_name=cfg.encoder,
            encoder_weights=encoder_weights,
            encoder_output_stride=cfg.output_stride,
            decoder_channels=cfg.decoder_channels,
            decoder_atrous_rates=cfg.rates,
            in_channels=cfg.in_channels,
            classes=len(cfg.classes),
        )
    else:
        model = DeepLabV3PlusRefined(cfg, encoder_weights)
    if cfg.multi_grid:
        apply_multi_grid(model.encoder, cfg.multi_grid, cfg.encoder)
    return model


def unet(cfg: ModelConfig, encoder_weights: str | None) -> nn.Module:
    """smp U-Net; decoder widths halve per stage from ``cfg.decoder_channels`` (floor 16)."""
    # 256 gives smp's default (256, 128, 64, 32, 16), so bundles written before this option existed rebuild
    # identically.
    widths = tuple(max(cfg.decoder_channels >> i, 16) for i in range(5))
    return _smp().Unet(
        encoder_name=cfg.encoder,
        encoder_weights=encoder_weights,
        in_channels=cfg.in_channels,
        classes=len(cfg.classes),
        decoder_channels=widths,
    )


__all__ = ["FIRE_HEAD_DILATIONS", "DeepLabV3PlusRefined", "FireHead", "Refinement", "SqueezeAttention",
           "apply_multi_grid", "attach_fire_head", "deeplabv3plus", "unet"]
