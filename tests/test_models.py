"""The architecture registry, the DeepLabv3+ variants, multi-grid, and bundles written before the registry."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from firemap.archs import ARCHITECTURES, arch_spec
from firemap.config import ModelConfig
from firemap.errors import BundleError, ConfigError
from firemap.models import Bundle, build_model, default_bundle_path, describe_bundle, fuse_batchnorm, load_bundle
from firemap.nets import DeepLabV3PlusRefined, SqueezeAttention, apply_multi_grid

SMALL = {"decoder_channels": 32, "tile_size": 64, "overlap": 16}


def _head_input_size(model: nn.Module, head: nn.Module, size: int, channels: int) -> tuple[int, int]:
    seen: list[tuple[int, int]] = []
    handle = head.register_forward_hook(lambda m, inp, out: seen.append(tuple(inp[0].shape[-2:])))
    with torch.no_grad():
        out = model.eval()(torch.randn(1, channels, size, size))
    handle.remove()
    assert out.shape == (1, 3, size, size)
    return seen[0]


@pytest.mark.parametrize(("refine", "sanet", "head_at"), [("none", True, 16), ("stride2", False, 32),
                                                          ("full", False, 64), ("full", True, 64)])
def test_deeplab_variants_predict_where_the_head_runs(refine: str, sanet: bool, head_at: int) -> None:
    cfg = ModelConfig(encoder="mobilenet_v2", refine=refine, sanet=sanet, **SMALL)  # type: ignore[arg-type]
    model = build_model(cfg)
    assert isinstance(model, DeepLabV3PlusRefined)
    assert _head_input_size(model, model.head, 64, cfg.in_channels) == (head_at, head_at)
    assert any(isinstance(m, SqueezeAttention) for m in model.modules()) == sanet
    assert any(isinstance(m, nn.AdaptiveAvgPool2d) for m in model.decoder.modules())  # ASPP image pooling kept


def test_stock_deeplab_is_smp_model_with_head_at_stride_4() -> None:
    import segmentation_models_pytorch as smp

    model = build_model(ModelConfig(encoder="mobilenet_v2", **SMALL))
    assert type(model) is smp.DeepLabV3Plus
    assert _head_input_size(model, model.segmentation_head[0], 64, 6) == (16, 16)


def test_full_resolution_refinement_sees_the_input_pixel() -> None:
    """Changing one input pixel changes the logits most at that pixel (the full-resolution path)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(encoder="mobilenet_v2", refine="full", **SMALL)).eval()
    x = torch.randn(1, 6, 64, 64)
    y = x.clone()
    y[0, 5, 30, 33] += 5.0
    with torch.no_grad():
        diff = (model(y) - model(x)).abs().sum(1)[0]
    assert divmod(int(diff.argmax()), 64) == (30, 33)


def test_registry_owns_stride_and_options() -> None:
    assert set(ARCHITECTURES) == {"deeplabv3plus", "unet"}
    assert ModelConfig(arch="unet").stride == 32 == arch_spec("unet").stride(ModelConfig(arch="unet"))
    assert ModelConfig().stride == 16 and ModelConfig(output_stride=8, tile_size=248).stride == 8
    with pytest.raises(ValueError, match="choose one of deeplabv3plus, unet"):
        ModelConfig(arch="pspnet")
    with pytest.raises(ValueError, match=r"sanet do.* not apply to arch 'unet'; use arch deeplabv3plus"):
        ModelConfig(arch="unet", sanet=True)
    with pytest.raises(ValueError, match="multi_grid"):
        ModelConfig(multi_grid=(1, 0, 2))


@pytest.mark.parametrize(("encoder", "output_stride", "grid", "expected"), [
    ("resnet18", 16, (1, 2, 4), [2, 4]),  # two units: rates 1 and 2 times the block dilation 2
    ("resnet34", 16, (1, 2, 4), [2, 4, 8]),  # the paper's three units
    ("resnet18", 8, (1, 2, 4), [4, 8]),  # block dilation 4 at output stride 8
    ("resnet34", 16, (1, 2), [2, 4, 2]),  # a shorter grid repeats
])
def test_multi_grid_sets_last_block_dilations(encoder: str, output_stride: int, grid: tuple[int, ...],
                                              expected: list[int]) -> None:
    cfg = ModelConfig(encoder=encoder, output_stride=output_stride, multi_grid=grid,  # type: ignore[arg-type]
                      tile_size=64, overlap=16, decoder_channels=32)
    model = build_model(cfg)
    for unit, rate in zip(model.encoder.layer4, expected, strict=True):
        convs = [m for m in unit.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
        assert convs and all(c.dilation == (rate, rate) and c.padding == (rate, rate) for c in convs)
    assert all(m.stride == (1, 1) for m in model.encoder.layer4.modules() if isinstance(m, nn.Conv2d))
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 6, 64, 64)).shape == (1, 3, 64, 64)


