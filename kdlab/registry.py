"""The methods kdlab can run, by name: one table, torch-free.

Each entry names, as "module:function" strings imported only when needed (so `kdlab-train --cfg job` and
`--help` import no torch), everything the shared layers need to know about a method:

    check     its config check (kdlab/methods/<name>_checks.py), run after the checks every method shares
              (kdlab.config.validate)
    pipeline  run(cfg, run_dir) -> results: the recipe kdlab-train runs (kdlab.pipelines)
    figures   figures(RunFolder) -> {name: Figure}: what kdlab.plots and kdlab-report draw for its runs
    keys      the config values a report lists first for its runs (kdlab-report)
    example   the experiment that gives it everything it needs, for error messages and --help
    data_key  a key only the data configs made for it have: without it the composed data is another method's
    reads     the top-level config nodes it reads of those whose reading depends on the method (method, model, data,
              loss, ...): a key under one it does not read, set by the user (command line, experiment file, sweep),
              is refused (`check_reads`) instead of composed and silently ignored (None: not declared)

Adding a method: its files (a pipeline, a LightningModule, kdlab/methods/<name>_checks.py, conf/method/<name>.yaml, plots)
and one `register_method(...)` line below. Error messages that list the methods read this table.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kdlab.errors import ConfigError


@dataclass(frozen=True)
class Method:
    """What the shared layers (config check, runner, plots, report, --help) know about one method."""

    name: str
    summary: str
    check: str
    pipeline: str
    figures: str
    keys: tuple[str, ...]
    example: str
    data_key: str
    reads: tuple[str, ...] | None = None  # None: not declared, nothing refused


METHODS: dict[str, Method] = {}
# every "module:function" a table registered: `resolve` imports nothing else, so no config value names code to run
_REGISTERED_REFS: set[str] = set()


def allow(*refs: str) -> None:
    """Let `resolve` import these "module:function" references (called by the tables that register them)."""
    _REGISTERED_REFS.update(refs)


def register_method(entry: Method) -> Method:
    """Add a method to the table (its name must be new)."""
    if entry.name in METHODS:
        raise ValueError(f"method {entry.name!r} is registered twice")
    METHODS[entry.name] = entry
    allow(entry.check, entry.pipeline, entry.figures)
    return entry


def method(name: Any, key: str = "method.name") -> Method:
    """The registered method called `name`; ConfigError naming `key` and the choices otherwise."""
    if name not in METHODS:
        raise ConfigError(key, f"must be one of {list(METHODS)}, got {name!r}")
    return METHODS[name]


def method_nodes() -> set[str]:
    """The top-level config nodes whose reading depends on the method: those some registered method reads. Every
    other node (trainer, logger, paths, seed, ...) is read by the shared layers, whatever the method."""
    return {node for entry in METHODS.values() for node in entry.reads or ()}


def check_reads(entry: Method, key: str, source: str = "this override") -> None:
    """ConfigError naming `key` when it lies under a top-level node that `entry` does not read: `source` (an override,
    an experiment file) would change nothing. Keys outside the method-dependent nodes are read by every method."""
    node = key.split(".", 1)[0].split("/", 1)[0]
    if entry.reads is None or node not in method_nodes() or node in entry.reads:
        return
    readers = [name for name, other in METHODS.items() if node in (other.reads or ())]
    raise ConfigError(
        key,
        f"method {entry.name} does not read {node}.* (only {', '.join(readers)} {'does' if len(readers) == 1 else 'do'}), "
        f"so {source} would change nothing; remove it",
    )


def check_data_fits(entry: Method, cfg: Any) -> None:
    """ConfigError when the composed data config is made for another method (it lacks `entry.data_key`)."""
    from omegaconf import OmegaConf

    parent, _, leaf = entry.data_key.rpartition(".")
    node = OmegaConf.select(cfg, parent, throw_on_missing=False)
    if (
        node is None or not OmegaConf.is_dict(node) or leaf not in node.keys()
    ):  # a `???` value is present: its own check says so
        name = OmegaConf.select(cfg, "data.name", default="?")
        raise ConfigError(
            entry.data_key,
            f"is required: data={name} is not data for method={entry.name} "
            f"(start from {entry.example}, or choose a data config that sets {entry.data_key})",
        )


def resolve(ref: str) -> Callable[..., Any]:
    """The function a registered "module:function" string names (imported now); ValueError for any other string."""
    if ref not in _REGISTERED_REFS:
        raise ValueError(f"{ref!r} is in no kdlab table: only registered references are imported")
    module, _, attribute = ref.partition(":")
    return getattr(importlib.import_module(module), attribute)


register_method(
    Method(
        "finetune",
        "fine-tune one model on gold labels (the teacher stage of hinton, on its own)",
        check="kdlab.methods.finetune_checks:check",
        pipeline="kdlab.pipelines.supervised:run_finetune",
        figures="kdlab.plots:supervised_figures",
        keys=("method.train", "method.teacher.epochs", "method.teacher.optimizer.lr", "data.batch_size"),
        example="method=finetune data=reviews",
        data_key="data.task",
        reads=("method", "model", "data"),
    )
)
register_method(
    Method(
        "hinton",
        "Hinton soft-target KD: teacher fine-tuned (or reused) -> student (-> the student without KD)",
        check="kdlab.methods.hinton_checks:check",
        pipeline="kdlab.pipelines.supervised:run_hinton",
        figures="kdlab.plots:hinton_figures",
        keys=(
            "loss.alpha",
            "loss.temperature",
            "method.teacher_outputs",
            "method.baseline",
            "method.teacher.epochs",
            "method.teacher.optimizer.lr",
            "method.student.epochs",
            "method.student.optimizer.lr",
            "data.batch_size",
        ),
        example="data=reviews",
        data_key="data.task",
        reads=("method", "model", "data", "loss", "cache"),
    )
)
register_method(
    Method(
        "multilingual",
        "multilingual MSE distillation of a sentence encoder (Reimers & Gurevych 2020)",
        check="kdlab.methods.multilingual_checks:check",
        pipeline="kdlab.pipelines.multilingual:run_multilingual",
        figures="kdlab.plots:multilingual_figures",
        keys=(
            "model.teacher.name_or_path",
            "model.student.projection",
            "method.student.epochs",
            "method.student.optimizer.lr",
            "data.batch_size",
            "data.max_length",
        ),
        example="experiment=multilingual_toy",
        data_key="data.sources",
        reads=("method", "model", "data", "cache"),
    )
)
register_method(
    Method(
        "trans_encoder",
        "Trans-Encoder: unsupervised bi-encoder <-> cross-encoder self-distillation (Liu et al. 2022)",
        check="kdlab.methods.trans_encoder_checks:check",
        pipeline="kdlab.pipelines.trans_encoder:run_trans_encoder",
        figures="kdlab.plots:trans_encoder_figures",
        keys=(
            "method.cycles",
            "method.simcse.enabled",
            "method.cross.epochs",
            "method.cross.optimizer.lr",
            "method.cross.loss",
            "method.bi.epochs",
            "method.bi.optimizer.lr",
            "method.bi.loss",
            "data.pair_source",
        ),
        example="experiment=trans_encoder_toy",
        data_key="data.pair_source",
        reads=("method", "model", "data"),
    )
)
register_method(
    Method(
        "bam",
        "BAM!: single-task teachers -> one multi-task student with teacher annealing (Clark et al. 2019)",
        check="kdlab.methods.bam_checks:check",
        pipeline="kdlab.pipelines.bam:run_bam",
        figures="kdlab.plots:bam_figures",
        keys=(
            "method.teachers",
            "method.teacher_annealing",
            "method.fixed_lambda",
            "method.single_task",
            "method.mixing",
            "method.loss_reduction",
            "data.sampling_exponent",
            "method.teacher.epochs",
            "method.student.epochs",
            "method.student.optimizer.lr",
            "method.student.optimizer.layerwise_decay",
            "data.batch_size",
        ),
        example="experiment=bam_toy",
        data_key="data.tasks",
        reads=("method", "model", "data", "cache"),
    )
)
