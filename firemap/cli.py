"""The ``firemap`` command line: a thin Typer layer over the library.

Each command parses options, builds a typed config, calls one library function and reports. Any
``FiremapError`` becomes a one-line message on stderr and exit code 1. Log level is set here only (-v/-q).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler

from firemap import __version__
from firemap.errors import ConfigError, FiremapError

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Map active fire, smoke and burn scars in satellite scenes."
)
console = Console(stderr=True)
log = logging.getLogger("firemap")

F = TypeVar("F", bound=Callable[..., Any])


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    """Route library logging to stderr: WARNING by default, INFO with -v, DEBUG with -vv, ERROR with -q."""
    level = logging.ERROR if quiet else [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, format="%(message)s", handlers=[RichHandler(console=console, show_path=False)],
                        force=True)
    logging.captureWarnings(True)
    logging.getLogger("pyogrio").setLevel(max(level, logging.WARNING))


def handle_errors(func: F) -> F:
    """Turn FiremapError (and Ctrl-C) into a one-line message and exit code 1 (130 for Ctrl-C)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except FiremapError as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            console.print("[bold red]interrupted[/]: no partial output was left under a final name")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"firemap {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """firemap: active fire, smoke and burn-scar maps from Landsat-8/9, Sentinel-2 and HLS scenes."""


def main() -> None:
    """Console-script entry point."""
    app()


# Commands are added below, one small function each. Helpers: keep your command in its own block.

# --- predict path commands ---

_SENSOR_HELP = (
    "Sensor preset for band naming and scaling: landsat8-l1, landsat9-l1 (TOA = 2e-5*DN - 0.1; without band "
    "descriptions 7 bands = B1-7, 10 bands = B1-7,B9,B10,B11, 11 bands = B1-11), landsat8-l2, landsat9-l2 "
    "(SR = 2.75e-5*DN - 0.2; SR_B1-7 [+ST_B10]), sentinel2-l1c, sentinel2-l2a (DN/10000, -1000 DN offset when "
    "the file's tags say so; B01..B12 order), hls (x 0.0001; 10 bands = L30 B01-B07,B09,B10,B11, 13 = S30, "
    "6 = blue,green,red,nir,swir1,swir2). Guessed from band descriptions when omitted."
)
_BANDS_HELP = (
    "Explicit band mapping CANON=SRC[:SCALE[:OFFSET]],... with SRC a 1-based index or a band description, "
    "e.g. 'red=3,nir=4,swir2=B12:0.0001'. Canonical: coastal, blue, green, red, nir, swir1, swir2, cirrus, "
    "thermal, thermal2."
)


@app.command()
@handle_errors
def predict(
    scenes: list[Path] = typer.Argument(..., help="Input GeoTIFF scene(s)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (created if missing)."),
    model: Path | None = typer.Option(None, help="Model bundle (.firemap.pt); default: the shipped model."),
    config: Path | None = typer.Option(None, help="YAML with predict options (configs/predict.yaml); flags win."),
    sensor: str | None = typer.Option(None, help=_SENSOR_HELP),
    bands: str | None = typer.Option(None, help=_BANDS_HELP),
    tile_size: int | None = typer.Option(None, help="Tile size in pixels (multiple of the network stride)."),
    overlap: int | None = typer.Option(None, help="Tile overlap in pixels (< tile size)."),
    batch_size: int | None = typer.Option(None, help="Tiles per forward pass (default 8)."),
    device: str | None = typer.Option(None, help="auto | cpu | cuda (default auto: CUDA when available)."),
    precision: str | None = typer.Option(
        None, help="auto | fp32 | bf16 | fp16 (default auto: fp16 on CUDA, fp32 on CPU)."
    ),
    tta: str | None = typer.Option(None, help="Test-time augmentation: none | flip | d4 (default none)."),
    tta_scales: str | None = typer.Option(
        None, help="Multi-scale inference: comma list of resize factors, e.g. 0.75,1,1.25 (default 1)."
    ),
    crf: bool = typer.Option(False, "--crf", help="Refine probabilities with a local mean-field CRF (off)."),
    threshold: list[str] | None = typer.Option(
        None, help="Per-class probability threshold CLASS=P (repeatable); default: the model's calibrated one, else 0.5"
    ),
    min_area: float | None = typer.Option(None, help="Drop polygons smaller than this many m2."),
    simplify: float | None = typer.Option(None, help="Simplify polygons with this tolerance in metres."),
    vector_format: str | None = typer.Option(None, help="geojson (RFC 7946, EPSG:4326) | gpkg (scene CRS)."),
    save_probs: bool = typer.Option(False, "--save-probs", help="Also write <stem>.probs.tif (uint8, p x 255)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
    allow_no_crs: bool = typer.Option(False, "--allow-no-crs", help="Accept scenes without CRS (pixel coords)."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output (-vv for debug)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars, log errors only (results still print)."),
) -> None:
    """Map fire, smoke and burn scars: class COG + QGIS style + polygons per scene."""
    from firemap.config import PredictConfig, load_yaml, parse_scales, parse_thresholds, validate
    from firemap.predict import predict_scenes

    setup_logging(verbose, quiet)
    options = {
        "sensor": sensor, "bands": bands, "tile_size": tile_size, "overlap": overlap, "batch_size": batch_size,
        "device": device, "precision": precision, "tta": tta, "tta_scales": parse_scales(tta_scales),
        "crf": crf or None, "min_area": min_area, "simplify": simplify,
        "vector_format": vector_format, "save_probs": save_probs or None, "overwrite": overwrite or None,
        "allow_no_crs": allow_no_crs or None,
        "thresholds": parse_thresholds(threshold, ("fire", "smoke", "burn_scar")) or None,
    }
    cfg = (load_yaml(config, PredictConfig, options) if config
           else validate(PredictConfig, {k: v for k, v in options.items() if v is not None}, "command line"))
    with _progress(quiet) as factory:
        results = predict_scenes(scenes, out, model, cfg, factory)
    _summary(results)


def _progress(quiet: bool) -> Any:
    """A context manager yielding a progress factory (scene, tiles) -> advance callback, or None when quiet."""
    from contextlib import contextmanager

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(f"{task.speed:.1f} tiles/s" if task.speed else "", style="dim")

    @contextmanager
    def bars() -> Any:
        if quiet:
            yield None
            return
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), Rate(), TimeElapsedColumn())
        with Progress(*columns, console=console) as progress:

            def factory(scene: Path, total: int) -> Callable[[int], None]:
                task = progress.add_task(scene.name, total=total)
                return lambda n: progress.advance(task, n)

            yield factory

    return bars()


def _summary(results: list[Any]) -> None:
    from rich.table import Table

    table = Table(title="firemap predict")
    for col, justify in (("scene", "left"), ("class", "left"), ("area ha", "right"), ("polygons", "right"),
                         ("tiles", "right"), ("time s", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in results:
        for i, name in enumerate(r.area_ha):
            first = i == 0
            table.add_row(r.scene.name if first else "", name, f"{r.area_ha[name]:.2f}", str(r.polygons[name]),
                          str(r.tiles) if first else "", f"{r.seconds:.1f}" if first else "",
                          end_section=i == len(r.area_ha) - 1)
    out = Console()
    out.print(table)
    for r in results:
        out.print(f"[green]{r.scene.name}[/] -> " + ", ".join(str(p) for p in r.outputs.values()),
                  highlight=False, soft_wrap=True)


@app.command()
@handle_errors
def info(
    scene: Path | None = typer.Argument(None, help="A raster scene."),
    sensor: str | None = typer.Option(None, help=_SENSOR_HELP),
    bands: str | None = typer.Option(None, help=_BANDS_HELP),
    model: str | None = typer.Option(
        None, help="Describe a model bundle instead: its path, or 'default' for the shipped model."
    ),
) -> None:
    """Show a scene's CRS, size, resolution, dtype, nodata, band descriptions and how its bands resolve.

    With --model: a bundle's network, bands, classes, thresholds, provenance and measured metrics.
    """
    from rich.table import Table

    out = Console()
    if model is not None:
        from firemap.models import describe_bundle, load_bundle

        for name, value in describe_bundle(load_bundle(None if model == "default" else model)):
            out.print(f"[bold]{name:>22}[/]: {value}", highlight=False, soft_wrap=True)
        return
    if scene is None:
        raise ConfigError("give a scene to describe, or --model PATH|default")

    from firemap.raster import describe_scene

    _info, fields, rows = describe_scene(scene, sensor, bands)
    for name, value in fields:
        out.print(f"[bold]{name:>10}[/]: {value}", highlight=False)
    table = Table(title="bands")
    for col in ("#", "description", "canonical", "physical value"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    out.print(table)


# --- classic rules commands (label, indices) ---


@app.command()
@handle_errors
def label(
    scene: Path = typer.Argument(..., help="Input GeoTIFF scene (the post-fire scene with --pre-fire)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (created if missing)."),
    pre_fire: Path | None = typer.Option(None, help="Pre-fire scene on the same grid: burn scars by dNBR >= 0.1."),
    rules: str | None = typer.Option(
        None, help="Fire rules, comma-separated: schroeder, murphy, kumar-roy, sentinel2. Default by sensor: "
        "Landsat schroeder,murphy,kumar-roy; Sentinel-2 sentinel2; HLS murphy (rules whose bands are absent are "
        "skipped; named rules must fit)."),
    combine: str | None = typer.Option(None, help="voting (majority: 2 of 3) | intersection | union, default voting"),
    nbr_threshold: float | None = typer.Option(None, help="Single-date burn scar: NBR < this, default -0.05."),
    min_dnbr: float | None = typer.Option(None, help="With --pre-fire: burn scar where dNBR >= this, default 0.1."),
    no_smoke: bool = typer.Option(False, "--no-smoke", help="Do not label smoke (band 2 is then all 255)."),
    block_size: int | None = typer.Option(None, help="Block edge in pixels, default 512."),
    min_area: float | None = typer.Option(None, help="Drop polygons smaller than this many m2."),
    simplify: float | None = typer.Option(None, help="Simplify polygons with this tolerance in metres."),
    vector_format: str | None = typer.Option(None, help="geojson (RFC 7946, EPSG:4326) | gpkg (scene CRS)."),
    sensor: str | None = typer.Option(None, help=_SENSOR_HELP),
    bands: str | None = typer.Option(None, help=_BANDS_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
    allow_no_crs: bool = typer.Option(False, "--allow-no-crs", help="Accept scenes without CRS (pixel coords)."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output (-vv for debug)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars, log errors only (results still print)."),
) -> None:
    """Weak labels from classic rules: <stem>.labels.tif (fire/smoke/burn_scar 0/1, 255 = not labelled) + polygons."""
    from rich.table import Table

    from firemap.label import label_config, label_scene

    setup_logging(verbose, quiet)
    cfg = label_config(
        rules=tuple(rules.split(",")) if rules else None, combine=combine, nbr_threshold=nbr_threshold,
        min_dnbr=min_dnbr, smoke=False if no_smoke else None, block_size=block_size, min_area=min_area,
        simplify=simplify, vector_format=vector_format, sensor=sensor, bands=bands, overwrite=overwrite or None,
        allow_no_crs=allow_no_crs or None,
    )
    result = label_scene(scene, out, cfg, pre_fire)
    if quiet:
        return
    table = Table(title=f"firemap label {result.scene.name} ({result.seconds:.1f} s)")
    for col in ("class", "rule", "pixels", "polygons", "area ha"):
        table.add_column(col, justify="left" if col in ("class", "rule") else "right")
    for name, rule in result.rule_text.items():
        table.add_row(name, rule, str(result.pixels[name]), str(result.polygons[name]), f"{result.area_ha[name]:.2f}")
    Console().print(table)
    Console().print(", ".join(str(p) for p in result.outputs.values()), highlight=False, soft_wrap=True)


@app.command()
@handle_errors
def indices(
    scene: Path = typer.Argument(..., help="Input GeoTIFF scene (the post-fire scene for dnbr)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (created if missing)."),
    index: str | None = typer.Option(
        None, help="Comma-separated: nbr, nbr2, ndvi, dnbr, smoke. Default: nbr,nbr2,ndvi (+dnbr with "
        "--pre-fire), skipping those whose bands are absent."),
    pre_fire: Path | None = typer.Option(None, help="Pre-fire scene on the same grid (needed by dnbr)."),
    block_size: int = typer.Option(512, help="Block edge in pixels."),
    sensor: str | None = typer.Option(None, help=_SENSOR_HELP),
    bands: str | None = typer.Option(None, help=_BANDS_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
    allow_no_crs: bool = typer.Option(False, "--allow-no-crs", help="Accept scenes without CRS (pixel coords)."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output (-vv for debug)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars, log errors only (results still print)."),
) -> None:
    """Spectral indices as float32 Cloud-Optimized GeoTIFFs <stem>.<index>.tif (NaN = nodata)."""
    from firemap.label import write_indices

    setup_logging(verbose, quiet)
    paths = write_indices(scene, out, index.split(",") if index else None, pre_fire, sensor, bands, overwrite,
                          block_size, allow_no_crs)
    if not quiet:
        Console().print("\n".join(f"{name}: {path}" for name, path in paths.items()), highlight=False)


# --- simulate commands ---


@app.command()
@handle_errors
def simulate(
    out: Path = typer.Argument(..., help="Output scene GeoTIFF; labels go to OUT.labels.tif beside it."),
    sensor: str = typer.Option("landsat8", help="landsat8 | landsat9 (L1 DN, TOA) | sentinel2 (L2A x 10000, 20 m) "
                               "| hls (L30 x 10000, int16)."),
    size: int = typer.Option(512, help="Scene width and height in pixels (32-16384)."),
    width: int | None = typer.Option(None, help="Scene width in pixels (overrides --size)."),
    height: int | None = typer.Option(None, help="Scene height in pixels (overrides --size)."),
    seed: int = typer.Option(0, help="Random seed: the same options and seed give the same files."),
    fire: bool = typer.Option(True, "--fire/--no-fire", help="An active fire (at least one fire pixel)."),
    smoke: bool = typer.Option(True, "--smoke/--no-smoke", help="A smoke plume."),
    burn_scar: bool = typer.Option(True, "--burn-scar/--no-burn-scar", help="This season's burn scar."),
    clouds: str = typer.Option("few", help="Cloud cover: none | few | some | many, or a fraction 0-0.9."),
    landscape: str | None = typer.Option(None, help="forest | mediterranean | savanna | agricultural | arid "
                                         "[default: random]."),
    swath_edge: bool = typer.Option(False, "--swath-edge", help="Add a nodata wedge outside the swath edge."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output (-vv for debug)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars, log errors only (results still print)."),
) -> None:
    """Simulate a multispectral fire scene in the sensor's encoding, with exact fire/smoke/burn_scar labels."""
    from firemap.simulate import simulate_scene, write_scene

    setup_logging(verbose, quiet)
    scene = simulate_scene(sensor, height or size, width or size, seed, fire=fire, smoke=smoke, burn_scar=burn_scar,
                           clouds=clouds, landscape=landscape, swath_edge=swath_edge)
    scene_path, labels_path = write_scene(scene, out, overwrite=overwrite)
    if not quiet:
        Console().print(f"scene: {scene_path}\nlabels: {labels_path}", highlight=False, soft_wrap=True)


