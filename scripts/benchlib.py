"""Helpers shared by the predict benchmarks: doc sections, machine load, GEMM peak and network FLOPs.

Speed on a shared machine moves with the load, so every number is written with the load average next to it, and
the benchmarks prefer ratios measured in the same process: the network's FLOP rate as a share of a large matmul's
rate measured in the same run, start-up as a multiple of ``import torch`` measured back to back.
"""

from __future__ import annotations

import os
import platform
import re
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_DOC = ROOT / "docs" / "benchmarks.md"


def write_section(name: str, body: str, doc: Path = BENCH_DOC) -> None:
    """Replace the text between ``<!-- name:start -->`` and ``<!-- name:end -->`` in ``doc`` (append if absent)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    section = f"{start}\n{body.strip()}\n{end}"
    text = doc.read_text() if doc.exists() else "# firemap benchmarks\n"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
    doc.write_text(text)


def load_average() -> str:
    """``uptime``'s 1/5/15-minute load averages, e.g. ``3.1, 2.9, 2.5``."""
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def machine(threads: int) -> str:
    """One line: CPU, cores, torch build and threads, date and time (UTC), load average."""
    import torch

    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared with other jobs), "
            f"torch {torch.__version__}, {threads} thread(s), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
            f"load average {load_average()} (1/5/15 min, `uptime`)")


def gemm_peak(dtype: str = "fp32", n: int = 2048, repeats: int = 5) -> float:
    """Best FLOP/s of an ``n x n`` by ``n x n`` matmul (``2 n^3`` FLOP) in this process, with its threads.

    ``dtype`` ``fp32`` or ``bf16`` (emulated on CPUs without AVX-512 bf16/AMX: far below fp32).
    """
    import torch

    dt = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    a, b = torch.randn(n, n).to(dt), torch.randn(n, n).to(dt)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def network_flops(model: object, shape: tuple[int, ...]) -> float:
    """FLOP of one forward pass of ``model`` on a zero tensor of ``shape`` (torch's FlopCounterMode: 2 per MAC)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(torch.zeros(shape))  # type: ignore[operator]
    return float(counter.get_total_flops())
