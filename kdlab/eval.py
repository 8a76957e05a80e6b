"""`kdlab-eval`: evaluate a trained model (HF folder or kdlab .ckpt) on the configured data splits.

    kdlab-eval model_path=outputs/runs/<run>/student/model            # the run's own data config
    kdlab-eval model_path=outputs/runs/<run>/student/model data=sst2  # another data config (same label names)
    kdlab-eval model_path=outputs/runs/<bam run>/student/model        # a multi-task (BAM) export

When `model_path` lies in a kdlab run folder (`<run>/<stage>/model`, `<run>/<stage>/checkpoints/*.ckpt`) and no
`data=` is given, the data is the run's own (`<run>/config.yaml`; a BAM teacher's: its task), with any `data.*`
overrides applied on top. A classifier's label names (its `id2label`) must equal the data's `labels`.

A multi-task export (a folder with heads.json) needs a multi-task data config whose tasks are the model's
heads, in the same order and with the same kinds and labels; it reports `<split>/<task>/<metric>` and
`<split>/glue_mean`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from kdlab.app import guarded, refuse_bad_overrides
from kdlab.evaluation.names import format_metric
from kdlab.resolvers import conf_dir, register_resolvers

register_resolvers()


def _single_task(cfg: DictConfig) -> tuple[Any, Any]:
    """A fine-tuned classifier/regressor and its DataModule (label count checked)."""
    from kdlab.data.records import check_label_width
    from kdlab.data.text import TextDataModule
    from kdlab.errors import ConfigError
    from kdlab.methods.finetune import Finetune
    from kdlab.methods.text_data_checks import check_text_data
    from kdlab.models.files import load_trained

    check_text_data(cfg)
    model, tokenizer = load_trained(cfg.model_path, key="model_path")
    datamodule = TextDataModule(cfg.data, tokenizer=tokenizer)
    check_label_width(int(model.config.num_labels), datamodule.num_labels, "model_path", subject="the model")
    names = (
        [str(model.config.id2label[i]) for i in range(int(model.config.num_labels))]
        if datamodule.task == "classification"
        else []
    )
    generic = names == [f"LABEL_{i}" for i in range(len(names))]  # a model saved without label names
    if names and not generic and names != datamodule.labels:
        raise ConfigError(
            "data.labels",
            f"the model at {cfg.model_path} was trained on the labels {names}, got {datamodule.labels} "
            "(another task? choose its data config with data=...)",
        )
    return Finetune(
        model, tokenizer, datamodule.task, datamodule.num_labels, {"lr": 0.0}, list(cfg.data.metrics)
    ), datamodule


def _multi_task(cfg: DictConfig) -> tuple[Any, Any]:
    """A multi-task (BAM) export and the mixture of `data.tasks`, which must match its heads."""
    from kdlab.data.multitask import MultiTaskDataModule
    from kdlab.data.task_list import task_configs
    from kdlab.errors import ConfigError
    from kdlab.methods.bam import BAM
    from kdlab.methods.text_data_checks import check_task_list
    from kdlab.models.multitask import head_specs, load_multitask
    from kdlab.pipelines.bam import main_metric
    from kdlab.pipelines.common import container

    if cfg.data.get("tasks") is None:
        raise ConfigError(
            "data",
            f"{cfg.model_path} is a multi-task export: choose a multi-task data config (data.tasks), e.g. data=multitask_toy",
        )
    check_task_list(cfg)
    tasks = task_configs(container(cfg.data))
    model, tokenizer = load_multitask(cfg.model_path)
    wanted = [(t["name"], t["task"], t["labels"]) for t in head_specs(tasks)]
    heads = [(t["name"], t["task"], t["labels"]) for t in model.tasks]
    if wanted != heads:
        raise ConfigError(
            "data.tasks", f"must be the model's heads in order (name, kind, labels): {heads}; got {wanted}"
        )
    module = BAM(
        model,
        tokenizer,
        {"lr": 0.0},
        metrics={t["name"]: list(t["metrics"]) for t in tasks},
        main_metrics={t["name"]: main_metric(t) for t in tasks},
    )
    return module, MultiTaskDataModule(container(cfg.data), tokenizer=tokenizer)


def _command_line_overrides() -> list[str]:
    """The overrides kdlab-eval was started with ([] outside a Hydra app)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except ValueError:
        return []


def run_folder_of(model_path: str | Path) -> Path | None:
    """The kdlab run folder a model lies in (`<run>/<stage>/model`, `<run>/<stage>/checkpoints/x.ckpt`), else None."""
    path = Path(str(model_path)).resolve()
    for parent in list(path.parents)[:3]:
        if (parent / "config.yaml").is_file() and (parent / "run.json").is_file():
            return parent
    return None


def use_run_data(cfg: DictConfig, overrides: list[str]) -> str:
    """Put the data config of the run `model_path` came from into `cfg.data` unless `data=` was given; says which data is used."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from kdlab.data.task_list import task_configs
    from kdlab.pipelines.common import container

    given = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") == "data"]
    run = run_folder_of(cfg.model_path)
    name = OmegaConf.select(cfg, "data.name", default="?")
    if given or run is None:
        return f"data: {name} ({'data=' + given[-1].split('=', 1)[1] if given else 'the default data config'})"
    saved = OmegaConf.load(run / "config.yaml")
    data = saved.data
    stage = Path(str(cfg.model_path)).resolve().relative_to(run).parts[0]
    if data.get("tasks") is not None and stage.startswith("teacher_"):  # a BAM teacher: its own task
        task = next((t for t in task_configs(container(data)) if f"teacher_{t['name']}" == stage), None)
        if task is not None:
            data = OmegaConf.create(task)
    for override in OverridesParser.create().parse_overrides([o for o in overrides if o.startswith("data.")]):
        OmegaConf.update(data, override.key_or_group[len("data.") :], override.value(), force_add=True)
    with open_dict(cfg):
        cfg.data = data
    return f"data: {data.get('name', '?')} (the config of the run {run})"


def evaluate_model(cfg: DictConfig) -> dict[str, float]:
    """val/test metrics of `cfg.model_path` on `cfg.data`, printed and written to <run>/metrics.json."""
    from kdlab.config import validate_eval

    validate_eval(cfg)
    from kdlab.pipelines import prepare_process

    prepare_process(cfg)
    used = use_run_data(cfg, _command_line_overrides())
    from kdlab.models.multitask import HEADS_CONFIG
    from kdlab.runner import evaluate
    from kdlab.utils.run_folder import write_json

    multi = (Path(str(cfg.model_path)) / HEADS_CONFIG).exists()
    module, datamodule = _multi_task(cfg) if multi else _single_task(cfg)
    # the runner's evaluation: its trainer settings, and only the splits the data has (a task list may have no test)
    metrics = evaluate(cfg, module, datamodule, Path(cfg.paths.output_dir), splits=list(cfg.splits))
    out = Path(cfg.paths.output_dir) / "metrics.json"
    write_json(out, metrics)
    print(used)
    for name, value in sorted(metrics.items()):
        print(f"{name}\t{format_metric(name, value)}")
    print(f"results: {out}")
    return metrics


@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="eval")
def _hydra_main(cfg: DictConfig) -> dict[str, float]:
    return guarded(evaluate_model, cfg)


def main() -> dict[str, float]:
    """`kdlab-eval`: kdlab's help lines before Hydra's, then compose and evaluate."""
    import sys

    from kdlab.help import eval_help, print_help_first

    print_help_first(sys.argv[1:], eval_help())
    refuse_bad_overrides(sys.argv[1:], config_name="eval")
    return _hydra_main()


if __name__ == "__main__":
    main()
