"""The one optimiser factory every method uses: AdamW without decay on biases/LayerNorm, linear warm-up and decay.

`implementation` picks torch's AdamW kernel, the same algorithm each way: `for_loop` (one tensor at a
time), `foreach` (batched per op), `fused` (one kernel per parameter group; on a 2-core CPU it updates
MiniLM's 22.7 M parameters in 18 ms instead of 102 ms), or null for torch's own choice (for-loop on CPU).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")
IMPLEMENTATIONS = {None: {}, "for_loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def parameter_groups(named_parameters: Iterable[tuple[str, nn.Parameter]], weight_decay: float) -> list[dict[str, Any]]:
    """Two groups: decayed weights, and biases/normalisation weights without decay."""
    decay, no_decay = [], []
    for name, parameter in named_parameters:
        if not parameter.requires_grad:
            continue
        (no_decay if name.endswith(NO_DECAY) or parameter.ndim < 2 else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def linear_warmup_decay(step: int, warmup_steps: int, total_steps: int) -> float:
    """LR multiplier: 0 → 1 over the warm-up, then 1 → 0 linearly at the last step."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    remaining = max(1, total_steps - warmup_steps)
    return max(0.0, (total_steps - step) / remaining)


def build_optimizer(
    named_parameters: Iterable[tuple[str, nn.Parameter]], cfg: Mapping[str, Any], total_steps: int
) -> dict[str, Any]:
    """A Lightning `configure_optimizers` answer from an optimizer config (lr, weight_decay, betas, eps, warmup_ratio,
    implementation)."""
    implementation = cfg.get("implementation")
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"optimizer implementation must be one of {list(IMPLEMENTATIONS)}, got {implementation!r}")
    optimizer = torch.optim.AdamW(
        parameter_groups(named_parameters, float(cfg.get("weight_decay", 0.01))),
        lr=float(cfg["lr"]),
        betas=tuple(cfg.get("betas", (0.9, 0.999))),
        eps=float(cfg.get("eps", 1e-8)),
        **IMPLEMENTATIONS[implementation],
    )
    warmup = int(round(float(cfg.get("warmup_ratio", 0.0)) * total_steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: linear_warmup_decay(step, warmup, total_steps)
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
