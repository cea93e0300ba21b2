"""The training loop (``firemap train`` / ``firemap finetune``), nanoGPT style: one function that reads top to
bottom, with named helpers for the learning-rate schedule and validation.

Per step: poly learning rate with warm-up, forward under autocast (fp16 + GradScaler on CUDA, optional bf16 on
CPU), masked multi-label loss, backward, gradient clipping, optimizer step. Per epoch: validation on the held-out
sources through the real predict path (tiling and stitching included), ``last.firemap.pt`` and, when the
selection metric improves, ``best.firemap.pt`` bundles, ``train_state.pt`` for ``--resume``, and a row of
``log.csv``.

Multi-GPU / multi-node: launch the console script with torchrun, e.g.
``torchrun --nproc_per_node=4 --no-python firemap train configs/deeplabv3plus.yaml`` (several machines: add
``--nnodes 2 --node_rank R --master_addr HOST --master_port 29500`` on each). Each rank draws its own seeded
stream (an infinite random stream needs no DistributedSampler: distinct seeds give disjoint samples), gradients
are averaged by DistributedDataParallel, and rank 0 validates, logs and writes checkpoints.
"""

from __future__ import annotations

import copy
import csv
import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from firemap import __version__
from firemap.config import ModelConfig, PredictConfig
from firemap.errors import ConfigError, OutputExistsError
from firemap.models import Bundle, build_model, save_bundle
from firemap.predict import autocast_dtype, select_device
from firemap.train.config import SceneSource, SimulatorSource, TrainConfig
from firemap.train.data import band_statistics, build_mixture, check_sources, make_loader
from firemap.train.losses import MaskedMultiLabelLoss
from firemap.train.metrics import mean_of
from firemap.transfer import freeze_bn_stats, init_bundle_config, init_weights, set_encoder_trainable

log = logging.getLogger(__name__)

Progress = Callable[[int, int, dict[str, float]], None]
"""Called after each step with (step, total steps, {"loss": ..., "lr": ...})."""

STATE_FILE = "train_state.pt"


def poly_lr(step: int, total: int, power: float = 0.9, warmup: int = 0) -> float:
    """Learning-rate factor at ``step`` (0-based): ``min(1, (step + 1) / warmup) * (1 - step / total) ** power``.

    The poly schedule of DeepLabv3 (power 0.9) with a linear warm-up over the first ``warmup`` steps.
    """
    decay = max(0.0, 1.0 - step / max(total, 1)) ** power
    ramp = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    return ramp * decay


@dataclass
class FitResult:
    """Outcome of :func:`fit`.

    Attributes:
        out: the run folder.
        best: best bundle path (None without validation data).
        last: last bundle path.
        best_metric: best value of the selection metric.
        history: one dict per epoch (what ``log.csv`` holds).
        model_config: the model config (with statistics).
    """

    out: Path
    best: Path | None
    last: Path
    best_metric: float
    history: list[dict[str, float]] = field(default_factory=list)
    model_config: ModelConfig | None = None


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _setup_distributed(device_name: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if torch.cuda.is_available() and device_name != "cpu" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local)
    dist.init_process_group(backend)
    return _Dist(dist.get_rank(), world, local)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _prepare_out(cfg: TrainConfig) -> Path:
    out = Path(cfg.out)
    if cfg.resume:
        if not (out / STATE_FILE).is_file():
            raise ConfigError(f"--resume: no {STATE_FILE} in {out}; start without --resume")
        return out
    if out.exists() and any(out.iterdir()) and not cfg.overwrite:
        raise OutputExistsError(f"{out} exists and is not empty; pass --overwrite to start over there, --resume to "
                                "continue it, or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _bundle_stats(init: str) -> dict[str, tuple[float, float]]:
    """Band -> (mean, std) of an ``init`` firemap bundle ({} for anything else)."""
    c = init_bundle_config(init)
    if c is None:
        return {}
    return {b: (m, s) for b, m, s in zip(c["bands"], c["mean"], c["std"], strict=True)}


def resolve_model_config(cfg: TrainConfig) -> ModelConfig:
    """The model config with normalization statistics.

    Given ``model.mean``/``std`` win; otherwise bands of an ``init`` bundle keep that bundle's statistics (its
    weights were trained on them) and the other bands get statistics computed from the training mixture.
    """
    mc = cfg.model_config_with_stats(None)
    if cfg.has_stats:
        return mc
    inherited = _bundle_stats(cfg.init)
    if all(b in inherited for b in mc.bands):
        log.info("normalization statistics inherited from %s", cfg.init)
        return cfg.model_config_with_stats(tuple(zip(*(inherited[b] for b in mc.bands), strict=True)))  # type: ignore[arg-type]
    mixture = build_mixture(cfg.data, mc, cfg.seed)
    mean, std = band_statistics(mixture, mc.bands, cfg.data.stats_tiles, seed=cfg.seed)
    mean = tuple(inherited.get(b, (m, 0.0))[0] for b, m in zip(mc.bands, mean, strict=True))
    std = tuple(inherited.get(b, (0.0, s))[1] for b, s in zip(mc.bands, std, strict=True))
    log.info("normalization statistics from %d tiles: mean %s std %s", cfg.data.stats_tiles, mean, std)
    return cfg.model_config_with_stats((mean, std))


def frozen_parts(model: nn.Module, train_only: list[str]) -> list[nn.Module]:
    """The top-level parts of ``model`` that ``train_only`` leaves frozen (none when it is empty).

    Raises:
        ConfigError: ``train_only`` names a part the network does not have (the message lists its parts).
    """
    if not train_only:
        return []
    parts = dict(model.named_children())
    unknown = sorted(set(train_only) - set(parts))
    if unknown:
        raise ConfigError(f"train_only {unknown}: the network has no such part; its parts are {sorted(parts)} "
                          "(fire_head exists when model.fire_head > 0)")
    return [m for name, m in parts.items() if name not in train_only]


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    o = cfg.optim
    enc = getattr(model, "encoder", None)
    encoder = {id(p) for p in enc.parameters()} if isinstance(enc, nn.Module) else set()
    frozen = {id(p) for m in frozen_parts(model, cfg.train_only) for p in m.parameters()}
    params = [p for p in model.parameters() if id(p) not in frozen]
    groups = [
        {"params": [p for p in params if id(p) in encoder], "lr_mult": o.encoder_lr_mult},
        {"params": [p for p in params if id(p) not in encoder], "lr_mult": 1.0},
    ]
    groups = [g for g in groups if g["params"]]
    if o.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    return torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay)


