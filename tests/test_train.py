"""Training: losses with partial labels, the poly schedule, data sources and augmentation, the fit loop."""

from __future__ import annotations

import csv
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from firemap.config import ModelConfig, PredictConfig
from firemap.errors import ConfigError, OutputExistsError
from firemap.models import load_bundle
from firemap.train.config import AugmentConfig, SceneSource, train_config_from_dict
from firemap.train.data import Augmenter, SceneTiles, TileSample, band_statistics, decode_mask
from firemap.train.evaluate import evaluate_source
from firemap.train.loop import fit, poly_lr
from firemap.train.losses import IGNORE, MaskedMultiLabelLoss
from tests._train_helpers import BANDS, tiny_train_config, write_pairs

CLASSES = ("fire", "smoke", "burn_scar")


# ---------------------------------------------------------------------------------------------- schedule


@pytest.mark.parametrize(("step", "total", "warmup"), [(0, 100, 0), (37, 100, 0), (99, 100, 0), (3, 100, 10),
                                                         (10, 100, 10), (60, 80, 5)])
def test_poly_schedule_matches_formula(step: int, total: int, warmup: int) -> None:
    expected = (1 - step / total) ** 0.9 * (min(1.0, (step + 1) / warmup) if warmup else 1.0)
    assert poly_lr(step, total, 0.9, warmup) == pytest.approx(expected, rel=1e-12)


def test_poly_schedule_shape() -> None:
    values = [poly_lr(s, 50, 0.9, 5) for s in range(50)]
    assert values[:5] == sorted(values[:5])  # warm-up rises
    assert all(a > b for a, b in itertools.pairwise(values[5:]))  # then decays
    assert poly_lr(50, 50) == 0.0


# ---------------------------------------------------------------------------------------------- losses


def _target(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 2, shape).astype(np.uint8))


@pytest.mark.parametrize("kind", ["bce_dice", "focal_dice", "bce", "focal"])
def test_unlabelled_class_gets_no_gradient(kind: str) -> None:
    logits = torch.randn(2, 3, 16, 16, requires_grad=True)
    target = _target((2, 3, 16, 16))
    target[:, 1] = IGNORE  # smoke not labelled by this dataset
    target[0, :, :4, :] = IGNORE  # nodata rows
    loss = MaskedMultiLabelLoss(CLASSES, kind)(logits, target)
    loss.backward()
    grad = logits.grad
    assert torch.isfinite(loss)
    assert torch.count_nonzero(grad[:, 1]) == 0
    assert torch.count_nonzero(grad[0, :, :4, :]) == 0
    assert torch.count_nonzero(grad[:, 0]) > 0 and torch.count_nonzero(grad[:, 2]) > 0


def test_bce_value_and_class_weights() -> None:
    logits = torch.zeros(1, 3, 4, 4)
    target = _target((1, 3, 4, 4))
    target[:, 1] = IGNORE
    plain = MaskedMultiLabelLoss(CLASSES, "bce")(logits, target)
    assert plain.item() == pytest.approx(math.log(2.0), rel=1e-6)
    weighted = MaskedMultiLabelLoss(CLASSES, "bce", class_weights={"fire": 3.0})(logits, target)
    assert weighted.item() == pytest.approx(math.log(2.0) * (3.0 + 1.0) / 2.0, rel=1e-6)
    positives = MaskedMultiLabelLoss(CLASSES, "bce", pos_weights={"fire": 5.0})(logits, target)
    n_pos = int((target[:, 0] == 1).sum())
    assert positives.item() == pytest.approx(math.log(2.0) * (32 + 4 * n_pos) / 32, rel=1e-6)


def test_all_unlabelled_batch_gives_zero_loss_with_graph() -> None:
    logits = torch.randn(1, 3, 8, 8, requires_grad=True)
    loss = MaskedMultiLabelLoss(CLASSES)(logits, torch.full((1, 3, 8, 8), IGNORE, dtype=torch.uint8))
    loss.backward()
    assert loss.item() == 0.0 and torch.count_nonzero(logits.grad) == 0


def test_dice_only_for_classes_with_positives() -> None:
    logits = torch.full((1, 3, 8, 8), -20.0)
    target = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    # every class absent and predicted absent: BCE ~ 0 and no Dice term -> ~0
    assert MaskedMultiLabelLoss(CLASSES)(logits, target).item() < 1e-6
    target[0, 2, :4] = 1  # burn scar half present, predicted absent: Dice ~ 1 for that class
    loss = MaskedMultiLabelLoss(CLASSES, "bce_dice", dice_weight=1.0)(logits, target)
    bce = MaskedMultiLabelLoss(CLASSES, "bce")(logits, target)
    assert loss.item() - bce.item() == pytest.approx(1.0, abs=0.05)


# ---------------------------------------------------------------------------------------------- data


