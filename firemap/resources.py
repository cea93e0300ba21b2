"""Machine resources firemap checks before large allocations (one place for every memory check), and the one
setting of the C allocator that predict makes."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger(__name__)

M_ARENA_MAX = -8
"""glibc's ``mallopt`` parameter number for the arena limit (``malloc.h``)."""

MALLOC_ARENAS = 1
"""glibc malloc arenas while predict streams a scene (see :func:`limit_malloc_arenas`)."""


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


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas for the rest of the process (``mallopt(M_ARENA_MAX)``; the same as the
    environment variable ``MALLOC_ARENA_MAX``, which, when set, is left alone).

    Predict's reader thread allocates each read chunk and the main thread frees it: with an arena per thread
    (glibc's default, up to 8 per core) freed chunks pile up in the reader's arena while the main thread's heap
    grows around the network's activations, so peak memory drifted up with the length of the run (a 4096^2
    scene: 772 MB, against 718 MB with one arena; ``docs/benchmarks.md``). The lock the threads then share is
    taken a few times per read chunk: no measurable cost. Does nothing off glibc.

    Returns:
        Whether the limit was set.
    """
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries: nothing to set
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = bool(mallopt(M_ARENA_MAX, arenas))
    log.debug("malloc arenas limited to %d: %s", arenas, done)
    return done


__all__ = ["MALLOC_ARENAS", "available_memory", "limit_malloc_arenas"]