def _val_sources(cfg: TrainConfig, out: Path) -> list[SceneSource]:
    """Validation sources as labelled scenes; simulated ones are written once under ``out/val_<name>``."""
    sources = []
    for src in cfg.data.val:
        if isinstance(src, SimulatorSource):
            from firemap.train.data import simulated_scenes

            sources.append(simulated_scenes(src, out / f"val_{src.label}", seed=10_000 + cfg.seed))
        else:
            sources.append(src)
    return sources


def validate_model(
    model: nn.Module, mc: ModelConfig, sources: list[SceneSource], pcfg: PredictConfig, name: str
) -> dict[str, float]:
    """Evaluate the model on each validation source (scene level, predict path); flat ``<source>/<metric>`` dict
    plus ``macro_iou``, the mean over sources of their macro IoU."""
    from firemap.train.evaluate import evaluate_source

    # a copy: the predict path may optimise a bundle's network in place for inference (e.g. fold BatchNorm)
    bundle = Bundle(mc, copy.deepcopy(model).eval(), {"name": name})
    out: dict[str, float] = {}
    for src in sources:
        summary = evaluate_source(bundle, src, pcfg, baselines=False).summary()
        out.update({f"{src.label}/{k}": float(v) for k, v in summary.items() if isinstance(v, int | float)})
    if sources:
        out["macro_iou"] = mean_of([out.get(f"{s.label}/macro_iou", float("nan")) for s in sources])
    return out


def _selection(metrics: dict[str, float], key: str) -> float:
    if key in metrics:
        return metrics[key]
    values = [v for k, v in metrics.items() if k.endswith("/" + key)]
    return mean_of(values) if values else float("nan")


class _CsvLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, row: dict[str, float]) -> None:
        new = not self.path.exists()
        fields = list(row) if new else next(csv.reader(self.path.open()))
        with self.path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({k: row.get(k, "") for k in fields})


def _tensorboard(cfg: TrainConfig, out: Path) -> Any:
    if not cfg.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("tensorboard requested but not installed (pip install tensorboard); logging to CSV only")
        return None
    return SummaryWriter(str(out / "tb"))


def _unwrap(model: nn.Module) -> nn.Module:
    inner = getattr(model, "module", None)
    return inner if isinstance(inner, nn.Module) else model


def _provenance(run: _Run, epoch: int, metrics: dict[str, float]) -> dict:
    cfg = run.cfg
    train = {s.label for s in cfg.data.train}
    return {
        "name": cfg.name, "firemap_version": __version__, "init": run.init, "epoch": epoch + 1, "step": run.step,
        "trained": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "data": {"train": [s.model_dump(mode="json") for s in cfg.data.train],
                 "val": [s.model_dump(mode="json") for s in cfg.data.val]},
        "train_scenes": {label: names for label, names in run.scenes.items() if label in train},
        "recipe": cfg.model_dump(mode="json", exclude={"data"}),
        "metrics": {k: (None if not math.isfinite(v) else round(v, 5)) for k, v in metrics.items()},
    }


