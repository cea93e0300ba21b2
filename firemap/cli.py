"""The ``firemap`` command line: a thin Typer layer over the library.

Each command parses options, builds a typed config, calls one library function and reports. Any
``FiremapError`` becomes a one-line message on stderr and exit code 1. Log level is set here only (-v/-q).
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_args

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from firemap import __version__
from firemap.bands import CANONICAL_BANDS, SENSORS
from firemap.config import VectorFormat
from firemap.errors import ConfigError, FiremapError, InterruptedRun, boundary_error

# rich_markup_mode=None: help texts are plain text, so "[default: ...]" written in them is not eaten as Rich markup
app = typer.Typer(
    add_completion=False, no_args_is_help=True, rich_markup_mode=None,
    help="Map active fire, smoke and burn scars in satellite scenes.",
)
console = Console(stderr=True)
log = logging.getLogger("firemap")

F = TypeVar("F", bound=Callable[..., Any])


# --- options shared by several commands: declared once (the model is rasterio's rio/options.py) ---


def _sensor_help() -> str:
    by_text: dict[str, list[str]] = {}
    for name, preset in SENSORS.items():
        by_text.setdefault(preset.description, []).append(name)
    presets = "; ".join(f"{', '.join(names)}: {text}" for text, names in by_text.items())
    return f"Sensor preset for band naming and scaling. {presets}. Guessed from band descriptions when omitted."


SENSOR_HELP = _sensor_help()
BANDS_HELP = (
    "Explicit band mapping CANON=SRC[:SCALE[:OFFSET]],... with SRC a 1-based index or a band description, "
    f"e.g. 'red=3,nir=4,swir2=B12:0.0001'. Canonical: {', '.join(CANONICAL_BANDS)}."
)
VECTOR_FORMATS: tuple[str, ...] = get_args(VectorFormat)

Verbose = Annotated[int, typer.Option("--verbose", "-v", count=True, help="More log output (-vv for debug).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars, log errors only (results still print).")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")]
LANDSCAPES = ("forest", "mediterranean", "savanna", "agricultural", "arid", "tropical_savanna", "wetland", "laterite",
              "desert", "volcanic", "coastal_city")
"""The simulator's landscapes (``firemap.simulate.landscape.LANDSCAPES``, which imports cv2/scipy: not at start-up;
tests/test_cli_help.py checks the two agree)."""
LANDSCAPE_HELP = " | ".join(LANDSCAPES)
AllowNoCrs = Annotated[bool, typer.Option("--allow-no-crs", help="Accept scenes without CRS (pixel coords).")]
Sensor = Annotated[str | None, typer.Option(help=SENSOR_HELP)]
Bands = Annotated[str | None, typer.Option(help=BANDS_HELP)]
OutDir = Annotated[Path, typer.Option("--out", "-o", help="Output folder (created if missing).")]
MinArea = Annotated[float | None, typer.Option(help="Drop polygons smaller than this many m2.")]
Simplify = Annotated[float | None, typer.Option(help="Simplify polygons with this tolerance in metres.")]
VectorFormatOption = Annotated[str | None, typer.Option(
    help=f"{' | '.join(VECTOR_FORMATS)}: GeoJSON is RFC 7946 (EPSG:4326), GeoPackage keeps the scene CRS.")]

_group_logging = {"verbose": 0, "quiet": False}
"""-v/-q given before the command (``firemap -v predict ...``); per-command flags add to them."""


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    """Route library logging to stderr: WARNING by default, INFO with -v, DEBUG with -vv, ERROR with -q.

    The group's -v/-q (before the command name) count too.
    """
    verbose = max(verbose, int(_group_logging["verbose"]))
    quiet = quiet or bool(_group_logging["quiet"])
    level = logging.ERROR if quiet else [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, format="%(message)s", handlers=[RichHandler(console=console, show_path=False)],
                        force=True)
    logging.captureWarnings(True)
    logging.getLogger("pyogrio").setLevel(max(level, logging.WARNING))


def is_quiet(quiet: bool) -> bool:
    """-q given to the command or to the group."""
    return quiet or bool(_group_logging["quiet"])


def _fail(exc: FiremapError) -> None:
    text = " ".join(str(exc).split())  # one line, whatever the message
    console.print(f"[bold red]error:[/] {escape(text)}", highlight=False, soft_wrap=True)
    raise typer.Exit(1) from None


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While a command runs, SIGTERM unwinds like Ctrl-C (temporaries and locks are removed on the way out)."""

    def handler(signum: int, frame: object) -> None:
        raise InterruptedRun(signum)

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def handle_errors(func: F) -> F:
    """The error boundary of every command: FiremapError, and I/O, GDAL, OGR or torch-loading failures mapped to
    typed firemap errors, become a one-line message and exit code 1; Ctrl-C exits 130 and SIGTERM 143, both
    after removing this run's temporaries. Anything else is a bug and keeps its traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with _sigterm_as_interrupt():
                return func(*args, **kwargs)
        except FiremapError as exc:
            _fail(exc)
        except KeyboardInterrupt as exc:
            signum = exc.signum if isinstance(exc, InterruptedRun) else signal.SIGINT
            name = "terminated" if signum == signal.SIGTERM else "interrupted"
            console.print(f"[bold red]{name}[/]: no partial output was left under a final name")
            raise typer.Exit(128 + signum) from None
        except Exception as exc:
            mapped = boundary_error(exc)
            if mapped is None:
                raise
            _fail(mapped)

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"firemap {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """firemap: active fire, smoke and burn-scar maps from Landsat-8/9, Sentinel-2 and HLS scenes."""
    _group_logging.update(verbose=verbose, quiet=quiet)
    setup_logging()


def main() -> None:
    """Console-script entry point."""
    app()


# Commands are added below, one small function each. Helpers: keep your command in its own block.

# --- predict path commands ---

@app.command()
@handle_errors
def predict(
    scenes: Annotated[list[Path], typer.Argument(help="Input GeoTIFF scene(s).")],
    out: OutDir,
    model: Path | None = typer.Option(
        None, help="Model bundle (.firemap.pt); default: the shipped model of each scene's sensor family (Landsat "
        "or other)."),
    config: Path | None = typer.Option(None, help="YAML with predict options (configs/predict.yaml); flags win."),
    sensor: Sensor = None,
    bands: Bands = None,
    tile_size: int | None = typer.Option(None, help="Tile size in pixels (multiple of the network stride)."),
    overlap: int | None = typer.Option(None, help="Tile overlap in pixels (< tile size)."),
    batch_size: str | None = typer.Option(
        None, help="Tiles per forward pass, or auto: on CUDA the largest batch free GPU memory holds (default 8)."),
    device: str | None = typer.Option(None, help="auto | cpu | cuda (default auto: CUDA when available)."),
    precision: str | None = typer.Option(
        None, help="auto | fp32 | bf16 | fp16 (default auto: fp16 on CUDA, fp32 on CPU)."
    ),
    runtime: str | None = typer.Option(
        None, help="auto | torch | openvino (default auto: OpenVINO if installed, for CPU fp32 jobs of >= 256 tiles)."),
    cuda_graphs: bool = typer.Option(
        False, "--cuda-graphs", help="CUDA: replay the full-batch forward pass from a captured CUDA graph (off)."),
    tta: str | None = typer.Option(None, help="Test-time augmentation: none | flip | d4 (default none)."),
    tta_scales: str | None = typer.Option(
        None, help="Multi-scale inference: comma list of resize factors, e.g. 0.75,1,1.25 (default 1)."
    ),
    crf: bool = typer.Option(False, "--crf", help="Refine probabilities with a local mean-field CRF (off)."),
    bn_adapt: float | None = typer.Option(
        None, min=0.0, max=1.0, help="Weight in [0, 1] of each scene's own BatchNorm statistics, mixed with the "
        "training ones (test-time adaptation); 0 = training statistics [default: the model's]."),
    threshold: list[str] | None = typer.Option(
        None, help="Per-class probability threshold CLASS=P (repeatable), CLASS one of the model's classes; "
        "default: the model's calibrated one, else 0.5"
    ),
    min_area: MinArea = None,
    simplify: Simplify = None,
    vector_format: VectorFormatOption = None,
    save_probs: bool = typer.Option(False, "--save-probs", help="Also write <stem>.probs.tif (uint8, p x 255)."),
    overwrite: Overwrite = False,
    allow_no_crs: AllowNoCrs = False,
    resolution: float | None = typer.Option(
        None, help="Pixel size (CRS units) to resample to; default: the finest grid of a product's bands."),
    workers: int | None = typer.Option(
        None, help="Run one task per scene on a local Dask cluster of N single-threaded worker processes."),
    scheduler: str | None = typer.Option(None, help="Run on an existing Dask scheduler (tcp://host:8786)."),
    resume: bool = typer.Option(False, "--resume", help="Skip scenes whose outputs are complete."),
    manifest: Path | None = typer.Option(
        None, help="JSON record of the job (default with --workers/--scheduler/--resume: OUT/firemap-manifest.json)."),
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Map fire, smoke and burn scars: class COG + QGIS style + polygons per scene.

    A scene is a GeoTIFF/VRT, a folder of per-band files (Landsat + MTL, Sentinel-2, HLS, SAFE), an *_MTL.txt
    or a STAC Item JSON.
    """
    from firemap.config import PredictConfig, load_yaml, parse_scales, parse_thresholds, validate
    from firemap.predict import predict_scenes

    setup_logging(verbose, quiet)
    options = {
        "sensor": sensor, "bands": bands, "tile_size": tile_size, "overlap": overlap, "batch_size": batch_size,
        "device": device, "precision": precision, "cuda_graphs": cuda_graphs or None, "runtime": runtime,
        "tta": tta,
        "tta_scales": parse_scales(tta_scales),
        "crf": crf or None, "bn_adapt": bn_adapt, "min_area": min_area, "simplify": simplify,
        "vector_format": vector_format, "save_probs": save_probs or None, "overwrite": overwrite or None,
        "allow_no_crs": allow_no_crs or None, "resolution": resolution,
        "thresholds": parse_thresholds(threshold, [t.partition("=")[0] for t in threshold or []]) or None,
    }  # --threshold classes are checked against the model's classes once the bundle is loaded
    cfg = (load_yaml(config, PredictConfig, options) if config
           else validate(PredictConfig, {k: v for k, v in options.items() if v is not None}, "command line"))
    if workers is not None or scheduler or resume or manifest or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        _predict_job(scenes, out, model, cfg, workers, scheduler, resume, manifest, is_quiet(quiet))
        return
    with _progress(is_quiet(quiet)) as factory:
        results = predict_scenes(scenes, out, model, cfg, factory)
    _summary(results)