# --- train / evaluate / demo commands ---


def _train_bar(quiet: bool) -> Any:
    """A context manager yielding a per-step progress callback (rich bar with loss and lr), or None when quiet."""
    from contextlib import contextmanager

    from rich import progress as rp

    @contextmanager
    def bar() -> Any:
        if quiet:
            yield None
            return
        columns = (rp.TextColumn("epoch {task.fields[epoch]}"), rp.BarColumn(), rp.MofNCompleteColumn(),
                   rp.TextColumn("loss {task.fields[loss]:.4f} lr {task.fields[lr]:.2e}"), rp.TimeElapsedColumn(),
                   rp.TimeRemainingColumn())
        with rp.Progress(*columns, console=console) as progress:
            task = progress.add_task("train", total=None, epoch=1, loss=float("nan"), lr=0.0)

            def update(step: int, total: int, info: dict[str, float]) -> None:
                progress.update(task, completed=step, total=total, **info)

            yield update

    return bar()


def _train_command(config: Path, overrides: dict[str, Any], verbose: int, quiet: bool) -> None:
    from firemap.train.loop import run_training

    setup_logging(max(verbose, 1), quiet)  # epoch summaries are INFO
    with _train_bar(quiet) as progress:
        result = run_training(config, overrides, progress)
    Console().print(f"best: {result.best}\nlast: {result.last}\nlog: {result.out / 'log.csv'}", highlight=False,
                    soft_wrap=True)


