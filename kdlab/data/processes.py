"""How a global batch splits across data-parallel processes (no torch import: the config check uses it)."""

from __future__ import annotations

from typing import Any

from kdlab.errors import ConfigError


def process_share(batch_size: int, world_size: int, key: str = "data.batch_size") -> int:
    """The per-process batch size for a global batch; ConfigError naming `key` when it does not divide."""
    if world_size > 1 and batch_size % world_size:
        raise ConfigError(
            key,
            f"the global batch of {batch_size} does not divide across {world_size} processes "
            f"(per-process batch = global ÷ processes); use a multiple of {world_size}",
        )
    return batch_size // world_size


def process_rank(trainer: Any) -> tuple[int, int]:
    """(this process's global rank, number of processes) of a Trainer, (0, 1) without one."""
    if trainer is None:
        return 0, 1
    return int(trainer.global_rank), int(trainer.world_size)