def _save_state(out: Path, model: nn.Module, opt: torch.optim.Optimizer, scaler: Any, mc: ModelConfig,
                epoch: int, step: int, best: float, init: dict[str, Any]) -> None:
    payload = {"epoch": epoch, "step": step, "best": best, "model_config": mc.model_dump(mode="json"),
               "state_dict": _unwrap(model).state_dict(), "optimizer": opt.state_dict(),
               "scaler": scaler.state_dict(), "init": init}
    tmp = out / f".{STATE_FILE}.partial"
    torch.save(payload, tmp)
    os.replace(tmp, out / STATE_FILE)


def _load_state(out: Path) -> dict[str, Any]:
    return torch.load(out / STATE_FILE, map_location="cpu", weights_only=True)


@dataclass
class _Run:
    """Everything one training run carries from step to step."""

    cfg: TrainConfig
    out: Path
    dist: _Dist
    device: torch.device
    mc: ModelConfig
    model: nn.Module
    init: dict[str, Any]
    opt: torch.optim.Optimizer
    scaler: Any
    amp: torch.dtype | None
    memory: torch.memory_format
    loss_fn: nn.Module
    scenes: dict[str, list[str]] = field(default_factory=dict)
    step: int = 0
    best: float = -math.inf
    start_epoch: int = 0


