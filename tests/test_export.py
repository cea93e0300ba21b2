"""The exported inference network: saved with every bundle, loaded with torch alone, same outputs as smp."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from typer.testing import CliRunner

from firemap.cli import app
from firemap.config import ModelConfig, PredictConfig
from firemap.errors import ExportError, OutputExistsError
from firemap.export import load_network, state_fingerprint
from firemap.models import (
    build_model,
    default_bundle_path,
    describe_bundle,
    export_bundle,
    fuse_batchnorm,
    load_bundle,
    save_bundle,
)
from firemap.predict import iter_predictions, load_inference_bundle
from firemap.raster import open_scene
from tests.conftest import background

SMALL = {"tile_size": 64, "overlap": 16, "decoder_channels": 32}
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def unet_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random U-Net/MobileNetV2 bundle (the default model's architecture) saved with its exported network."""
    cfg = ModelConfig(arch="unet", encoder="mobilenet_v2", **SMALL)
    torch.manual_seed(0)
    return save_bundle(tmp_path_factory.mktemp("export") / "unet.firemap.pt", build_model(cfg).eval(), cfg)


@pytest.fixture
def sentinel2_scene(write_tif: Callable[..., Path]) -> Path:
    """A 150 x 130 px 6-band reflectance scene with a dark (burnt-like) square: three by three 64 px tiles."""
    data = background(150, 130, seed=3)
    data[3:, 40:90, 30:80] *= 0.3
    return write_tif(data)


def _without_export(src: Path, dst: Path) -> Path:
    """A copy of a bundle as firemap wrote it before the exported network existed."""
    payload = torch.load(src, map_location="cpu", weights_only=True)
    payload.pop("exported", None)
    torch.save(payload, dst)
    return dst


@pytest.mark.parametrize("shape", [(2, 64, 64), (1, 96, 32), (3, 128, 160)])
def test_exported_network_gives_the_eager_logits(unet_path: Path, shape: tuple[int, int, int]) -> None:
    eager = load_bundle(unet_path)
    fast = load_bundle(unet_path, inference=True)
    assert (eager.runtime, fast.runtime) == ("eager", "torchscript")
    fuse_batchnorm(eager.model)
    x = torch.randn(shape[0], eager.config.in_channels, *shape[1:]).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        assert torch.equal(fast.model(x), eager.model(x))  # same kernels in the same order: bit-identical


