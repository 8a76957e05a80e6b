"""The task list of a multi-task mixture (``data.tasks``), checked torch-free so configs fail before heavy imports."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kdlab.errors import ConfigError

SHARED_KEYS = ("max_length", "batch_size", "eval_batch_size", "num_workers")
# how a mixture's training batches are made (kdlab.data.multitask): one task per batch, or tasks mixed in a batch
MIXINGS = ("batch", "example")
# what a task's size |D_t| counts in the mix when the task has a transfer set (`data.tasks[i].transfer.mix_size`):
# all: its labelled rows (x gold_repeat) and its transfer rows, every row the student trains on; gold: its labelled
# rows only, so the mix and the epoch's length are those of the run without the transfer set
MIX_SIZES = ("all", "gold")
MIX_SIZE_DEFAULT = "all"  # the transfer block is optional and its other keys have their defaults in kdlab.data.transfer


def check_exponent(exponent: Any) -> float:
    """The sampling exponent a as a float; ConfigError naming data.sampling_exponent when it is negative."""
    value = float(exponent)
    if not value >= 0:
        raise ConfigError("data.sampling_exponent", f"must be >= 0 (0 uniform, 1 proportional), got {value:g}")
    return value


def mix_size(transfer: Mapping[str, Any] | None, key: str) -> str | None:
    """A task's `transfer.mix_size` (`all` when the block does not set it; None without a transfer set); ConfigError
    naming `key` for another value."""
    if transfer is None:
        return None
    value = transfer.get("mix_size", MIX_SIZE_DEFAULT)
    if value not in MIX_SIZES:
        raise ConfigError(key, f"must be one of {list(MIX_SIZES)}, got {value!r}")
    return str(value)


def task_names(entries: Sequence[Mapping[str, Any]]) -> list[str]:
    """The tasks' names in order; ConfigError for an empty list, an unnamed task or a task listed twice."""
    if not entries:
        raise ConfigError("data.tasks", "needs at least one task (a list of single-task data configs)")
    seen: dict[str, int] = {}
    for position, entry in enumerate(entries):
        name = entry.get("name")
        if not name:
            raise ConfigError(f"data.tasks[{position}].name", "is required (a unique task name)")
        if name in seen:
            raise ConfigError("data.tasks", f"task {name!r} is listed twice (entries {seen[name]} and {position})")
        seen[name] = position
    return list(seen)


def task_configs(cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each task's data config, with the mixture's shared keys as defaults."""
    entries = list(cfg.get("tasks") or [])
    task_names(entries)
    shared = {key: cfg[key] for key in SHARED_KEYS if cfg.get(key) is not None}
    return [{**shared, **{key: value for key, value in dict(entry).items() if value is not None}} for entry in entries]
