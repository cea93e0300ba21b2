"""Training configs: closed and checked at load (valid keys named), YAMLs list only what they change, fine-tuning
takes the init bundle's network, and data errors come before the slow set-up."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from typer.testing import CliRunner

from firemap.cli import app
from firemap.config import ModelConfig, PredictConfig
from firemap.errors import ConfigError, InputFileError, MissingBandsError
from firemap.models import load_bundle
from firemap.train.config import (
    AugmentConfig,
    DataConfig,
    LossConfig,
    OptimConfig,
    SceneSource,
    SimulatorOptions,
    SimulatorSource,
    TrainConfig,
    load_train_config,
    train_config_from_dict,
)
from firemap.train.loop import fit
from tests._train_helpers import tiny_train_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TRAIN_YAMLS = ("deeplabv3plus.yaml", "unet.yaml", "finetune.yaml")
IDENTITY_KEYS = {"model.arch", "model.encoder"}
"""Keys a YAML may restate although they equal the default: they name the recipe."""


@pytest.fixture
def base(tmp_path: Path) -> dict[str, Any]:
    return tiny_train_config(tmp_path / "d", tmp_path / "run")


def _with_train_source(base: dict[str, Any], source: dict[str, Any]) -> dict[str, Any]:
    return {**base, "data": {**base["data"], "train": [source]}}


# ---------------------------------------------------------------------------------------------- closed configs


def test_simulator_options_typo_names_the_valid_keys(base: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as err:
        train_config_from_dict(_with_train_source(base, {"kind": "simulator", "options": {"landscap": "forest"}}))
    msg = str(err.value)
    assert "data.train.0.simulator.options" in msg and "'landscap'" in msg and "did you mean 'landscape'" in msg
    assert "valid keys: landscape, haze" in msg and "\n" not in msg
    with pytest.raises(ConfigError, match=r"unknown landscape 'tundra'; choose one of: forest"):
        train_config_from_dict(_with_train_source(base, {"kind": "simulator", "options": {"landscape": "tundra"}}))
    cfg = train_config_from_dict(_with_train_source(base, {"kind": "simulator", "options": {"landscape": "arid"}}))
    source = cfg.data.train[0]
    assert isinstance(source, SimulatorSource) and source.options == SimulatorOptions(landscape="arid", haze=True)


@pytest.mark.parametrize(("source", "match"), [
    ({"kind": "simulator", "sensor": "sentinel-2"}, r"unknown sensor 'sentinel-2' for simulation; choose one of: "
                                                    r"landsat8, landsat9, sentinel2, hls"),
    ({"kind": "simulator", "clouds": ["few", "lots"]}, r"clouds.*lots"),
    ({"kind": "simulator", "p_fier": 0.5}, r"'p_fier'.*did you mean 'p_fire'"),
    ({"kind": "scenes", "images": "x", "mask_value": {"burn_scar": [1]}}, r"did you mean 'mask_values'"),
])
def test_source_typos_fail_at_load(base: dict[str, Any], source: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        train_config_from_dict(_with_train_source(base, source))


def test_simulator_accepts_the_preset_name_of_its_sensor(base: dict[str, Any]) -> None:
    cfg = train_config_from_dict(_with_train_source(base, {"kind": "simulator", "sensor": "sentinel2-l2a"}))
    assert cfg.data.train[0].sensor == "sentinel2"  # type: ignore[union-attr]


@pytest.mark.parametrize(("metric", "match"), [
    ("burn_scar_iuo", r"select_metric 'burn_scar_iuo' is not a validation metric; did you mean 'burn_scar_iou'"),
    ("valid/macro_iou", r"<source> in \['val'\]"),
    ("fire_iou", r"no validation source labels 'fire'"),  # the tiny validation data labels burn_scar only
])
def test_select_metric_must_be_computed(base: dict[str, Any], metric: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        train_config_from_dict({**base, "select_metric": metric})


@pytest.mark.parametrize("metric", ["macro_iou", "macro_f1", "burn_scar_iou", "val/burn_scar_f1",
                                    "burn_scar_iou_scene_mean"])
def test_select_metric_accepts_what_validation_computes(base: dict[str, Any], metric: str) -> None:
    assert train_config_from_dict({**base, "select_metric": metric}).select_metric == metric


# ---------------------------------------------------------------------------------------------- the YAMLs


def _plain(value: Any) -> Any:
    """A default as YAML would give it: tuples as lists, models as mappings."""
    if isinstance(value, BaseModel):
        return _plain(value.model_dump())
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _restated(data: dict[str, Any], model: type[BaseModel], where: str = "") -> list[str]:
    """Keys of ``data`` whose value equals the typed model's default (recursing into sections and sources)."""
    out = []
    sections = {"data": DataConfig, "augment": AugmentConfig, "optim": OptimConfig, "loss": LossConfig,
                "model": ModelConfig}
    for key, value in data.items():
        path = f"{where}{key}"
        if key == "kind" or (model is SimulatorSource and key == "sensor"):  # what a source is: always given
            continue
        if (model is TrainConfig and key in sections) or (model is DataConfig and key in ("train", "val")):
            items = value if isinstance(value, list) else [value]
            for i, item in enumerate(items):
                sub = sections.get(key) or (SimulatorSource if item.get("kind") == "simulator" else SceneSource)
                out += _restated(item, sub, f"{path}.{i}." if isinstance(value, list) else f"{path}.")
            continue
        field = model.model_fields[key]
        if field.is_required():
            continue
        if _plain(field.get_default(call_default_factory=True)) == value and path not in IDENTITY_KEYS:
            out.append(path)
    return out


