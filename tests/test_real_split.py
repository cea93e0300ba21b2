"""The real-scene split of configs/default_model.yaml (scripts/real_data.py) and scripts/eval_real.py scoring."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
sys.path.insert(0, str(SCRIPTS))

import eval_real  # noqa: E402
import real_data  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real_scenes"
needs_data = pytest.mark.skipif(not SHARED.is_dir(), reason="shared/data/real_scenes not present")


def _scene(split: str, height: int = 300, role: str = "fire_free") -> real_data.Scene:
    return real_data.Scene("x", Path("x.tif"), "landsat8-l2", None, split, role, height, 200)


def test_training_rows_never_reach_the_scored_rows():
    recipe = real_data.load_recipe()
    assert recipe["corumba"]["heldout_row"] == 600
    cor = _scene("corumba", 901, "fire")
    assert real_data.train_rows(cor, recipe) == (0, 600 - recipe["halo"])
    assert real_data.eval_rows(cor, recipe) == (600, 901)
    north = _scene("north", 301)
    train, held = real_data.train_rows(north, recipe), real_data.eval_rows(north, recipe)
    assert train is not None and held is not None
    assert train[1] + recipe["fire_free_halo"] == held[0] == 150
    assert real_data.eval_rows(_scene("all"), recipe) is None and real_data.train_rows(_scene("none"), recipe) is None
    assert {e["split"] for e in recipe["fire_free"]} <= {"north", "all", "none"}
    assert any(e["split"] == "none" for e in recipe["fire_free"])  # whole scenes held out for false alarms


def test_crop_vrt_holds_only_the_window(tmp_path):
    path = tmp_path / "s.tif"
    data = np.arange(3 * 40 * 10, dtype=np.uint16).reshape(3, 40, 10) + 1
    with rasterio.open(path, "w", driver="GTiff", width=10, height=40, count=3, dtype="uint16", nodata=0,
                       crs="EPSG:32621", transform=from_origin(1000, 2000, 30, 30)) as dst:
        dst.write(data)
        dst.descriptions = ("B2", "B5", "B7")
        dst.scales, dst.offsets = (2e-5,) * 3, (-0.1,) * 3
    crop = real_data.crop_vrt(path, tmp_path / "c.vrt", (0, 25))
    with rasterio.open(crop) as src:
        assert (src.height, src.width) == (25, 10)
        np.testing.assert_array_equal(src.read(), data[:, :25])
        assert src.descriptions == ("B2", "B5", "B7") and src.scales == (2e-5,) * 3 and src.offsets == (-0.1,) * 3
        assert src.transform == from_origin(1000, 2000, 30, 30) and src.crs.to_epsg() == 32621


def test_binary_scores_and_clusters():
    pred = np.array([[1, 1, 0, 0], [0, 0, 0, 1]], bool)
    ref = np.array([[1, 0, 255, 0], [1, 0, 0, 1]], np.uint8)
    s = eval_real.binary_scores(pred, ref, np.ones_like(pred))
    assert (s["tp"], s["fp"], s["fn"]) == (2, 1, 1)
    assert s["iou"] == pytest.approx(0.5) and s["f1"] == pytest.approx(2 / 3)
    mask = np.zeros((10, 10), bool)
    mask[1, 1] = mask[2, 2] = True  # diagonal: one 8-connected cluster
    mask[7:9, 7:9] = True
    zone = np.zeros_like(mask)
    zone[8, 8] = True
    assert eval_real.count_clusters(mask) == (2, 0)
    assert eval_real.count_clusters(mask, zone) == (1, 1)


@needs_data
def test_stack_vrt_resamples_coarse_bands_onto_the_first_grid(tmp_path):
    s2 = SHARED / "provider_formats" / "S2A_29RKH_20200219_0_L2A"
    vrt = real_data.stack_vrt({"B11": s2 / "B11.tif", "B04": s2 / "B04.tif"}, tmp_path / "s.vrt")
    with rasterio.open(vrt) as src, rasterio.open(s2 / "B11.tif") as b11:
        assert (src.width, src.height) == (b11.width, b11.height) and src.descriptions == ("B11", "B04")
        np.testing.assert_array_equal(src.read(1), b11.read(1))
        assert src.read(2).shape == b11.shape and src.read(2).max() > 0


def test_california_labels_fire_zero_away_from_bright_swir2(tmp_path):
    """Fire 0 on valid pixels, 255 within 2 px of swir2 >= CALIFORNIA_HOT_SWIR2; burn scar from the mask."""
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    profile = {"driver": "GTiff", "width": 20, "height": 20, "crs": "EPSG:32611",
               "transform": from_origin(500000, 4000000, 10, 10)}
    dn = np.full((5, 20, 20), 1000, np.uint16)  # Sentinel-2 B02..B12 DN: reflectance 0.1
    dn[4, 10, 10] = 5000  # B12 0.5: a hot (or bright-soil) pixel
    with rasterio.open(tmp_path / "images" / "X.tif", "w", count=5, dtype="uint16", **profile) as dst:
        dst.write(dn)
        dst.descriptions = ("B02", "B03", "B04", "B08", "B12")
    mask = np.zeros((20, 20), np.uint8)
    mask[:5] = 1
    with rasterio.open(tmp_path / "masks" / "X.tif", "w", count=1, dtype="uint8", **profile) as dst:
        dst.write(mask, 1)
    folder = real_data.california_labels(tmp_path, ["X"], tmp_path / "out")
    with rasterio.open(folder / "X.tif") as src:
        labels = src.read()
    hot = np.zeros((20, 20), bool)
    hot[8:13, 8:13] = True  # 2 px around (10, 10), 4-connected dilation twice: a diamond inside this box
    assert (labels[0][~hot] == 0).all() and labels[0][10, 10] == 255 and labels[0][8, 10] == 255
    assert (labels[1] == 255).all()
    assert (labels[2] == mask).all()


def test_train_default_resume_continues_only_interrupted_stages(tmp_path: Path):
    """--resume turns a stage config into a resumed one only where its folder holds fit's resume state."""
    import argparse

    import train_default

    from firemap.train.loop import STATE_FILE

    started, fresh = tmp_path / "stage1", tmp_path / "stage2"
    started.mkdir()
    (started / STATE_FILE).write_bytes(b"")
    on, off = argparse.Namespace(resume=True), argparse.Namespace(resume=False)
    cfg = {"out": str(started), "overwrite": True, "epochs": 3}
    assert train_default.resumed(cfg, on) == {"out": str(started), "overwrite": False, "epochs": 3, "resume": True}
    assert train_default.resumed(cfg, off) == cfg  # without --resume the stage starts over
    assert train_default.resumed({**cfg, "out": str(fresh)}, on) == {**cfg, "out": str(fresh)}
    command = train_default.reproduce_command(argparse.Namespace(
        out=tmp_path, legacy=True, variant="deeplabv3plus-fr-sanet-mobilenet_v2", bn_adapt=None, precision="fp32",
        threads=1, calib_scenes=24, test_scenes=8, install_for="generic", resume=True))
    assert "--resume" not in command and "--legacy --variant deeplabv3plus-fr-sanet-mobilenet_v2" in command
    assert "--precision fp32 --threads 1" in command


