"""Test-time BatchNorm adaptation (firemap.adapt, --bn-adapt): statistics, mixing, and predict on a shifted scene."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from firemap.adapt import (
    adapted_network,
    batchnorm_layers,
    can_adapt,
    mix_statistics,
    sample_indices,
    scene_statistics,
)
from firemap.config import PredictConfig
from firemap.errors import ConfigError
from firemap.export import AdaptableNetwork, check_shapes, export_adaptable, load_adaptable
from firemap.models import Bundle, load_bundle
from firemap.predict import _sample_batches, iter_predictions, plan_scene, with_runtime
from firemap.raster import open_scene

from .conftest import background, raw_config

TRAIN_NIR, TRAIN_NIR_STD = 0.30, 0.05
ROOT = Path(__file__).resolve().parents[1]


class NirNet(nn.Sequential):
    """burn_scar logit = -10 * (nir - mean) / std through a BatchNorm trained on nir 0.30 +- 0.05 (fire and smoke
    logits -20): a scene whose nir is darker overall (another sensor, say) is all burn scar with the training
    statistics, and only its darkest part with the scene's own."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(6, 3, 1)  # registered in this order: Sequential runs conv, then bn
        self.bn = nn.BatchNorm2d(3)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.zero_()
            self.conv.weight[2, 3] = 1.0
            self.bn.running_mean.copy_(torch.tensor([0.0, 0.0, TRAIN_NIR]))
            self.bn.running_var.copy_(torch.tensor([1.0, 1.0, TRAIN_NIR_STD**2]))
            self.bn.weight.copy_(torch.tensor([0.0, 0.0, -10.0]))
            self.bn.bias.copy_(torch.tensor([-20.0, -20.0, 0.0]))


def shifted_scene() -> tuple[np.ndarray, np.ndarray]:
    """``(6, 150, 170)`` reflectance with nir 0.20 (darker than training) and a scar block of nir 0.05 crossing
    tile borders; and the scar's true mask."""
    data = background(150, 170, seed=3)
    data[3] = 0.20 + np.random.default_rng(1).normal(0, 0.01, (150, 170)).astype(np.float32)
    scar = np.zeros((150, 170), bool)
    scar[40:110, 50:130] = True
    data[3][scar] = 0.05
    return data, scar


def scar_mask(path: Path, bundle: Bundle, cfg: PredictConfig) -> np.ndarray:
    info = open_scene(path)
    rows = [block.probs[2] > 0.5 for block in iter_predictions(info, bundle, cfg)]
    return np.concatenate(rows)


def test_sample_indices_spread_and_cover() -> None:
    assert sample_indices(5, 64) == [0, 1, 2, 3, 4]
    picked = sample_indices(1000, 64)
    assert len(picked) == 64 and picked[0] == 0 and picked[-1] == 999
    assert max(np.diff(picked)) - min(np.diff(picked)) <= 1


def test_scene_statistics_follow_batchnorm_training_mode() -> None:
    net = nn.Sequential(nn.BatchNorm2d(2))
    torch.manual_seed(0)
    batches = [torch.randn(3, 2, 8, 8) + 1.0, torch.randn(5, 2, 8, 8) * 3.0 - 2.0]
    ((mean, var),) = scene_statistics(net, batches)
    expect_mean = torch.stack([b.mean(dim=(0, 2, 3)) for b in batches]).mean(0)
    expect_var = torch.stack([b.transpose(0, 1).reshape(2, -1).var(dim=1) for b in batches]).mean(0)
    torch.testing.assert_close(mean, expect_mean)
    torch.testing.assert_close(var, expect_var)
    assert net[0].running_mean.abs().max() == 0  # the model itself is untouched


def test_mix_statistics_weights() -> None:
    net = NirNet()
    scene = [(torch.tensor([1.0, 2.0, 0.2]), torch.tensor([4.0, 4.0, 0.01]))]
    mix_statistics(net, scene, 0.0)
    torch.testing.assert_close(net.bn.running_mean, torch.tensor([0.0, 0.0, TRAIN_NIR]))
    mix_statistics(net, scene, 0.25)
    torch.testing.assert_close(net.bn.running_mean, torch.tensor([0.25, 0.5, 0.75 * TRAIN_NIR + 0.25 * 0.2]))
    torch.testing.assert_close(net.bn.running_var, torch.tensor([1.75, 1.75, 0.75 * TRAIN_NIR_STD**2 + 0.0025]))
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        mix_statistics(net, scene, 1.5)


