"""Test-time BatchNorm adaptation: normalize each scene with statistics mixed from training and from the scene.

A network's BatchNorm layers normalize with the mean and variance of its training data. A scene from another
sensor, product or biome shifts those statistics, and the shift alone can flip whole regions of the output: the
v2 default called 38% of a real Sentinel-2 L2A port burn scar with its training statistics and 0.01% with a
quarter of the port's own mixed in (``scripts/eval_real.py``, docs/training.md). Following Schneider et al.,
"Improving robustness against common corruptions by covariate shift adaptation" (NeurIPS 2020), the statistics
used for a scene are

    mean = (1 - w) * mean_train + w * mean_scene,    var = (1 - w) * var_train + w * var_scene

with ``w`` = ``bn_adapt`` (0 = training statistics only, the network unchanged; 1 = the scene's alone, which
here turns fire-free deserts and forests into smoke). The scene statistics come from one pass over up to
:data:`ADAPT_MAX_TILES` tiles spread evenly over the scene, before its pixels are predicted: every tile of a
scene sees the same network, so the output stays seam-free and independent of the tiling order, and memory stays
that of one batch. The adapted copy has its BatchNorm folded like any inference network.

Cost: one forward pass over the sampled tiles per scene (at most 64: 3.5% more network time on a 8192^2 scene,
twice the network time on a crop of a few tiles). The network is the bundle's exported
:class:`~firemap.export.AdaptableNetwork` when it has one (torch alone, the same statistics and outputs), else the
eager smp network (start-up about 3 s longer: smp, timm and torchvision imported and the network built;
docs/benchmarks.md).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from firemap.export import AdaptableNetwork

log = logging.getLogger(__name__)

ADAPT_MAX_TILES = 64
"""Tiles per scene whose statistics are measured (spread evenly over the tiles with data)."""


def batchnorm_layers(model: nn.Module) -> list[_BatchNorm]:
    """The BatchNorm layers of ``model`` that track running statistics, in module order."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


def can_adapt(model: object) -> bool:
    """Whether :func:`adapted_network` can adapt ``model``: an eager network with BatchNorm layers, or the
    exported :class:`~firemap.export.AdaptableNetwork` (a folded or frozen network cannot)."""
    return isinstance(model, AdaptableNetwork) or (isinstance(model, nn.Module) and bool(batchnorm_layers(model)))


def sample_indices(n: int, k: int = ADAPT_MAX_TILES) -> list[int]:
    """``min(n, k)`` indices spread evenly over ``range(n)`` (all of them when ``n <= k``)."""
    if n <= k:
        return list(range(n))
    return sorted({int(i) for i in np.linspace(0, n - 1, k).round()})


@torch.no_grad()
def scene_statistics(model: nn.Module, batches: Iterable[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Mean and variance of every BatchNorm layer's input over ``batches``, as BatchNorm's training mode
    accumulates them with ``momentum=None`` (average over batches of each batch's mean and unbiased variance;
    later layers see inputs normalized with the batch's statistics, as in training).

    Args:
        model: the network (not modified: a copy is measured).
        batches: network inputs ``(batch, in_channels, H, W)`` float32, normalized as for prediction.

    Returns:
        ``(mean, var)`` per layer of :func:`batchnorm_layers`, float32 ``(channels,)``.

    Raises:
        ValueError: no batch was given, or the network has no BatchNorm layer to measure.
    """
    return _measure(copy.deepcopy(model).eval(), batches)


def _measure(probe: nn.Module, batches: Iterable[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """:func:`scene_statistics` on ``probe`` itself (its running statistics are overwritten)."""
    layers = batchnorm_layers(probe)
    if not layers:
        raise ValueError("the network has no BatchNorm layers with running statistics")
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None
        layer.train()
    seen = 0
    for x in batches:
        probe(x)
        seen += 1
    if not seen:
        raise ValueError("no batch to measure BatchNorm statistics on")
    return [(layer.running_mean.clone(), layer.running_var.clone()) for layer in layers]  # type: ignore[union-attr]


def mix_statistics(model: nn.Module, scene: Sequence[tuple[torch.Tensor, torch.Tensor]], weight: float) -> None:
    """Replace the running statistics of ``model``'s BatchNorm layers by ``(1 - weight) * own + weight * scene``,
    in place.

    Raises:
        ValueError: ``weight`` outside [0, 1] or ``scene`` not from this architecture.
    """
    _check_weight(weight)
    layers = batchnorm_layers(model)
    if len(layers) != len(scene):
        raise ValueError(f"{len(scene)} statistics for {len(layers)} BatchNorm layers")
    for layer, (mean, var) in zip(layers, scene, strict=True):
        assert layer.running_mean is not None and layer.running_var is not None
        layer.running_mean.copy_(_mix(layer.running_mean, mean, weight))
        layer.running_var.copy_(_mix(layer.running_var, var, weight))


def adapted_network(model: nn.Module, batches: Iterable[torch.Tensor], weight: float, fold: bool = True) -> nn.Module:
    """A copy of ``model`` whose BatchNorm statistics mix the training ones with those of ``batches``.

    Args:
        model: the eager network with its BatchNorm layers, or the exported
            :class:`~firemap.export.AdaptableNetwork` (torch alone; measured with the same BatchNorm training
            mode, always folded). Not modified.
        batches: network inputs ``(batch, in_channels, H, W)`` float32 from the scene (see :func:`scene_statistics`).
        weight: weight of the scene statistics, in [0, 1].
        fold: fold the BatchNorm layers into the convolutions (inference only; see
            :func:`firemap.export.fuse_batchnorm`).

    Returns:
        The adapted copy, in eval mode.
    """
    if isinstance(model, AdaptableNetwork):
        _check_weight(weight)
        scene = model.measure(batches)
        own = model.statistics()
        return model.with_statistics({name: (_mix(own[name][0], mean, weight), _mix(own[name][1], var, weight))
                                      for name, (mean, var) in scene.items()})
    network = copy.deepcopy(model).eval()  # one copy: measured, then given back the training statistics and mixed
    stats = _measure(network, batches)
    for mine, trained in zip(batchnorm_layers(network), batchnorm_layers(model), strict=True):
        mine.load_state_dict(trained.state_dict())
        mine.momentum = trained.momentum
        mine.eval()
    mix_statistics(network, stats, weight)
    if fold:
        from firemap.export import fuse_batchnorm

        fuse_batchnorm(network)
    return network


def _check_weight(weight: float) -> None:
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"BatchNorm adaptation weight {weight}: give a number in [0, 1]")


def _mix(own: torch.Tensor, scene: torch.Tensor, weight: float) -> torch.Tensor:
    """``(1 - weight) * own + weight * scene``, computed as :func:`mix_statistics` does (same rounding)."""
    return own.mul(1.0 - weight).add_(scene.to(own), alpha=weight)
