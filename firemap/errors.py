"""firemap's exceptions and warnings: one root, one short class per failure.

Every error message names the bad value, what is accepted, and how to fix it. The CLI turns any
``FiremapError`` into a one-line message and exit code 1.
"""

from __future__ import annotations


class FiremapError(Exception):
    """Root of all errors firemap raises on purpose."""


class InputFileError(FiremapError, FileNotFoundError):
    """An input file is missing or unreadable."""


class NotARasterError(FiremapError, ValueError):
    """A file is not a raster GDAL can open."""


class MissingCRSError(FiremapError, ValueError):
    """A scene has no coordinate reference system."""


class BandResolutionError(FiremapError, ValueError):
    """The bands of a scene cannot be matched to the canonical bands needed."""


class MissingBandsError(BandResolutionError):
    """A scene lacks canonical bands the model needs."""


class ConfigError(FiremapError, ValueError):
    """A configuration value is invalid (tile size, overlap, thresholds, unknown keys, ...)."""


class BundleError(FiremapError, ValueError):
    """A model bundle cannot be read or cannot be honoured."""


class OutputExistsError(FiremapError, FileExistsError):
    """An output file exists and ``--overwrite`` was not given, or an output would replace an input."""


class FiremapWarning(UserWarning):
    """Root of firemap's warnings for recoverable oddities."""


class BandScalingWarning(FiremapWarning):
    """Band values look unlike the reflectance range the scaling assumed."""


class NoDataWarning(FiremapWarning):
    """A scene or tile is entirely nodata."""


class GridMismatchError(FiremapError, ValueError):
    """Two scenes that must share a pixel grid (e.g. pre- and post-fire) do not."""


class WeightsError(FiremapError, RuntimeError):
    """Pretrained weights cannot be fetched, read, or fitted to the model (``--init``)."""


class ProductError(FiremapError, ValueError):
    """A multi-file product (folder of per-band files, STAC item, MTL) is incomplete or contradicts itself."""
