"""bam's config check (kdlab.registry's `check`): the task list (each task as a single-task data config), the tasks'
transfer sets, the switches and the fixed mix weight, the given teachers, the student, the optimised metric.
Torch-free; the stages' epochs and optimizers are checked for every method (kdlab.config.check_stages)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from kdlab.cache.storage import check_storage
from kdlab.data import transfer
from kdlab.data.task_list import MIXINGS, mix_size
from kdlab.errors import ConfigError
from kdlab.methods.text_data_checks import check_task_list
from kdlab.models.spec import check_encoder_source, folder_num_labels
from kdlab.utils.values import number, plain, require, true_or_false

SWITCHES = ("teacher_annealing", "teachers", "single_task", "reuse_teacher", "dataset_multiples")
REDUCTIONS = ("mean", "sum")  # method.loss_reduction (kdlab.losses.annealed.reduce_losses)
# a task's transfer block: hinton's keys (kdlab.data.transfer) and how the task's size counts in the mix
TRANSFER_KEYS = (*transfer.KNOWN, "mix_size")


def transfer_key(position: int) -> str:
    """The config key of the transfer block of the task at `position` of data.tasks."""
    return f"data.tasks[{position}].transfer"


def check_transfer_teachers(teachers: bool, tasks: list[dict[str, Any]]) -> None:
    """A transfer set needs the task's teacher to label it: refused with `method.teachers: false`."""
    for position, task in enumerate(tasks):
        if task.get("transfer") is not None and not teachers:
            raise ConfigError(
                transfer_key(position),
                "needs the task's teacher to label its rows, but method.teachers=false (plain multi-task trains on "
                "gold labels only): set it to null or method.teachers=true",
            )


def check_task_transfer(tasks: list[dict[str, Any]]) -> None:
    """Each task's `transfer` block, by kdlab.data.transfer's rules with its own key: no source may be the validation
    or test split of any task of the mixture; its local files are read; `mix_size`."""
    held = {}
    for task in tasks:
        for split in ("test", "validation"):
            held[f"task {task['name']!r} {split}"] = task.get(split)
    for position, task in enumerate(tasks):
        key = transfer_key(position)
        transfer.check_sources(task, key, TRANSFER_KEYS, held)
        if task.get("transfer") is not None:
            mix_size(task["transfer"], f"{key}.mix_size")


def check_fixed_lambda(value: Any, key: str = "method.fixed_lambda") -> float:
    """The fixed mix weight λ of gold labels and teacher predictions (without teacher annealing): in [0, 1]."""
    if not 0.0 <= value <= 1.0:
        raise ConfigError(key, f"must be in [0, 1], got {value:g}")
    return float(value)


def check_trained_teachers(cfg: DictConfig, tasks: list[dict[str, Any]]) -> None:
    """`method.trained_teachers`: task name -> an existing folder or .ckpt whose output width is the task's."""
    given = plain(cfg.method.get("trained_teachers")) or {}
    if not isinstance(given, dict):
        raise ConfigError("method.trained_teachers", f"must map task names to teacher folders, got {given!r}")
    names = [task["name"] for task in tasks]
    for name, folder in given.items():
        key = f"method.trained_teachers.{name}"
        if name not in names:
            raise ConfigError(key, f"names no task of data.tasks {names}")
        path = Path(str(folder))
        if not path.exists():
            raise ConfigError(key, f"{path} does not exist (expected a model folder or a kdlab .ckpt)")
        task = tasks[names.index(name)]
        expected = len(task["labels"]) if task["task"] == "classification" else 1
        width = folder_num_labels(path) if path.is_dir() else None
        if width is not None and width != expected:
            raise ConfigError(
                key, f"the teacher has {width} labels ({path / 'config.json'}) but task {name!r} has {expected}"
            )


def check_student(cfg: DictConfig) -> None:
    """`model.student`: a pretrained or random-init encoder (one teacher per task: no from_teacher_layers)."""
    student = require(cfg, "model.student")
    check_encoder_source(student, "model.student")
    if student.get("from_teacher_layers") is not None:
        raise ConfigError(
            "model.student.from_teacher_layers", "is not available for bam (one teacher per task): set it to null"
        )
    require(cfg, "model.teacher")


def check_optimized_metric(cfg: DictConfig, tasks: list[dict[str, Any]]) -> None:
    """`optimized_metric`: <student|teacher>/<val|test>/glue_mean or …/<task>/<metric> of data.tasks."""
    metric = cfg.get("optimized_metric")
    if metric is None:
        return
    roles, splits = ("student", "teacher"), ("val", "test")
    known = [f"{role}/{split}/glue_mean" for role in roles for split in splits]
    known += [f"{r}/{s}/{t['name']}/{m}" for r in roles for s in splits for t in tasks for m in t["metrics"]]
    if metric not in known:
        raise ConfigError(
            "optimized_metric",
            f"must be <student|teacher>/<val|test>/glue_mean or .../<task>/<metric> of data.tasks, got {metric!r}",
        )


def check_reference_keys(cfg: DictConfig, tasks: list[dict[str, Any]]) -> None:
    """The keys where BAM's code and kdlab's defaults differ: mixing, dataset multiples (only with mixed batches),
    loss reduction, the tasks trained on both orders (pair tasks of data.tasks), max length, stage batch sizes."""
    method = cfg.method
    if method.mixing not in MIXINGS:
        raise ConfigError("method.mixing", f"must be one of {list(MIXINGS)}, got {method.mixing!r}")
    if method.dataset_multiples and method.mixing != "example":
        raise ConfigError("method.dataset_multiples", "applies to mixed batches only: set method.mixing=example")
    if method.loss_reduction not in REDUCTIONS:
        raise ConfigError("method.loss_reduction", f"must be one of {list(REDUCTIONS)}, got {method.loss_reduction!r}")
    names = {task["name"]: task for task in tasks}
    both = plain(method.get("both_orders"))
    if not isinstance(both, list):
        raise ConfigError("method.both_orders", f"must be a list of task names, got {both!r}")
    for name in both:
        if name not in names:
            raise ConfigError("method.both_orders", f"{name!r} names no task of data.tasks {list(names)}")
        if (names[name].get("columns") or {}).get("text_pair") is None:
            raise ConfigError("method.both_orders", f"task {name!r} has single texts, not sentence pairs")
    for key in ("method.max_length", "method.teacher.batch_size", "method.student.batch_size"):
        value = OmegaConf.select(cfg, key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(key, f"must be null or an integer >= 1, got {value!r}")


def check(cfg: DictConfig) -> None:
    """bam: the task list, the switches, λ, the given teachers, the student, the optimised metric."""
    tasks = check_task_list(cfg)
    for name in SWITCHES:
        true_or_false(cfg, f"method.{name}")
    check_task_transfer(tasks)
    check_transfer_teachers(bool(cfg.method.teachers), tasks)
    check_fixed_lambda(number(cfg, "method.fixed_lambda"))
    check_reference_keys(cfg, tasks)
    check_trained_teachers(cfg, tasks)
    check_storage(cfg.get("cache") or {}, "logits", used=bool(cfg.method.get("teachers")))
    check_student(cfg)
    check_optimized_metric(cfg, tasks)
