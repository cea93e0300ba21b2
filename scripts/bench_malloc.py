#!/usr/bin/env python
"""Why firemap does not lower glibc's mmap threshold: the default network's speed with and without it.

Each setting runs in a fresh process (``mallopt(M_MMAP_THRESHOLD, N)`` before any tensor exists), infers the same
6 batches of 8 random 256 px tiles after one warm-up batch, and prints ms per tile and peak RSS.

    .venv/bin/python scripts/bench_malloc.py            # default glibc vs 1 MiB / 32 MiB thresholds (Linux only)
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent("""
    import ctypes, json, resource, sys, time, torch
    threshold = int(sys.argv[1])
    if threshold > 0:
        ctypes.CDLL("libc.so.6").mallopt(-3, threshold)  # M_MMAP_THRESHOLD
    from firemap.models import fuse_batchnorm, load_bundle
    from firemap.predict import forward_probs
    b = load_bundle(); fuse_batchnorm(b.model)
    m = b.model.to(memory_format=torch.channels_last)
    t = b.config.tile_size
    xs = [torch.randn(8, b.config.in_channels, t, t).contiguous(memory_format=torch.channels_last) for _ in range(6)]
    with torch.inference_mode():
        forward_probs(m, xs[0], "none", None)
        start = time.perf_counter()
        for x in xs:
            forward_probs(m, x, "none", None)
    print(json.dumps({"ms_per_tile": (time.perf_counter() - start) / 48 * 1000,
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""")


def main() -> None:
    if not sys.platform.startswith("linux"):
        sys.exit("glibc's mallopt is Linux-only")
    for label, threshold in (("glibc default", 0), ("1 MiB", 1 << 20), ("32 MiB", 32 << 20)):
        out = subprocess.run([sys.executable, "-c", CHILD, str(threshold)], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {label} | {r['ms_per_tile']:.1f} | {r['rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
