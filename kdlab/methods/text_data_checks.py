"""The single-task data config (finetune, hinton, each task of bam's mixture, kdlab-eval) and a mixture of them
(bam), checked before any model is loaded. Torch-free. The single rules are kdlab.data.checks' (the DataModules call
them too); this module sits above the data layer because the metric names are the evaluation layer's."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from kdlab.data.checks import (
    SPLITS,
    check_labels,
    check_role_columns,
    check_source,
    check_task,
    expand_local_data,
    split_node,
)
from kdlab.data.loading import check_columns
from kdlab.data.records import check_files
from kdlab.data.task_list import check_exponent, task_configs
from kdlab.errors import ConfigError
from kdlab.evaluation.names import CLASSIFICATION_METRICS, REGRESSION_METRICS
from kdlab.utils.values import at_least, number, require


def check_metrics(cfg: DictConfig, task: str) -> None:
    """`data.metrics` are metrics of the task; `data.main_metric` is one of them."""
    allowed = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    metrics = list(require(cfg, "data.metrics"))
    for name in metrics:
        if name not in allowed:
            raise ConfigError("data.metrics", f"{name!r} is not a {task} metric; choose from {list(allowed)}")
    main = require(cfg, "data.main_metric")
    if main not in metrics:
        raise ConfigError("data.main_metric", f"must be one of data.metrics {metrics}, got {main!r}")


def check_text_data(cfg: DictConfig) -> None:
    """A single-task data config (data=local's short form expanded first, in place); the rows of local files are
    loaded and parsed, so a bad label, score or text stops the run before any model is loaded."""
    task = check_task(require(cfg, "data.task"), "data.task")
    expand_local_data(cfg)
    labels = cfg.data.get("labels") or []
    check_labels(task, labels, "data.labels")
    if task == "classification" and len({str(label) for label in labels}) != len(labels):
        raise ConfigError(
            "data.labels", f"must be distinct (a label's position is its class index), got {list(labels)}"
        )
    check_metrics(cfg, task)
    at_least(cfg, "data.max_length", 4)
    for name in ("batch_size", "eval_batch_size"):
        at_least(cfg, f"data.{name}", 1)
    columns = check_role_columns(cfg, ("text", "label"))
    for split in SPLITS:
        node = split_node(cfg, split)
        if node is None and split == "test":
            continue  # no labelled test set (GLUE's RTE, CoLA): validation metrics only
        source = check_source(node, f"data.{split}")
        merged = {**columns, **(source.get("columns") or {})}
        check_columns(source, merged, f"data.{split}.columns" if source.get("columns") else "data.columns")
    check_files(OmegaConf.to_container(cfg.data, resolve=True))


def check_task_list(cfg: DictConfig) -> list[dict[str, Any]]:
    """A multi-task data config: each task as a single-task data config, the sampling exponent; the tasks."""
    entries = OmegaConf.to_container(require(cfg, "data.tasks"), resolve=True)
    tasks = task_configs({**OmegaConf.to_container(cfg.data, resolve=True), "tasks": entries})
    check_exponent(number(cfg, "data.sampling_exponent"))
    for position, task in enumerate(tasks):
        try:
            check_text_data(OmegaConf.create({"data": task}))
        except ConfigError as err:
            key = err.key.replace("data.", f"data.tasks[{position}].", 1)
            raise ConfigError(key, str(err)[len(err.key) + 2 :]) from None
    return tasks
