"""What every pipeline shares: config containers, the teacher-output cache lookup, the results table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from kdlab.cache.teacher_outputs import TeacherOutputCache
from kdlab.data.identity import distinct
from kdlab.models.inference import predict


def container(node: Any) -> Any:
    """A plain, resolved Python object from an OmegaConf node (anything else unchanged)."""
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def cached_teacher_outputs(
    cfg: DictConfig, teacher: Any, tokenizer: Any, inputs: list[tuple[str, str | None]], kind: str, select: Any
) -> tuple[Any, dict[str, Any]]:
    """`select(teacher(x))` for every input, from the teacher-output cache (computed once per key), in input order."""
    import torch

    unique, where = distinct(inputs)
    cache = TeacherOutputCache(Path(cfg.paths.cache_dir) / "teacher_outputs")
    max_length = int(cfg.data.max_length)
    identity = f"{type(teacher).__name__}/{teacher.config.model_type}"
    key = cache.key(
        identity=identity, teacher=teacher, tokenizer=tokenizer, max_length=max_length, kind=kind, inputs=unique
    )
    outputs, hit = cache.get_or_compute(
        key,
        unique,
        lambda items: predict(teacher, tokenizer, items, max_length, int(cfg.data.eval_batch_size), select=select),
    )
    info = {"mode": "cache", "hit": hit, "key": key, "path": str(cache.path(key)), "rows": len(unique)}
    return outputs[torch.tensor(where)], info


def print_table(results: dict[str, float], metric_names: list[str]) -> str:
    """A small table: one row per model (teacher / student / baseline), val and test columns per metric; printed and returned."""
    from rich.console import Console
    from rich.table import Table

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
    for role in roles:
        cells = [f"{results[k]:.4f}" if (k := f"{role}/{split}/{m}") in results else "-" for split, m in columns]
        table.add_row(labels.get(role, role), *cells)
    console = Console(width=120, record=True)
    console.print(table)
    return console.export_text()
