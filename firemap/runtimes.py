"""Optional CPU inference runtimes: OpenVINO runs the bundle's network in about 20% less time than torch here.

``scripts/bench_backends.py`` measured, on the default model (batch 8, 256 px tiles, one thread, AVX2 CPU, best of
7 round-robin rounds), eager torch, TorchScript and torch.compile within 1% of each other (53-54 ms per tile),
ONNX Runtime 12% and OpenVINO 18% less time per tile, both within 1e-6 of the torch probabilities with identical
class rasters on the real crops (docs/benchmarks.md).
OpenVINO is an optional dependency (``pip install firemap[runtimes]``); converting the network costs about 1.5 s,
so ``--runtime auto`` (the default) uses it only where it is installed, on the CPU, in fp32, for jobs of at least
:data:`OPENVINO_MIN_TILES` tiles; ``--runtime torch`` never does, ``--runtime openvino`` always does.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
from typing import Any

import numpy as np
import torch
from torch import nn

from firemap.errors import ConfigError
from firemap.models import Bundle

log = logging.getLogger(__name__)

OPENVINO_MIN_TILES = 256
"""``--runtime auto`` converts to OpenVINO only for jobs of at least this many tiles: conversion (about 1.5 s on
2 loaded cores) pays back at about 20% of 50 ms per tile."""


def openvino_available() -> bool:
    """Whether the ``openvino`` package is installed (not imported: that happens only when it is used)."""
    return importlib.util.find_spec("openvino") is not None


def choose_runtime(runtime: str, device: torch.device, amp: torch.dtype | None, tiles: int,
                   available: bool | None = None) -> str:
    """``torch`` or ``openvino`` for a job.

    Args:
        runtime: ``auto``, ``torch`` or ``openvino`` (``--runtime``).
        device: the predict device.
        amp: the autocast dtype (None = fp32).
        tiles: tiles in the whole job.
        available: whether OpenVINO is installed (default: look).

    Raises:
        ConfigError: ``openvino`` asked for but not installed, or with CUDA or a reduced precision.
    """
    available = openvino_available() if available is None else available
    if runtime == "torch":
        return "torch"
    if runtime == "openvino":
        if not available:
            raise ConfigError("--runtime openvino needs the openvino package: pip install 'firemap[runtimes]', "
                              "or use --runtime torch")
        if device.type != "cpu" or amp is not None:
            raise ConfigError("--runtime openvino runs on the CPU in fp32: use --device cpu --precision fp32, "
                              "or --runtime torch")
        return "openvino"
    use = available and device.type == "cpu" and amp is None and tiles >= OPENVINO_MIN_TILES
    return "openvino" if use else "torch"


class OpenVINONet(nn.Module):
    """An OpenVINO compiled network as a module: ``(batch, channels, H, W)`` float32 -> logits, same layout."""

    def __init__(self, compiled: Any) -> None:
        super().__init__()
        self.compiled = compiled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.compiled(x.float().contiguous().numpy())[0]
        return torch.from_numpy(np.ascontiguousarray(out))


def to_openvino(bundle: Bundle, threads: int | None = None) -> Bundle:
    """The bundle with its network converted to OpenVINO (fp32, dynamic batch and tile size), for the CPU.

    Args:
        bundle: an inference bundle (``load_bundle(..., inference=True)``: TorchScript or eager, BatchNorm folded).
        threads: inference threads (default: torch's).
    """
    import openvino as ov

    c, t = bundle.config.in_channels, bundle.config.tile_size
    with torch.no_grad():
        model = ov.convert_model(bundle.model, example_input=torch.zeros(1, c, t, t))
    config = {"INFERENCE_NUM_THREADS": threads or torch.get_num_threads(), "INFERENCE_PRECISION_HINT": "f32"}
    compiled = ov.Core().compile_model(model, "CPU", config)
    log.info("model %s: converted to OpenVINO %s (fp32, %d threads)", bundle.name, ov.__version__,
             config["INFERENCE_NUM_THREADS"])
    return dataclasses.replace(bundle, model=OpenVINONet(compiled), runtime="openvino")


__all__ = ["OPENVINO_MIN_TILES", "OpenVINONet", "choose_runtime", "openvino_available", "to_openvino"]
