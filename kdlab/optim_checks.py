"""The rules on an optimizer config (conf/optimizer/adamw.yaml, one node per training stage), torch-free: called for
every stage when the config is checked (kdlab.config.check_stages) and by the optimiser factory (kdlab.optim)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kdlab.errors import ConfigError

# AdamW kernels (kdlab.optim.IMPLEMENTATIONS maps each to torch's keywords); None = torch's own choice
IMPLEMENTATION_NAMES = (None, "for_loop", "foreach", "fused")

# the lr shapes (kdlab.optim.MULTIPLIERS maps each to its multiplier)
SCHEDULES = ("linear", "bert")

# every key of an optimizer node (conf/optimizer/adamw.yaml); none has a default in Python
KEYS = (
    "lr",
    "weight_decay",
    "warmup_ratio",
    "schedule",
    "betas",
    "eps",
    "bias_correction",
    "layerwise_decay",
    "pooler_step",
    "implementation",
)

# AdamW settings: name -> (test, the range it states)
RANGES = {
    "weight_decay": (lambda v: v >= 0, ">= 0"),
    "warmup_ratio": (lambda v: 0 <= v <= 1, "in [0, 1] (the share of steps that warm up)"),
    "eps": (lambda v: v > 0, "> 0"),
    "layerwise_decay": (lambda v: 0 < v <= 1, "in (0, 1] (1.0 = off)"),
}


def _number(value: Any, key: str) -> float:
    if value is None:
        raise ConfigError(key, "is required")
    if isinstance(value, bool):
        raise ConfigError(key, f"must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(key, f"must be a number, got {value!r}") from None


def check_optimizer(node: Mapping[str, Any], key: str) -> None:
    """An optimizer node `<key>`: every key of conf/optimizer/adamw.yaml given (`implementation` may be null); lr > 0;
    weight decay, warm-up, eps, layerwise decay β and betas in range; `schedule` a known lr shape; `pooler_step` and
    `bias_correction` booleans (the latter false only with a null `implementation`); `implementation` a known AdamW kernel."""
    for name in KEYS:
        if name not in node:
            raise ConfigError(f"{key}.{name}", "is required (conf/optimizer/adamw.yaml gives every stage one)")
    lr = _number(node.get("lr"), f"{key}.lr")
    if lr <= 0:
        raise ConfigError(f"{key}.lr", f"must be > 0, got {lr:g}")
    for name, (good, expected) in RANGES.items():
        value = _number(node.get(name), f"{key}.{name}")
        if not good(value):
            raise ConfigError(f"{key}.{name}", f"must be {expected}, got {value:g}")
    betas = node.get("betas")
    values = list(betas) if isinstance(betas, (list, tuple)) else [betas]
    if len(values) != 2 or not all(
        isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in values
    ):
        raise ConfigError(f"{key}.betas", f"must be two numbers in [0, 1), got {values}")
    if node.get("schedule") not in SCHEDULES:
        raise ConfigError(f"{key}.schedule", f"must be one of {list(SCHEDULES)}, got {node.get('schedule')!r}")
    if not isinstance(node.get("pooler_step"), bool):
        raise ConfigError(f"{key}.pooler_step", f"must be true or false, got {node.get('pooler_step')!r}")
    implementation = node.get("implementation")
    if implementation not in IMPLEMENTATION_NAMES:
        raise ConfigError(
            f"{key}.implementation", f"must be one of {list(IMPLEMENTATION_NAMES)}, got {implementation!r}"
        )
    if not isinstance(node.get("bias_correction"), bool):
        raise ConfigError(f"{key}.bias_correction", f"must be true or false, got {node.get('bias_correction')!r}")
    if not node["bias_correction"] and implementation is not None:
        raise ConfigError(
            f"{key}.implementation", "must be null with bias_correction: false (BERT's Adam has one kernel)"
        )
