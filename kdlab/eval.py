"""`kdlab-eval`: evaluate a trained model (HF folder or kdlab .ckpt) on the configured data splits.

    kdlab-eval model_path=outputs/runs/<run>/student/model data=reviews
    kdlab-eval model_path=outputs/runs/<bam run>/student/model data=multitask_toy   # a multi-task (BAM) export

A multi-task export (a folder with heads.json) needs a multi-task data config whose tasks are the model's
heads, in the same order and with the same kinds and labels; it reports `<split>/<task>/<metric>` and
`<split>/glue_mean`.
"""

from __future__ import annotations

from typing import Any

import hydra
from omegaconf import DictConfig

from kdlab.app import conf_dir, guarded, register_resolvers

register_resolvers()


def _single_task(cfg: DictConfig) -> tuple[Any, Any]:
    """A fine-tuned classifier/regressor and its DataModule (label count checked)."""
    from kdlab.config import validate_data
    from kdlab.data.text import TextDataModule
    from kdlab.errors import ConfigError
    from kdlab.methods.finetune import Finetune
    from kdlab.models.backbone import load_trained

    validate_data(cfg)
    model, tokenizer = load_trained(cfg.model_path, key="model_path")
    datamodule = TextDataModule(cfg.data, tokenizer=tokenizer)
    if int(model.config.num_labels) != datamodule.num_labels:
        raise ConfigError("model_path", f"the model has {model.config.num_labels} labels but data.labels gives {datamodule.num_labels}")
    return Finetune(model, tokenizer, datamodule.task, datamodule.num_labels, {"lr": 0.0}, list(cfg.data.metrics)), datamodule


def _multi_task(cfg: DictConfig) -> tuple[Any, Any]:
    """A multi-task (BAM) export and the mixture of `data.tasks`, which must match its heads."""
    from kdlab.config import validate_task_list
    from kdlab.data.multitask import MultiTaskDataModule
    from kdlab.data.task_list import task_configs
    from kdlab.errors import ConfigError
    from kdlab.methods.bam import BAM
    from kdlab.models.multitask import head_specs, load_multitask
    from kdlab.pipelines.bam import main_metric
    from kdlab.pipelines.common import container

    if cfg.data.get("tasks") is None:
        raise ConfigError("data", f"{cfg.model_path} is a multi-task export: choose a multi-task data config (data.tasks), e.g. data=multitask_toy")
    validate_task_list(cfg)
    tasks = task_configs(container(cfg.data))
    model, tokenizer = load_multitask(cfg.model_path)
    wanted = [(t["name"], t["task"], t["labels"]) for t in head_specs(tasks)]
    heads = [(t["name"], t["task"], t["labels"]) for t in model.tasks]
    if wanted != heads:
        raise ConfigError("data.tasks", f"must be the model's heads in order (name, kind, labels): {heads}; got {wanted}")
    module = BAM(model, tokenizer, {"lr": 0.0}, metrics={t["name"]: list(t["metrics"]) for t in tasks},
                 main_metrics={t["name"]: main_metric(t) for t in tasks})
    return module, MultiTaskDataModule(container(cfg.data), tokenizer=tokenizer)


def evaluate_model(cfg: DictConfig) -> dict[str, float]:
    """val/test metrics of `cfg.model_path` on `cfg.data`, printed and written to <run>/metrics.json."""
    from kdlab.config import validate_eval

    validate_eval(cfg)
    from pathlib import Path

    import pytorch_lightning as pl
    from omegaconf import OmegaConf

    from kdlab.models.multitask import HEADS_CONFIG
    from kdlab.utils.run_folder import write_json

    multi = (Path(str(cfg.model_path)) / HEADS_CONFIG).exists()
    module, datamodule = _multi_task(cfg) if multi else _single_task(cfg)
    trainer = pl.Trainer(**OmegaConf.to_container(cfg.trainer, resolve=True))
    metrics: dict[str, float] = {}
    for split in cfg.splits:
        if not datamodule.has_split(split):
            continue  # e.g. a task list without labelled test sets
        run = {"validation": trainer.validate, "test": trainer.test}[split]
        for results in run(module, datamodule=datamodule, verbose=False):
            metrics.update({k: float(v) for k, v in results.items()})
    write_json(Path(cfg.paths.output_dir) / "metrics.json", metrics)
    for name, value in sorted(metrics.items()):
        print(f"{name}\t{value:.4f}")
    return metrics


@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="eval")
def main(cfg: DictConfig) -> dict[str, float]:
    return guarded(evaluate_model, cfg)


if __name__ == "__main__":
    main()
