"""Losses: pure functions and nn.Modules, tensors in, scalar out (no Lightning, no I/O).

Each name is imported from its module on first use (PEP 562), so that the torch-free loss-term table
(kdlab.losses.registry) and the config checks that read it import no torch. hinton finds its KD terms by name in
that table; a term added there needs no line here (import its class from its own module).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_HOMES = {
    "annealed_loss": "annealed",
    "annealed_target": "annealed",
    "simcse_loss": "contrastive",
    "MultilingualLossOutput": "embedding_mse",
    "multilingual_mse": "embedding_mse",
    "HiddenStateMSE": "hidden_states",
    "masked_mse": "hidden_states",
    "PAIR_LOSSES": "pseudo_labels",
    "pseudo_label_loss": "pseudo_labels",
    "TERMS": "registry",
    "default_layer_map": "registry",
    "KDLossOutput": "soft_target",
    "LogitKDLoss": "soft_target",
    "SoftTargetKDLoss": "soft_target",
    "hard_loss": "soft_target",
    "soft_target_loss": "soft_target",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'kdlab.losses' has no attribute {name!r}")
    return getattr(import_module(f"kdlab.losses.{_HOMES[name]}"), name)
