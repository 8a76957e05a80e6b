"""Run one training stage (teacher, student, baseline) with the configured trainer, loggers and callbacks, or
evaluate a module as it is. Experiment tracking (the loggers): kdlab/tracking.py."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from kdlab.callbacks import EpochLine, QuietProgressBar
from kdlab.data.sampling import TrainPosition
from kdlab.errors import DataError
from kdlab.resume import AtomicCheckpointIO, KeptCSVRows, RNGStates, finished_checkpoint, last_checkpoint
from kdlab.tracking import close_loggers, log_exported_model, stage_loggers
from kdlab.utils.distributed import install_rank_launch
from kdlab.utils.run_folder import write_json

log = logging.getLogger(__name__)
EVALUATED = ("validation", "test")  # the splits a stage is scored on


def make_trainer(
    cfg: DictConfig,
    stage: str,
    stage_dir: Path,
    epochs: int | None,
    monitor: str | None,
    unused_parameters: bool = False,
    settings: Mapping[str, Any] | None = None,
) -> pl.Trainer:
    """A Trainer for a stage: `cfg.trainer` keys, checkpoints in <stage_dir>/checkpoints when training.

    `unused_parameters`: the module leaves some trainable parameters without a gradient in a step (BAM: the
    other tasks' heads), so DDP must look for them.
    """
    callbacks = []
    if monitor is not None:
        for _name, cb_cfg in (cfg.get("callbacks") or {}).items():
            if cb_cfg is None:
                continue
            extra: dict[str, Any] = {}
            if str(cb_cfg.get("_target_", "")).endswith(("ModelCheckpoint", "BestCheckpoint")):
                extra = {"dirpath": str(stage_dir / "checkpoints"), "monitor": monitor}
            elif str(cb_cfg.get("_target_", "")).endswith("EarlyStopping"):
                extra = {"monitor": monitor}
            callbacks.append(instantiate(cb_cfg, **extra))
    trainer_kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    if epochs is not None:
        trainer_kwargs["max_epochs"] = int(epochs)
    if unused_parameters and trainer_kwargs.get("strategy") == "ddp":
        trainer_kwargs["strategy"] = "ddp_find_unused_parameters_true"
    # kdlab's loaders split each global training batch across the processes themselves and evaluate whole
    # splits in every process (kdlab/data/sampling.py): Lightning must not add a DistributedSampler
    trainer_kwargs["use_distributed_sampler"] = False
    install_rank_launch()
    verbose = bool(cfg.get("verbose", False))
    if trainer_kwargs.get("enable_progress_bar", True) and not verbose:
        callbacks.append(QuietProgressBar())
    elif monitor is not None and not trainer_kwargs.get("enable_progress_bar", True):
        callbacks.append(EpochLine(stage, monitor, log))  # the bar is off: one line per epoch instead of silence
    if monitor is not None:
        callbacks.append(RNGStates())  # a resumed stage draws the random numbers the uninterrupted one would
        callbacks.append(TrainPosition())  # ... and continues its epoch where the checkpoint was written
    return pl.Trainer(
        **trainer_kwargs,
        default_root_dir=str(stage_dir),
        logger=stage_loggers(cfg, stage, settings) if monitor is not None else False,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
    )


def _best_checkpoint(trainer: pl.Trainer) -> str | None:
    for callback in trainer.checkpoint_callbacks:
        if getattr(callback, "best_model_path", ""):
            return callback.best_model_path
    return None


def load_weights(module: pl.LightningModule, path: str) -> dict[str, float]:
    """Load a checkpoint's weights into `module` (weights-only unpickling: no code runs); which point of training it holds.

    Returns `checkpoint/epoch` (1-based: the epoch during which it was written) and `checkpoint/step`.
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise DataError(path, f"cannot load checkpoint ({type(err).__name__}: {str(err).splitlines()[0]})") from None
    module.load_state_dict(checkpoint["state_dict"], strict=False)
    return {
        "checkpoint/epoch": float(int(checkpoint.get("epoch", -1)) + 1),
        "checkpoint/step": float(checkpoint.get("global_step", 0)),
    }


def _validate_and_test(
    trainer: pl.Trainer,
    module: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    splits: Sequence[str] = EVALUATED,
) -> dict[str, float]:
    """The module's metrics on each of `splits` the datamodule has (`has_split`: e.g. no labelled test set)."""
    metrics: dict[str, float] = {}
    has_split = getattr(datamodule, "has_split", lambda split: True)
    for split in splits:
        if not has_split(split):
            continue
        run = {"validation": trainer.validate, "test": trainer.test}[split]
        for results in run(module, datamodule=datamodule, verbose=False):  # one per eval loader (BAM: per task)
            metrics.update({name: float(value) for name, value in results.items()})
    return metrics


def evaluate(
    cfg: DictConfig,
    module: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    stage_dir: Path,
    splits: Sequence[str] = EVALUATED,
) -> dict[str, float]:
    """val/* and test/* metrics of a module as it is now (no training, no loggers), on `splits`."""
    trainer = make_trainer(cfg, "eval", stage_dir, epochs=None, monitor=None)
    return _validate_and_test(trainer, module, datamodule, splits)


def stage_key(cfg: DictConfig, stage_cfg: Any, leaf: str) -> str:
    """The config key of `leaf` in a stage's node (`method.student.optimizer` for cfg.method.student), so that a check
    at run time names the key the user set; `leaf` alone for a node that is not one of cfg.method's."""
    for name in cfg.method:
        if cfg.method[name] is stage_cfg:
            return f"method.{name}.{leaf}"
    return leaf


def fit_stage(
    cfg: DictConfig,
    stage: str,
    module: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    stage_cfg: Mapping[str, Any],
    run_dir: Path,
) -> dict[str, float]:
    """Train a module, reload its best checkpoint, evaluate on val and test, export it; returns its metrics."""
    stage_dir = run_dir / stage
    monitor = str(cfg.method.monitor)
    resume_from = None
    if cfg.get("resume"):  # kdlab/resume.py: a finished stage is loaded back, a stopped one continues
        finished = finished_checkpoint(stage_dir)
        if finished is not None:
            log.info("stage %s: finished in an earlier attempt; loading %s", stage, finished)
            load_weights(module, str(finished))
            return json.loads((stage_dir / "metrics.json").read_text(encoding="utf-8"))
        resume_from = last_checkpoint(stage_dir)
    trainer = make_trainer(
        cfg,
        stage,
        stage_dir,
        epochs=stage_cfg["epochs"],
        monitor=monitor,
        unused_parameters=bool(getattr(module, "unused_parameters", False)),
        settings=getattr(module, "tracked_settings", dict)(),
    )
    module.optimizer_key = stage_key(cfg, stage_cfg, "optimizer")  # run-time optimizer errors name the real key
    kept = None
    if resume_from is not None:
        log.info("stage %s: continuing from %s", stage, resume_from)
        kept = KeptCSVRows(trainer.loggers, resume_from) if trainer.is_global_zero else None
    else:
        processes = trainer.num_devices * trainer.num_nodes
        log.info(
            "stage %s: training for %s epochs%s",
            stage,
            stage_cfg["epochs"],
            f" on {processes} processes" if "ddp" in type(trainer.strategy).__name__.lower() and processes > 1 else "",
        )
    failed = True
    try:
        trainer.fit(
            module,
            datamodule=datamodule,
            ckpt_path=str(resume_from) if resume_from is not None else None,
            weights_only=True,
        )  # a checkpoint is data: nothing in it may run code when it loads
        best = _best_checkpoint(trainer)
        chosen: dict[str, float] = {}
        if best:
            chosen = load_weights(module, best)
            log.info(
                "stage %s: kept the checkpoint of epoch %d of %s (step %d, best %s), %s",
                stage,
                chosen["checkpoint/epoch"],
                stage_cfg["epochs"],
                chosen["checkpoint/step"],
                monitor,
                best,
            )
        metrics = {**_validate_and_test(trainer, module, datamodule), **chosen}
        if trainer.is_global_zero:  # one export and one metrics.json, whatever the number of processes
            module.export(stage_dir / "model")
            log_exported_model(cfg, trainer.loggers, stage, stage_dir / "model")
            write_json(stage_dir / "metrics.json", metrics)
        trainer.strategy.barrier("kdlab.export")  # the other ranks may read the export from here on
        failed = False
    finally:  # also when the stage raises: W&B finish, MLflow run FAILED, files flushed
        close_loggers(trainer.loggers, failed=failed)
        if kept is not None:
            kept.restore()
    return metrics