@app.command()
@handle_errors
def train(
    config: Path = typer.Argument(..., help="Training YAML (configs/deeplabv3plus.yaml, configs/unet.yaml)."),
    out: str | None = typer.Option(None, help="Run folder (bundles, train_state.pt, log.csv)."),
    init: str | None = typer.Option(None, help="none | imagenet (downloads smp weights) | PATH to a bundle or an "
                                    "smp/timm encoder state dict."),
    epochs: int | None = typer.Option(None, help="Epochs."),
    steps_per_epoch: int | None = typer.Option(None, help="Optimizer steps per epoch."),
    batch_size: int | None = typer.Option(None, help="Tiles per step."),
    lr: float | None = typer.Option(None, help="Base (decoder) learning rate."),
    device: str | None = typer.Option(None, help="auto | cpu | cuda."),
    precision: str | None = typer.Option(None, help="auto | fp32 | bf16 | fp16."),
    seed: int | None = typer.Option(None, help="Random seed."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its train_state.pt."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Reuse a non-empty run folder from scratch."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output (-vv for debug)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars, log errors only (results still print)."),
) -> None:
    """Train a model from a YAML config (multi-GPU: torchrun --nproc_per_node=N --no-python firemap train CONFIG)."""
    _train_command(config, {
        "out": out, "init": init, "epochs": epochs, "steps_per_epoch": steps_per_epoch,
        "data.batch_size": batch_size, "optim.lr": lr, "device": device, "precision": precision, "seed": seed,
        "resume": resume or None, "overwrite": overwrite or None,
    }, verbose, quiet)


@app.command()
@handle_errors
def finetune(
    config: Path = typer.Argument(..., help="Fine-tuning YAML (configs/finetune.yaml)."),
    init: str | None = typer.Option(None, help="Bundle or encoder state dict to start from [default: the config's]."),
    freeze_encoder_epochs: int | None = typer.Option(None, help="Train only decoder and head for N first epochs."),
    encoder_lr_mult: float | None = typer.Option(None, help="Encoder learning rate = lr x this (e.g. 0.1)."),
    out: str | None = typer.Option(None, help="Run folder."),
    epochs: int | None = typer.Option(None, help="Epochs."),
    lr: float | None = typer.Option(None, help="Base (decoder) learning rate."),
    device: str | None = typer.Option(None, help="auto | cpu | cuda."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Reuse a non-empty run folder from scratch."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output (-vv for debug)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars, log errors only (results still print)."),
) -> None:
    """Fine-tune a trained model on new data: kernels mapped by band name, heads by class name."""
    _train_command(config, {
        "init": init, "freeze_encoder_epochs": freeze_encoder_epochs, "optim.encoder_lr_mult": encoder_lr_mult,
        "out": out, "epochs": epochs, "optim.lr": lr, "device": device, "resume": resume or None,
        "overwrite": overwrite or None,
    }, verbose, quiet)


def _eval_table(report: Any) -> None:
    from rich.table import Table

    s = report.summary()
    table = Table(title=f"firemap evaluate: {report.model} on {report.source} ({len(report.scenes)} scenes)")
    for col in ("class", "method", "IoU", "F1", "precision", "recall", "IoU scene mean"):
        table.add_column(col, justify="left" if col in ("class", "method") else "right")

    def cell(key: str) -> str:
        v = s.get(key)
        return "-" if v is None or v != v else f"{v:.3f}"

    for name in report.labelled:
        table.add_row(name, "model", *(cell(f"{name}_{m}") for m in ("iou", "f1", "precision", "recall",
                                                                        "iou_scene_mean")))
        base = "fire_rules" if name == "fire" else "nbr" if name == "burn_scar" else None
        if base and f"baseline_{base}_{name}_iou" in s:
            label = "classic rules (vote)" if base == "fire_rules" else "NBR < -0.05"
            table.add_row("", label, *(cell(f"baseline_{base}_{name}_{m}") for m in ("iou", "f1", "precision",
                                                                                   "recall")), "")
        if name == "burn_scar" and "baseline_best_nbr_iou_pooled" in s:
            table.add_row("", f"NBR < {s['baseline_best_nbr_threshold_pooled']:+.2f} (best, hindsight)",
                          cell("baseline_best_nbr_iou_pooled"), "", "", "", cell("baseline_best_nbr_iou_scene_mean"))
    Console().print(table)
    extra = [f"macro IoU {cell('macro_iou')}", f"predicted fire objects {s.get('predicted_fire_objects', 0)}"]
    if "fire_object_recall" in s:
        extra.append(f"fire object recall {cell('fire_object_recall')} of {s['fire_objects']} clusters")
    Console().print(", ".join(extra), highlight=False)


@app.command()
@handle_errors
def evaluate(
    images: Path = typer.Option(..., help="Folder (or glob) of image GeoTIFFs."),
    masks: Path | None = typer.Option(None, help="Folder of masks named like the images [default: <stem>.labels.tif "
                                      "beside each image]."),
    model: Path | None = typer.Option(None, help="Model bundle; default: the shipped model."),
    mask_format: str = typer.Option("values", help="values (one band, values -> classes) | bands (one 0/1 band "
                                    "per class, 255 = not labelled, as written by simulate/label)."),
    mask_value: list[str] | None = typer.Option(None, help="CLASS=V[,V...] for --mask-format values (repeatable) "
                                                "[default: burn_scar=1]."),
    labelled: list[str] | None = typer.Option(None, help="Classes the masks label, e.g. burn_scar [default: those "
                                              "of the mask format]."),
    sensor: str | None = typer.Option(None, help="Sensor preset (see firemap predict --help)."),
    bands: str | None = typer.Option(None, help="Band mapping CANON=SRC[:SCALE[:OFFSET]],..."),
    tile_size: int | None = typer.Option(None, help="Tile size [default: the model's]."),
    overlap: int | None = typer.Option(None, help="Tile overlap [default: the model's]."),
    tta: str = typer.Option("none", help="none | flip | d4."),
    tta_scales: str | None = typer.Option(None, help="Multi-scale inference factors, e.g. 0.75,1,1.25."),
    crf: bool = typer.Option(False, "--crf", help="Refine probabilities with the mean-field CRF."),
    threshold: list[str] | None = typer.Option(
        None, help="Per-class probability threshold CLASS=P (repeatable); default: the model's calibrated one, else 0.5"
    ),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
    json_out: Path | None = typer.Option(None, "--json", help="Write all metrics (per scene too) to this JSON."),
    baselines: bool = typer.Option(True, "--baselines/--no-baselines", help="Score classic index baselines too."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --json file."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output (-vv for debug)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars, log errors only (results still print)."),
) -> None:
    """Score a model on labelled scenes through the predict path: IoU/F1/precision/recall, fire object recall."""
    from firemap.config import PredictConfig, parse_scales, parse_thresholds, validate
    from firemap.train.evaluate import evaluate as run_evaluate
    from firemap.train.evaluate import scene_source

    setup_logging(verbose, quiet)
    src = scene_source(images, masks, mask_format, mask_value, labelled, sensor, bands)
    cfg = validate(PredictConfig, {k: v for k, v in {
        "tile_size": tile_size, "overlap": overlap, "tta": tta, "tta_scales": parse_scales(tta_scales),
        "crf": crf, "device": device, "overwrite": overwrite,
        "thresholds": parse_thresholds(threshold, ("fire", "smoke", "burn_scar")),
    }.items() if v is not None}, "options")
    with _progress(quiet) as factory:
        report = run_evaluate(model, src, cfg, json_out, baselines, factory)
    _eval_table(report)
    if json_out:
        Console().print(f"metrics: {json_out}", highlight=False, soft_wrap=True)


@app.command()
@handle_errors
def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", "-o", help="Output folder."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace earlier demo outputs."),
    sensor: str = typer.Option("landsat8", help="Simulated sensor: landsat8 | landsat9 | sentinel2 | hls."),
    size: int = typer.Option(512, help="Scene size in pixels."),
    seed: int = typer.Option(1, help="Simulator seed."),
    landscape: str | None = typer.Option("forest", help="forest | mediterranean | savanna | agricultural | arid."),
    model: Path | None = typer.Option(None, help="Model bundle; default: the shipped model."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output (-vv for debug)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars, log errors only (results still print)."),
) -> None:
    """Simulate a fire scene, map it with the default model, write the outputs and a PNG quicklook."""
    from firemap.demo import run_demo

    setup_logging(verbose, quiet)
    result = run_demo(out, overwrite, sensor, size, seed, model, landscape)
    if quiet:
        return
    lines = [f"simulated scene: {result.scene}", f"true labels: {result.labels}"]
    lines += [f"{kind}: {path}" for kind, path in result.outputs.items()]
    lines.append(f"quicklook (left: true labels, right: prediction): {result.quicklook}")
    lines.append("mapped: " + ", ".join(f"{c} {result.area_ha[c]:.1f} ha in {result.polygons[c]} polygons"
                                        for c in result.area_ha))
    Console().print("\n".join(lines), highlight=False, soft_wrap=True)
