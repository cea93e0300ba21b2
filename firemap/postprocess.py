"""Post-processing hooks on the stitched row stream of a scene.

``predict`` streams a scene's probabilities top to bottom as :class:`RowBlock` bands of full-width rows. A
:class:`RowHook` sees that stream one block at a time and hands blocks on, possibly later (a hook that needs
context below a row holds it back until that context has arrived) and with other row boundaries, as long as
the rows it hands on cover the scene exactly once, in order. :func:`apply_hooks` chains hooks; the predict
loop calls it once per scene. The dense CRF (:mod:`firemap.crf`) is one such hook.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from firemap.bands import BandSource
    from firemap.config import ModelConfig
    from firemap.raster import SceneInfo


@dataclass(frozen=True)
class RowBlock:
    """A band of finished, full-width rows of a scene's prediction.

    Attributes:
        row_off: first scene row.
        probs: ``(classes, rows, width)`` float32 sigmoid probabilities, 0 where invalid.
        valid: ``(rows, width)`` bool, False on nodata.
    """

    row_off: int
    probs: np.ndarray
    valid: np.ndarray


@dataclass(frozen=True)
class SceneStream:
    """What a hook may need about the scene behind a row stream.

    Attributes:
        info: the scene (path, grid: height/width, CRS).
        config: the model config (bands in network order, classes, normalization).
        sources: where each model band is in the file (None: absent optional band), as predict reads them.
        zero_is_nodata: whether 0 marks nodata in the file.
    """

    info: SceneInfo
    config: ModelConfig
    sources: Sequence[BandSource | None]
    zero_is_nodata: bool


class RowHook(Protocol):
    """A post-processing step on a scene's row stream (one instance per scene: it may keep state)."""

    def process(self, block: RowBlock) -> Iterable[RowBlock]:
        """Take the next block (blocks arrive in order, covering the scene once); return blocks now final."""
        ...

    def finish(self) -> Iterable[RowBlock]:
        """The stream has ended: return the blocks still held back."""
        ...


class HookFactory(Protocol):
    """Makes a scene's :class:`RowHook` (called once per scene)."""

    def __call__(self, scene: SceneStream) -> RowHook: ...


def apply_hooks(blocks: Iterable[RowBlock], hooks: Sequence[RowHook]) -> Iterator[RowBlock]:
    """Run ``blocks`` through ``hooks`` in order (none: the blocks unchanged)."""
    stream: Iterable[RowBlock] = blocks
    for hook in hooks:
        stream = _through(stream, hook)
    yield from stream


def _through(blocks: Iterable[RowBlock], hook: RowHook) -> Iterator[RowBlock]:
    for block in blocks:
        yield from hook.process(block)
    yield from hook.finish()


__all__ = ["HookFactory", "RowBlock", "RowHook", "SceneStream", "apply_hooks"]