def test_decode_mask_values_and_bands() -> None:
    raw = np.array([[[0, 1, 2, 255]]], np.uint8)
    src = SceneSource(images="x", mask_values={"burn_scar": [1, 2]})
    out = decode_mask(raw, src, CLASSES)
    assert out[:, 0, :].tolist() == [[255] * 4, [255] * 4, [0, 1, 1, 255]]
    raw3 = np.array([[[1, 0, 255]], [[0, 1, 0]], [[1, 1, 0]]], np.uint8)
    src3 = SceneSource(images="x", mask_format="bands", mask_bands=["fire", "smoke", "burn_scar"],
                       labelled=["fire", "burn_scar"])
    out3 = decode_mask(raw3, src3, ("burn_scar", "fire"))
    # each band is ignored on its own: fire's 255 at the last pixel leaves burn_scar's 0 there labelled
    assert out3[:, 0, :].tolist() == [[1, 1, 0], [1, 0, 255]]


def _model_config(**kw: object) -> ModelConfig:
    args: dict = {"bands": BANDS, "mean": (0.0,) * 6, "std": (1.0,) * 6, "optional_bands": ("swir1",),
                  "band_presence": True, "tile_size": 32, "overlap": 8}
    args.update(kw)
    return ModelConfig(**args)


def test_oversampling_centres_tiles_on_rare_class(tmp_path: Path) -> None:
    images, masks = write_pairs(tmp_path, n=2, size=96)
    src = SceneSource(images=str(images), masks=str(masks))
    tiles = SceneTiles(src, _model_config(), 16, {"burn_scar": 1.0})
    rng = np.random.default_rng(0)
    samples = [tiles.sample(rng) for _ in range(30)]
    assert all((s.labels[2] == 1).any() for s in samples)
    assert all((s.labels[:2] == IGNORE).all() for s in samples)  # fire/smoke not labelled by this dataset
    uniform = SceneTiles(src, _model_config(), 16, {})
    assert not all((uniform.sample(rng).labels[2] == 1).any() for _ in range(30))


def test_tiles_past_scene_edge_are_invalid_and_unlabelled(tmp_path: Path) -> None:
    images, masks = write_pairs(tmp_path, n=1, size=24)
    tiles = SceneTiles(SceneSource(images=str(images), masks=str(masks)), _model_config(), 32, {})
    s = tiles.sample(np.random.default_rng(1))
    assert s.image.shape == (6, 32, 32) and s.valid.sum() == 24 * 24
    assert (s.labels[:, ~s.valid] == IGNORE).all()


class _FixedSource:
    def __init__(self, sample: TileSample) -> None:
        self.s = sample

    def sample(self, rng: np.random.Generator) -> TileSample:
        return self.s


def test_band_statistics_robust_nodata_masked_and_keep_fire() -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(0.2, 0.05, (2, 64, 64)).astype(np.float32)
    valid = np.ones((64, 64), bool)
    image[1, :2, :2] = 3.0  # hot fire pixels in swir2
    image[:, -8:, :] = 0.0  # nodata
    valid[-8:, :] = False
    sample = TileSample(image, valid, ("nir", "swir2"), np.zeros((3, 64, 64), np.uint8))
    mean, std = band_statistics(_FixedSource(sample), ("nir", "swir2"), tiles=2, per_tile=64 * 64)
    assert mean[0] == pytest.approx(0.2, abs=0.01) and std[0] == pytest.approx(0.05, abs=0.005)
    assert mean[1] == pytest.approx(0.2, abs=0.01) and std[1] == pytest.approx(0.05, abs=0.005)
    assert (3.0 - mean[1]) / std[1] > 40  # fire stays a many-sigma outlier after normalization


