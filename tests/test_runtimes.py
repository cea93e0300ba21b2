"""Runtime choice (--runtime) and the optional OpenVINO runtime (skipped where openvino is not installed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from firemap.config import ModelConfig, PredictConfig
from firemap.errors import ConfigError
from firemap.models import build_model, save_bundle
from firemap.predict import classify, iter_predictions, load_inference_bundle, with_runtime
from firemap.raster import open_scene
from firemap.runtimes import OPENVINO_MIN_TILES, choose_runtime
from tests.conftest import background

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize(("runtime", "device", "amp", "tiles", "available", "expected"), [
    ("auto", CPU, None, OPENVINO_MIN_TILES, True, "openvino"),
    ("auto", CPU, None, OPENVINO_MIN_TILES - 1, True, "torch"),   # small job: conversion would not pay back
    ("auto", CPU, None, 10**6, False, "torch"),                   # not installed
    ("auto", CUDA, None, 10**6, True, "torch"),
    ("auto", CPU, torch.bfloat16, 10**6, True, "torch"),           # bf16 asked for: torch autocast
    ("torch", CPU, None, 10**6, True, "torch"),
    ("openvino", CPU, None, 1, True, "openvino"),
])
def test_choose_runtime(runtime: str, device: torch.device, amp: torch.dtype | None, tiles: int, available: bool,
                        expected: str) -> None:
    assert choose_runtime(runtime, device, amp, tiles, available) == expected


@pytest.mark.parametrize(("device", "amp", "available", "match"), [
    (CPU, None, False, "pip install 'firemap\\[runtimes\\]'"),
    (CUDA, None, True, "--device cpu --precision fp32"),
    (CPU, torch.float16, True, "--device cpu --precision fp32"),
])
def test_openvino_refusals_name_the_fix(device: torch.device, amp: torch.dtype | None, available: bool,
                                        match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        choose_runtime("openvino", device, amp, 100, available)


@pytest.fixture(scope="module")
def unet_bundle_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = ModelConfig(arch="unet", encoder="mobilenet_v2", tile_size=64, overlap=16, decoder_channels=32)
    torch.manual_seed(1)
    return save_bundle(tmp_path_factory.mktemp("rt") / "unet.firemap.pt", build_model(cfg).eval(), cfg)


def test_openvino_agrees_with_torch_and_is_reproducible(unet_bundle_path: Path, write_tif) -> None:
    pytest.importorskip("openvino")
    data = background(140, 150, seed=5)
    data[3:, 30:80, 40:100] *= 0.3
    info = open_scene(write_tif(data))
    torch_cfg = PredictConfig(device="cpu", precision="fp32", runtime="torch")
    ov_cfg = torch_cfg.model_copy(update={"runtime": "openvino"})
    base = load_inference_bundle(unet_bundle_path, torch_cfg)
    ov = with_runtime(base, ov_cfg, 9)
    assert (base.runtime, ov.runtime) == ("torchscript", "openvino")
    runs = []
    for bundle, cfg in ((base, torch_cfg), (ov, ov_cfg), (ov, ov_cfg)):
        blocks = list(iter_predictions(info, bundle, cfg))
        runs.append((np.concatenate([b.probs for b in blocks], 1), np.concatenate([b.valid for b in blocks])))
    (p_torch, valid), (p_ov, _), (p_ov2, _) = runs
    np.testing.assert_array_equal(p_ov, p_ov2)  # fp32 on OpenVINO is reproducible too
    assert np.abs(p_ov - p_torch).max() < 1e-4
    thresholds = base.config.class_thresholds()
    a = classify(p_torch, valid, base.config.classes, thresholds)[1]
    b = classify(p_ov, valid, base.config.classes, thresholds)[1]
    assert (a == b).mean() >= 0.999
