"""Device-side helpers of the tile loop: batch size from free GPU memory, asynchronous batches, CUDA graphs.

On the CPU these reduce to the plain synchronous forward pass (the tile loop in :mod:`firemap.predict` gives
the same results either way). On CUDA:

* a batch is copied from pinned host memory with ``non_blocking=True``, run, and its probabilities copied back
  into a pinned host buffer asynchronously; a CUDA event marks the end. The tile loop reads and normalizes the
  next batch, and stitches the previous one, while the device computes (:class:`InFlight`);
* ``--batch-size auto`` picks the batch from the free device memory (:func:`batch_size_for_memory`);
* ``--cuda-graphs`` captures the forward pass of the fixed full-batch tile shape once and replays it
  (:class:`GraphedForward`), which removes the per-kernel launch cost of small networks.

Nothing here runs on a machine without a GPU except the pure functions and the CPU branches; ``scripts/bench_gpu.py``
measures the CUDA path where there is one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

AUTO_BATCH_LIMITS = (1, 64)
"""Smallest and largest batch ``--batch-size auto`` picks."""
AUTO_BATCH_HEADROOM = 0.3
"""Share of the free device memory ``--batch-size auto`` leaves unused (allocator fragmentation, cuDNN workspaces,
the pinned staging buffers' device copies)."""
CPU_BATCH_SIZE = 8
"""``--batch-size auto`` on the CPU: the measured default (larger batches do not raise the CPU's FLOP rate)."""


def batch_size_for_memory(free_bytes: int, tile_size: int, bytes_per_pixel: float, half_precision: bool = False,
                          limits: tuple[int, int] = AUTO_BATCH_LIMITS, headroom: float = AUTO_BATCH_HEADROOM) -> int:
    """The largest batch of ``tile_size`` tiles whose working memory fits in the free device memory.

    Args:
        free_bytes: free device memory, bytes (``torch.cuda.mem_get_info()[0]``).
        tile_size: tile side, pixels.
        bytes_per_pixel: working memory per tile pixel in fp32 (``firemap.predict.TILE_BYTES_PER_PIXEL``).
        half_precision: fp16/bf16 autocast: activations take half the bytes.
        limits: smallest and largest batch returned.
        headroom: share of ``free_bytes`` kept free.

    Returns:
        The batch size, clamped to ``limits`` (the smallest even when not even one tile fits: the forward pass
        then reports the out-of-memory error itself).
    """
    per_tile = tile_size * tile_size * bytes_per_pixel * (0.5 if half_precision else 1.0)
    fits = int(max(free_bytes, 0) * (1.0 - headroom) // per_tile)
    return max(limits[0], min(limits[1], fits))


def free_device_memory(device: torch.device) -> int | None:
    """Free bytes on a CUDA device, or None for other devices."""
    if device.type != "cuda":
        return None
    return int(torch.cuda.mem_get_info(device)[0])


@dataclass
class InFlight:
    """One batch submitted to the device: its probabilities arrive in ``probs`` when ``event`` completes.

    Attributes:
        items: the tile loop's queue for this batch (tiles with and without data, in order).
        probs: ``(tiles with data, classes, H, W)`` float32 on the host (pinned on CUDA), or None when no tile had
            data.
        event: CUDA event recorded after the copy to the host, or None on the CPU (already complete).
    """

    items: list[Any]
    probs: torch.Tensor | None
    event: Any = None

    def result(self) -> np.ndarray | None:
        """The probabilities as numpy, waiting for the device if needed."""
        if self.event is not None:
            self.event.synchronize()
        return None if self.probs is None else self.probs.numpy()


def submit(forward: Callable[[torch.Tensor], torch.Tensor], inputs: list[np.ndarray] | torch.Tensor,
           device: torch.device, items: list[Any]) -> InFlight:
    """Start one batch: ``inputs`` ``(channels, H, W)`` float32 arrays (or the batch already assembled as a
    ``(tiles, channels, H, W)`` host tensor) -> forward -> probabilities on the host.

    On CUDA nothing waits: the host-to-device copy, the forward pass and the copy back are queued on the current
    stream and :meth:`InFlight.result` waits for them. On the CPU the batch is computed here.
    """
    if len(inputs) == 0:
        return InFlight(items, None)
    x = inputs if isinstance(inputs, torch.Tensor) else torch.from_numpy(np.stack(inputs))
    if device.type == "cuda":
        x = x.pin_memory().to(device, non_blocking=True)
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        probs = forward(x)
        if device.type != "cuda":
            return InFlight(items, probs.cpu())
        host = torch.empty(probs.shape, dtype=probs.dtype, pin_memory=True)
        host.copy_(probs, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
    return InFlight(items, host, event)


class GraphedForward:
    """A forward function replayed from a CUDA graph for one input shape, eager for any other shape.

    Args:
        forward: ``(batch, channels, H, W)`` -> ``(batch, classes, H, W)`` probabilities, on a CUDA device.
        warmup: eager calls on a side stream before capture (cuDNN picks its algorithms there).

    The graph is captured at the first call whose input is on CUDA; later calls with the same shape, dtype and
    memory format copy their input into the captured one and replay. The output tensor is the graph's own: it is
    overwritten by the next replay, so copy it out first (the tile loop copies it to the host on the same stream).
    """

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], warmup: int = 3) -> None:
        self.forward = forward
        self.warmup = warmup
        self.key: tuple[Any, ...] | None = None
        self.graph: Any = None
        self.static_in: torch.Tensor | None = None
        self.static_out: torch.Tensor | None = None
        self.replays = 0

    @staticmethod
    def _key(x: torch.Tensor) -> tuple[Any, ...]:
        return (tuple(x.shape), x.dtype, x.device, x.is_contiguous(memory_format=torch.channels_last))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cuda":
            return self.forward(x)
        if self.graph is None:
            self._capture(x)
        if self._key(x) != self.key or self.static_in is None or self.static_out is None:
            return self.forward(x)
        self.static_in.copy_(x)
        self.graph.replay()
        self.replays += 1
        return self.static_out

    def _capture(self, x: torch.Tensor) -> None:
        self.static_in = x.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                self.forward(self.static_in)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.static_out = self.forward(self.static_in)
        self.key = self._key(x)
        log.info("captured a CUDA graph for input %s", tuple(x.shape))


__all__ = ["AUTO_BATCH_HEADROOM", "AUTO_BATCH_LIMITS", "CPU_BATCH_SIZE", "GraphedForward", "InFlight",
           "batch_size_for_memory", "free_device_memory", "submit"]