def test_adapted_network_is_folded_copy() -> None:
    net = NirNet().eval()
    adapted = adapted_network(net, [torch.rand(2, 6, 16, 16)], 0.5)
    assert not batchnorm_layers(adapted)  # folded into the conv
    assert batchnorm_layers(net) and float(net.bn.running_mean[2]) == pytest.approx(TRAIN_NIR)
    x = torch.rand(1, 6, 8, 8)
    reference = NirNet().eval()
    mix_statistics(reference, scene_statistics(net, [torch.rand(2, 6, 16, 16)]), 0.0)
    with torch.no_grad():  # weight 0 after folding: the network's own outputs
        torch.testing.assert_close(adapted_network(net, [torch.rand(2, 6, 16, 16)], 0.0)(x), reference(x))
    batch = [torch.rand(2, 6, 16, 16)]
    half = adapted_network(net, batch, 0.5, fold=False)  # unfolded: the statistics are half training, half scene
    ((mean, var),) = scene_statistics(net, batch)
    torch.testing.assert_close(half.bn.running_mean, 0.5 * net.bn.running_mean + 0.5 * mean)
    torch.testing.assert_close(half.bn.running_var, 0.5 * net.bn.running_var + 0.5 * var)
    assert not half.training and half.bn.momentum == net.bn.momentum


def test_predict_adapts_to_a_shifted_scene(write_tif: Callable[..., Path]) -> None:
    data, scar = shifted_scene()
    path = write_tif(data)
    bundle = Bundle(raw_config(), NirNet().eval(), {"name": "nir"})
    plain = scar_mask(path, bundle, PredictConfig(device="cpu"))
    assert plain.mean() > 0.95  # training statistics: the whole darker scene looks burnt
    adapted = scar_mask(path, bundle, PredictConfig(device="cpu", bn_adapt=1.0))
    iou = (adapted & scar).sum() / (adapted | scar).sum()
    assert iou > 0.97
    # the bundle's own weight applies when the command line gives none, and --bn-adapt 0 switches it off
    bundle.config = raw_config(bn_adapt=1.0)
    np.testing.assert_array_equal(scar_mask(path, bundle, PredictConfig(device="cpu")), adapted)
    np.testing.assert_array_equal(scar_mask(path, bundle, PredictConfig(device="cpu", bn_adapt=0.0)), plain)


def torch_only(model: nn.Module, in_channels: int = 6) -> AdaptableNetwork:
    """``model`` exported for BatchNorm adaptation and loaded back with its own weights, as predict loads it."""
    entry = export_adaptable(model, check_shapes(in_channels, 16, 8), "sha")
    return load_adaptable(entry, model.state_dict(), "sha")


@pytest.mark.parametrize("runtime", ["eager", "torchscript"])
def test_adapted_stream_equals_whole_image(write_tif: Callable[..., Path], runtime: str) -> None:
    """The statistics are fixed per scene before any tile is predicted: the stitched result is that of the
    adapted network on the whole image (seam-free), with the eager network or the exported adaptable one."""
    data, _ = shifted_scene()
    path = write_tif(data)
    net = NirNet().eval()
    bundle = Bundle(raw_config(), net if runtime == "eager" else torch_only(net), {"name": "nir"})
    cfg = PredictConfig(device="cpu", bn_adapt=0.5)
    plan = plan_scene(open_scene(path), bundle, cfg)
    network = adapted_network(bundle.model, list(_sample_batches(plan, bundle, cfg, torch.device("cpu"))), 0.5)
    with torch.no_grad():
        whole = torch.sigmoid(network(torch.from_numpy(data)[None]))[0].numpy()
    stream = np.concatenate([b.probs for b in iter_predictions(plan, bundle, cfg)], axis=1)
    np.testing.assert_allclose(stream, whole, atol=1e-6)


def test_bundle_keeps_batchnorm_for_adaptation(smp_bundle_path: Path) -> None:
    folded = load_bundle(smp_bundle_path, inference=True)
    assert folded.runtime == "torchscript" and not can_adapt(folded.model)
    kept = load_bundle(smp_bundle_path, inference=True, keep_batchnorm=True)
    assert kept.runtime == "torchscript-adaptable" and can_adapt(kept.model)
    eager = load_bundle(smp_bundle_path, inference=True, exported=False, keep_batchnorm=True)
    assert eager.runtime == "eager" and batchnorm_layers(eager.model)


