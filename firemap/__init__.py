"""firemap: map active fire, smoke and burn scars in multispectral satellite scenes."""

__version__ = "0.1.0"

CLASS_NAMES: tuple[str, ...] = ("fire", "smoke", "burn_scar")
"""The classes firemap maps, in model-output order. Class ids in rasters are index + 1 (0 = background)."""
