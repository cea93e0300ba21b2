"""The bad-input catalogue: every way a user (or a hostile one) can feed the CLI something wrong.

Each case runs a real command through typer's CliRunner and asserts: exit code 1, exactly one line of output
(``error: ...``) naming the problem, no traceback, and no output file appeared (nothing new in the output folder,
pre-existing files untouched, no temporary or lock left behind).
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
import torch
import yaml
from typer.testing import CliRunner

from firemap.cli import app
from tests._train_helpers import tiny_train_config, write_pairs
from tests.conftest import BANDS, UTM, UTM_TRANSFORM, background

runner = CliRunner()


@dataclass
class Env:
    """Builds the files a case needs under ``tmp``; ``out`` is the folder no output may appear in."""

    tmp: Path
    bundle_path: Path
    monkeypatch: pytest.MonkeyPatch
    out: Path = field(init=False)

    def __post_init__(self) -> None:
        self.out = self.tmp / "out"

    def scene(self, name: str = "scene.tif", data: np.ndarray | None = None, **profile: object) -> Path:
        data = background(64, 64) if data is None else data
        path = self.tmp / name
        base = {"driver": "GTiff", "count": data.shape[0], "height": data.shape[1], "width": data.shape[2],
                "dtype": str(data.dtype), "crs": UTM, "transform": UTM_TRANSFORM, "tiled": True,
                "blockxsize": 16, "blockysize": 16, "compress": "deflate"}
        base.update(profile)
        with rasterio.open(path, "w", **base) as dst:
            dst.write(data)
            for i, d in enumerate(BANDS[: data.shape[0]], start=1):
                dst.set_band_description(i, d)
        return path

    def truncated(self, name: str = "cut.tif", source: Path | None = None) -> Path:
        """A GeoTIFF whose header is intact (it opens: a COG keeps its directory first) but whose pixel blocks
        are cut off, as after an interrupted download."""
        path = self.tmp / name
        rasterio.shutil.copy(source or self.scene("full.tif"), path, driver="COG", BLOCKSIZE=16, COMPRESS="DEFLATE")
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        with rasterio.open(path) as src:  # the header still opens: the failure comes when pixels are read
            assert src.count == 6
        return path

    def bundle(self, edit: Callable[[dict], None]) -> Path:
        payload = torch.load(self.bundle_path, map_location="cpu", weights_only=True)
        edit(payload)
        path = self.tmp / "edited.firemap.pt"
        torch.save(payload, path)
        return path

    def predict(self, *extra: object, scene: Path | None = None) -> list[object]:
        return ["predict", scene or self.scene(), "--out", self.out, "--model", self.bundle_path, "-q", *extra]


def _nan_weight(payload: dict) -> None:
    key = next(k for k, v in payload["state_dict"].items() if v.is_floating_point())
    payload["state_dict"][key] = torch.full_like(payload["state_dict"][key], float("nan"))


def _nan_mean(payload: dict) -> None:
    payload["config"]["mean"][0] = float("nan")


def _no_crs_transform(env: Env) -> list[object]:
    path = env.tmp / "nogt.tif"
    with rasterio.open(path, "w", driver="GTiff", count=6, height=64, width=64, dtype="float32", crs=UTM) as dst:
        dst.write(background(64, 64))
    return env.predict(scene=path)


def _existing_output(env: Env) -> list[object]:
    env.out.mkdir()
    (env.out / "scene.classes.tif").write_bytes(b"an earlier result")
    return env.predict()


def _locked_output(env: Env) -> list[object]:
    env.out.mkdir()
    # a live process that is not this one: pid 1 (init) always runs
    (env.out / ".scene.geojson.firemap-lock").write_text(f"1@{socket.gethostname()}\n")
    return env.predict()


def _out_is_file(env: Env) -> list[object]:
    env.out.write_text("a file, not a folder")
    return env.predict()


def _permission_denied(env: Env) -> list[object]:
    real = Path.mkdir

    def mkdir(self: Path, *args: object, **kwargs: object) -> None:
        if self == env.out:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        real(self, *args, **kwargs)  # type: ignore[arg-type]

    env.monkeypatch.setattr(Path, "mkdir", mkdir)
    return env.predict()


def _disk_full(env: Env) -> list[object]:
    import firemap.vectorize

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    env.monkeypatch.setattr(firemap.vectorize, "write_vector_file", full)
    return env.predict()


def _same_stem(env: Env) -> list[object]:
    (env.tmp / "b").mkdir()
    scene = env.scene()
    return ["predict", scene, _copy(scene, env.tmp / "b" / "scene.tif"), "--out", env.out, "--model", env.bundle_path]


def _copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    return dst


def _label_other_grid(env: Env) -> list[object]:
    from affine import Affine

    pre = env.scene("pre.tif", transform=Affine(30.0, 0.0, 500030.0, 0.0, -30.0, 4200000.0))
    return ["label", env.scene(), "--out", env.out, "--pre-fire", pre]


def _evaluate_pairs(env: Env, mask: np.ndarray | None = None, **profile: object) -> list[object]:
    images, masks = write_pairs(env.tmp / "data", n=1)
    if mask is not None or profile:
        with rasterio.open(masks / "s0.tif") as src:
            base = src.profile
        base.update(profile)
        data = mask if mask is not None else np.zeros((1, base["height"], base["width"]), np.uint8)
        with rasterio.open(masks / "s0.tif", "w", **base) as dst:
            dst.write(data)
    return ["evaluate", "--images", images, "--masks", masks, "--model", env.bundle_path, "--json",
            env.out / "m.json", "--device", "cpu", "--no-baselines", "-q"]


def _evaluate_truncated(env: Env) -> list[object]:
    args = _evaluate_pairs(env)
    image = env.tmp / "data" / "images" / "s0.tif"
    image.write_bytes(env.truncated(source=image).read_bytes())
    return args


def _train_config(env: Env, **over: object) -> Path:
    cfg = tiny_train_config(env.tmp / "data", env.out, **over)
    path = env.tmp / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _train_truncated(env: Env) -> list[object]:
    config = _train_config(env)
    image = env.tmp / "data" / "images" / "s1.tif"
    image.write_bytes(env.truncated(source=image).read_bytes())
    return ["train", config, "-q"]


def _train_corrupt_init(env: Env) -> list[object]:
    junk = env.tmp / "junk.pt"
    junk.write_bytes(b"PK\x03\x04 this is not a torch archive")
    return ["train", _train_config(env), "--init", junk, "-q"]


Case = tuple[str, Callable[[Env], list[object]], str]

CASES: list[Case] = [
    # inputs
    ("missing scene", lambda e: e.predict(scene=e.tmp / "nope.tif"), "no such file"),
    ("text file as scene", lambda e: e.predict(scene=_text(e.tmp / "notes.tif")), "not a raster GDAL can read"),
    ("folder without band files as scene", lambda e: e.predict(scene=e.tmp), "no band files firemap can use"),
    ("truncated scene (predict)", lambda e: e.predict(scene=e.truncated()), "truncated or corrupt"),
    ("truncated scene (label)", lambda e: ["label", e.truncated(), "--out", e.out], "truncated or corrupt"),
    ("truncated scene (indices)", lambda e: ["indices", e.truncated(), "--out", e.out], "truncated or corrupt"),
    ("truncated image (evaluate)", _evaluate_truncated, "truncated or corrupt"),
    ("truncated image (train)", _train_truncated, "truncated or corrupt"),
    ("no CRS", lambda e: e.predict(scene=e.scene(crs=None)), "--allow-no-crs"),
    ("CRS without geotransform", _no_crs_transform, "no geotransform"),
    ("too few bands", lambda e: e.predict(scene=e.scene(data=background(64, 64)[:4])), "lacks band(s) swir1, swir2"),
    # options
    ("tile size 0", lambda e: e.predict("--tile-size", "0"), "tile size 0 is not divisible"),
    ("tile size off-stride", lambda e: e.predict("--tile-size", "72"), "use 64 or 80"),
    ("tile size 100000", lambda e: e.predict("--tile-size", "100000"), "would need about"),
    ("overlap >= tile", lambda e: e.predict("--overlap", "64"), "smaller than the tile size 64"),
    ("batch size 0", lambda e: e.predict("--batch-size", "0"), "--batch-size"),
    ("tta typo", lambda e: e.predict("--tta", "rotate"), "--tta"),
    ("vector format typo", lambda e: e.predict("--vector-format", "shp"), "--vector-format"),
    ("cuda without cuda", lambda e: e.predict("--device", "cuda"), "torch sees no CUDA device"),
    ("threshold unknown class", lambda e: e.predict("--threshold", "lava=0.3"), "bad --threshold 'lava=0.3'"),
    ("threshold out of range", lambda e: e.predict("--threshold", "fire=1.5"), "probability must be in (0, 1)"),
    ("unknown sensor", lambda e: e.predict("--sensor", "modis"), "unknown sensor 'modis'"),
    ("bands index past count", lambda e: e.predict("--bands", "swir2=9"), "file has bands 1..6"),
    ("bands scale 0", lambda e: e.predict("--bands", "red=3:0"), "bad scale 0.0"),
    ("bands scale nan", lambda e: e.predict("--bands", "red=3:nan"), "bad scale nan"),
    ("bands scale inf", lambda e: e.predict("--bands", "red=3:inf"), "bad scale inf"),
    ("bands scale 1e308", lambda e: e.predict("--bands", "red=3:1e308"), "bad scale 1e+308"),
    ("bands offset nan", lambda e: e.predict("--bands", "red=3:1:nan"), "bad offset nan"),
    ("bands repeated name", lambda e: e.predict("--bands", "red=3,nir=4,red=5"), "names red twice"),
    ("config unknown key", lambda e: e.predict("--config", _text(e.tmp / "p.yaml", "tile_sise: 32\n")),
     "tile_sise"),
    ("label unknown rule", lambda e: ["label", e.scene(), "--out", e.out, "--rules", "magic"], "magic"),
    ("label pre-fire on another grid", _label_other_grid, "not on the grid"),
    ("indices unknown index", lambda e: ["indices", e.scene(), "--out", e.out, "--index", "evi"], "unknown index"),
    ("indices dnbr without pre-fire", lambda e: ["indices", e.scene(), "--out", e.out, "--index", "dnbr"],
     "--pre-fire"),
    # model bundles
    ("bundle missing", lambda e: [*e.predict()[:4], "--model", e.tmp / "absent.pt"], "no such model bundle"),
    ("bundle junk", lambda e: [*e.predict()[:4], "--model", _text(e.tmp / "j.pt", "junk")],
     "not a readable firemap model bundle"),
    ("bundle foreign", lambda e: [*e.predict()[:4], "--model", _torch(e.tmp / "f.pt", {"hello": 1})],
     "not a firemap model bundle"),
    ("bundle without state_dict", lambda e: [*e.predict()[:4], "--model", e.bundle(lambda p: p.pop("state_dict"))],
     "no 'state_dict'"),
    ("bundle without config", lambda e: [*e.predict()[:4], "--model", e.bundle(lambda p: p.pop("config"))],
     "no 'config'"),
    ("bundle NaN weights", lambda e: [*e.predict()[:4], "--model", e.bundle(_nan_weight)], "NaN"),
    ("bundle NaN normalization", lambda e: [*e.predict()[:4], "--model", e.bundle(_nan_mean)], "mean"),
    ("corrupt --init", _train_corrupt_init, "not a readable model or weights file"),
    # masks
    ("mask on another grid", lambda e: _evaluate_pairs(e, transform=UTM_TRANSFORM @ UTM_TRANSFORM.translation(3, 0)),
     "not on the grid"),
    ("mask in another CRS", lambda e: _evaluate_pairs(e, crs="EPSG:32611"), "not on the grid"),
    ("mask with undeclared values", lambda e: _evaluate_pairs(e, mask=np.full((1, 64, 64), 7, np.uint8)),
     "not declared"),
    # outputs
    ("output exists", _existing_output, "exists; pass --overwrite"),
    ("output being written by another run", _locked_output, "another firemap run"),
    ("--out is a file", _out_is_file, "is a file, not a folder"),
    ("--out not writable", _permission_denied, "permission denied"),
    ("disk full", _disk_full, "disk full"),
    ("two scenes, one stem", _same_stem, "would both write"),
]


def _text(path: Path, text: str = "not a raster") -> Path:
    path.write_text(text)
    return path


def _torch(path: Path, obj: object) -> Path:
    torch.save(obj, path)
    return path


def _snapshot(folder: Path) -> dict[str, bytes]:
    if folder.is_file():
        return {".": folder.read_bytes()}
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<dir>"
            for p in sorted(folder.rglob("*"))} if folder.exists() else {}


@pytest.mark.parametrize(("name", "build", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_error_and_leaves_nothing(
    name: str, build: Callable[[Env], list[object]], message: str, tmp_path: Path, smp_bundle_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = Env(tmp_path, smp_bundle_path, monkeypatch)
    args = [str(a) for a in build(env)]
    before = _snapshot(env.out)
    result = runner.invoke(app, args)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert message in lines[0]
    assert _snapshot(env.out) == before  # no output, no temporary, no lock appeared; old files untouched

