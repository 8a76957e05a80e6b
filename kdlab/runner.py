"""Run one training stage (teacher, student, baseline) with the configured trainer, loggers and callbacks."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from kdlab.callbacks import EpochLine, QuietProgressBar
from kdlab.data.sampling import TrainPosition
from kdlab.errors import ConfigError, DataError
from kdlab.resume import AtomicCheckpointIO, KeptCSVRows, RNGStates, finished_checkpoint, last_checkpoint
from kdlab.utils.distributed import install_rank_launch
from kdlab.utils.run_folder import write_json

log = logging.getLogger(__name__)


def _job() -> tuple[str | None, str | None]:
    """(sweep name, job number) when running inside a Hydra multirun, else (None, None)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra_cfg = HydraConfig.get()
    except ValueError:  # not under Hydra (tests, notebooks)
        return None, None
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None, None
    return Path(str(hydra_cfg.sweep.dir)).name, str(hydra_cfg.job.num)


def _tracking_name(cfg: DictConfig, stage: str) -> str:
    """A stage's W&B / MLflow run name: <run_name>/<stage>, or <run_name>/<job>/<stage> in a multirun."""
    _, job = _job()
    return f"{cfg.run_name}/{job}/{stage}" if job is not None else f"{cfg.run_name}/{stage}"


def _loggers(cfg: DictConfig, stage: str, settings: Mapping[str, Any] | None = None) -> list[Any]:
    """Instantiate `cfg.logger` entries for one stage.

    CSV/TensorBoard: version = stage. W&B/MLflow: run name `_tracking_name`, group = the sweep's name in a
    multirun else run_name (unless the config names one). The run config (W&B, MLflow, TensorBoard's hparams) is
    the resolved config with the stage's own `settings` in place of the nodes they name (a no-KD stage trains
    with no teacher term, whatever `loss` says).
    """
    resolved = {**OmegaConf.to_container(cfg, resolve=True), **(settings or {})}
    _exported_model_loggers(cfg)  # a wrong export_artifact.<name> stops the stage before any logger starts
    loggers: list[Any] = []
    try:
        for logger_cfg in (cfg.get("logger") or {}).values():
            if logger_cfg is None:
                continue
            spec = OmegaConf.to_container(logger_cfg, resolve=True)
            target = str(spec.get("_target_", ""))
            tracker = target.endswith(("WandbLogger", "MLFlowLogger"))
            if target.endswith(("CSVLogger", "TensorBoardLogger")):
                spec["version"] = stage
            elif tracker:
                group = spec.get("group") or _job()[0] or str(cfg.run_name)
                if target.endswith("WandbLogger"):
                    config = resolved
                    spec.update(name=_tracking_name(cfg, stage), group=group, job_type=stage, config=config)
                else:
                    tags = {"kdlab.group": group, "kdlab.stage": stage, "kdlab.run_dir": str(cfg.paths.output_dir)}
                    spec.update(run_name=_tracking_name(cfg, stage), tags={**(spec.get("tags") or {}), **tags})
            # a plain dict, not recursive: the run config passed to W&B holds `_target_` nodes of its own
            logger = instantiate({**spec, "_recursive_": False, "_convert_": "all"})
            loggers.append(logger)
            if target.endswith("MLFlowLogger"):  # the config as params (loss/temperature, ...) and as config.yaml
                logger.log_hyperparams(resolved)
                logger.experiment.log_text(logger.run_id, OmegaConf.to_yaml(OmegaConf.create(resolved)), "config.yaml")
            elif target.endswith("TensorBoardLogger"):  # hparams.yaml and the HPARAMS tab
                logger.log_hyperparams(resolved)
    except BaseException:
        _close_loggers(loggers, failed=True)
        raise
    return loggers