def test_compare_architectures_sums_each_fire_free_scene_over_its_parts(monkeypatch, tmp_path):
    """scripts/compare_architectures.py's real-scene row: Corumba's scored rows as eval_real gives them, and each
    fire-free scene whole (parts weighted by their land pixels; fire polygons over lava not counted)."""
    import compare_architectures as ca

    fake = {
        "_work": "w", "_models": {},
        "corumba": {"heldout": {"scar": {"iou": 0.25}, "scar_nbr": {"iou": 0.3},
                                "fire": {"f1": 0.9, "precision": 1.0, "recall": 0.8}},
                    "train": {"scar": {"iou": 0.5}}},
        "dry": {"heldout": {"land_px": 300, "scar_pct_land": 10.0, "fire_clusters": [1, 4]},
                "train": {"land_px": 100, "scar_pct_land": 50.0, "fire_clusters": [2, 0]}},
        "lava": {"all": {"land_px": 50, "scar_pct_land": 2.0, "fire_clusters": [0, 7]}},
    }
    seen = []
    monkeypatch.setattr(eval_real, "evaluate",
                        lambda model, recipe, work, img, options=None: seen.append((model, options)) or (None, fake))
    row = ca.real_scenes(tmp_path / "m.firemap.pt", tmp_path)
    assert ca.real_scenes("default", tmp_path, {"tta": "flip"}) == row  # the toolkit rows: predict options through
    assert seen == [(str(tmp_path / "m.firemap.pt"), None), ("default", {"tta": "flip"})]
    assert row["corumba"] == {"scar_iou": 0.25, "scar_nbr_iou": 0.3, "fire_f1": 0.9, "fire_precision": 1.0,
                              "fire_recall": 0.8}
    assert row["fire_free"]["dry"] == {"scar_pct_land": pytest.approx(20.0), "fire_clusters": 3}  # (30+50)/400
    assert row["fire_free"]["lava"] == {"scar_pct_land": pytest.approx(2.0), "fire_clusters": 0}
    text = ca.markdown({"unet-mobilenet_v2": _compare_row(row)}, _compare_args(tmp_path))
    assert "| unet-mobilenet_v2 | 0.250 (0.300) | 0.900 / 1.000 / 0.800 | 20.00% / 3 | 2.00% / 0 |" in text
    sim = {"fire_f1": 0.5, "fire_object_recall": 0.4, "burn_scar_iou": 0.6}
    toolkit = ca.inference_markdown({"default": {"flip": {"sim_sentinel2": sim, "sim_landsat8": sim,
                                                          "real_scenes": row, "seconds": 7}}})
    assert "| default | flip | 0.500 / 0.400 | 0.500 / 0.400 | 0.600 / 0.600 | - | 0.900 | 0.250 | 20.00% / 3 | 7 |" \
        in toolkit  # the worst fire-free scene and every fire polygon away from lava


def _compare_row(real: dict) -> dict:
    summary = {"burn_scar_iou": 0.5}
    return {"real": summary, "sim_sentinel2": summary, "sim_landsat8": summary, "real_scenes": real}


