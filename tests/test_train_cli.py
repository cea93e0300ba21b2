"""The train / finetune / evaluate / demo commands: thin CLI over the library, clear errors, no overwrite."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import yaml
from typer.testing import CliRunner

from firemap.cli import app
from firemap.demo import GAP_PX, QUICKLOOK_COLORS
from firemap.models import load_bundle
from tests._train_helpers import tiny_train_config, write_pairs
from tests.conftest import BANDS

runner = CliRunner()


def _yaml(tmp_path: Path, **over: object) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(tiny_train_config(tmp_path / "data", tmp_path / "run", **over)))
    return path


def test_train_then_finetune(tmp_path: Path) -> None:
    config = _yaml(tmp_path)
    result = runner.invoke(app, ["train", str(config), "-q"])
    assert result.exit_code == 0, result.output
    best = tmp_path / "run" / "best.firemap.pt"
    assert best.is_file() and (tmp_path / "run" / "log.csv").is_file()
    again = runner.invoke(app, ["train", str(config), "-q"])
    assert again.exit_code == 1 and "--overwrite" in again.output
    tuned = runner.invoke(app, ["finetune", str(config), "--init", str(best), "--out", str(tmp_path / "ft"),
                                "--freeze-encoder-epochs", "1", "--encoder-lr-mult", "0.1", "-q"])
    assert tuned.exit_code == 0, tuned.output
    bundle = load_bundle(tmp_path / "ft" / "last.firemap.pt")
    assert bundle.provenance["init"]["init_kind"] == "bundle"
    assert bundle.provenance["recipe"]["freeze_encoder_epochs"] == 1
    assert bundle.config.mean == load_bundle(best).config.mean  # statistics inherited from the init bundle


def test_train_rejects_unknown_key(tmp_path: Path) -> None:
    config = _yaml(tmp_path, learning_rate=0.1)
    result = runner.invoke(app, ["train", str(config)])
    assert result.exit_code == 1
    assert "learning_rate" in result.output and "Traceback" not in result.output


def test_evaluate_command_writes_json(tmp_path: Path, smp_bundle_path: Path) -> None:
    images, masks = write_pairs(tmp_path)
    out = tmp_path / "m.json"
    args = ["evaluate", "--images", str(images), "--masks", str(masks), "--model", str(smp_bundle_path),
            "--labelled", "burn_scar", "--mask-value", "burn_scar=1", "--json", str(out), "--device", "cpu"]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "per scene" in result.output and "burn_scar IoU" in result.output
    data = json.loads(out.read_text())
    assert [s["scene"] for s in data["scenes"]] == ["s0.tif", "s1.tif"]
    for scene in data["scenes"]:  # one table row per scene, with its own IoU
        assert re.search(rf"{scene['scene']}\s.*{scene['burn_scar_iou']:.3f}", result.output)
    assert data["labelled"] == ["burn_scar"] and "baseline_nbr_burn_scar_iou" in data["summary"]
    assert runner.invoke(app, args).exit_code == 1  # JSON exists, no --overwrite
    bad = runner.invoke(app, [*args[:-4], "--mask-value", "burn_scar", "--json", str(tmp_path / "x.json")])
    assert bad.exit_code == 1 and "CLASS=V" in bad.output


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_demo_writes_outputs_and_quicklook(tmp_path: Path, smp_bundle_path: Path) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--model", str(smp_bundle_path), "--size", "96", "--sensor", "sentinel2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "quicklook" in result.output
    for name in ("demo_scene.tif", "demo_scene.labels.tif", "demo_scene.classes.tif", "demo_scene.geojson",
                 "demo_scene.quicklook.png"):
        assert (out / name).is_file(), name
    with rasterio.open(out / "demo_scene.quicklook.png") as png:
        image = png.read()
    title = (image.shape[1] - 96) // 2  # a title bar above the panels, a legend bar of the same height below
    assert png.driver == "PNG" and image.shape == (3, title + 96 + title, 96 * 2 + GAP_PX) and title >= 12
    assert image[:, title:-title].std() > 5
    assert np.all(image[:, :-title, 96 : 96 + GAP_PX] == 255)  # the white gap between the two panels
    for cols in (slice(0, 96), slice(96 + GAP_PX, None)):  # each panel has its title written above it
        assert (image[:, :title, cols].max(axis=0) < 100).sum() > 20
    legend = image[:, -title:].reshape(3, -1).T
    for color in QUICKLOOK_COLORS.values():  # a swatch per class
        assert (legend == color).all(axis=1).sum() >= 9, color
    assert not list(out.glob(".*partial*"))
    assert runner.invoke(app, args).exit_code == 1
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0


def test_freeze_bn_stats_keeps_the_init_statistics(tmp_path: Path) -> None:
    """Fine-tuning with freeze_bn_stats leaves every BatchNorm running mean/var as the init bundle had them while
    the weights move; without it the statistics follow the new data."""
    from firemap.train.config import train_config_from_dict
    from firemap.train.loop import fit

    base = tiny_train_config(tmp_path / "data", tmp_path / "run", epochs=1, steps_per_epoch=1)
    base["data"]["val"] = []
    init = fit(train_config_from_dict(base)).last
    before = load_bundle(init).model.state_dict()
    stats = [k for k in before if k.endswith(("running_mean", "running_var"))]
    assert stats
    for freeze in (True, False):
        cfg = {**base, "init": str(init), "model": {}, "out": str(tmp_path / f"ft_{freeze}"),
               "freeze_bn_stats": freeze, "optim": {"lr": 1e-2, "warmup_steps": 1}}
        after = load_bundle(fit(train_config_from_dict(cfg)).last).model.state_dict()
        same = [torch.equal(before[k], after[k]) for k in stats]
        assert all(same) if freeze else not any(same)
        weights = [k for k in before if k.endswith("weight") and before[k].dim() == 4]
        assert any(not torch.equal(before[k], after[k]) for k in weights)  # the network still learned


def _init_and_fire_scenes(tmp_path: Path, smoke: int) -> tuple[dict, Path, dict]:
    """A tiny config (no validation), the bundle of one step of it, and a scenes source of two burn scenes with
    fire spots (swir2 > 1.0); masks fire / smoke (all ``smoke``) / burn_scar."""
    from firemap.train.config import train_config_from_dict
    from firemap.train.loop import fit
    from tests._train_helpers import burn_scene, write

    base = tiny_train_config(tmp_path / "data", tmp_path / "run", epochs=1, steps_per_epoch=1)
    base["data"]["val"] = []
    init = fit(train_config_from_dict(base)).last
    (tmp_path / "fire").mkdir()
    for i in range(2):
        img, scar = burn_scene(64, seed=i)
        fire = (img[5] > 1.0).astype(np.uint8)
        write(tmp_path / "fire" / f"s{i}.tif", img, BANDS)
        labels = np.stack([fire, np.full_like(fire, smoke), scar.astype(np.uint8)])
        write(tmp_path / "fire" / f"s{i}.labels.tif", labels)
    source = {"kind": "scenes", "images": str(tmp_path / "fire" / "s*[0-9].tif"), "mask_format": "bands",
              "mask_bands": ["fire", "smoke", "burn_scar"]}
    return base, init, source


def test_train_only_the_fire_head_keeps_the_rest_of_the_bundle(tmp_path: Path) -> None:
    """Adding a fire head to a trained bundle and training only it (``train_only: [fire_head]``) moves the head's
    weights and nothing else: every tensor of the init bundle, BatchNorm statistics included, is unchanged, and so
    are the other classes' outputs; an unknown part is refused with the parts listed."""
    from firemap.errors import ConfigError
    from firemap.train.config import train_config_from_dict
    from firemap.train.loop import _setup, fit

    base, init, source = _init_and_fire_scenes(tmp_path, smoke=255)  # smoke not labelled
    source["labelled"] = ["fire", "burn_scar"]
    cfg = {**base, "init": str(init), "model": {"fire_head": 8}, "out": str(tmp_path / "head"),
           "train_only": ["fire_head"], "steps_per_epoch": 3, "optim": {"lr": 1e-2, "warmup_steps": 1},
           "data": {**base["data"], "train": [source], "oversample": {"fire": 0.5}}}
    before = load_bundle(init)
    after = load_bundle(fit(train_config_from_dict(cfg)).last)
    assert after.config.fire_head == 8
    old, new = before.model.state_dict(), after.model.state_dict()
    assert all(torch.equal(old[k], new[k]) for k in old)
    head = [k for k in new if k.startswith("fire_head.") and k.endswith("weight")]
    assert head and len(new) > len(old)
    # the head itself trained: its BatchNorm statistics left their initial 0 / 1, and the optimizer holds exactly
    # the head's parameters, every other one without a gradient
    stats = new["fire_head.body.0.1.running_mean"]
    assert not torch.equal(stats, torch.zeros_like(stats))
    run = _setup(train_config_from_dict({**cfg, "out": str(tmp_path / "setup")}))
    optimized = {id(p) for g in run.opt.param_groups for p in g["params"]}
    assert optimized == {id(p) for p in run.model.fire_head.parameters()}
    assert all(p.requires_grad == (id(p) in optimized) for p in run.model.parameters())
    x = torch.randn(1, after.config.in_channels, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(after.model(x)[:, 1:], before.model(x)[:, 1:], atol=0, rtol=0)
    with pytest.raises(ConfigError, match="its parts are"):
        fit(train_config_from_dict({**cfg, "train_only": ["fire_heads"], "out": str(tmp_path / "bad")}))


def test_retraining_only_the_fire_output_keeps_the_other_classes_bit_for_bit(tmp_path: Path) -> None:
    """The generic default's stage 3 (configs/default_model.yaml, ``defaults.generic``): only the output layer
    trains (``train_only: [segmentation_head]``), with loss weight 0 on smoke and burn scar and no weight decay. The
    fire row of that layer moves; the smoke and burn-scar rows, every other tensor and so the smoke and burn-scar
    outputs stay exactly the init bundle's."""
    from firemap.train.config import train_config_from_dict
    from firemap.train.loop import fit

    base, init, source = _init_and_fire_scenes(tmp_path, smoke=0)
    cfg = {**base, "init": str(init), "out": str(tmp_path / "fire_row"), "train_only": ["segmentation_head"],
           "steps_per_epoch": 3, "optim": {"lr": 1e-2, "warmup_steps": 1, "weight_decay": 0.0},
           "loss": {"class_weights": {"smoke": 0.0, "burn_scar": 0.0}},
           "data": {**base["data"], "train": [source], "oversample": {"fire": 0.5}}}
    before, after = load_bundle(init), load_bundle(fit(train_config_from_dict(cfg)).last)
    old, new = before.model.state_dict(), after.model.state_dict()
    changed = [k for k in old if not torch.equal(old[k], new[k])]
    assert changed and all(k.startswith("segmentation_head.") for k in changed)
    fire = [c.name for c in after.config.classes].index("fire")
    for k in changed:
        others = [i for i in range(old[k].shape[0]) if i != fire]
        assert torch.equal(old[k][others], new[k][others]) and not torch.equal(old[k][fire], new[k][fire])
    x = torch.randn(1, after.config.in_channels, 32, 32)
    with torch.no_grad():
        a, b = before.model(x), after.model(x)
    keep = [i for i in range(a.shape[1]) if i != fire]
    torch.testing.assert_close(b[:, keep], a[:, keep], atol=0, rtol=0)
    assert not torch.equal(b[:, fire], a[:, fire])