def test_multi_grid_needs_a_resnet() -> None:
    with pytest.raises(ConfigError, match="needs a ResNet encoder"):
        build_model(ModelConfig(encoder="mobilenet_v2", multi_grid=(1, 2, 4), **SMALL))
    with pytest.raises(ConfigError, match="no layer4"):
        apply_multi_grid(nn.Sequential(), (1, 2))


@pytest.mark.parametrize("kw", [{"refine": "full"}, {"refine": "full", "sanet": True}])
def test_batchnorm_folding_keeps_variant_outputs(kw: dict) -> None:
    model = build_model(ModelConfig(encoder="mobilenet_v2", **SMALL, **kw)).eval()
    x = torch.randn(2, 6, 64, 64)
    with torch.no_grad():
        before = model(x)
        assert fuse_batchnorm(model) > 10
        torch.testing.assert_close(model(x), before, atol=1e-4, rtol=1e-4)


def test_variant_round_trips_and_is_described(tmp_path: Path) -> None:
    from firemap.models import save_bundle

    cfg = ModelConfig(encoder="resnet18", refine="full", sanet=True, multi_grid=(1, 2, 4), **SMALL)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    path = save_bundle(tmp_path / "v.firemap.pt", model, cfg)
    bundle = load_bundle(path)
    assert bundle.config == cfg
    x = torch.randn(1, 6, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(bundle.model(x), model(x), atol=0, rtol=0)
    network = dict(describe_bundle(bundle))["network"]
    assert "full-resolution refinement" in network and "SANet" in network and "multi-grid (1, 2, 4)" in network


def test_bundle_with_weights_of_another_variant_is_refused(tmp_path: Path) -> None:
    from firemap.models import save_bundle

    cfg = ModelConfig(encoder="mobilenet_v2", **SMALL)
    path = save_bundle(tmp_path / "x.firemap.pt", build_model(cfg), cfg.model_copy(update={"refine": "full"}))
    with pytest.raises(BundleError, match="do not match"):
        load_bundle(path)


def _pre_registry_model(cfg: ModelConfig) -> nn.Module:
    """The network exactly as firemap built it before the registry (smp called directly)."""
    import segmentation_models_pytorch as smp

    if cfg.arch == "unet":
        widths = tuple(max(cfg.decoder_channels >> i, 16) for i in range(5))
        return smp.Unet(encoder_name=cfg.encoder, encoder_weights=None, in_channels=cfg.in_channels,
                        classes=len(cfg.classes), decoder_channels=widths)
    return smp.DeepLabV3Plus(encoder_name=cfg.encoder, encoder_weights=None, encoder_output_stride=cfg.output_stride,
                             decoder_channels=cfg.decoder_channels, decoder_atrous_rates=cfg.rates,
                             in_channels=cfg.in_channels, classes=len(cfg.classes))


@pytest.mark.parametrize("sensor", [None, "landsat8-l1"])
def test_shipped_default_predicts_as_before(sensor: str | None) -> None:
    """Each shipped default is smp's network as firemap built it before the registry, plus its fire head: every
    class but fire exactly the plain network's, fire ``min(head(x), network fire + gate)``."""
    bundle = load_bundle(default_bundle_path(sensor))
    payload = torch.load(default_bundle_path(sensor), map_location="cpu", weights_only=True)
    old = _pre_registry_model(bundle.config)
    old.load_state_dict({k: v for k, v in payload["state_dict"].items() if not k.startswith("fire_head.")})
    torch.manual_seed(0)
    x = torch.randn(2, bundle.config.in_channels, 64, 64)
    with torch.no_grad():
        new, ref = bundle.model(x), old.eval()(x)
        if bundle.config.fire_head:
            fire = [c.name for c in bundle.config.classes].index("fire")
            ref[:, fire:fire + 1] = torch.minimum(bundle.model.fire_head(x), ref[:, fire:fire + 1]
                                                  + bundle.config.fire_gate)
        assert torch.equal(new, ref)


def test_pre_registry_deeplab_bundle_loads_unchanged(tmp_path: Path) -> None:
    cfg = ModelConfig(encoder="mobilenet_v2", **SMALL)
    torch.manual_seed(0)
    old = _pre_registry_model(cfg).eval()
    old_config = {k: v for k, v in cfg.model_dump(mode="json").items()
                  if k not in ("multi_grid", "refine", "refine_channels", "sanet")}  # fields it did not have
    payload = {"format": "firemap-bundle", "bundle_version": 1, "config": old_config,
               "state_dict": old.state_dict(), "provenance": {}, "versions": {}}
    torch.save(payload, tmp_path / "old.firemap.pt")
    bundle: Bundle = load_bundle(tmp_path / "old.firemap.pt")
    x = torch.randn(1, 6, 64, 64)
    with torch.no_grad():
        assert torch.equal(bundle.model(x), old(x))


def test_fire_head_gates_only_the_fire_logit_and_takes_headless_weights() -> None:
    """A fire head changes the fire logit alone, to min(head, network + gate); weights of the same network
    without a head load into it (only fire_head.* missing); it survives BatchNorm folding and tracing."""
    from firemap.nets import FireHead

    base_cfg = ModelConfig(arch="unet", encoder="mobilenet_v2", decoder_channels=32)
    cfg = base_cfg.model_copy(update={"fire_head": 8, "fire_gate": 2.0})
    torch.manual_seed(0)
    base = build_model(base_cfg).eval()
    model = build_model(cfg).eval()
    result = model.load_state_dict(base.state_dict(), strict=False)
    assert not result.unexpected_keys and result.missing_keys
    assert all(k.startswith("fire_head.") for k in result.missing_keys)
    assert isinstance(model.fire_head, FireHead)
    x = torch.randn(2, cfg.in_channels, 64, 64)
    fire = [c.name for c in cfg.classes].index("fire")
    with torch.no_grad():
        plain = base(x)
        # centre the untrained head on the gate, so that both sides of the min are exercised
        model.fire_head.logit.bias += (plain[:, fire] + 2.0).median() - model.fire_head(x).median()
        gated, head = model(x), model.fire_head(x)[:, 0]
        others = [k for k in range(len(cfg.classes)) if k != fire]
        torch.testing.assert_close(gated[:, others], plain[:, others], atol=0, rtol=0)
        torch.testing.assert_close(gated[:, fire], torch.minimum(head, plain[:, fire] + 2.0), atol=0, rtol=0)
        assert (head > plain[:, fire] + 2.0).any() and (head < plain[:, fire] + 2.0).any()  # both sides used
        traced = torch.jit.trace(model, x, check_trace=False)
        torch.testing.assert_close(traced(x), gated, atol=0, rtol=0)
        assert fuse_batchnorm(model) > 10
        torch.testing.assert_close(model(x), gated, atol=1e-4, rtol=1e-4)


def test_fire_head_sees_one_pixel() -> None:
    """The head never downsamples: changing one input pixel changes its output only within 8 px (17 x 17)."""
    from firemap.nets import FireHead

    torch.manual_seed(0)
    head = FireHead(6, 8).eval()
    x = torch.randn(1, 6, 48, 48)
    y = x.clone()
    y[0, 5, 24, 24] += 5.0
    with torch.no_grad():
        changed = (head(y) - head(x)).abs()[0, 0] > 0
    rows, cols = torch.nonzero(changed, as_tuple=True)
    assert changed[24, 24]
    assert rows.min() >= 16 and rows.max() <= 32 and cols.min() >= 16 and cols.max() <= 32


def test_fire_head_needs_a_fire_class_and_is_described(tmp_path: Path) -> None:
    from firemap.config import ClassInfo
    from firemap.models import save_bundle

    with pytest.raises(ValueError, match="fire_head needs a class named 'fire'"):
        ModelConfig(classes=(ClassInfo(id=3, name="burn_scar", color=(255, 0, 0)),), fire_head=8)
    cfg = ModelConfig(arch="unet", encoder="mobilenet_v2", decoder_channels=32, fire_head=8)
    path = save_bundle(tmp_path / "h.firemap.pt", build_model(cfg).eval(), cfg)
    bundle = load_bundle(path)
    assert bundle.config.fire_head == 8
    assert "full-resolution fire head (8 ch, gate 6)" in dict(describe_bundle(bundle))["network"]
