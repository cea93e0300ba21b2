"""Slow end-to-end tests (``make test-all``; deselected by default): train -> predict on tiny data, the shipped
model on the demo scene, and the streaming predict path against a whole-image forward pass on a larger scene."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from typer.testing import CliRunner

from firemap.cli import app
from firemap.config import PredictConfig
from firemap.models import Bundle
from firemap.predict import iter_predictions
from firemap.raster import open_scene
from tests._train_helpers import BANDS, burn_scene, tiny_train_config, write
from tests.conftest import background

pytestmark = pytest.mark.slow
runner = CliRunner()


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_train_then_predict_finds_the_burn_scar(tmp_path: Path) -> None:
    """A small DeepLabv3+ trained for 50 steps on two burn scenes maps the scar of a third, unseen one."""
    cfg = tiny_train_config(tmp_path / "data", tmp_path / "run", epochs=1, steps_per_epoch=50)
    cfg["data"] = {**cfg["data"], "tile_size": 64, "batch_size": 4}
    cfg["model"] = {**cfg["model"], "tile_size": 64, "overlap": 16}
    cfg["optim"] = {"lr": 3e-3, "warmup_steps": 5}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(cfg))
    trained = runner.invoke(app, ["train", str(tmp_path / "train.yaml"), "-q"])
    assert trained.exit_code == 0, trained.output

    image, scar = burn_scene(96, seed=7)  # not a training scene: another size and noise
    scene = write(tmp_path / "new.tif", image, BANDS)
    predicted = runner.invoke(app, ["predict", str(scene), "--out", str(tmp_path / "out"), "--model",
                                    str(tmp_path / "run" / "best.firemap.pt"), "--device", "cpu", "-q"])
    assert predicted.exit_code == 0, predicted.output
    with rasterio.open(tmp_path / "out" / "new.classes.tif") as src:
        classes = src.read(1)
    burn_scar = (classes == 3) | (classes == 1)  # the class raster shows fire over scar where both are predicted
    assert _iou(burn_scar, scar) > 0.7
    polygons = yaml.safe_load((tmp_path / "out" / "new.geojson").read_text())["features"]
    assert any(f["properties"]["class"] == "burn_scar" and f["properties"]["pixels"] > 0.5 * scar.sum()
               for f in polygons)


def test_shipped_model_on_the_demo_scene(tmp_path: Path) -> None:
    """`firemap demo` (the README's first command): the default model against the simulator's exact labels."""
    result = runner.invoke(app, ["demo", "--out", str(tmp_path), "--size", "384", "-q"])
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "demo_scene.labels.tif") as src:
        truth = src.read() == 1
    with rasterio.open(tmp_path / "demo_scene.classes.tif") as src:
        classes = src.read(1)
    assert _iou(classes == 3, truth[2] & ~truth[0] & ~truth[1]) > 0.5  # burn scar where nothing covers it
    hot = truth[0]
    assert hot.any() and (classes[hot] == 1).mean() > 0.3  # a good share of the fire pixels found
    assert (classes == 1).sum() < 4 * hot.sum()  # and not fire everywhere


def test_streaming_equals_whole_image_on_a_larger_scene(write_tif, conv_bundle: Bundle) -> None:
    """1200 x 1700 px, 256 px tiles: dozens of tiles and read chunks, stitched exactly to the whole-image result."""
    from tests.test_tiling import _whole_image

    height, width, overlap = 1200, 1700, 64
    data = background(height, width, seed=3)
    data[5] += np.linspace(0, 0.5, width, dtype=np.float32)[None]
    data[3] += np.linspace(0, 0.3, height, dtype=np.float32)[:, None]
    info = open_scene(write_tif(data))
    blocks = list(iter_predictions(info, conv_bundle, PredictConfig(tile_size=256, overlap=overlap, device="cpu")))
    got = np.concatenate([b.probs for b in blocks], axis=1)
    assert got.shape == (3, height, width) and len(blocks) > 4
    np.testing.assert_allclose(got, _whole_image(conv_bundle, data, overlap // 2), atol=1e-5)
