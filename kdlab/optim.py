"""The one optimiser factory every method uses: AdamW without decay on biases/LayerNorm, linear warm-up and decay,
and optional layerwise learning-rate decay.

`implementation` picks torch's AdamW kernel, the same algorithm each way: `for_loop` (one tensor at a
time), `foreach` (batched per op), `fused` (one kernel per parameter group; on a 2-core CPU it updates
MiniLM's 22.7 M parameters in 18 ms instead of 102 ms), or null for torch's own choice (for-loop on CPU).

`layerwise_decay` β (1.0 = off; BAM uses 0.9): a parameter at depth d gets lr · β^(D − d). Transformer layer i
(found in names like `encoder.layer.3.`, `layers.3.`, `h.3.`, `block.3.`) is depth i + 1; what comes before the
layer stack in the model (embeddings) is depth 0; what comes after it (pooler, task heads, projections) is the
top, D = layers + 1, with the full lr. `pooler_step: true` (google-research BAM's bert/optimization.py) gives the
pooler (names with `pooler` after the stack) depth layers + 1 of its own and the rest after the stack D = layers + 2:
the heads keep the full lr, the pooler gets lr·β, every layer and the embeddings one β more than without it.

`bias_correction: false` swaps torch's AdamW for `AdamWeightDecay`, the Adam of BERT's and BAM's TensorFlow code,
which divides neither moment by (1 − β^t); it has one kernel (`implementation: null`).

`schedule` is the lr multiplier over the T steps with W = round(warmup_ratio·T) warm-up steps: `linear` (t+1)/W, then
(T − t)/(T − W); `bert` (BERT's and BAM's TensorFlow optimization.py) t/W, then 1 − t/T, whose decay line starts at
step 0, so the lr falls back to 1 − W/T (0.9 for a 10 % warm-up) when the warm-up ends.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from kdlab.errors import ConfigError
from kdlab.optim_checks import IMPLEMENTATION_NAMES, SCHEDULES, check_optimizer

NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")
IMPLEMENTATIONS = {None: {}, "for_loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
assert tuple(IMPLEMENTATIONS) == IMPLEMENTATION_NAMES  # the torch-free rule lists the same kernels
LAYER = re.compile(r"^(?P<stack>(?:.*?\.)?(?:layer|layers|h|block|blocks))\.(?P<index>\d+)\.")


def parameter_groups(named_parameters: Iterable[tuple[str, nn.Parameter]], weight_decay: float) -> list[dict[str, Any]]:
    """Two groups: decayed weights, and biases/normalisation weights without decay."""
    decay, no_decay = [], []
    for name, parameter in named_parameters:
        if not parameter.requires_grad:
            continue
        (no_decay if name.endswith(NO_DECAY) or parameter.ndim < 2 else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def layer_depths(names: list[str], num_layers: int | None = None, pooler_step: bool = False) -> tuple[list[int], int]:
    """(depth of each parameter name, top depth D): embeddings 0, layer i at i + 1, everything after the stack D;
    with `pooler_step` a pooler after the stack is D − 1 (D = layers + 2), else D = layers + 1."""
    matches = [LAYER.match(name) for name in names]
    stacks = sorted({m["stack"] for m in matches if m})
    if len(stacks) != 1:
        found = f"several layer stacks {stacks}" if stacks else "no transformer layer (names like encoder.layer.0.)"
        raise ConfigError("optimizer.layerwise_decay", f"needs one transformer layer stack in the model, found {found}")
    indices = [int(m["index"]) for m in matches if m]
    count = max(indices) + 1 if num_layers is None else int(num_layers)
    if max(indices) >= count:
        raise ConfigError("optimizer.layerwise_decay", f"layer {max(indices)} is beyond the model's {count} layers")
    first = next(position for position, m in enumerate(matches) if m)
    top = count + 2 if pooler_step else count + 1

    def after_stack(name: str) -> int:
        return top - 1 if pooler_step and "pooler" in name.split(".") else top

    depths = [
        int(m["index"]) + 1 if m else (0 if position < first else after_stack(names[position]))
        for position, m in enumerate(matches)
    ]
    return depths, top


def layerwise_groups(
    named_parameters: Iterable[tuple[str, nn.Parameter]],
    weight_decay: float,
    lr: float,
    beta: float,
    num_layers: int | None = None,
    pooler_step: bool = False,
) -> list[dict[str, Any]]:
    """Groups per (depth, decayed or not), each with lr · β^(D − depth), bottom first; frozen parameters left out."""
    named = list(named_parameters)
    depths, top = layer_depths([name for name, _ in named], num_layers, pooler_step)
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for (name, parameter), depth in zip(named, depths):
        if not parameter.requires_grad:
            continue
        decayed = not (name.endswith(NO_DECAY) or parameter.ndim < 2)
        group = groups.setdefault(
            (depth, decayed),
            {
                "params": [],
                "weight_decay": weight_decay if decayed else 0.0,
                "lr": lr * beta ** (top - depth),
                "depth": depth,
            },
        )
        group["params"].append(parameter)
    return [groups[key] for key in sorted(groups, key=lambda key: (key[0], not key[1]))]


def linear_warmup_decay(step: int, warmup_steps: int, total_steps: int) -> float:
    """LR multiplier: 0 → 1 over the warm-up, then 1 → 0 linearly at the last step."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    remaining = max(1, total_steps - warmup_steps)
    return max(0.0, (total_steps - step) / remaining)