@pytest.mark.parametrize("name", TRAIN_YAMLS)
def test_yamls_list_only_what_they_change(name: str) -> None:
    data = yaml.safe_load((CONFIGS / name).read_text())
    assert _restated(data, TrainConfig) == []
    load_train_config(CONFIGS / name)  # and they validate


def test_restated_default_is_caught() -> None:
    data = {"epochs": 10, "optim": {"lr": 0.001, "warmup_steps": 20}, "data": {"train": [
        {"kind": "simulator", "sensor": "sentinel2", "weight": 1.0}]}, "model": {"arch": "deeplabv3plus"}}
    assert _restated(data, TrainConfig) == ["epochs", "optim.lr", "data.train.0.weight"]


def test_predict_yaml_documents_the_defaults() -> None:
    """configs/predict.yaml lists every option with its default value (the README says so)."""
    data = yaml.safe_load((CONFIGS / "predict.yaml").read_text())
    assert set(data) == set(PredictConfig.model_fields)  # every option listed
    assert PredictConfig.model_validate(data) == PredictConfig()  # each at its default (YAML lists are tuples)


# ---------------------------------------------------------------------------------------------- fine-tuning


def test_finetune_takes_the_init_bundles_network(base: dict[str, Any]) -> None:
    default = load_bundle().config
    cfg = train_config_from_dict({**base, "init": "default", "model": {}})
    mc = cfg.model_config_with_stats(None)
    assert (mc.arch, mc.encoder, mc.bands, mc.optional_bands) == (default.arch, default.encoder, default.bands,
                                                                  default.optional_bands)
    assert mc.thresholds == default.thresholds and "fire" in mc.thresholds  # carried over, as calibrated for it
    assert (mc.fire_head, mc.fire_gate) == (default.fire_head, default.fire_gate)  # and its fire head
    assert mc.classes == default.classes and mc.tile_size == default.tile_size
    own = train_config_from_dict({**base, "init": "default", "model": {"tile_size": 128}})
    assert own.model_config_with_stats(None).tile_size == 128  # what the config gives wins


def test_finetune_architecture_mismatch_warns(base: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="firemap"):
        cfg = train_config_from_dict({**base, "init": "default", "model": {"arch": "deeplabv3plus"}})
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "model.arch 'deeplabv3plus' (bundle: 'unet')" in warnings[0]
    assert "start from scratch" in warnings[0]
    assert cfg.model_config_with_stats(None).encoder == "mobilenet_v2"  # the rest still comes from the bundle


def test_transfer_from_another_architecture_says_what_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    from firemap.models import build_model
    from firemap.transfer import init_weights

    default = load_bundle().config
    cfg = default.model_copy(update={"arch": "deeplabv3plus", "decoder_channels": 32})
    with caplog.at_level(logging.WARNING, logger="firemap"):
        counts = init_weights(build_model(cfg), cfg, "default")
    (msg,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert counts["fresh"] > 10 and counts["skipped"] > 10  # the U-Net decoder does not fit DeepLabv3+'s
    assert re.search(rf"{counts['fresh']} of \d+ tensors .*start from scratch \(decoder \d+, segmentation_head \d+\)",
                     msg)  # the encoder is transferred whole
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="firemap"):
        same = init_weights(build_model(default), default, "default")
    assert same["fresh"] == 0 and same["skipped"] == 0 and not caplog.records


def test_data_errors_come_before_the_slow_set_up(base: dict[str, Any], tmp_path: Path) -> None:
    missing_val = {**base, "data": {**base["data"], "val": [
        {"kind": "scenes", "name": "val", "images": base["data"]["val"][0]["images"], "masks": str(tmp_path)}]}}
    t0 = time.perf_counter()
    with pytest.raises(InputFileError, match=r"source 'val': no mask"):
        fit(train_config_from_dict(missing_val))
    assert time.perf_counter() - t0 < 5 and not Path(base["out"]).exists()  # no run folder, no model built
    thermal = {**base, "model": {**base["model"], "bands": ["red", "nir", "swir2", "thermal"],
                                 "optional_bands": []}}
    with pytest.raises(MissingBandsError, match="thermal"):
        fit(train_config_from_dict(thermal))
    assert not Path(base["out"]).exists()


def test_finetune_command_from_default(tmp_path: Path) -> None:
    """`finetune --init default` trains the shipped U-Net (not a DeepLabv3+) with its thresholds."""
    data = tiny_train_config(tmp_path / "d", tmp_path / "run")
    data.pop("model")
    (tmp_path / "ft.yaml").write_text(yaml.safe_dump({**data, "data": {**data["data"], "tile_size": 64}}))
    args = ["finetune", str(tmp_path / "ft.yaml"), "--init", "default", "--out", str(tmp_path / "ft"),
            "--steps-per-epoch", "1", "--batch-size", "1", "-q"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    tuned = load_bundle(tmp_path / "ft" / "last.firemap.pt")
    default = load_bundle()
    assert tuned.config.arch == "unet" and tuned.config.thresholds == default.config.thresholds
    assert tuned.config.mean == default.config.mean  # statistics of the bundle's bands kept
    assert tuned.provenance["train_scenes"] == {"images": ["s0.tif", "s1.tif"]}
    assert tuned.provenance["init"]["fresh"] == 0
