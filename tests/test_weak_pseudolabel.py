"""Label files, pseudo masks on the scene grid, safety rules and the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from typer.testing import CliRunner

from firemap.cli import app
from firemap.errors import FiremapError, InputFileError, OutputExistsError
from firemap.weak.config import WeakConfig
from firemap.weak.labels import ABSENT, PRESENT, LabelFileError, read_labels
from firemap.weak.pseudolabel import assign_labels, pseudolabel
from tests.conftest import UTM, UTM_TRANSFORM, background

runner = CliRunner()
FAST = {"cam_steps": 4, "aff_steps": 3, "batch_size": 4, "iterations": 4, "tile_size": 64, "overlap": 16,
        "block_size": 32, "halo": 16, "context": 8, "threads": 1}


@pytest.fixture
def scar_scene(write_tif) -> Path:
    """64 x 64 vegetation with a burn scar (dark NIR, bright SWIR2) in rows 8-40, cols 8-40; nodata rows 60-63."""
    data = background(64, 64)
    data[3, 8:40, 8:40] = 0.08
    data[5, 8:40, 8:40] = 0.25
    data[:, 60:] = -9999.0
    return write_tif(data, "scar.tif", nodata=-9999.0)


def _csv(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def _tile_labels(tmp_path: Path) -> Path:
    lines = ["scene,col,row,width,height,burn_scar,smoke"]
    for r in range(0, 64, 16):
        for c in range(0, 64, 16):
            scar = r < 40 and c < 40  # the tile overlaps the scar (rows and cols 8-40)
            lines.append(f"scar.tif,{c},{r},16,16,{'yes' if scar else 'no'},no")
    return _csv(tmp_path / "labels.csv", lines)


def test_read_labels_csv_and_yaml(scar_scene: Path, tmp_path: Path) -> None:
    csv_path = _csv(tmp_path / "l.csv", ["# comment", "scene,col,row,width,height,burn_scar,smoke,fire",
                                          "scar.tif,0,0,16,16,yes,no,?", "scar.tif,,,,,present,,unknown"])
    labs = read_labels(csv_path)
    assert labs[0].scene == scar_scene and labs[0].window is not None and labs[0].window.width == 16
    assert dict(labs[0].classes) == {"burn_scar": PRESENT, "smoke": ABSENT}
    assert labs[1].window is None and dict(labs[1].classes) == {"burn_scar": PRESENT}
    yaml_path = tmp_path / "l.yaml"
    yaml_path.write_text("- {scene: scar.tif, window: [16, 0, 16, 16], burn_scar: no}\n")
    (lab,) = read_labels(yaml_path)
    assert lab.window is not None and lab.window.col_off == 16 and dict(lab.classes) == {"burn_scar": ABSENT}


@pytest.mark.parametrize(("lines", "error", "message"), [
    (["scene,burn_scar,lava", "scar.tif,yes,no"], LabelFileError, "unknown column(s) ['lava']"),
    (["scene,burn_scar", "scar.tif,maybe"], LabelFileError, "line 2: burn_scar='maybe' is not a label"),
    (["scene,col,row,width,height,burn_scar", "scar.tif,0,0,0,16,yes"], LabelFileError, "width and height > 0"),
    (["scene,burn_scar", "missing.tif,yes"], InputFileError, "not found"),
    (["path,burn_scar", "scar.tif,yes"], LabelFileError, "needs a header with a 'scene' column"),
    (["scene,burn_scar", "scar.tif,?"], LabelFileError, "every label is unknown"),
])
def test_bad_label_file_one_line_error(scar_scene, tmp_path, lines, error, message) -> None:
    path = _csv(tmp_path / "bad.csv", lines)
    with pytest.raises(error) as info:
        read_labels(path)
    assert message in str(info.value) and "\n" not in str(info.value)
    result = runner.invoke(app, ["pseudolabel", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "error:" in result.output and message.split("'")[0] in result.output


def test_window_outside_scene_is_refused(scar_scene: Path, tmp_path: Path) -> None:
    path = _csv(tmp_path / "l.csv", ["scene,col,row,width,height,burn_scar", "scar.tif,56,0,16,16,yes"])
    with pytest.raises(FiremapError, match="leaves the 64 x 64 px scene"):
        pseudolabel(path, tmp_path / "o", WeakConfig(**FAST))


def test_assign_labels_margin_absent_and_nodata() -> None:
    scores = np.array([[[0.9, 0.2, 0.52, 0.1]], [[0.1, 0.8, 0.48, 0.9]]], np.float32)  # background, burn_scar
    valid = np.array([[True, True, True, False]])
    covered = np.ones((1, 4), bool)
    absent = np.zeros((3, 1, 4), bool)
    absent[1] = True  # smoke absent everywhere
    out = assign_labels(scores, valid, covered, absent, ("burn_scar",), margin=0.05)
    assert out[2].tolist() == [[0, 1, 255, 255]]  # sure bg, sure scar, too close, nodata
    assert out[1].tolist() == [[0, 0, 0, 255]] and (out[0] == 255).all()  # smoke known absent; fire never labelled


@pytest.mark.parametrize("method", ["walk", "cam"])
def test_pseudo_masks_on_scene_grid(scar_scene: Path, tmp_path: Path, method: str) -> None:
    torch.manual_seed(0)
    out = tmp_path / "out"
    cfg = WeakConfig(method=method, save_cam=True, save_walk=True, **FAST)  # type: ignore[arg-type]
    (result,) = pseudolabel(_tile_labels(tmp_path), out, cfg)
    with rasterio.open(result.outputs["labels"]) as ds:
        assert ds.crs == UTM and ds.transform == UTM_TRANSFORM and (ds.width, ds.height) == (64, 64)
        assert ds.count == 3 and ds.dtypes[0] == "uint8" and ds.descriptions == ("fire", "smoke", "burn_scar")
        assert ds.nodata == 255
        masks = ds.read()
    assert (masks[0] == 255).all()  # fire: never labelled
    assert (masks[1][:60] == 0).all()  # smoke: labelled absent in every window
    assert (masks[:, 60:] == 255).all()  # nodata rows
    assert set(np.unique(masks[2])) <= {0, 1, 255}
    assert (masks[2][:60, 48:] != 1).all() and (masks[2][48:60] != 1).all()  # windows labelled absent
    with rasterio.open(result.outputs["cam"]) as ds:
        assert ds.crs == UTM and ds.count == 1 and np.isnan(ds.read(1)[60:]).all()
    assert ("walk" in result.outputs) == (method == "walk")
    assert not list(out.glob(".*"))  # no scratch or partial files left
    with pytest.raises(OutputExistsError, match="--overwrite"):
        pseudolabel(_tile_labels(tmp_path), out, cfg)


def test_cli_pseudolabel_writes_masks(scar_scene: Path, tmp_path: Path) -> None:
    args = ["pseudolabel", str(_tile_labels(tmp_path)), "--out", str(tmp_path / "o"), "-q", "--cam-steps", "3",
            "--aff-steps", "2", "--iterations", "3", "--block-size", "32", "--halo", "8", "--threads", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o" / "scar.labels.tif").is_file()
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "--overwrite" in again.output
    bad = runner.invoke(app, [*args, "--overwrite", "--walk-stride", "3"])
    assert bad.exit_code == 1 and "walk-stride" in bad.output
