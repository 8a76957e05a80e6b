"""Experiment tracking of a run's stages: the loggers of `cfg.logger` (CSV, TensorBoard, W&B, MLflow), their run
names and groups, the resolved config as hyperparameters, closing them whatever happens, metrics of stages that did not
train here, and exported models as artifacts (`export_artifact.<name>`)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from kdlab.errors import ConfigError

log = logging.getLogger(__name__)

# conf/logger/mlflow.yaml's default store is a local folder (file:<outputs>/mlruns), which MLflow 3 keeps in
# maintenance mode and refuses unless this is set: kdlab opts in for its processes (a value set by the user wins).
os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")


def sweep_job() -> tuple[str | None, str | None]:
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


def tracking_name(cfg: DictConfig, stage: str) -> str:
    """A stage's W&B / MLflow run name: <run_name>/<stage>, or <run_name>/<job>/<stage> in a multirun."""
    _, job = sweep_job()
    return f"{cfg.run_name}/{job}/{stage}" if job is not None else f"{cfg.run_name}/{stage}"


def stage_loggers(cfg: DictConfig, stage: str, settings: Mapping[str, Any] | None = None) -> list[Any]:
    """Instantiate `cfg.logger` entries for one stage.

    CSV/TensorBoard: version = stage. W&B/MLflow: run name `_tracking_name`, group = the sweep's name in a
    multirun else run_name (unless the config names one). The run config (W&B, MLflow, TensorBoard's hparams) is
    the resolved config with the stage's own `settings` in place of the nodes they name (a no-KD stage trains
    with no teacher term, whatever `loss` says).
    """
    resolved = {**OmegaConf.to_container(cfg, resolve=True), **(settings or {})}
    _exported_modelstage_loggers(cfg)  # a wrong export_artifact.<name> stops the stage before any logger starts
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
                group = spec.get("group") or sweep_job()[0] or str(cfg.run_name)
                if target.endswith("WandbLogger"):
                    config = resolved
                    spec.update(name=tracking_name(cfg, stage), group=group, job_type=stage, config=config)
                else:
                    tags = {"kdlab.group": group, "kdlab.stage": stage, "kdlab.run_dir": str(cfg.paths.output_dir)}
                    spec.update(run_name=tracking_name(cfg, stage), tags={**(spec.get("tags") or {}), **tags})
            # a plain dict, not recursive: the run config passed to W&B holds `_target_` nodes of its own
            logger = instantiate({**spec, "_recursive_": False, "_convert_": "all"})
            loggers.append(logger)
            if target.endswith("MLFlowLogger"):  # the config as params (loss/temperature, ...) and as config.yaml
                logger.log_hyperparams(resolved)
                logger.experiment.log_text(logger.run_id, OmegaConf.to_yaml(OmegaConf.create(resolved)), "config.yaml")
            elif target.endswith("TensorBoardLogger"):  # hparams.yaml and the HPARAMS tab
                logger.log_hyperparams(resolved)
    except BaseException:
        close_loggers(loggers, failed=True)
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
    loggers = stage_loggers(cfg, stage)
    failed = True
    try:
        for logger in loggers:
            logger.log_metrics({name: float(value) for name, value in metrics.items()}, step=0)
        failed = False
    finally:
        close_loggers(loggers, failed=failed)


def close_loggers(loggers: list[Any], failed: bool = False) -> None:
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


def _exported_modelstage_loggers(cfg: DictConfig) -> list[str]:
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


def log_exported_model(cfg: DictConfig, loggers: list[Any], stage: str, folder: Path) -> None:
    """Log an exported model folder to the W&B / MLflow loggers that `export_artifact.<name>` switches on."""
    wanted = _exported_modelstage_loggers(cfg)
    names = [name for name, node in (cfg.get("logger") or {}).items() if node is not None]
    for name, logger in zip(names, loggers):
        if name not in wanted:
            continue
        if type(logger).__name__ == "WandbLogger":
            import wandb

            artifact = wandb.Artifact(name=tracking_name(cfg, stage).replace("/", "-"), type="model")
            artifact.add_dir(str(folder))
            logger.experiment.log_artifact(artifact)
        else:
            logger.experiment.log_artifacts(logger.run_id, str(folder), artifact_path="model")
