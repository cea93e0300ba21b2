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
     "state_sha256": hex digest of the weights it was made from, "max_abs_diff": float, "checked_shapes": [...],
     "adaptable": {...}}

**Test-time BatchNorm adaptation with torch alone** (:mod:`firemap.adapt`, ``bn_adapt > 0``) needs what the folded
network lost: the BatchNorm layers, run once in training mode to measure a scene's statistics, then folded with
the mixed statistics. The optional ``adaptable`` sub-entry (:func:`export_adaptable`, format
``torchscript-functional``) holds two traced graphs in one archive whose weights are *inputs*: ``forward`` (the
folded network) and ``measure`` (BatchNorm in training mode, momentum 1: each call leaves the batch's mean and
unbiased variance in the running-statistics tensors it was given). :class:`AdaptableNetwork` feeds them the
bundle's own ``state_dict``, averages the measured statistics over batches as BatchNorm's ``momentum=None`` does,
and folds with ``fuse_conv_bn_weights`` as :func:`fuse_batchnorm` does, so its outputs are those of the eager
adapted network (identical probabilities on the six real Sentinel-2 crops, ``scripts/compare_adaptable.py``).
The archive holds no weights (0.1 MB, not a second copy of the network) and loads as fast as the folded one
(about 0.2 s): a TorchScript module that keeps its smp submodules and parameters (scripted or traced unfrozen)
took about 0.9 s to load, and freezing after the mixing (which folds conv + BatchNorm too) 0.3-0.5 s per scene.
Bundles without ``adaptable`` adapt through smp as before; old firemap versions ignore it.

