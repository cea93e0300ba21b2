"""Benchmark CPU inference back-ends on the default model: speed, share of the GEMM peak, and agreement.

Writes the ``bench_backends`` section of docs/benchmarks.md (``--no-write`` prints it instead).

    python scripts/bench_backends.py                       # 2 threads, batch 8, 256 px tiles, all back-ends
    python scripts/bench_backends.py --threads 1 --skip compile

Back-ends (each skipped with the reason when it is not installed or fails):

* ``eager fp32``: the smp network, BatchNorm folded, channels-last (what predict ran before the export).
* ``eager bf16 + channels_last``: the same under bf16 autocast (emulated on CPUs without AVX-512 bf16 / AMX).
* ``torchscript fp32``: the bundle's exported network (:mod:`firemap.export`), what predict runs now.
* ``torch.compile``: inductor on the eager fp32 network (compiles C++ at first call: can take minutes).
* ``onnxruntime`` / ``openvino`` fp32: the network exported to ONNX (opset 17), from the optional extra
  ``pip install firemap[runtimes]``.

Speed: ms per tile, best and median of ``--repeats`` rounds (one batch of random tiles per back-end per round,
round-robin, after two warm-up batches), and the FLOP rate (torch's FlopCounterMode, 2 per multiply-add) as a
share of an fp32 2048^2 matmul timed at the start of the same round, same process, same threads.

Agreement: every back-end predicts the six real Sentinel-2 crops of
``../shared/data/s2_calfire`` through firemap's own tile loop; probabilities are compared with eager fp32 (max
absolute difference) and so are the class rasters after the model's thresholds (share of valid pixels identical).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from benchlib import gemm_peak, load_average, machine, network_flops, write_section

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from firemap.config import PredictConfig  # noqa: E402
from firemap.export import check_shapes, export_network, load_network  # noqa: E402
from firemap.models import Bundle, load_bundle  # noqa: E402
from firemap.predict import classify, iter_predictions  # noqa: E402
from firemap.raster import open_scene  # noqa: E402

log = logging.getLogger("bench_backends")
CROPS = ROOT.parent / "shared" / "data" / "s2_calfire" / "images"
Runner = Callable[[torch.Tensor], torch.Tensor]


class ArrayNet(torch.nn.Module):
    """Wrap a numpy-in, numpy-out runner (ONNX Runtime, OpenVINO) as a module for firemap's tile loop."""

    def __init__(self, run: Callable[[np.ndarray], np.ndarray]) -> None:
        super().__init__()
        self.run = run

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.run(x.contiguous().numpy())))


def _onnx(model: torch.nn.Module, channels: int, tile: int, tmp: Path) -> Path:
    path = tmp / "net.onnx"
    axes = {0: "batch", 2: "rows", 3: "cols"}
    torch.onnx.export(model, (torch.zeros(1, channels, tile, tile),), str(path), dynamo=False, opset_version=17,
                      input_names=["x"], output_names=["logits"], dynamic_axes={"x": axes, "logits": axes})
    return path