def _setup(cfg: TrainConfig) -> _Run:
    """Run folder, data check, devices, seeds, model (fresh, initialised or resumed), optimizer, scaler and loss."""
    scenes = check_sources(cfg.data, cfg.model_config_with_stats(None))  # data errors before any slow step
    out = _prepare_out(cfg)
    dist = _setup_distributed(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed + dist.rank)
    device = select_device(cfg.device)
    if device.type == "cuda" and dist.world > 1:
        device = torch.device("cuda", dist.local_rank)
    state = _load_state(out) if cfg.resume else None
    if state is not None:
        mc = ModelConfig.model_validate(state["model_config"])
        model, init = build_model(mc), state["init"]
        model.load_state_dict(state["state_dict"])
    else:
        mc = resolve_model_config(cfg)
        model = build_model(mc)
        init = init_weights(model, mc, cfg.init, cfg.init_bands)
    for part in frozen_parts(model, cfg.train_only):
        part.requires_grad_(False)
    memory = torch.channels_last if cfg.channels_last else torch.preserve_format
    model = model.to(device).to(memory_format=memory)  # type: ignore[call-overload]
    if dist.world > 1:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=cfg.freeze_encoder_epochs > 0,
        )
    opt = _optimizer(_unwrap(model), cfg)
    amp = autocast_dtype(device, cfg.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    loss_fn = MaskedMultiLabelLoss([c.name for c in mc.classes], cfg.loss.kind, cfg.loss.dice_weight,
                                   cfg.loss.focal_gamma, cfg.loss.focal_alpha, cfg.loss.class_weights,
                                   cfg.loss.pos_weights).to(device)
    run = _Run(cfg, out, dist, device, mc, model, init, opt, scaler, amp, memory, loss_fn, scenes)
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        run.step, run.best, run.start_epoch = state["step"], state["best"], state["epoch"] + 1
    return run


def _train_step(run: _Run, x: torch.Tensor, y: torch.Tensor, lr_factor: float) -> float:
    """One optimizer step on a batch; returns the loss."""
    cfg = run.cfg
    for group in run.opt.param_groups:
        group["lr"] = cfg.optim.lr * group["lr_mult"] * lr_factor
    x = x.to(run.device, non_blocking=True).contiguous(memory_format=run.memory)
    y = y.to(run.device, non_blocking=True)
    with torch.autocast(run.device.type, dtype=run.amp or torch.float32, enabled=run.amp is not None):
        logits = run.model(x)
    loss = run.loss_fn(logits.float(), y)
    if not torch.isfinite(loss):
        raise ConfigError(f"loss became {loss.item()} at step {run.step}; lower optim.lr or use precision fp32")
    run.opt.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    if cfg.optim.grad_clip > 0:
        run.scaler.unscale_(run.opt)
        nn.utils.clip_grad_norm_(run.model.parameters(), cfg.optim.grad_clip)
    run.scaler.step(run.opt)
    run.scaler.update()
    run.step += 1
    return float(loss.item())


def _end_epoch(run: _Run, epoch: int, losses: list[float], metrics: dict[str, float], seconds: float) -> dict:
    """Log the epoch, write last/best bundles and the resume state (rank 0)."""
    cfg, out = run.cfg, run.out
    factor = poly_lr(run.step - 1, cfg.epochs * cfg.steps_per_epoch, cfg.optim.poly_power, cfg.optim.warmup_steps)
    row = {"epoch": epoch + 1, "step": run.step, "lr": cfg.optim.lr * factor,
           "train_loss": float(np.mean(losses)), "seconds": seconds, **metrics}
    _CsvLog(out / "log.csv").write(row)
    score = _selection(metrics, cfg.select_metric) if metrics else -float(np.mean(losses))
    if not math.isfinite(score):
        log.warning("epoch %d: %s is undefined (no labelled pixel of its class in the validation data?); "
                    "best.firemap.pt is not updated", epoch + 1, cfg.select_metric)
    provenance = _provenance(run, epoch, metrics)
    model = _unwrap(run.model)
    save_bundle(out / "last.firemap.pt", model, run.mc, provenance, overwrite=True)
    if math.isfinite(score) and score > run.best:
        run.best = score
        save_bundle(out / "best.firemap.pt", model, run.mc, provenance | {"selected_by": cfg.select_metric},
                    overwrite=True)
    _save_state(out, run.model, run.opt, run.scaler, run.mc, epoch, run.step, run.best, run.init)
    log.info("epoch %d/%d: loss %.4f, %s = %.4f (best %.4f), %.0f s", epoch + 1, cfg.epochs, row["train_loss"],
             cfg.select_metric, score, run.best, seconds)
    return row


def fit(cfg: TrainConfig, progress: Progress | None = None) -> FitResult:
    """Train a model as configured; write bundles, state and a CSV log to ``cfg.out``.

    Args:
        cfg: the training config.
        progress: per-step callback (see :data:`Progress`).

    Returns:
        The :class:`FitResult`.

    Raises:
        FiremapError subclasses: bad config, data, or init weights; an existing run folder without
        ``overwrite``/``resume``.
    """
    run = _setup(cfg)
    main = run.dist.main
    val_sources = _val_sources(cfg, run.out) if main else []
    pcfg = PredictConfig(tile_size=run.mc.tile_size, overlap=run.mc.overlap,
                         device="cuda" if run.device.type == "cuda" else "cpu",
                         precision=cfg.precision, batch_size=cfg.data.batch_size)
    tb = _tensorboard(cfg, run.out) if main else None
    total = cfg.epochs * cfg.steps_per_epoch
    history: list[dict[str, float]] = []
    for epoch in range(run.start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        if not cfg.train_only:
            set_encoder_trainable(_unwrap(run.model), epoch >= cfg.freeze_encoder_epochs)
        run.model.train()
        if cfg.freeze_bn_stats:
            freeze_bn_stats(run.model)
        for part in frozen_parts(_unwrap(run.model), cfg.train_only):
            part.eval()
        batches = iter(make_loader(cfg.data, cfg.augment, run.mc, cfg.seed, epoch, run.dist.rank))
        losses = []
        for _ in range(cfg.steps_per_epoch):
            factor = poly_lr(run.step, total, cfg.optim.poly_power, cfg.optim.warmup_steps)
            x, y = next(batches)
            losses.append(_train_step(run, x, y, factor))
            if progress and main:
                progress(run.step, total, {"loss": losses[-1], "lr": cfg.optim.lr * factor, "epoch": epoch + 1})
        if main:
            metrics = validate_model(_unwrap(run.model), run.mc, val_sources, pcfg, cfg.name) if val_sources else {}
            history.append(_end_epoch(run, epoch, losses, metrics, time.perf_counter() - t0))
            if tb is not None:
                for k, v in history[-1].items():
                    tb.add_scalar(k, v, run.step)
    if run.dist.world > 1:
        torch.distributed.destroy_process_group()
    best = run.out / "best.firemap.pt"
    return FitResult(run.out, best if best.exists() else None, run.out / "last.firemap.pt", run.best, history,
                     run.mc)





def run_training(
    config: str | os.PathLike[str], overrides: dict[str, Any] | None = None, progress: Progress | None = None
) -> FitResult:
    """``firemap train`` / ``firemap finetune``: load a YAML config with dotted-key overrides, then :func:`fit`.

    Raises:
        FiremapError subclasses: see :func:`fit` and :func:`firemap.train.config.load_train_config`.
    """
    from firemap.train.config import load_train_config

    return fit(load_train_config(Path(config), overrides), progress)


__all__ = [
    "STATE_FILE", "FitResult", "fit", "frozen_parts", "poly_lr", "resolve_model_config", "run_training",
    "seed_everything", "validate_model",
]