def test_band_statistics_skip_absent_band() -> None:
    image = np.ones((2, 8, 8), np.float32)
    sample = TileSample(image, np.ones((8, 8), bool), ("nir",), np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(ConfigError, match="swir2"):
        band_statistics(_FixedSource(sample), ("nir", "swir2"), tiles=1)


def test_augmentation_moves_image_and_labels_together_without_clipping() -> None:
    rng = np.random.default_rng(0)
    labels = np.zeros((3, 32, 32), np.uint8)
    labels[2, 4:12, 20:30] = 1
    image = np.full((6, 32, 32), 0.1, np.float32)
    image[:, labels[2] == 1] = 2.5  # bright: must survive radiometric augmentation unclipped
    sample = TileSample(image, np.ones((32, 32), bool), BANDS, labels)
    cfg = AugmentConfig(affine_p=1.0, rotate=30, noise=0.0, offset=0.0, band_dropout=0.0)
    aug = Augmenter(cfg, BANDS, ("swir1",), seed=3)
    for _ in range(10):
        out = aug(sample, rng)
        inside = out.valid & (out.labels[2] == 1)
        outside = out.valid & (out.labels[2] == 0)
        assert inside.sum() > 20
        assert (out.image[3][inside] > 1.5).mean() > 0.9 and (out.image[3][outside] < 0.5).mean() > 0.9
        assert out.image.max() > 2.0
        assert (out.labels[:, ~out.valid] == IGNORE).all() and (out.image[:, ~out.valid] == 0).all()


def test_band_dropout_clears_presence() -> None:
    sample = TileSample(np.ones((6, 8, 8), np.float32), np.ones((8, 8), bool), BANDS, np.zeros((3, 8, 8), np.uint8))
    aug = Augmenter(AugmentConfig(band_dropout=1.0, flip=False, rot90=False, affine_p=0.0), BANDS, ("swir1",), 0)
    out = aug(sample, np.random.default_rng(0))
    assert "swir1" not in out.present and (out.image[4] == 0).all() and (out.image[3] != 0).all()


# ---------------------------------------------------------------------------------------------- config


def test_train_config_rejects_unknown_keys_and_classes(tmp_path: Path) -> None:
    base = tiny_train_config(tmp_path / "d", tmp_path / "run")
    with pytest.raises(ConfigError, match="bogus"):
        train_config_from_dict({**base, "bogus": 1})
    bad = {**base, "data": {**base["data"], "oversample": {"lava": 0.1}}}
    with pytest.raises(ConfigError, match="lava"):
        train_config_from_dict(bad)


@pytest.mark.parametrize("name", ["deeplabv3plus.yaml", "unet.yaml", "finetune.yaml"])
def test_shipped_configs_validate(name: str) -> None:
    from firemap.train.config import load_train_config

    cfg = load_train_config(Path(__file__).resolve().parents[1] / "configs" / name)
    assert cfg.model_config_with_stats(None).arch in ("deeplabv3plus", "unet")


# ---------------------------------------------------------------------------------------------- the loop


def test_repeated_steps_on_one_batch_decrease_loss(tmp_path: Path) -> None:
    from firemap.train.data import make_loader
    from firemap.train.loop import _setup, _train_step

    cfg = train_config_from_dict(tiny_train_config(tmp_path / "d", tmp_path / "run"))
    run = _setup(cfg)
    x, y = next(iter(make_loader(cfg.data, cfg.augment, run.mc, 0, 0)))
    assert x.shape == (2, run.mc.in_channels, 32, 32) and y.dtype == torch.uint8
    run.model.train()
    losses = [_train_step(run, x, y, 1.0) for _ in range(4)]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]


def test_fit_two_steps_bundle_reloads_and_predicts(tmp_path: Path) -> None:
    cfg = train_config_from_dict(tiny_train_config(tmp_path / "d", tmp_path / "run"))
    result = fit(cfg)
    assert result.last.is_file() and result.best is not None and result.best.is_file()
    row = result.history[0]
    assert row["step"] == 2 and math.isfinite(row["train_loss"]) and "val/burn_scar_iou" in row
    bundle = load_bundle(result.last)
    assert bundle.config.mean != (0.0,) * 6  # statistics computed from the data and stored
    assert bundle.provenance["name"] == "tiny" and bundle.provenance["step"] == 2
    # the reloaded bundle (weights + statistics + config) reproduces the validation score of the trained network
    val = SceneSource(images=str(tmp_path / "d" / "images"), masks=str(tmp_path / "d" / "masks"))
    again = evaluate_source(bundle, val, PredictConfig(device="cpu"), baselines=False).summary()
    assert again["burn_scar_iou"] == pytest.approx(row["val/burn_scar_iou"], abs=1e-9)
    assert bundle.provenance["metrics"]["val/burn_scar_iou"] == pytest.approx(row["val/burn_scar_iou"], abs=1e-5)
    assert bundle.provenance["train_scenes"] == {"images": ["s0.tif", "s1.tif"]}
    with open(result.out / "log.csv") as f:
        assert len(list(csv.DictReader(f))) == 1
    with pytest.raises(OutputExistsError):
        fit(cfg)


def test_resume_continues_from_the_next_epoch(tmp_path: Path) -> None:
    base = tiny_train_config(tmp_path / "d", tmp_path / "run", epochs=1, steps_per_epoch=1)
    fit(train_config_from_dict(base))
    result = fit(train_config_from_dict({**base, "epochs": 2, "resume": True}))
    assert [r["epoch"] for r in result.history] == [2]
    assert result.history[0]["step"] == 2
    with open(result.out / "log.csv") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2"]


def test_simulator_source_maps_bands_and_classes() -> None:
    from firemap.errors import MissingBandsError
    from firemap.train.config import SimulatorSource
    from firemap.train.data import SimulatorTiles

    mc = _model_config(classes=(ModelConfig().classes[2], ModelConfig().classes[0]))  # burn_scar, fire
    src = SimulatorSource(sensor="sentinel2", pool_scenes=2, pool_size=64, p_fire=1.0, p_burn_scar=1.0)
    tiles = SimulatorTiles(src, mc, 32, {"fire": 0.5}, seed=1)
    rng = np.random.default_rng(0)
    samples = [tiles.sample(rng) for _ in range(12)]
    s = samples[0]
    assert s.image.shape == (6, 32, 32) and s.labels.shape == (2, 32, 32) and s.present == BANDS
    assert all(set(np.unique(x.labels)) <= {0, 1, 255} for x in samples)
    assert sum((x.labels[1] == 1).any() for x in samples) >= 4  # fire oversampled
    assert np.isfinite(s.image).all() and s.image[5].max() < 5.0
    with pytest.raises(MissingBandsError, match="thermal"):
        SimulatorTiles(src, _model_config(bands=(*BANDS, "thermal"), mean=(0.0,) * 7, std=(1.0,) * 7), 32, {}, 0)