def log_to_trackers(cfg: DictConfig, stage: str, metrics: Mapping[str, float]) -> None:
    """A stage that did not train here (a reused teacher): its metrics, once, in every tracker of the run (not the CSV log,
    which holds what trained in this run folder)."""
    trackers = {
        name: node
        for name, node in (cfg.get("logger") or {}).items()
        if node is not None and not str(node.get("_target_", "")).endswith("CSVLogger")
    }
    if not trackers:
        return
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.logger = trackers
    loggers = _loggers(cfg, stage)
    failed = True
    try:
        for logger in loggers:
            logger.log_metrics({name: float(value) for name, value in metrics.items()}, step=0)
        failed = False
    finally:
        _close_loggers(loggers, failed=failed)


def _close_loggers(loggers: list[Any], failed: bool = False) -> None:
    """Finalize every logger (MLflow run FINISHED or FAILED, TensorBoard files flushed) and end the W&B run.

    Closing never raises: a logger that cannot be closed is reported in the log, and the stage's own
    error (if any) is the one that propagates.
    """
    for logger in loggers:
        try:
            logger.finalize("failed" if failed else "success")
            if type(logger).__name__ == "WandbLogger":
                import wandb

                wandb.finish(exit_code=1 if failed else 0)
        except Exception as err:  # noqa: BLE001 - closing must not hide the stage's result
            log.warning("could not close logger %s: %s: %s", type(logger).__name__, type(err).__name__, err)


def _exported_model_loggers(cfg: DictConfig) -> list[str]:
    """The names of the loggers that `export_artifact.<name>: true` asks to receive each stage's exported model."""
    wanted = [str(name) for name, on in (cfg.get("export_artifact") or {}).items() if on]
    for name in wanted:
        node = (cfg.get("logger") or {}).get(name)
        if node is None:
            raise ConfigError(f"export_artifact.{name}", f"there is no logger.{name} (add it with logger=...)")
        if not str(node.get("_target_", "")).endswith(("WandbLogger", "MLFlowLogger")):
            raise ConfigError(
                f"export_artifact.{name}", f"is for the wandb and mlflow loggers, not {node.get('_target_')}"
            )
    return wanted


def _log_exported_model(cfg: DictConfig, loggers: list[Any], stage: str, folder: Path) -> None:
    """Log an exported model folder to the W&B / MLflow loggers that `export_artifact.<name>` switches on."""
    wanted = _exported_model_loggers(cfg)
    names = [name for name, node in (cfg.get("logger") or {}).items() if node is not None]
    for name, logger in zip(names, loggers):
        if name not in wanted:
            continue
        if type(logger).__name__ == "WandbLogger":
            import wandb

            artifact = wandb.Artifact(name=_tracking_name(cfg, stage).replace("/", "-"), type="model")
            artifact.add_dir(str(folder))
            logger.experiment.log_artifact(artifact)
        else:
            logger.experiment.log_artifacts(logger.run_id, str(folder), artifact_path="model")


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
        logger=_loggers(cfg, stage, settings) if monitor is not None else False,
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
    trainer: pl.Trainer, module: pl.LightningModule, datamodule: pl.LightningDataModule
) -> dict[str, float]:
    metrics: dict[str, float] = {}
    has_split = getattr(datamodule, "has_split", lambda split: True)
    for run in (trainer.validate, trainer.test):
        if run == trainer.test and not has_split("test"):
            continue  # no labelled test set: validation metrics only
        results = run(module, datamodule=datamodule, verbose=False)
        metrics.update({name: float(value) for name, value in (results[0] if results else {}).items()})
    return metrics


def evaluate(
    cfg: DictConfig, module: pl.LightningModule, datamodule: pl.LightningDataModule, stage_dir: Path
) -> dict[str, float]:
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
            _log_exported_model(cfg, trainer.loggers, stage, stage_dir / "model")
            write_json(stage_dir / "metrics.json", metrics)
        trainer.strategy.barrier("kdlab.export")  # the other ranks may read the export from here on
        failed = False
    finally:  # also when the stage raises: W&B finish, MLflow run FAILED, files flushed
        _close_loggers(trainer.loggers, failed=failed)
        if kept is not None:
            kept.restore()
    return metrics
