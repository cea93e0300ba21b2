"""Machine resources firemap checks before large allocations (one place for every memory check)."""

from __future__ import annotations

import os


def available_memory() -> int:
    """Bytes of memory available to this process now (Linux ``MemAvailable``; else the free physical pages)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 1 << 62


__all__ = ["available_memory"]