def backends(eager: torch.nn.Module, bundle: Bundle, threads: int, skip: set[str],
             tmp: Path) -> dict[str, tuple[torch.nn.Module | None, str, str]]:
    """name -> (module or None when unavailable, precision for the tile loop, note)."""
    c, t = bundle.config.in_channels, bundle.config.tile_size
    out: dict[str, tuple[torch.nn.Module | None, str, str]] = {
        "eager fp32": (eager, "fp32", "smp network, BatchNorm folded, channels-last"),
        "eager bf16 + channels_last": (eager, "bf16", "bf16 autocast (emulated: AVX2 only)"),
    }
    entry = export_network(eager, check_shapes(c, t, bundle.config.stride), "bench")
    out["torchscript fp32"] = (load_network(entry), "fp32", "the bundle's exported network (predict --runtime torch)")
    if "compile" not in skip:
        try:
            compiled = torch.compile(eager, backend="inductor", dynamic=False)
            start = time.perf_counter()
            with torch.inference_mode():
                compiled(torch.zeros(8, c, t, t).contiguous(memory_format=torch.channels_last))
            note = f"first call (compile) {time.perf_counter() - start:.0f} s"
            out["torch.compile (inductor)"] = (compiled, "fp32", note)
        except Exception as exc:  # inductor needs a C++ toolchain; record why it failed
            out["torch.compile (inductor)"] = (None, "fp32", f"failed: {type(exc).__name__}: {str(exc)[:120]}")
    onnx = None
    if not {"onnxruntime", "openvino"} <= skip:
        try:
            onnx = _onnx(eager, c, t, tmp)
        except Exception as exc:  # torch.onnx needs the onnx package
            note = f"ONNX export failed: {type(exc).__name__}: {str(exc)[:100]}"
            out["onnxruntime fp32"] = out["openvino fp32"] = (None, "fp32", note)
    if onnx is not None and "onnxruntime" not in skip:
        out["onnxruntime fp32"] = _ort(onnx, threads)
    if onnx is not None and "openvino" not in skip:
        out["openvino fp32"] = _openvino(onnx, threads)
    return out


def _ort(onnx: Path, threads: int) -> tuple[torch.nn.Module | None, str, str]:
    try:
        import onnxruntime as ort
    except ImportError:
        return None, "fp32", "not installed (pip install firemap[runtimes])"
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])
    return ArrayNet(lambda x: session.run(None, {"x": x})[0]), "fp32", f"onnxruntime {ort.__version__}, ONNX opset 17"


def _openvino(onnx: Path, threads: int) -> tuple[torch.nn.Module | None, str, str]:
    try:
        import openvino as ov
    except ImportError:
        return None, "fp32", "not installed (pip install firemap[runtimes])"
    compiled = ov.Core().compile_model(str(onnx), "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                          "INFERENCE_PRECISION_HINT": "f32"})
    note = f"openvino {ov.__version__}, f32 precision hint (predict --runtime openvino; auto from 256 tiles)"
    return ArrayNet(lambda x: compiled(x)[0]), "fp32", note


def time_batch(module: torch.nn.Module, precision: str, x: torch.Tensor) -> float:
    """Seconds of one forward pass of ``x``."""
    amp = {"fp32": None, "bf16": torch.bfloat16}[precision]
    with torch.inference_mode(), torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
        start = time.perf_counter()
        module(x)
        return time.perf_counter() - start


def time_round_robin(modules: dict[str, tuple[torch.nn.Module, str]], x: torch.Tensor, flops: float,
                     rounds: int) -> dict[str, tuple[list[float], list[float]]]:
    """Per back-end: seconds per batch and share of the GEMM peak, one batch each per round, round-robin.

    Each round times a 2048^2 matmul first, then one batch of every back-end, so load changes during the run hit
    all back-ends alike and each share compares with a matmul timed seconds before. Two warm-up batches each.
    """
    for module, precision in modules.values():
        time_batch(module, precision, x)
        time_batch(module, precision, x)
    out: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in modules}
    for _ in range(rounds):
        peak = gemm_peak("fp32", repeats=2)
        for name, (module, precision) in modules.items():
            seconds = time_batch(module, precision, x)
            out[name][0].append(seconds)
            out[name][1].append(flops * x.shape[0] / seconds / peak)
    return out