This module imports torch only.
"""

from __future__ import annotations

import copy
import hashlib
import io
import itertools
import logging
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
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


def conv_batchnorm_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """``(conv, batchnorm)`` module names of every ``Conv2d`` directly followed by a ``BatchNorm2d`` (with running
    statistics) inside an ``nn.Sequential``: the layers :func:`fuse_batchnorm` folds, in module order."""
    pairs = []
    for prefix, module in model.named_modules():
        if not isinstance(module, nn.Sequential):
            continue
        for (name_a, a), (name_b, b) in itertools.pairwise(module._modules.items()):
            if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d) and b.track_running_stats:
                pairs.append((f"{prefix}.{name_a}" if prefix else name_a, f"{prefix}.{name_b}" if prefix else name_b))
    return pairs


def fuse_batchnorm(model: nn.Module) -> int:
    """Fold eval-mode BatchNorm layers into the convolutions before them, in place (inference only).

    Applies to every ``nn.Sequential`` holding a ``Conv2d`` directly followed by a ``BatchNorm2d`` (the pattern of
    smp's encoders and decoders, :func:`conv_batchnorm_pairs`); the BatchNorm becomes an ``Identity``. Outputs are
    unchanged up to float rounding. Never call it on a model that will be trained.

    Returns:
        The number of layers folded.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    if model.training:
        raise ValueError("fuse_batchnorm needs a model in eval mode")
    pairs = conv_batchnorm_pairs(model)
    for conv_name, bn_name in pairs:
        parent, _, conv_leaf = conv_name.rpartition(".")
        sequential = model.get_submodule(parent)
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        sequential._modules[conv_leaf] = fuse_conv_bn_eval(conv, bn)  # type: ignore[type-var,arg-type]
        sequential._modules[bn_name.rpartition(".")[2]] = nn.Identity()
    return len(pairs)


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


@contextmanager
def _tracing(what: str, fallback: str) -> Iterator[None]:
    """Trace and check without gradients or TracerWarnings (Python-side shape checks, verified by the caller);
    any failure becomes an :class:`ExportError` saying what predict does instead."""
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    except Exception as exc:  # tracing fails in many ways (data-dependent control flow, unsupported ops)
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ExportError(f"the network cannot be traced {what} ({type(exc).__name__}: {first}); "
                          f"predict will {fallback}") from None


def export_network(model: nn.Module, shapes: Sequence[tuple[int, int, int, int]], state_sha256: str,
                   adaptable: bool = True) -> dict[str, Any]:
    """Export ``model`` for inference: BatchNorm folded, traced to TorchScript, frozen, checked; with
    ``adaptable``, also the graphs that adapt its BatchNorm to a scene with torch alone (:func:`export_adaptable`,
    the entry's ``adaptable``; left out, with a log line, when the network cannot give them).

    Args:
        model: the network (left untouched: a copy is exported), mapping ``(batch, channels, H, W)`` float32 to
            ``(batch, classes, H, W)`` logits.
        shapes: input shapes, see :func:`check_shapes`; the first is traced, all are checked.
        state_sha256: :func:`state_fingerprint` of the weights in the bundle the entry goes into.

        adaptable: also export the BatchNorm-adaptable graphs.

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
    with _tracing("to TorchScript", "load it through smp"):
        traced = torch.jit.freeze(torch.jit.trace(net, inputs[0], check_trace=False))
        diff = max(float((traced(x) - net(x)).abs().max()) for x in inputs)
    if not diff <= EXPORT_TOLERANCE:
        raise ExportError(f"the traced network differs from the eager one by {diff:.3g} (> {EXPORT_TOLERANCE:g}) at "
                          f"shapes {list(shapes)}; predict will load it through smp")
    data = _archive(traced)
    log.info("exported the inference network (TorchScript, %.1f MB, max |logit diff| %.2g)", data.numel() / 1e6, diff)
    entry = {"format": EXPORT_FORMAT, "torch": str(torch.__version__), "data": data, "state_sha256": state_sha256,
             "max_abs_diff": diff, "checked_shapes": [list(s) for s in shapes]}
    if adaptable:
        try:
            entry["adaptable"] = export_adaptable(model, shapes, state_sha256)
        except ExportError as exc:
            log.info("no BatchNorm-adaptable export: %s", exc)
    return entry


ADAPTABLE_FORMAT = "torchscript-functional"
"""The ``format`` of the BatchNorm-adaptable graphs this firemap writes and reads (the ``adaptable`` sub-entry)."""


@contextmanager
def _bound(model: nn.Module, names: Sequence[str], tensors: Sequence[torch.Tensor]) -> Iterator[nn.Module]:
    """``model`` with the parameters and buffers ``names`` replaced by ``tensors`` while the block runs (traced
    with them, they become inputs of the graph instead of constants; ``torch.func.functional_call`` refuses to be
    traced)."""
    saved: list[tuple[dict[str, Any], str, Any]] = []
    for name, tensor in zip(names, tensors, strict=True):
        owner, _, leaf = name.rpartition(".")
        sub = model.get_submodule(owner)
        store: dict[str, Any] = sub._parameters if leaf in sub._parameters else sub._buffers
        saved.append((store, leaf, store[leaf]))
        store[leaf] = tensor
    try:
        yield model
    finally:
        for store, leaf, old in saved:
            store[leaf] = old


class _Functional(nn.Module):
    """What is traced for the ``adaptable`` entry: two networks whose weights are inputs, holding none itself.

    ``forward(x, weights)`` is the network with its BatchNorm folded (``weights`` = the folded network's state in
    ``forward_keys`` order); ``measure(x, state)`` is the unfolded network with BatchNorm in training mode and
    momentum 1, so that after a call each layer's ``running_mean`` / ``running_var`` tensor in ``state``
    (``state_keys`` order) holds that batch's mean and unbiased variance.
    """

    def __init__(self, folded: nn.Module, probe: nn.Module) -> None:
        super().__init__()
        self.nets: tuple[nn.Module, nn.Module]
        object.__setattr__(self, "nets", (folded, probe))  # not submodules: traced inline, their weights inputs
        self.forward_keys = list(folded.state_dict())
        self.state_keys = list(probe.state_dict())

    def forward(self, x: torch.Tensor, weights: list[torch.Tensor]) -> torch.Tensor:
        with _bound(self.nets[0], self.forward_keys, weights) as net:
            return net(x)

    def measure(self, x: torch.Tensor, state: list[torch.Tensor]) -> torch.Tensor:
        with _bound(self.nets[1], self.state_keys, state) as net:
            return net(x)


def export_adaptable(model: nn.Module, shapes: Sequence[tuple[int, int, int, int]],
                     state_sha256: str) -> dict[str, Any]:
    """Export ``model`` so that its BatchNorm statistics can be adapted to a scene with torch alone
    (:class:`AdaptableNetwork`, :mod:`firemap.adapt`).

    Two graphs are traced into one TorchScript archive holding no weights (they come from the bundle's
    ``state_dict`` when loaded, so the archive is about 0.1 MB): the network with BatchNorm folded, and the
    network with BatchNorm in training mode that measures a scene's statistics. Traced at the second shape (a
    batch of 2, as BatchNorm training needs), checked against the eager network at the second and third (the
    first, a whole tile, is the slowest and checked for the folded export already), with its training statistics
    and adapted (weight 0.5) to those two shapes' inputs.

    Args:
        model: the network (left untouched), ``(batch, channels, H, W)`` float32 -> ``(batch, classes, H, W)``.
        shapes: input shapes, see :func:`check_shapes` (three).
        state_sha256: :func:`state_fingerprint` of the weights in the bundle the entry goes into.

    Returns:
        The ``adaptable`` sub-entry of the bundle's ``exported`` entry::

            {"format": "torchscript-functional", "data": uint8 tensor, "state_sha256": ..., "state_keys": [...],
             "forward_keys": [...], "batchnorms": [[name, eps], ...], "folds": [[conv, batchnorm], ...],
             "max_abs_diff": float}

    Raises:
        ExportError: the network has no BatchNorm layer, cannot be traced, or disagrees with the eager network.
    """
    from firemap.adapt import adapted_network, batchnorm_layers

    net = copy.deepcopy(model).float().cpu().eval()
    layers = {id(m) for m in batchnorm_layers(net)}
    batchnorms = [[name, float(m.eps)] for name, m in net.named_modules() if id(m) in layers]
    if not batchnorms:
        raise ExportError("the network has no BatchNorm layer to adapt")
    folds = [list(pair) for pair in conv_batchnorm_pairs(net)]
    folded, probe = copy.deepcopy(net), copy.deepcopy(net)
    fuse_batchnorm(folded)
    for layer in batchnorm_layers(probe):
        layer.momentum = 1.0
        layer.train()
    generator = torch.Generator().manual_seed(1)
    inputs = [torch.randn(s, generator=generator) for s in shapes]
    wrapper = _Functional(folded, probe)
    example = inputs[1]  # a batch of 2 (BatchNorm training needs 2 values per channel), small: quick to trace
    examples = {"forward": (example, [t.clone() for t in folded.state_dict().values()]),
                "measure": (example, [t.clone() for t in probe.state_dict().values()])}
    spec = {"format": ADAPTABLE_FORMAT, "torch": str(torch.__version__), "state_sha256": state_sha256,
            "state_keys": wrapper.state_keys, "forward_keys": wrapper.forward_keys, "batchnorms": batchnorms,
            "folds": folds}
    with _tracing("for BatchNorm adaptation", "adapt it through smp"):
        graph = torch.jit.trace_module(wrapper, examples, check_trace=False)
        loaded = AdaptableNetwork(graph, net.state_dict(), spec)
        adapted = adapted_network(loaded, inputs[-2:], 0.5)
        reference = adapted_network(net, inputs[-2:], 0.5)
        diff = max(max(float((loaded(x) - folded(x)).abs().max()), float((adapted(x) - reference(x)).abs().max()))
                   for x in inputs[1:])  # the small shapes: one traced, one not (a baked-in shape shows)
    if not diff <= EXPORT_TOLERANCE:
        raise ExportError(f"the adaptable traced network differs from the eager one by {diff:.3g} "
                          f"(> {EXPORT_TOLERANCE:g}); predict will adapt it through smp")
    log.info("exported the BatchNorm-adaptable network (%d layers, max |logit diff| %.2g)", len(batchnorms), diff)
    return spec | {"data": _archive(graph), "max_abs_diff": diff}


class AdaptableNetwork(nn.Module):
    """The exported network with BatchNorm statistics that can be replaced: torch alone, weights from the bundle.

    ``forward`` maps ``(batch, channels, H, W)`` float32 to ``(batch, classes, H, W)`` logits through the traced
    network with BatchNorm folded, using ``statistics`` (default: the training ones); :meth:`measure` gives a
    scene's statistics and :meth:`with_statistics` the network normalizing with others (see
    :func:`firemap.adapt.adapted_network`). The folded weights are computed here with
    ``torch.nn.utils.fusion.fuse_conv_bn_weights``, as :func:`fuse_batchnorm` computes them, so the logits are
    those of the eager network folded the same way.
    """

    def __init__(self, graph: torch.jit.ScriptModule, state: Mapping[str, torch.Tensor], spec: Mapping[str, Any],
                 statistics: Mapping[str, tuple[torch.Tensor, torch.Tensor]] | None = None) -> None:
        super().__init__()
        self.graph = graph
        self.state = dict(state)
        self.spec = {k: v for k, v in spec.items() if k != "data"}
        for i, weight in enumerate(self._folded(statistics or self.statistics())):
            self.register_buffer(f"w{i}", weight)

    def statistics(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """The training statistics: BatchNorm layer name -> ``(running_mean, running_var)``, float32 ``(C,)``."""
        return {name: (self.state[f"{name}.running_mean"], self.state[f"{name}.running_var"])
                for name, _ in self.spec["batchnorms"]}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph(x, list(self._buffers.values()))

    @torch.no_grad()
    def measure(self, batches: Iterable[torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Each BatchNorm layer's input mean and variance over ``batches``, as BatchNorm's training mode
        accumulates them with ``momentum=None`` (see :func:`firemap.adapt.scene_statistics`).

        Raises:
            ValueError: no batch, or a statistic is not finite (a batch too small for a layer: one value per
                channel).
        """
        names = [name for name, _ in self.spec["batchnorms"]]
        sums: dict[str, list[torch.Tensor]] = {}
        seen = 0
        for x in batches:
            state = dict(self.state)
            for name in names:
                ref = state[f"{name}.running_mean"]
                state[f"{name}.running_mean"] = torch.zeros_like(ref)
                state[f"{name}.running_var"] = torch.ones_like(ref)
                state[f"{name}.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
            self.graph.measure(x, [state[k] for k in self.spec["state_keys"]])
            seen += 1
            for name in names:  # the running average of BatchNorm's momentum=None: (1 - 1/n) * old + 1/n * new
                new = (state[f"{name}.running_mean"], state[f"{name}.running_var"])
                old = sums.get(name, new)
                sums[name] = [o * (1.0 - 1.0 / seen) + n * (1.0 / seen) for o, n in zip(old, new, strict=True)]
        if not seen:
            raise ValueError("no batch to measure BatchNorm statistics on")
        if not all(bool(torch.isfinite(t).all()) for pair in sums.values() for t in pair):
            raise ValueError("BatchNorm statistics are not finite: batches too small (one value per channel)")
        return {name: (mean, var) for name, (mean, var) in sums.items()}

    def with_statistics(self, statistics: Mapping[str, tuple[torch.Tensor, torch.Tensor]]) -> AdaptableNetwork:
        """The same network normalizing with ``statistics`` (layer name -> ``(mean, var)``), in eval mode."""
        return AdaptableNetwork(self.graph, self.state, self.spec, statistics).eval()

    def _folded(self, statistics: Mapping[str, tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
        from torch.nn.utils.fusion import fuse_conv_bn_weights

        state, eps = dict(self.state), dict(self.spec["batchnorms"])
        for name, (mean, var) in statistics.items():
            state[f"{name}.running_mean"], state[f"{name}.running_var"] = mean, var
        with torch.no_grad():
            for conv, bn in self.spec["folds"]:
                weight, bias = fuse_conv_bn_weights(
                    state[f"{conv}.weight"], state.get(f"{conv}.bias"), state[f"{bn}.running_mean"],
                    state[f"{bn}.running_var"], eps[bn], state.get(f"{bn}.weight"), state.get(f"{bn}.bias"))
                state[f"{conv}.weight"], state[f"{conv}.bias"] = weight.detach(), bias.detach()
        return [state[k] for k in self.spec["forward_keys"]]


def load_adaptable(entry: Mapping[str, Any], state: Mapping[str, torch.Tensor],
                   state_sha256: str | None = None) -> AdaptableNetwork:
    """Load an ``adaptable`` sub-entry (see :func:`export_adaptable`) with the bundle's weights ``state``.

    Raises:
        ExportError: unknown format, stale (made from other weights), or unreadable by this torch.
    """
    if entry.get("format") != ADAPTABLE_FORMAT:
        raise ExportError(f"adaptable network format {entry.get('format')!r} is not {ADAPTABLE_FORMAT!r}")
    if state_sha256 is not None and entry.get("state_sha256") != state_sha256:
        raise ExportError("the adaptable network was made from other weights than the bundle's (re-export it)")
    missing = [k for k in entry.get("state_keys", []) if k not in state]
    if missing or not entry.get("batchnorms"):
        raise ExportError(f"the adaptable network needs weights the bundle lacks ({missing[:3]}); re-export it")
    graph = _load_archive(entry, "adaptable")
    return AdaptableNetwork(graph, state, entry).eval()


def describe_export(entry: Mapping[str, Any] | None) -> str:
    """One line for ``firemap info``: what the bundle's exported network is, or how to add it."""
    if not entry:
        return "none (predict builds the network through smp; add it with: firemap export MODEL --overwrite)"
    text = (f"{entry.get('format')} (BatchNorm folded, torch {entry.get('torch')}{_size(entry)}; "
            f"max |logit diff| {float(entry.get('max_abs_diff', float('nan'))):.2g} at export)")
    adaptable = entry.get("adaptable")
    if isinstance(adaptable, Mapping):
        return text + (f"; BatchNorm-adaptable graphs ({len(adaptable.get('batchnorms', []))} layers, weights from "
                       f"the bundle{_size(adaptable)}; max |logit diff| "
                       f"{float(adaptable.get('max_abs_diff', float('nan'))):.2g} at export)")
    return text + "; no BatchNorm-adaptable graphs (--bn-adapt builds the network through smp; add them with: " \
        "firemap export MODEL --overwrite)"


def _size(entry: Mapping[str, Any]) -> str:
    data = entry.get("data")
    nbytes = data.numel() if isinstance(data, torch.Tensor) else entry.get("bytes")
    return f", {nbytes / 1e6:.1f} MB" if isinstance(nbytes, int) else ""


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
    return _load_archive(entry, "exported").eval()


def _archive(module: torch.jit.ScriptModule) -> torch.Tensor:
    """A TorchScript module saved to bytes, as a uint8 tensor (bundles hold tensors and plain data only)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is in maintenance; see the module docstring
        torch.jit.save(module, buffer)
    return torch.from_numpy(np.frombuffer(buffer.getvalue(), np.uint8).copy())


def _load_archive(entry: Mapping[str, Any], what: str) -> torch.jit.ScriptModule:
    data = entry.get("data")
    if not isinstance(data, torch.Tensor) or data.dtype != torch.uint8:
        raise ExportError(f"the {what} network holds no TorchScript archive")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.load(io.BytesIO(data.numpy().tobytes()), map_location="cpu")
    except Exception as exc:  # version skew or a damaged archive
        raise ExportError(f"torch {torch.__version__} cannot load the {what} network (made with torch "
                          f"{entry.get('torch')}: {type(exc).__name__})") from None


def export_summary(entry: Mapping[str, Any]) -> dict[str, Any]:
    """An ``exported`` entry without its archives (``bytes`` = an archive's size): what a loaded bundle keeps."""
    data = entry.get("data")
    summary = {k: v for k, v in entry.items() if k != "data"} | (
        {"bytes": data.numel()} if isinstance(data, torch.Tensor) else {})
    if isinstance(entry.get("adaptable"), Mapping):
        summary["adaptable"] = export_summary(entry["adaptable"])
    return summary


__all__ = ["ADAPTABLE_FORMAT", "EXPORT_FORMAT", "AdaptableNetwork", "check_shapes", "conv_batchnorm_pairs",
           "describe_export", "export_adaptable", "export_network", "export_summary", "fuse_batchnorm",
           "load_adaptable", "load_network", "state_fingerprint"]
