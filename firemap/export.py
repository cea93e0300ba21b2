"""The inference network exported beside the weights: loaded with torch alone (no smp, timm or torchvision).

A bundle (:mod:`firemap.models`) holds the training weights (``state_dict``, rebuilt through smp) and, in bundles
saved by this firemap or given one with ``firemap export``, an ``exported`` entry: the same network with its
BatchNorm layers folded into the convolutions, traced to TorchScript and frozen. ``predict`` loads that entry when
it is present and consistent with the weights, which saves importing torchvision, timm and smp (about 2.5 s on 2
cores) and building the network. Older bundles have no entry and load through smp exactly as before.

Why TorchScript: its loader is part of ``import torch`` (``torch.export.load`` pulls in sympy and dynamo: loading
a two-layer network that way took 1.6 s after a 1.6 s ``import torch``, which is what this path exists to
avoid), tracing keeps input shapes dynamic for these convolutional networks (checked at export), and a frozen
traced graph runs the same kernels as the eager network (bit-identical fp32 logits on the default model).
torch marks ``torch.jit`` as deprecated in favour of ``torch.export``: when that loads quickly, only this module
changes (the entry has a ``format``).

The entry is plain data (loadable with ``torch.load(weights_only=True)``)::

    {"format": "torchscript", "torch": "2.13.0+cpu", "data": uint8 tensor (the TorchScript archive),
     "state_sha256": hex digest of the weights it was made from, "max_abs_diff": float, "checked_shapes": [...]}

This module imports torch only.
"""

from __future__ import annotations

import copy
import hashlib
import io
import itertools
import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from firemap.errors import ExportError

log = logging.getLogger(__name__)

EXPORT_FORMAT = "torchscript"
"""The ``format`` of the entries this firemap writes and reads."""
EXPORT_TOLERANCE = 1e-4
"""Largest logit difference accepted between the exported network and the eager one at export time (float32;
measured 0 on the default U-Net/MobileNetV2: the frozen graph runs the same kernels in the same order)."""


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


def state_fingerprint(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of a ``state_dict`` (ties an export to its weights)."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def check_shapes(in_channels: int, tile_size: int, stride: int) -> list[tuple[int, int, int, int]]:
    """The input shapes an export is traced and checked at: ``(batch, channels, rows, cols)``.

    The first (one tile of ``tile_size``) is traced; the others (other batch sizes, non-square, smaller and
    larger than the tile) must give the same logits as the eager network, or the trace baked in a shape and the
    export is refused. They are kept small: every saved bundle is exported.
    """
    return [(1, in_channels, tile_size, tile_size), (2, in_channels, 2 * stride, 3 * stride),
            (3, in_channels, 5 * stride, 2 * stride)]


def export_network(model: nn.Module, shapes: Sequence[tuple[int, int, int, int]], state_sha256: str) -> dict[str, Any]:
    """Export ``model`` for inference: BatchNorm folded, traced to TorchScript, frozen, checked.

    Args:
        model: the network (left untouched: a copy is exported), mapping ``(batch, channels, H, W)`` float32 to
            ``(batch, classes, H, W)`` logits.
        shapes: input shapes, see :func:`check_shapes`; the first is traced, all are checked.
        state_sha256: :func:`state_fingerprint` of the weights in the bundle the entry goes into.

    Returns:
        The bundle's ``exported`` entry (see the module docstring).

    Raises:
        ExportError: the network cannot be traced, or the trace disagrees with the eager network (more than
            :data:`EXPORT_TOLERANCE`) at one of ``shapes``.
    """
    net = copy.deepcopy(model).float().cpu().eval()
    fuse_batchnorm(net)
    generator = torch.Generator().manual_seed(0)
    inputs = [torch.randn(s, generator=generator) for s in shapes]
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings about Python-side shape checks: verified below
            traced = torch.jit.freeze(torch.jit.trace(net, inputs[0], check_trace=False))
            diff = max(float((traced(x) - net(x)).abs().max()) for x in inputs)
    except Exception as exc:  # tracing fails in many ways (data-dependent control flow, unsupported ops)
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ExportError(f"the network cannot be traced to TorchScript ({type(exc).__name__}: {first}); "
                          "predict will load it through smp") from None
    if not diff <= EXPORT_TOLERANCE:
        raise ExportError(f"the traced network differs from the eager one by {diff:.3g} (> {EXPORT_TOLERANCE:g}) at "
                          f"shapes {list(shapes)}; predict will load it through smp")
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is in maintenance; see the module docstring
        torch.jit.save(traced, buffer)
    data = torch.from_numpy(np.frombuffer(buffer.getvalue(), np.uint8).copy())
    log.info("exported the inference network (TorchScript, %.1f MB, max |logit diff| %.2g)", data.numel() / 1e6, diff)
    return {"format": EXPORT_FORMAT, "torch": str(torch.__version__), "data": data, "state_sha256": state_sha256,
            "max_abs_diff": diff, "checked_shapes": [list(s) for s in shapes]}


def describe_export(entry: Mapping[str, Any] | None) -> str:
    """One line for ``firemap info``: what the bundle's exported network is, or how to add it."""
    if not entry:
        return "none (predict builds the network through smp; add it with: firemap export MODEL --overwrite)"
    data = entry.get("data")
    nbytes = data.numel() if isinstance(data, torch.Tensor) else entry.get("bytes")
    size = f", {nbytes / 1e6:.1f} MB" if isinstance(nbytes, int) else ""
    return (f"{entry.get('format')} (BatchNorm folded, torch {entry.get('torch')}{size}; "
            f"max |logit diff| {float(entry.get('max_abs_diff', float('nan'))):.2g} at export)")


def load_network(entry: Mapping[str, Any], state_sha256: str | None = None) -> torch.jit.ScriptModule:
    """Load an ``exported`` entry as a TorchScript module in eval mode on CPU.

    Args:
        entry: the bundle's ``exported`` entry.
        state_sha256: fingerprint of the bundle's weights; when given it must match the entry's (an export made
            from other weights is refused).

    Raises:
        ExportError: unknown format, stale (weights changed since export), or unreadable by this torch.
    """
    if entry.get("format") != EXPORT_FORMAT:
        raise ExportError(f"exported network format {entry.get('format')!r} is not {EXPORT_FORMAT!r}")
    if state_sha256 is not None and entry.get("state_sha256") != state_sha256:
        raise ExportError("the exported network was made from other weights than the bundle's (re-export it)")
    data = entry.get("data")
    if not isinstance(data, torch.Tensor) or data.dtype != torch.uint8:
        raise ExportError("the exported network holds no TorchScript archive")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = torch.jit.load(io.BytesIO(data.numpy().tobytes()), map_location="cpu")
    except Exception as exc:  # version skew or a damaged archive
        raise ExportError(f"torch {torch.__version__} cannot load the exported network (made with torch "
                          f"{entry.get('torch')}: {type(exc).__name__})") from None
    return module.eval()


def export_summary(entry: Mapping[str, Any]) -> dict[str, Any]:
    """An ``exported`` entry without its archive (``bytes`` = the archive's size): what a loaded bundle keeps."""
    data = entry.get("data")
    return {k: v for k, v in entry.items() if k != "data"} | (
        {"bytes": data.numel()} if isinstance(data, torch.Tensor) else {})


__all__ = ["EXPORT_FORMAT", "check_shapes", "describe_export", "export_network", "export_summary", "fuse_batchnorm",
           "load_network", "state_fingerprint"]