def test_inference_load_imports_torch_alone(unet_path: Path) -> None:
    code = (f"import sys, json; from firemap.predict import load_inference_bundle; from firemap.config import "
            f"PredictConfig; b = load_inference_bundle({str(unet_path)!r}, PredictConfig(device='cpu')); "
            "print(json.dumps([b.runtime] + sorted(m for m in ('segmentation_models_pytorch', 'timm', "
            "'torchvision') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["torchscript"]


def test_predict_cli_imports_no_dataframe_or_scipy_stack(unet_path: Path, sentinel2_scene: Path,
                                                         tmp_path: Path) -> None:
    """Start-up (issue 14): writing the class COG and GeoJSON needs torch, rasterio, shapely and pyproj, not
    pandas / geopandas / pyogrio / scipy (about 0.5 s of imports); the polygons are still written."""
    code = ("import sys, json; from firemap.cli import app\n"
            "try:\n"
            f"    app(['predict', {str(sentinel2_scene)!r}, '--model', {str(unet_path)!r}, '--out', "
            f"{str(tmp_path / 'out')!r}, '--threshold', 'burn_scar=0.001', '-q'])\n"
            "except SystemExit as e:\n"
            "    assert not e.code, e.code\n"
            "print(json.dumps(sorted(m for m in ('pandas', 'geopandas', 'pyogrio', 'scipy', 'scipy.ndimage', "
            "'segmentation_models_pytorch') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
    fc = json.loads((tmp_path / "out" / f"{sentinel2_scene.stem}.geojson").read_text())
    assert any(f["properties"]["class"] == "burn_scar" for f in fc["features"])  # threshold 0.001: nearly every pixel


def test_old_bundle_loads_through_smp_and_predicts_the_same(unet_path: Path, tmp_path: Path,
                                                            sentinel2_scene: Path) -> None:
    old = _without_export(unet_path, tmp_path / "old.firemap.pt")
    cfg = PredictConfig(device="cpu", precision="fp32")
    slow, fast = load_inference_bundle(old, cfg), load_inference_bundle(unet_path, cfg)
    assert (slow.runtime, fast.runtime, slow.exported) == ("eager", "torchscript", None)
    info = open_scene(sentinel2_scene)
    a = np.concatenate([b.probs for b in iter_predictions(info, slow, cfg)], 1)
    b = np.concatenate([b.probs for b in iter_predictions(info, fast, cfg)], 1)
    np.testing.assert_array_equal(a, b)
    assert "firemap export" in dict(describe_bundle(load_bundle(old)))["exported"]
    assert dict(describe_bundle(load_bundle(unet_path)))["exported"].startswith("torchscript (BatchNorm folded")


def test_shipped_default_loads_without_its_export_unchanged(tmp_path: Path) -> None:
    """The shipped default, stripped of any export, predicts through smp exactly as the plain eager network."""
    old = _without_export(default_bundle_path(), tmp_path / "default_old.firemap.pt")
    bundle = load_bundle(old, inference=True)
    assert bundle.runtime == "eager" and bundle.exported is None
    reference = load_bundle(None)
    x = torch.randn(2, bundle.config.in_channels, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(bundle.model(x), reference.model(x), atol=1e-4, rtol=1e-4)  # BatchNorm folded


def test_export_made_from_other_weights_is_not_used(unet_path: Path, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    payload = torch.load(unet_path, map_location="cpu", weights_only=True)
    key = next(k for k, v in payload["state_dict"].items() if v.is_floating_point())
    payload["state_dict"][key] = payload["state_dict"][key] + 1.0  # weights edited after the export
    torch.save(payload, tmp_path / "stale.firemap.pt")
    with caplog.at_level(logging.WARNING):
        bundle = load_bundle(tmp_path / "stale.firemap.pt", inference=True)
    assert bundle.runtime == "eager" and "other weights" in caplog.text
    with pytest.raises(ExportError, match="re-export"):
        load_network(payload["exported"], state_fingerprint(payload["state_dict"]))


def test_unexportable_network_is_saved_without_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    import firemap.models as models

    def refuse(*args: object, **kwargs: object) -> dict:
        raise ExportError("cannot trace")

    monkeypatch.setattr(models, "export_network", refuse)
    cfg = ModelConfig(arch="unet", encoder="mobilenet_v2", **SMALL)
    with caplog.at_level(logging.WARNING):
        path = save_bundle(tmp_path / "plain.firemap.pt", build_model(cfg).eval(), cfg)
    assert "without an exported network: cannot trace" in caplog.text
    assert load_bundle(path, inference=True).runtime == "eager"


def test_export_bundle_adds_the_network_and_refuses_to_overwrite(unet_path: Path, tmp_path: Path) -> None:
    old = _without_export(unet_path, tmp_path / "old.firemap.pt")
    with pytest.raises(OutputExistsError):
        export_bundle(old)
    new = export_bundle(old, tmp_path / "new.firemap.pt")
    before = torch.load(old, map_location="cpu", weights_only=True)
    after = torch.load(new, map_location="cpu", weights_only=True)
    assert set(after) - set(before) == {"exported"}
    assert all(torch.equal(before["state_dict"][k], v) for k, v in after["state_dict"].items())
    assert after["config"] == before["config"] and after["provenance"] == before["provenance"]
    assert load_bundle(new, inference=True).runtime == "torchscript"


def test_cli_export_in_place(unet_path: Path, tmp_path: Path) -> None:
    old = _without_export(unet_path, tmp_path / "old.firemap.pt")
    refused = CliRunner().invoke(app, ["export", str(old)])
    assert refused.exit_code == 1 and "--overwrite" in refused.output
    done = CliRunner().invoke(app, ["export", str(old), "--overwrite", "-q"])
    assert done.exit_code == 0, done.output
    assert load_bundle(old, inference=True).runtime == "torchscript"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_fp32_predict_is_bit_reproducible(unet_path: Path, sentinel2_scene: Path, tmp_path: Path) -> None:
    from firemap.predict import predict_scenes

    cfg = PredictConfig(device="cpu", precision="fp32", save_probs=True)
    outs = []
    for name in ("a", "b"):
        result = predict_scenes([sentinel2_scene], tmp_path / name, unet_path, cfg)[0]
        with rasterio.open(result.outputs["probs"]) as src:
            outs.append(src.read())
    np.testing.assert_array_equal(outs[0], outs[1])
