"""Transfer learning: first-conv kernels mapped by band name, heads by class name, init sources and failures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from firemap.config import DEFAULT_CLASSES, ModelConfig, PredictConfig
from firemap.errors import WeightsError
from firemap.models import build_model, load_bundle, save_bundle
from firemap.predict import iter_predictions
from firemap.raster import open_scene
from firemap.transfer import adapt_kernels, channel_names, first_conv_key, init_weights, set_encoder_trainable
from tests._train_helpers import BANDS, burn_scene, write

MEAN = (0.05, 0.07, 0.06, 0.3, 0.2, 0.1)
STD = (0.02, 0.03, 0.03, 0.1, 0.08, 0.06)


def _config(bands: tuple[str, ...] = BANDS, mean: tuple = MEAN, std: tuple = STD, **kw: object) -> ModelConfig:
    args: dict = {"arch": "deeplabv3plus", "encoder": "mobilenet_v2", "decoder_channels": 32, "bands": bands,
                  "mean": mean, "std": std, "tile_size": 64, "overlap": 16, "optional_bands": ("swir1",),
                  "band_presence": True}
    args.update(kw)
    return ModelConfig(**args)


def _random_bundle(path: Path, cfg: ModelConfig, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    with torch.no_grad():  # non-trivial BN statistics and presence kernels
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        model.state_dict()[first_conv_key(model)][:, -1].normal_()
    return save_bundle(path, model, cfg, {"name": "src"})


def test_adapt_kernels_maps_by_name_not_position() -> None:
    w = torch.randn(8, 3, 3, 3)
    out = adapt_kernels(w, ["red", "green", "blue"], ["nir", "blue", "red", "swir2", "green", "present:swir1"])
    factor = (3 / 5) ** 0.5  # bands were added: variance-preserving rescale
    torch.testing.assert_close(out[:, 2], w[:, 0] * factor)  # red
    torch.testing.assert_close(out[:, 4], w[:, 1] * factor)  # green
    torch.testing.assert_close(out[:, 1], w[:, 2] * factor)  # blue
    assert torch.all(out[:, 5] == 0)  # presence flag starts neutral
    # new bands: the mean kernel rescaled to the typical source kernel norm (times the same factor)
    mean = w.mean(dim=1)
    expected_norm = w.flatten(2).norm(dim=2).mean(dim=1) * factor
    torch.testing.assert_close(out[:, 0].flatten(1).norm(dim=1), expected_norm)
    cos = torch.nn.functional.cosine_similarity(out[:, 3].flatten(1), mean.flatten(1))
    assert torch.all(cos > 0.999)


def test_adapt_kernels_pure_reorder_is_exact() -> None:
    w = torch.randn(4, 4, 3, 3)
    out = adapt_kernels(w, ["blue", "green", "red", "nir"], ["nir", "red", "green", "blue"])
    torch.testing.assert_close(out, w.flip(1))


def test_reordered_bundle_on_reordered_scene_gives_same_prediction(tmp_path: Path) -> None:
    src_path = _random_bundle(tmp_path / "a.firemap.pt", _config())
    order = [3, 5, 0, 4, 2, 1]  # nir, swir2, blue, swir1, red, green
    bands = tuple(BANDS[i] for i in order)
    cfg_b = _config(bands, tuple(MEAN[i] for i in order), tuple(STD[i] for i in order))
    model_b = build_model(cfg_b)
    counts = init_weights(model_b, cfg_b, str(src_path))
    assert counts["init_kind"] == "bundle" and counts["skipped"] == 0
    b_path = save_bundle(tmp_path / "b.firemap.pt", model_b.eval(), cfg_b, {"name": "b"})

    image, _ = burn_scene(80)
    scene_a = write(tmp_path / "scene_a.tif", image, BANDS)
    perm = [2, 0, 5, 1, 4, 3]  # the scene's own band order differs from both bundles
    scene_b = write(tmp_path / "scene_b.tif", image[perm], tuple(BANDS[i] for i in perm))
    pcfg = PredictConfig(device="cpu")
    pa = np.concatenate([b.probs for b in iter_predictions(open_scene(scene_a), load_bundle(src_path), pcfg)], 1)
    pb = np.concatenate([b.probs for b in iter_predictions(open_scene(scene_b), load_bundle(b_path), pcfg)], 1)
    assert pa.std() > 1e-3  # a real, non-constant prediction
    np.testing.assert_allclose(pa, pb, atol=1e-5)


def test_head_rows_follow_class_names(tmp_path: Path) -> None:
    src_path = _random_bundle(tmp_path / "a.firemap.pt", _config())
    src_head = torch.load(src_path, weights_only=True)["state_dict"]["segmentation_head.0.weight"]
    lava = DEFAULT_CLASSES[0].model_copy(update={"name": "lava", "id": 9})
    classes = (DEFAULT_CLASSES[2], lava, DEFAULT_CLASSES[0])  # burn_scar, lava (new), fire
    cfg = _config(classes=classes)
    model = build_model(cfg)
    fresh = model.state_dict()["segmentation_head.0.weight"].clone()
    init_weights(model, cfg, str(src_path))
    head = model.state_dict()["segmentation_head.0.weight"]
    torch.testing.assert_close(head[0], src_head[2])
    torch.testing.assert_close(head[2], src_head[0])
    torch.testing.assert_close(head[1], fresh[1])  # new class: fresh init kept


def test_encoder_state_dict_with_rgb_first_conv(tmp_path: Path) -> None:
    cfg = _config(encoder="resnet18", arch="unet")
    donor = build_model(ModelConfig(arch="unet", encoder="resnet18", bands=("red", "green", "blue"),
                                    mean=(0,) * 3, std=(1,) * 3))
    state = {f"backbone.{k.removeprefix('encoder.')}": v for k, v in donor.state_dict().items()
             if k.startswith("encoder.")}
    torch.save({"state_dict": state}, tmp_path / "enc.pt")
    model = build_model(cfg)
    info = init_weights(model, cfg, str(tmp_path / "enc.pt"))
    assert info["init_kind"] == "state_dict" and info["copied"] > 50
    conv = model.state_dict()["encoder.conv1.weight"]
    factor = (3 / 6) ** 0.5
    torch.testing.assert_close(conv[:, BANDS.index("red")], state["backbone.conv1.weight"][:, 0] * factor)
    layer = "layer1.0.conv1.weight"
    torch.testing.assert_close(model.state_dict()[f"encoder.{layer}"], state[f"backbone.{layer}"])
    torch.save({"conv1.weight": torch.randn(64, 5, 7, 7)}, tmp_path / "odd.pt")
    with pytest.raises(WeightsError, match="init_bands"):
        init_weights(build_model(cfg), cfg, str(tmp_path / "odd.pt"))
    init_weights(build_model(cfg), cfg, str(tmp_path / "odd.pt"), ["blue", "green", "red", "nir", None])


def test_imagenet_offline_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    from firemap import models

    smp = models._smp()

    def offline(*args: object, **kwargs: object) -> None:
        raise ConnectionError("Failed to resolve 'huggingface.co'")

    monkeypatch.setattr(smp.encoders, "get_encoder", offline)
    cfg = _config()
    with pytest.raises(WeightsError, match=r"cannot fetch ImageNet weights.*huggingface"):
        init_weights(build_model(cfg), cfg, "imagenet")


def test_bad_init_paths(tmp_path: Path) -> None:
    cfg = _config()
    with pytest.raises(WeightsError, match="no such file"):
        init_weights(build_model(cfg), cfg, str(tmp_path / "missing.pt"))
    torch.save({"something.else": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(WeightsError, match="another encoder"):
        init_weights(build_model(cfg), cfg, str(tmp_path / "foreign.pt"))


def test_channel_names_and_freeze() -> None:
    cfg = _config()
    assert channel_names(cfg) == [*BANDS, "present:swir1"]
    model = build_model(cfg)
    set_encoder_trainable(model, False)
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert all(p.requires_grad for p in model.decoder.parameters())
    set_encoder_trainable(model, True)
    assert all(p.requires_grad for p in model.encoder.parameters())