def _predict_job(scenes: list[Path], out: Path, model: Path | None, cfg: Any, workers: int | None,
                 scheduler: str | None, resume: bool, manifest: Path | None, quiet: bool) -> None:
    """Many scenes, one task each (Dask / torchrun / in-process); exit 1 when any scene failed."""
    from firemap.distributed import predict_job

    def report(o: Any) -> None:
        if not quiet:
            console.print(f"{o.status:>7} {o.scene}" + (f" ({o.seconds:.1f} s)" if o.seconds else ""),
                          highlight=False, soft_wrap=True)

    job = predict_job(scenes, out, model, cfg, workers, scheduler, resume, manifest, report)
    counts = {k: sum(o.status == k for o in job.outcomes) for k in ("done", "skipped", "failed")}
    Console().print(f"firemap predict: {counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed;"
                    f" manifest {job.manifest}", highlight=False, soft_wrap=True)
    if job.failed:
        for o in job.failed:  # errors mostly name their scene already
            text = o.error if o.error and Path(o.scene).name in o.error else f"{o.scene}: {o.error}"
            console.print(f"[bold red]failed:[/] {text}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


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
    sensor: Sensor = None,
    bands: Bands = None,
    model: str | None = typer.Option(
        None, help="Describe a model bundle instead: its path, or 'default' for the shipped model (with --sensor: "
        "the default of that sensor's family, e.g. --sensor landsat8-l1)."
    ),
) -> None:
    """Show a scene's CRS, size, resolution, dtype, nodata, band descriptions and how its bands resolve.

    With --model: a bundle's network, bands, classes, thresholds, provenance and measured metrics.
    """
    from rich.table import Table

    out = Console()
    if model is not None:
        from firemap.models import default_bundle_path, describe_bundle, load_bundle

        for name, value in describe_bundle(load_bundle(default_bundle_path(sensor) if model == "default" else model)):
            out.print(f"[bold]{name:>22}[/]: {value}", highlight=False, soft_wrap=True)
        return
    if scene is None:
        raise ConfigError("give a scene to describe, or --model PATH|default")

    from firemap.raster import describe_scene

    _info, fields, rows = describe_scene(scene, sensor, bands)
    for name, value in fields:
        out.print(f"[bold]{name:>10}[/]: {value}", highlight=False)
    table = Table(title="bands")
    for col in ("#", "description", "canonical", "physical value", "scaling from"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    out.print(table)


# --- classic rules commands (label, indices) ---


@app.command()
@handle_errors
def export(
    model: str = typer.Argument(help="Model bundle (.firemap.pt), or 'default' for the shipped model."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the result here (default: replace MODEL)."),
    overwrite: Overwrite = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Add the exported inference network (TorchScript, BatchNorm folded) to a bundle, so predict loads it with
    torch alone. Bundles saved by train/finetune already carry it; weights and config are kept as they are.
    """
    from firemap.models import default_bundle_path, export_bundle

    setup_logging(verbose, quiet)
    path = default_bundle_path() if model == "default" else Path(model)
    target = export_bundle(path, out, overwrite)
    Console().print(f"[green]{path}[/] -> {target} (with its exported network)", highlight=False, soft_wrap=True)


@app.command()
@handle_errors
def label(
    scene: Annotated[Path, typer.Argument(help="Input GeoTIFF scene (the post-fire scene with --pre-fire).")],
    out: OutDir,
    pre_fire: Path | None = typer.Option(None, help="Pre-fire scene on the same grid: burn scars by dNBR >= 0.1."),
    rules: str | None = typer.Option(
        None, help="Fire rules, comma-separated: schroeder, murphy, kumar-roy, sentinel2. Default by sensor: "
        "Landsat schroeder,murphy,kumar-roy; Sentinel-2 sentinel2; HLS murphy (rules whose bands are absent are "
        "skipped; named rules must fit)."),
    fire_tests: str | None = typer.Option(
        None, help="all (default: every test the bands allow; skipped ones are logged and tagged) | unambiguous "
        "(confident labels: fire = unambiguous tests, 255 around them and on loose candidates)."),
    combine: str | None = typer.Option(None, help="voting (majority: 2 of 3) | intersection | union, default voting"),
    nbr_threshold: float | None = typer.Option(None, help="Single-date burn scar: NBR < this, default -0.05."),
    min_dnbr: float | None = typer.Option(None, help="With --pre-fire: burn scar where dNBR >= this, default 0.1."),
    unburnt_dnbr: float | None = typer.Option(
        None, help="With --pre-fire: not burnt (0) only where dNBR < this; 255 between it and --min-dnbr."),
    pre_burnt_nbr: float | None = typer.Option(
        None, help="With --pre-fire: 255 (neither burnt nor not) where the pre-fire NBR < this (already burnt)."),
    no_smoke: bool = typer.Option(False, "--no-smoke", help="Do not label smoke (band 2 is then all 255)."),
    block_size: int | None = typer.Option(None, help="Block edge in pixels, default 512."),
    min_area: MinArea = None,
    simplify: Simplify = None,
    vector_format: VectorFormatOption = None,
    sensor: Sensor = None,
    bands: Bands = None,
    overwrite: Overwrite = False,
    allow_no_crs: AllowNoCrs = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Weak labels from classic rules: <stem>.labels.tif (fire/smoke/burn_scar 0/1, 255 = not labelled) + polygons."""
    from rich.table import Table

    from firemap.label import label_config, label_scene

    setup_logging(verbose, quiet)
    cfg = label_config(
        rules=tuple(rules.split(",")) if rules else None, fire_tests=fire_tests, combine=combine,
        nbr_threshold=nbr_threshold, min_dnbr=min_dnbr, unburnt_dnbr=unburnt_dnbr, pre_burnt_nbr=pre_burnt_nbr,
        smoke=False if no_smoke else None, block_size=block_size, min_area=min_area, simplify=simplify,
        vector_format=vector_format, sensor=sensor, bands=bands, overwrite=overwrite or None,
        allow_no_crs=allow_no_crs or None,
    )
    result = label_scene(scene, out, cfg, pre_fire)
    if is_quiet(quiet):
        return
    table = Table(title=f"firemap label {result.scene.name} ({result.seconds:.1f} s)")
    for col in ("class", "rule", "pixels", "polygons", "area ha"):
        table.add_column(col, justify="left" if col in ("class", "rule") else "right")
    for name, rule in result.rule_text.items():
        table.add_row(name, rule, str(result.pixels[name]), str(result.polygons[name]), f"{result.area_ha[name]:.2f}")
    Console().print(table)
    for line in result.skipped:
        Console().print(f"fire test skipped: {line}", highlight=False, soft_wrap=True)
    Console().print(", ".join(str(p) for p in result.outputs.values()), highlight=False, soft_wrap=True)


@app.command()
@handle_errors
def indices(
    scene: Annotated[Path, typer.Argument(help="Input GeoTIFF scene (the post-fire scene for dnbr).")],
    out: OutDir,
    index: str | None = typer.Option(
        None, help="Comma-separated: nbr, nbr2, ndvi, dnbr, smoke. Default: nbr,nbr2,ndvi (+dnbr with "
        "--pre-fire), skipping those whose bands are absent."),
    pre_fire: Path | None = typer.Option(None, help="Pre-fire scene on the same grid (needed by dnbr)."),
    block_size: int = typer.Option(512, help="Block edge in pixels."),
    sensor: Sensor = None,
    bands: Bands = None,
    overwrite: Overwrite = False,
    allow_no_crs: AllowNoCrs = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Spectral indices as float32 Cloud-Optimized GeoTIFFs <stem>.<index>.tif (NaN = nodata)."""
    from firemap.label import write_indices

    setup_logging(verbose, quiet)
    paths = write_indices(scene, out, index.split(",") if index else None, pre_fire, sensor, bands, overwrite,
                          block_size, allow_no_crs)
    if not is_quiet(quiet):
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
    landscape: str | None = typer.Option(None, help=f"{LANDSCAPE_HELP} [default: random]."),
    swath_edge: bool = typer.Option(False, "--swath-edge", help="Add a nodata wedge outside the swath edge."),
    overwrite: Overwrite = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
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
                fields: dict[str, Any] = dict(info)  # epoch, loss, lr: the columns' task fields
                progress.update(task, completed=step, total=total, **fields)

            yield update

    return bar()


def _train_command(config: Path, overrides: dict[str, Any], verbose: int, quiet: bool) -> None:
    from firemap.train.loop import run_training

    setup_logging(max(verbose, 1), quiet)  # epoch summaries are INFO
    with _train_bar(is_quiet(quiet)) as progress:
        result = run_training(config, overrides, progress)
    Console().print(f"best: {result.best}\nlast: {result.last}\nlog: {result.out / 'log.csv'}", highlight=False,
                    soft_wrap=True)


@app.command()
@handle_errors
def train(
    config: Path = typer.Argument(..., help="Training YAML (configs/deeplabv3plus.yaml, configs/unet.yaml)."),
    out: str | None = typer.Option(None, help="Run folder (bundles, train_state.pt, log.csv)."),
    init: str | None = typer.Option(None, help="none | imagenet (downloads smp weights) | default (the shipped "
                                    "model) | PATH to a bundle or an smp/timm encoder state dict."),
    epochs: int | None = typer.Option(None, help="Epochs."),
    steps_per_epoch: int | None = typer.Option(None, help="Optimizer steps per epoch."),
    batch_size: int | None = typer.Option(None, help="Tiles per step."),
    lr: float | None = typer.Option(None, help="Base (decoder) learning rate."),
    device: str | None = typer.Option(None, help="auto | cpu | cuda."),
    precision: str | None = typer.Option(None, help="auto | fp32 | bf16 | fp16."),
    seed: int | None = typer.Option(None, help="Random seed."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its train_state.pt."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Reuse a non-empty run folder from scratch."),
    verbose: Verbose = 0,
    quiet: Quiet = False,
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
    init: str | None = typer.Option(None, help="'default' (the shipped model), a bundle or an encoder state dict to "
                                    "start from; the model keys the config leaves out are the bundle's "
                                    "[default: the config's]."),
    freeze_encoder_epochs: int | None = typer.Option(None, help="Train only decoder and head for N first epochs."),
    encoder_lr_mult: float | None = typer.Option(None, help="Encoder learning rate = lr x this (e.g. 0.1)."),
    out: str | None = typer.Option(None, help="Run folder."),
    epochs: int | None = typer.Option(None, help="Epochs."),
    steps_per_epoch: int | None = typer.Option(None, help="Optimizer steps per epoch."),
    batch_size: int | None = typer.Option(None, help="Tiles per step."),
    lr: float | None = typer.Option(None, help="Base (decoder) learning rate."),
    device: str | None = typer.Option(None, help="auto | cpu | cuda."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Reuse a non-empty run folder from scratch."),
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Fine-tune a trained model on new data: the init bundle's network, kernels mapped by band name, heads by class."""
    _train_command(config, {
        "init": init, "freeze_encoder_epochs": freeze_encoder_epochs, "optim.encoder_lr_mult": encoder_lr_mult,
        "out": out, "epochs": epochs, "steps_per_epoch": steps_per_epoch, "data.batch_size": batch_size,
        "optim.lr": lr, "device": device, "resume": resume or None, "overwrite": overwrite or None,
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
        extra.append(f"fire object recall {cell('fire_object_recall')} of {s['fire_objects']} fire objects")
    Console().print(", ".join(extra), highlight=False)
    _eval_scene_table(report)


def _eval_scene_table(report: Any) -> None:
    """One row per scene: IoU/F1/precision/recall per labelled class, fire objects, in-training flag."""
    from rich.table import Table

    table = Table(title="per scene (* = in the model's training data: in-sample)")
    columns = ["scene"] + [f"{c} {m}" for c in report.labelled for m in ("IoU", "F1", "precision", "recall")]
    columns += ["fire objects hit"] if "fire" in report.labelled else []
    for col in [*columns, "predicted fire objects"]:
        table.add_column(col, justify="left" if col == "scene" else "right")
    for sc in report.scenes:
        summary = sc.confusion.summary()
        row = [sc.scene + (" *" if sc.in_training else "")]
        for c in report.labelled:
            row += [_fmt(summary.get(f"{c}_{m}")) for m in ("iou", "f1", "precision", "recall")]
        row += [f"{sc.fire_objects[0]}/{sc.fire_objects[1]}"] if "fire" in report.labelled else []
        table.add_row(*row, str(sc.predicted_fire_objects))
    Console().print(table)
    trained = [sc.scene for sc in report.scenes if sc.in_training]
    if trained:
        Console().print(f"[yellow]in-sample:[/] {', '.join(trained)} in the model's training data", highlight=False)


def _fmt(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.3f}"


@app.command()
@handle_errors
def evaluate(
    images: Path = typer.Option(..., help="Folder (or glob) of image GeoTIFFs."),
    masks: Path | None = typer.Option(None, help="Folder of masks named like the images [default: <stem>.labels.tif "
                                      "beside each image]."),
    model: Path | None = typer.Option(
        None, help="Model bundle; default: the shipped model of the scenes' sensor family."),
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
    bn_adapt: float | None = typer.Option(
        None, min=0.0, max=1.0, help="Weight in [0, 1] of each scene's own BatchNorm statistics, mixed with the "
        "training ones (test-time adaptation); 0 = training statistics [default: the model's]."),
    threshold: list[str] | None = typer.Option(
        None, help="Per-class probability threshold CLASS=P (repeatable); default: the model's calibrated one, else 0.5"
    ),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
    json_out: Path | None = typer.Option(None, "--json", help="Write all metrics (per scene too) to this JSON."),
    baselines: bool = typer.Option(True, "--baselines/--no-baselines", help="Score classic index baselines too."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --json file."),
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Score a model on labelled scenes through the predict path: IoU/F1/precision/recall, fire object recall."""
    from firemap.config import PredictConfig, parse_scales, parse_thresholds, validate
    from firemap.train.evaluate import evaluate as run_evaluate
    from firemap.train.evaluate import scene_source

    setup_logging(verbose, quiet)
    src = scene_source(images, masks, mask_format, mask_value, labelled, sensor, bands)
    cfg = validate(PredictConfig, {k: v for k, v in {
        "tile_size": tile_size, "overlap": overlap, "tta": tta, "tta_scales": parse_scales(tta_scales),
        "crf": crf, "bn_adapt": bn_adapt, "device": device, "overwrite": overwrite,
        "thresholds": parse_thresholds(threshold, ("fire", "smoke", "burn_scar")),
    }.items() if v is not None}, "options")
    with _progress(is_quiet(quiet)) as factory:
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
    landscape: str | None = typer.Option("forest", help=f"{LANDSCAPE_HELP}."),
    model: Path | None = typer.Option(None, help="Model bundle; default: the shipped model."),
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Simulate a fire scene, map it with the default model, write the outputs and a PNG quicklook."""
    from firemap.demo import run_demo

    setup_logging(verbose, quiet)
    result = run_demo(out, overwrite, sensor, size, seed, model, landscape)
    if is_quiet(quiet):
        return
    lines = [f"simulated scene: {result.scene}", f"true labels: {result.labels}"]
    lines += [f"{kind}: {path}" for kind, path in result.outputs.items()]
    lines.append(f"quicklook (left: true labels, right: prediction): {result.quicklook}")
    lines.append("mapped: " + ", ".join(f"{c} {result.area_ha[c]:.1f} ha in {result.polygons[c]} polygons"
                                        for c in result.area_ha))
    Console().print("\n".join(lines), highlight=False, soft_wrap=True)


# --- weak supervision (pseudolabel) command ---


@app.command()
@handle_errors
def pseudolabel(
    labels: Path = typer.Argument(..., help="CSV or YAML of image-level labels: scene, optional window "
                                  "(col,row,width,height), fire/smoke/burn_scar = present|absent|unknown."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (created if missing)."),
    method: str = typer.Option("walk", help="walk (CAM + AffinityNet random walk) | cam (CAM alone)."),
    encoder: str | None = typer.Option(None, help="smp encoder of both networks (default resnet18)."),
    cam_steps: int | None = typer.Option(None, help="Classifier training steps (default 300)."),
    aff_steps: int | None = typer.Option(None, help="AffinityNet training steps (default 300)."),
    radius: int | None = typer.Option(None, help="Affinity radius gamma in walk nodes (default 5)."),
    beta: float | None = typer.Option(None, help="Affinity power beta (default 8)."),
    iterations: int | None = typer.Option(None, help="Random-walk iterations t (default 256)."),
    walk_stride: int | None = typer.Option(None, help="Pixels per walk node: 1, 2, 4 or 8 (default 4)."),
    margin: float | None = typer.Option(None, help="Unsure (255) when the best score leads by less (default 0.05)."),
    label_outside: bool = typer.Option(False, "--label-outside", help="Also label pixels outside the windows."),
    save_cam: bool = typer.Option(False, "--save-cam", help="Also write <stem>.cam.tif (normalized CAMs)."),
    save_walk: bool = typer.Option(False, "--save-walk", help="Also write <stem>.walk.tif (walked scores)."),
    block_size: int | None = typer.Option(None, help="Walk block edge, pixels, multiple of 8 (default 512)."),
    halo: int | None = typer.Option(None, help="Walk block halo, pixels, multiple of 8 (default 128)."),
    sensor: Sensor = None,
    bands: Bands = None,
    seed: int | None = typer.Option(None, help="Random seed (default 0)."),
    threads: int | None = typer.Option(None, help="torch CPU threads (default torch's)."),
    overwrite: Overwrite = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Pseudo masks from image-level labels: CAMs + AffinityNet random walk (Ahn & Kwak 2018), for firemap train."""
    from firemap.config import validate
    from firemap.weak.config import WeakConfig
    from firemap.weak.pseudolabel import pseudolabel as run_pseudolabel

    setup_logging(verbose, quiet)
    cfg = validate(WeakConfig, {k: v for k, v in {
        "method": method, "encoder": encoder, "cam_steps": cam_steps, "aff_steps": aff_steps, "radius": radius,
        "beta": beta, "iterations": iterations, "walk_stride": walk_stride, "margin": margin,
        "label_outside": label_outside, "save_cam": save_cam, "save_walk": save_walk, "block_size": block_size,
        "halo": halo, "sensor": sensor, "band_spec": bands, "seed": seed, "threads": threads, "overwrite": overwrite,
    }.items() if v is not None}, "command line")
    with _progress(is_quiet(quiet)) as factory:
        results = run_pseudolabel(labels, out, cfg, factory)
    if not is_quiet(quiet):
        Console().print("\n".join(f"{r.scene.name}: " + ", ".join(f"{k} {v} px" for k, v in r.pixels.items() if v)
                                  + f" -> {r.outputs['labels']}" for r in results), highlight=False, soft_wrap=True)