def bert_warmup_decay(step: int, warmup_steps: int, total_steps: int) -> float:
    """LR multiplier of BERT's/BAM's optimization.py: step/W over the warm-up, else 1 − step/T (decay drawn from 0)."""
    if warmup_steps > 0 and step < warmup_steps:
        return step / warmup_steps
    return max(0.0, 1.0 - step / max(1, total_steps))


MULTIPLIERS = {"linear": linear_warmup_decay, "bert": bert_warmup_decay}
assert tuple(MULTIPLIERS) == SCHEDULES  # the torch-free rule lists the same shapes


class AdamWeightDecay(torch.optim.Optimizer):
    """BERT's and BAM's `AdamWeightDecayOptimizer` (bam/bert/optimization.py): Adam without bias correction and with
    decoupled weight decay, m ← β1·m + (1 − β1)·g, v ← β2·v + (1 − β2)·g², p ← p − lr·(m / (√v + ε) + wd·p)."""

    def __init__(self, params: Any, lr: float, betas: tuple[float, float], eps: float, weight_decay: float = 0.0):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for parameter in group["params"]:
                if parameter.grad is None:
                    continue
                state = self.state[parameter]
                if not state:
                    state["exp_avg"] = torch.zeros_like(parameter)
                    state["exp_avg_sq"] = torch.zeros_like(parameter)
                m, v, grad = state["exp_avg"], state["exp_avg_sq"], parameter.grad
                m.mul_(beta1).add_(grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                update = m / (v.sqrt() + group["eps"])
                if group["weight_decay"]:
                    update = update + group["weight_decay"] * parameter
                parameter.add_(update, alpha=-group["lr"])
        return loss


def build_optimizer(
    named_parameters: Iterable[tuple[str, nn.Parameter]],
    cfg: Mapping[str, Any],
    total_steps: int,
    num_layers: int | None = None,
    key: str = "optimizer",
) -> dict[str, Any]:
    """A Lightning `configure_optimizers` answer from an optimizer config (conf/optimizer/adamw.yaml: lr, weight_decay,
    warmup_ratio, schedule, betas, eps, bias_correction, layerwise_decay, pooler_step, implementation; every key given, none defaulted here), checked by the
    config check's own rules (kdlab.optim_checks) under `key`; `num_layers` is the layer count when the caller knows
    it (else read from names)."""
    check_optimizer(cfg, key)
    implementation = cfg["implementation"]
    beta = float(cfg["layerwise_decay"])
    lr, weight_decay = float(cfg["lr"]), float(cfg["weight_decay"])
    if beta < 1.0:
        groups = layerwise_groups(named_parameters, weight_decay, lr, beta, num_layers, bool(cfg["pooler_step"]))
    else:
        groups = parameter_groups(named_parameters, weight_decay)
    if cfg["bias_correction"]:
        optimizer: torch.optim.Optimizer = torch.optim.AdamW(
            groups,
            lr=lr,
            betas=tuple(cfg["betas"]),
            eps=float(cfg["eps"]),
            **IMPLEMENTATIONS[implementation],
        )
    else:
        optimizer = AdamWeightDecay(groups, lr=lr, betas=tuple(cfg["betas"]), eps=float(cfg["eps"]))
    warmup = int(round(float(cfg["warmup_ratio"]) * total_steps))
    # one multiplier for every group: LambdaLR scales each group's own initial lr
    multiplier = MULTIPLIERS[cfg["schedule"]]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: multiplier(step, warmup, total_steps))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
