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


class ExportError(BundleError):
    """The inference network cannot be exported, or a bundle's exported network cannot be used."""


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


class InputReadError(InputFileError):
    """An input file opens but its pixels cannot be read (truncated, corrupt, unreadable)."""


class OutputWriteError(FiremapError, OSError):
    """An output cannot be written: disk full, permission denied, ``--out`` is a file, read-only folder."""


class OutputLockedError(OutputExistsError):
    """Another firemap run is writing the same outputs right now."""


class InterruptedRun(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM, so that it unwinds (and cleans up) exactly like Ctrl-C.

    Attributes:
        signum: the signal number (the CLI exits with ``128 + signum``).
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (library messages can span many lines)."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


def os_error_text(exc: OSError, path: object = None) -> str:
    """A one-line description of an OS error: ``PATH: disk full`` / ``permission denied`` / strerror."""
    import errno

    where = path or exc.filename or ""
    prefix = f"{where}: " if where else ""
    if exc.errno == errno.ENOSPC:
        return f"{prefix}disk full (no space left on device); free some space or choose another --out folder"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"{prefix}permission denied; choose a folder you can write to (or fix its permissions)"
    if exc.errno == errno.EROFS:
        return f"{prefix}read-only file system; choose another --out folder"
    return f"{prefix}{exc.strerror or first_line(exc)}"


def boundary_error(exc: BaseException) -> FiremapError | None:
    """Map an I/O, GDAL/rasterio, OGR/pyogrio or torch-loading failure that escaped the library to a typed
    :class:`FiremapError` with a one-line message; None for anything else (a bug: let it show its traceback).
    """
    if isinstance(exc, FiremapError):
        return exc
    if isinstance(exc, OSError) and exc.errno is not None:
        return OutputWriteError(os_error_text(exc))
    module = type(exc).__module__ or ""
    text = first_line(exc)
    if module.startswith(("rasterio", "pyogrio", "fiona")):
        if "No space left" in text:
            return OutputWriteError(f"disk full (no space left on device: {text}); free some space or choose "
                                    "another --out folder")
        return InputReadError(f"GDAL could not read or write a file ({text}); check that inputs are complete, "
                              "readable rasters and the --out folder is writable")
    loaded = _torch_load_file(exc)
    if loaded is not None or module.startswith("torch") or "pickle" in module:
        what = f"{loaded}: " if loaded else ""
        first = text.split(". ")[0][:200]  # torch's later sentences suggest weights_only=False: never do that
        return BundleError(f"{what}not a readable model or weights file ({first}); re-export or re-download it")
    return None


def _torch_load_file(exc: BaseException) -> str | None:
    """The file argument of ``torch.load`` if ``exc`` was raised inside it, else None."""
    tb = exc.__traceback__
    found: str | None = None
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_name == "load" and code.co_filename.replace("\\", "/").endswith("torch/serialization.py"):
            found = str(tb.tb_frame.f_locals.get("f", "?"))
        tb = tb.tb_next
    return found
class LabelFileError(ConfigError):
    """An image-level label file (``firemap pseudolabel``) cannot be read or holds an invalid entry."""


class ProductError(FiremapError, ValueError):
    """A multi-file product (folder of per-band files, STAC item, MTL) is incomplete or contradicts itself."""
