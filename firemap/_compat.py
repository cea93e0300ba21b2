"""Import shims for third-party packages that break on some installs.

The one shim here: segmentation-models-pytorch and timm import torchvision. The only torchvision wheel for
torch 2.13 is a CUDA build; loaded against a CPU torch its compiled ops are missing and its meta registrations
fail at import with ``RuntimeError: operator torchvision::nms does not exist``. firemap uses no torchvision op,
so we declare the two missing op schemas (``nms`` and ``qnms``) with ``torch.library`` and import again.
Where torchvision loads normally this does nothing.
"""

from __future__ import annotations

import logging
import sys

import torch

log = logging.getLogger(__name__)

_MISSING_OPS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_schema_lib: torch.library.Library | None = None


def ensure_torchvision() -> bool:
    """Make ``import torchvision`` succeed, patching a CPU-torch/CUDA-torchvision mismatch if needed.

    Call before importing segmentation_models_pytorch or timm.

    Returns:
        True if torchvision imported as is, False if the op schemas had to be declared first.

    Raises:
        ImportError: torchvision is broken for another reason (the original error is chained).
    """
    global _schema_lib
    try:
        import torchvision
    except RuntimeError as exc:
        if "torchvision::" not in str(exc):
            raise ImportError(f"torchvision failed to import: {exc}") from exc
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        if _schema_lib is None:
            _schema_lib = torch.library.Library("torchvision", "FRAGMENT")
            for schema in _MISSING_OPS:
                _schema_lib.define(schema)
        log.debug("torchvision ops missing (%s); declared %d op schemas", exc, len(_MISSING_OPS))
        import torchvision  # noqa: F401

        return False
    return True


_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)


def limit_heap_fragmentation(threshold_bytes: int = 1 << 20) -> bool:
    """Make glibc serve every allocation above ``threshold_bytes`` with its own mmap, returned on free.

    glibc raises its mmap threshold dynamically (up to 32 MiB) after large blocks are freed, and from then on
    serves the streaming loop's strips and batches (several MiB, varying sizes, two threads) from heap arenas that
    fragment and are rarely returned to the OS: peak RSS then creeps up with the number of tiles (measured: +150 MB
    over a 4096^2 scene, flat with this fix). Fixing the threshold keeps peak memory bounded by the tile grid.
    Same effect as ``MALLOC_MMAP_THRESHOLD_=1048576`` in the environment.

    Returns:
        True if applied (Linux with glibc), False elsewhere (nothing to do).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not sys.platform.startswith("linux") or not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, int(threshold_bytes)))
    except (OSError, AttributeError):
        return False
