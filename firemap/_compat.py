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
