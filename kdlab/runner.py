"""Run one training stage (teacher, student, baseline) with the configured trainer, loggers and callbacks."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from kdlab.errors import DataError
from kdlab.utils.run_folder import write_json

log = logging.getLogger(__name__)


def _loggers(cfg: DictConfig, stage: str) -> list[Any]:
    """Instantiate `cfg.logger` entries for one stage: CSV/TensorBoard version = stage, W&B run name = <run>/<stage>."""
    loggers = []
    for name, logger_cfg in (cfg.get("logger") or {}).items():
        if logger_cfg is None:
            continue
        target = str(logger_cfg.get("_target_", ""))
        extra: dict[str, Any] = {}
        if target.endswith(("CSVLogger", "TensorBoardLogger")):
            extra["version"] = stage
        elif target.endswith("WandbLogger"):
            extra["name"] = f"{cfg.run_name}/{stage}"
            extra["config"] = OmegaConf.to_container(cfg, resolve=True)
        # a plain dict, not recursive: the run config passed to W&B holds `_target_` nodes of its own
        spec = {**OmegaConf.to_container(logger_cfg, resolve=True), **extra, "_recursive_": False, "_convert_": "all"}
        loggers.append(instantiate(spec))
    return loggers


def _close_loggers(loggers: list[Any]) -> None:
    for logger in loggers:
        if type(logger).__name__ == "WandbLogger":
            import wandb

            wandb.finish()


def make_trainer(cfg: DictConfig, stage: str, stage_dir: Path, epochs: int | None, monitor: str | None) -> pl.Trainer:
    """A Trainer for a stage: `cfg.trainer` keys, checkpoints in <stage_dir>/checkpoints when training."""
    callbacks = []
    if monitor is not None:
        for cb_name, cb_cfg in (cfg.get("callbacks") or {}).items():
            if cb_cfg is None:
                continue
            extra: dict[str, Any] = {}
            if str(cb_cfg.get("_target_", "")).endswith("ModelCheckpoint"):
                extra = {"dirpath": str(stage_dir / "checkpoints"), "monitor": monitor}
            elif str(cb_cfg.get("_target_", "")).endswith("EarlyStopping"):
                extra = {"monitor": monitor}
            callbacks.append(instantiate(cb_cfg, **extra))
    trainer_kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    if epochs is not None:
        trainer_kwargs["max_epochs"] = int(epochs)
    return pl.Trainer(
        **trainer_kwargs,
        default_root_dir=str(stage_dir),
        logger=_loggers(cfg, stage) if monitor is not None else False,
        callbacks=callbacks,
    )


def _best_checkpoint(trainer: pl.Trainer) -> str | None:
    for callback in trainer.checkpoint_callbacks:
        if getattr(callback, "best_model_path", ""):
            return callback.best_model_path
    return None


def load_weights(module: pl.LightningModule, path: str) -> None:
    """Load a checkpoint's weights into `module` (weights-only unpickling: no code runs)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise DataError(path, f"cannot load checkpoint ({type(err).__name__}: {str(err).splitlines()[0]})") from None
    module.load_state_dict(checkpoint["state_dict"], strict=False)


def _validate_and_test(trainer: pl.Trainer, module: pl.LightningModule, datamodule: pl.LightningDataModule) -> dict[str, float]:
    metrics: dict[str, float] = {}
    has_split = getattr(datamodule, "has_split", lambda split: True)
    for run in (trainer.validate, trainer.test):
        if run == trainer.test and not has_split("test"):
            continue  # no labelled test set: validation metrics only
        results = run(module, datamodule=datamodule, verbose=False)
        metrics.update({name: float(value) for name, value in (results[0] if results else {}).items()})
    return metrics


def evaluate(cfg: DictConfig, module: pl.LightningModule, datamodule: pl.LightningDataModule, stage_dir: Path) -> dict[str, float]:
    """val/* and test/* metrics of a module as it is now (no training, no loggers)."""
    return _validate_and_test(make_trainer(cfg, "eval", stage_dir, epochs=None, monitor=None), module, datamodule)


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
    trainer = make_trainer(cfg, stage, stage_dir, epochs=stage_cfg["epochs"], monitor=monitor)
    log.info("stage %s: training for %s epochs", stage, stage_cfg["epochs"])
    try:
        trainer.fit(module, datamodule=datamodule)
        best = _best_checkpoint(trainer)
        if best:
            log.info("stage %s: best checkpoint %s", stage, best)
            load_weights(module, best)
        metrics = _validate_and_test(trainer, module, datamodule)
    finally:
        _close_loggers(trainer.loggers)
    module.export(stage_dir / "model")
    write_json(stage_dir / "metrics.json", metrics)
    return metrics