def predict_crops(bundle: Bundle, module: torch.nn.Module, precision: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(probabilities (classes, rows, cols) float32, valid (rows, cols) bool)`` of each real crop."""
    cfg = PredictConfig(device="cpu", precision=precision)  # type: ignore[arg-type]
    use = Bundle(bundle.config, module, bundle.provenance, bundle.firemap_version, bundle.path)
    out = []
    for scene in sorted(CROPS.glob("*.tif")):
        blocks = list(iter_predictions(open_scene(scene), use, cfg))
        out.append((np.concatenate([b.probs for b in blocks], 1), np.concatenate([b.valid for b in blocks], 0)))
    return out


def agreement(bundle: Bundle, ref: list[tuple[np.ndarray, np.ndarray]],
              got: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float]:
    """(max |probability difference|, % of valid pixels with the same class) over all crops."""
    thresholds = bundle.config.class_thresholds()
    diff, same, total = 0.0, 0, 0
    for (p, valid), (q, _) in zip(ref, got, strict=True):
        diff = max(diff, float(np.abs(p - q).max()))
        a = classify(p, valid, bundle.config.classes, thresholds)[1]
        b = classify(q, valid, bundle.config.classes, thresholds)[1]
        same += int((a == b)[valid].sum())
        total += int(valid.sum())
    return diff, 100.0 * same / max(total, 1)


def run(args: argparse.Namespace) -> str:
    torch.set_num_threads(args.threads)
    bundle = load_bundle(args.model, inference=True, exported=False)
    eager = bundle.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    c, t = bundle.config.in_channels, bundle.config.tile_size
    flops = network_flops(eager, (1, c, t, t))
    load_before = load_average()
    peak = gemm_peak("fp32")
    peak_bf16 = gemm_peak("bf16", repeats=2)
    x = torch.randn(args.batch_size, c, t, t, generator=torch.Generator().manual_seed(0))
    x = x.contiguous(memory_format=torch.channels_last)
    rows = []
    reference = None
    with tempfile.TemporaryDirectory() as d:
        found = backends(eager, bundle, args.threads, set(args.skip), Path(d))
        usable = {name: (m, precision) for name, (m, precision, _) in found.items() if m is not None}
        timed = time_round_robin(usable, x, flops, args.repeats)
        for name, (module, precision, note) in found.items():
            if module is None:
                rows.append(f"| {name} | - | - | - | - | - | {note} |")
                log.info("%s: %s", name, note)
                continue
            times, shares = timed[name]
            best, median = min(times) / args.batch_size, statistics.median(times) / args.batch_size
            crops = predict_crops(bundle, module, precision) if CROPS.is_dir() else None
            if reference is None:
                reference = crops
            diff, same = agreement(bundle, reference, crops) if crops and reference else (float("nan"),) * 2
            rows.append(f"| {name} | {best * 1e3:.1f} | {median * 1e3:.1f} | {statistics.median(shares):.0%} | "
                        f"{diff:.2g} | {same:.3f}% | {note} |")
            log.info("%s", rows[-1])
    header = [
        f"Command: `python scripts/bench_backends.py {' '.join(sys.argv[1:])}`  ",
        f"Machine: {machine(args.threads)}; load at the start {load_before}.  ",
        f"Model: `{bundle.name}` ({bundle.config.arch}/{bundle.config.encoder}), {flops / 1e9:.2f} GFLOP per {t} px "
        f"tile; batch {args.batch_size}; GEMM peak in this run: fp32 {peak / 1e9:.1f} GFLOP/s, bf16 "
        f"{peak_bf16 / 1e9:.1f} GFLOP/s (2048^2 matmul, best of 5 / 2).", "",
        f"Timing: {args.repeats} rounds after two warm-up batches each; every round times a 2048^2 fp32 matmul, "
        "then one batch of each back-end in turn, so a load change hits all alike; '% of GEMM peak' is the "
        "median over rounds of the network's FLOP rate over that round's matmul rate. Load at the end: "
        f"{load_average()}.", "",
        "| back-end | ms/tile best | ms/tile median | % of fp32 GEMM peak (median) | max abs prob. diff vs eager "
        "fp32 | class raster identical (6 real crops) | note |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    return "\n".join([f"## CPU inference back-ends ({args.threads} thread(s))", "", *header, *rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="bundle (default: the shipped model)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip", nargs="*", default=[], choices=["compile", "onnxruntime", "openvino"])
    parser.add_argument("--section", default="bench_backends", help="docs/benchmarks.md section to write")
    parser.add_argument("--no-write", action="store_true", help="print instead of updating docs/benchmarks.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    section = run(args)
    if args.no_write:
        sys.stdout.write(section + "\n")
    else:
        write_section(args.section, section)
        log.info("updated docs/benchmarks.md")


if __name__ == "__main__":
    main()