def _compare_args(out: Path):
    import argparse

    return argparse.Namespace(out=out, threads=1, epochs1=1, steps1=1, epochs2=1, steps2=1, batch_size=8,
                              precision="fp32", test_scenes=6)


def test_fire_threshold_rule_takes_the_lowest_quiet_candidate_near_the_best_f1():
    import train_default as td

    def table(rows):
        return {f"{t:g}": {"fire_f1": f1, "false_objects": n} for t, f1, n in rows}

    assert min(td.FIRE_THRESHOLDS) <= 0.2  # low thresholds are candidates: recall on faint fronts
    # 0.2 has false objects, 0.3 is quiet but 0.04 below the best F1, 0.4 is the lowest quiet one close enough
    assert td.choose_fire_threshold(table([(0.2, 0.90, 2), (0.3, 0.85, 0), (0.4, 0.87, 0), (0.5, 0.89, 0)])) == 0.4
    assert td.choose_fire_threshold(table([(0.2, 0.90, 0), (0.5, 0.91, 0)])) == 0.2
    # nothing quiet: fewest false objects, then the best F1
    assert td.choose_fire_threshold(table([(0.2, 0.90, 3), (0.5, 0.80, 1), (0.6, 0.85, 1)])) == 0.6


def test_recipe_stage4_trains_only_a_fire_head_on_stage3_data(tmp_path: Path):
    """The recipe's stage 4 is stage 3's mixture with larger simulator pools, small tiles, no affine
    augmentation, a fire head in the model and nothing else trainable; it validates as a TrainConfig."""
    import train_default as td

    from firemap.train.config import train_config_from_dict

    recipe = real_data.load_recipe()
    real = [{"kind": "scenes", "name": "r", "images": [str(tmp_path / "r.tif")], "labelled": ["fire"], "weight": 0.3}]
    stage3 = td.finetune_config(recipe, tmp_path / "init.firemap.pt", tmp_path / "stage3", real)
    head = td.fire_head_config(recipe, stage3, tmp_path / "stage3.firemap.pt", tmp_path / "stage4")
    assert head is not None and head["train_only"] == ["fire_head"]
    assert head["model"]["fire_head"] > 0 and head["model"]["arch"] == stage3["model"]["arch"]
    assert head["init"] == str(tmp_path / "stage3.firemap.pt") and head["augment"]["affine_p"] == 0.0
    assert [s["name"] for s in head["data"]["train"]] == [s["name"] for s in stage3["data"]["train"]]
    pools = {s["name"]: s["pool_scenes"] for s in head["data"]["train"] if s["kind"] == "simulator"}
    assert pools and all(pools[s["name"]] == s["pool_scenes"] * recipe["fire_head"]["pool_scale"]
                         for s in stage3["data"]["train"] if s["kind"] == "simulator")
    assert stage3["augment"].get("affine_p", 0.3) != 0.0  # stage 3 itself is unchanged by the merge
    cfg = train_config_from_dict({**head, "init": "none"})
    assert cfg.train_only == ["fire_head"] and cfg.data.tile_size == 64


def test_recipe_per_default_generic_retrains_only_the_fire_output(tmp_path: Path):
    """``defaults.generic`` is merged over the recipe for ``--install-for generic``: its stage 3 trains only the
    output layer with loss on fire alone and no weight decay (what keeps v2's smoke and burn scar bit for bit,
    tests/test_train_cli.py), its stage 4 still trains only the fire head; the Landsat recipe is the file as
    written."""
    import train_default as td

    from firemap.train.config import train_config_from_dict

    raw = real_data.load_recipe()
    assert td.recipe_for(raw, "landsat") == {k: v for k, v in raw.items() if k != "defaults"}
    recipe = td.recipe_for(raw, "generic")
    assert recipe["corumba"] == raw["corumba"] and recipe["fire_free"] == raw["fire_free"]  # same split
    assert recipe["bn_adapt"] == 0.5 and recipe["thresholds"]["burn_scar"] == 0.5
    real = [{"kind": "scenes", "name": "r", "images": [str(tmp_path / "r.tif")], "labelled": ["fire"], "weight": 0.3}]
    stage3 = td.finetune_config(recipe, tmp_path / "init.firemap.pt", tmp_path / "stage3", real)
    cfg = train_config_from_dict({**stage3, "init": "none"})
    assert cfg.train_only == ["segmentation_head"] and cfg.optim.weight_decay == 0.0
    assert cfg.loss.class_weights == {"fire": 1.0, "smoke": 0.0, "burn_scar": 0.0}
    sims = [s for s in cfg.data.train if s.kind == "simulator"]
    s2 = sum(s.weight for s in sims if s.sensor == "sentinel2")
    assert s2 > sum(s.weight for s in sims) - s2  # the mixture leans to Sentinel-2
    head = td.fire_head_config(recipe, stage3, tmp_path / "stage3.firemap.pt", tmp_path / "stage4")
    assert head is not None and train_config_from_dict({**head, "init": "none"}).train_only == ["fire_head"]