def test_openvino_refuses_adaptation() -> None:
    bundle = Bundle(raw_config(bn_adapt=0.5), NirNet().eval(), {"name": "nir"})
    with pytest.raises(ConfigError, match="--bn-adapt 0"):
        with_runtime(bundle, PredictConfig(device="cpu", runtime="openvino"), 10)
    assert with_runtime(bundle, PredictConfig(device="cpu", runtime="auto"), 10_000) is bundle


def test_info_says_whether_batchnorm_adapts() -> None:
    from firemap.models import describe_bundle

    assert "training statistics" in dict(describe_bundle(Bundle(raw_config(), NirNet(), {})))["batchnorm"]
    shown = dict(describe_bundle(Bundle(raw_config(bn_adapt=0.5), NirNet(), {})))["batchnorm"]
    assert shown.startswith("adapted to each scene, weight 0.5")


class TwoLayerNet(nn.Sequential):
    """conv-BatchNorm-ReLU twice and a BatchNorm after a pooling (not folded): the second layer's statistics depend
    on the first normalizing with the batch's own, as in BatchNorm training mode."""

    def __init__(self) -> None:
        super().__init__(nn.Conv2d(6, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Sequential(nn.Conv2d(8, 3, 1, bias=False), nn.BatchNorm2d(3)), nn.AvgPool2d(1),
                         nn.BatchNorm2d(3))
        torch.manual_seed(2)
        for layer in batchnorm_layers(self):
            with torch.no_grad():
                layer.running_mean.uniform_(-0.5, 0.5)
                layer.running_var.uniform_(0.5, 2.0)
                layer.weight.uniform_(0.5, 1.5)
                layer.bias.uniform_(-0.5, 0.5)


def test_torch_only_adaptation_equals_eager() -> None:
    net = TwoLayerNet().eval()
    fast = torch_only(net)
    torch.manual_seed(3)
    batches = [torch.rand(3, 6, 16, 24) * 2 + 1, torch.rand(2, 6, 24, 16), torch.rand(4, 6, 16, 16) - 1]
    scene = fast.measure(batches)
    assert list(scene) == ["1", "3.1", "5"]  # every BatchNorm, by module name
    for (mean, var), (ref_mean, ref_var) in zip(scene.values(), scene_statistics(net, batches), strict=True):
        torch.testing.assert_close(mean, ref_mean)
        torch.testing.assert_close(var, ref_var)
    x = torch.rand(2, 6, 40, 24) * 2
    with torch.no_grad():
        torch.testing.assert_close(fast(x), net(x))  # training statistics
        for weight in (0.0, 0.5, 1.0):
            eager = torch.sigmoid(adapted_network(net, batches, weight)(x))
            torch.testing.assert_close(torch.sigmoid(adapted_network(fast, batches, weight)(x)), eager, atol=1e-6,
                                       rtol=0)
    assert float(net[1].running_mean.abs().sum()) > 0 and fast.statistics()["1"][0] is fast.state["1.running_mean"]


def test_torch_only_adaptation_equals_eager_on_an_smp_network(smp_bundle_path: Path,
                                                             write_tif: Callable[..., Path]) -> None:
    data = background(150, 130, seed=3)
    data[3:, 40:90, 30:80] *= 0.3
    info = open_scene(write_tif(data))
    cfg = PredictConfig(device="cpu", precision="fp32", bn_adapt=0.5)
    fast = load_bundle(smp_bundle_path, inference=True, keep_batchnorm=True)
    eager = load_bundle(smp_bundle_path, inference=True, exported=False, keep_batchnorm=True)
    assert (fast.runtime, eager.runtime) == ("torchscript-adaptable", "eager")
    a = np.concatenate([b.probs for b in iter_predictions(info, fast, cfg)], 1)
    b = np.concatenate([b.probs for b in iter_predictions(info, eager, cfg)], 1)
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
    plain = np.concatenate([b.probs for b in iter_predictions(info, fast, PredictConfig(device="cpu", bn_adapt=0))], 1)
    assert np.abs(plain - a).max() > 1e-3  # the adaptation did change the outputs


def test_adapting_predict_imports_torch_alone(smp_bundle_path: Path, write_tif: Callable[..., Path],
                                              tmp_path: Path) -> None:
    scene = write_tif(background(70, 90))
    code = (f"import sys, json, logging; logging.basicConfig(level=logging.INFO)\n"
            f"from firemap.predict import predict_scenes; from firemap.config import PredictConfig\n"
            f"predict_scenes([{str(scene)!r}], {str(tmp_path / 'out')!r}, {str(smp_bundle_path)!r}, "
            f"PredictConfig(device='cpu', bn_adapt=0.5))\n"
            "print(json.dumps(sorted(m for m in ('segmentation_models_pytorch', 'timm', 'torchvision') "
            "if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
    assert "torchscript-adaptable network" in out.stderr and "BatchNorm adapted to the scene" in out.stderr


def test_bundles_without_adaptable_graphs_or_with_stale_ones_adapt_through_smp(
        smp_bundle_path: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from firemap.models import describe_bundle

    payload = torch.load(smp_bundle_path, map_location="cpu", weights_only=True)
    new = load_bundle(smp_bundle_path, inference=True, keep_batchnorm=True)
    assert "data" not in new.exported["adaptable"] and new.exported["adaptable"]["bytes"] > 0  # type: ignore[index]
    rows = dict(describe_bundle(new))
    assert "BatchNorm-adaptable graphs" in rows["exported"] and "with torch alone" in rows["batchnorm"]
    payload["exported"].pop("adaptable")  # as the previous firemap wrote bundles
    torch.save(payload, tmp_path / "old.firemap.pt")
    old = load_bundle(tmp_path / "old.firemap.pt", inference=True, keep_batchnorm=True)
    assert old.runtime == "eager" and batchnorm_layers(old.model)
    assert load_bundle(tmp_path / "old.firemap.pt", inference=True).runtime == "torchscript"
    rows = dict(describe_bundle(old))
    assert "no BatchNorm-adaptable graphs" in rows["exported"] and "through smp" in rows["batchnorm"]
    entry = torch.load(smp_bundle_path, map_location="cpu", weights_only=True)["exported"]["adaptable"]
    payload["exported"]["adaptable"] = entry | {"state_sha256": "0" * 64}  # made from other weights
    torch.save(payload, tmp_path / "stale.firemap.pt")
    with caplog.at_level(logging.WARNING):
        stale = load_bundle(tmp_path / "stale.firemap.pt", inference=True, keep_batchnorm=True)
    assert stale.runtime == "eager" and "other weights" in caplog.text


def test_deeplab_adapts_small_scenes_without_a_lone_batch(
    smp_bundle_path: Path, write_tif: Callable[..., Path], caplog: pytest.LogCaptureFixture
) -> None:
    """DeepLabv3+'s image pooling leaves one value per channel for a batch of one tile, which BatchNorm's training
    mode cannot normalize: a last lone tile joins the batch before it, and a one-tile scene keeps the training
    statistics (warned) instead of failing."""
    bundle = load_bundle(smp_bundle_path, inference=True, keep_batchnorm=True)
    cfg = PredictConfig(device="cpu", bn_adapt=0.5, batch_size=2)
    three = plan_scene(open_scene(write_tif(background(40, 112), "three.tif")), bundle, cfg)
    assert len(three.grid) == 3
    batches = list(_sample_batches(three, bundle, cfg, torch.device("cpu")))
    assert [len(b) for b in batches] == [3]
    assert batches[0].is_contiguous(memory_format=torch.channels_last)  # as the tile loop feeds it: 1.8x faster
    with caplog.at_level(logging.INFO, logger="firemap.predict"):
        adapted = np.concatenate([b.probs for b in iter_predictions(three, bundle, cfg)], axis=1)
    assert "BatchNorm adapted to the scene (weight 0.50, 3 tiles" in caplog.text
    plain = np.concatenate([b.probs for b in iter_predictions(three, bundle, cfg.model_copy(update={"bn_adapt": 0.0}))],
                           axis=1)
    assert np.abs(adapted - plain).max() > 1e-3  # the statistics really changed
    one = plan_scene(open_scene(write_tif(background(40, 40), "one.tif")), bundle, cfg)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="firemap.predict"):
        kept = np.concatenate([b.probs for b in iter_predictions(one, bundle, cfg)], axis=1)
    assert "cannot be measured on this scene" in caplog.text
    unadapted = cfg.model_copy(update={"bn_adapt": 0.0})
    reference = np.concatenate([b.probs for b in iter_predictions(one, bundle, unadapted)], axis=1)
    np.testing.assert_array_equal(kept, reference)
