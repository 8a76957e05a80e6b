"""What every pipeline shares: config containers, seeding, the tokenizer resolver, result rows and the results table.

Teachers and their cached outputs: kdlab/pipelines/teachers.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

from kdlab.errors import ConfigError
from kdlab.evaluation.names import format_metric


def container(node: Any) -> Any:
    """A plain, resolved Python object from an OmegaConf node (anything else unchanged)."""
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def prefixed(role: str, metrics: Mapping[str, float]) -> dict[str, float]:
    """A stage's metrics as rows of the results table: `val/acc` of role `student` → `student/val/acc`."""
    return {f"{role}/{key}": value for key, value in metrics.items()}


def module_arguments(
    cfg: DictConfig, stage_cfg: DictConfig, model: Any, tokenizer: Any, datamodule: Any
) -> dict[str, Any]:
    """The arguments every single-task training module takes: the model, its tokenizer, the task, the stage's
    optimizer and the data's metrics."""
    return dict(
        model=model,
        tokenizer=tokenizer,
        task=datamodule.task,
        num_labels=datamodule.num_labels,
        optimizer=container(stage_cfg.optimizer),
        metrics=list(cfg.data.metrics),
    )


def seed(cfg: DictConfig, offset: int = 0) -> None:
    """Seed every RNG (torch, numpy, random, dataloader workers) with the run's `seed` (+ `offset`, e.g. a model's
    index), as each model build and each stage does before it starts."""
    import pytorch_lightning as pl

    pl.seed_everything(int(cfg.seed) + offset, workers=True)


def resolve_tokenizer(cfg: DictConfig, spec: Mapping[str, Any], key: str, texts: Callable[[], Sequence[str]]) -> Any:
    """The tokenizer a model spec (at config key `key`) asks for with its `tokenizer`: `teacher` (model.teacher's),
    `train` (a WordPiece of `vocab_size` trained on `texts()`, cached under paths.cache_dir; also when the spec names
    no model to take one from), a path, or null (the folder of its `trained` / `name_or_path` model)."""
    from kdlab.models.tokenization import load_tokenizer, train_wordpiece

    choice = spec.get("tokenizer")
    if choice == "teacher":
        return resolve_tokenizer(cfg, cfg.model.teacher, "model.teacher", texts)
    if choice == "train" or (choice is None and not spec.get("name_or_path") and not spec.get("trained")):
        if spec.get("vocab_size") is None:
            raise ConfigError(f"{key}.vocab_size", "is required to train a tokenizer (tokenizer: train)")
        return train_wordpiece(list(texts()), int(spec["vocab_size"]), cfg.paths.cache_dir)
    return load_tokenizer(str(choice or spec.get("trained") or spec.get("name_or_path")))


def print_table(results: dict[str, float], metric_names: list[str]) -> str:
    """A small table: one row per model (teacher / student / baseline), val and test columns per metric; printed and returned."""
    from rich.console import Console
    from rich.measure import Measurement
    from rich.table import Table

    from kdlab.deploy import CAPTION, ratio_columns

    roles = []
    for key in results:
        role = key.split("/", 1)[0]
        if role not in roles:
            roles.append(role)
    labels = {
        "teacher": "teacher",
        "student": "student (KD)",
        "baseline": "student (no KD)",
        "student_init": "before training",
    }
    table = Table(title="kdlab results")
    table.add_column("model")
    columns = [
        (split, m)
        for m in metric_names
        for split in ("val", "test")
        if any(k.endswith(f"/{split}/{m}") for k in results)
    ]
    for split, m in columns:
        table.add_column(f"{split}/{m}", justify="right")
    ratios = ratio_columns(results, roles)  # speed and size × teacher where the run timed its exports (kdlab/deploy)
    for header in ratios:
        table.add_column(header, justify="right")
    table.caption = CAPTION if ratios else None
    for role in roles:
        cells = [
            format_metric(k, results[k]) if (k := f"{role}/{split}/{m}") in results else "-" for split, m in columns
        ]
        table.add_row(labels.get(role, role), *cells, *(column.get(role, "-") for column in ratios.values()))
    # as wide as the table needs (at least 120): a narrower console cuts headers such as test/reviews/acc short
    wide = Console(width=1000)
    needed = Measurement.get(wide, wide.options, table).maximum
    console = Console(width=max(120, needed), record=True)
    console.print(table)
    return console.export_text()
