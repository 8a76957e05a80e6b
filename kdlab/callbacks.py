"""Lightning callbacks kdlab configures in conf/callbacks/.

`BestCheckpoint` keeps the best validation of a stage like Lightning's `ModelCheckpoint`, with one
difference that matters for distillation: when the monitored metric ties with the best so far (a
small dev set gives the same accuracy at several epochs), the tie is broken on a second metric,
`val/loss` by default. Of two teachers with the same accuracy, the one with the lower validation
cross-entropy gives better-calibrated probabilities on held-out text, and those probabilities are the
soft targets the student learns from. Lightning's rule keeps the *earliest* of the tied epochs,
which is often the least trained (near-uniform soft targets). When the tie metric was not logged,
the later checkpoint wins the tie (it has trained longer).
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

TIE_MODES = {"min": torch.lt, "max": torch.gt}  # the config check (kdlab.config) lists the same two


class BestCheckpoint(ModelCheckpoint):
    """`ModelCheckpoint` whose ties (with save_top_k=1) on `monitor` are broken by `tie_break` (`tie_mode`: min or max)."""

    def __init__(self, *args: Any, tie_break: str | None = "val/loss", tie_mode: str = "min", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.tie_break = tie_break
        self.tie_mode = tie_mode
        self.best_tie: float | None = None

    def _tie_value(self, trainer: pl.Trainer) -> float | None:
        value = trainer.callback_metrics.get(self.tie_break) if self.tie_break else None
        return None if value is None else float(value)

    def check_monitor_top_k(self, trainer: pl.Trainer, current: torch.Tensor | None = None) -> bool:
        if current is None or self.tie_break is None or self.save_top_k != 1 or not self.best_k_models:
            return super().check_monitor_top_k(trainer, current)
        best = self.best_k_models[self.kth_best_model_path]
        if not bool(torch.eq(current.to(best.device) if isinstance(best, torch.Tensor) else current, best)):
            return super().check_monitor_top_k(trainer, current)
        candidate = self._tie_value(trainer)
        if candidate is None or self.best_tie is None:
            better = True  # no second metric to compare: the later checkpoint has trained longer
        else:
            better = bool(TIE_MODES[self.tie_mode](torch.tensor(candidate), torch.tensor(self.best_tie)))
        return trainer.strategy.reduce_boolean_decision(better)

    def _update_best_and_save(self, current: torch.Tensor, trainer: pl.Trainer, monitor_candidates: dict[str, torch.Tensor]) -> None:
        self.best_tie = self._tie_value(trainer)  # before saving: the value is part of the checkpoint's callback state
        super()._update_best_and_save(current, trainer, monitor_candidates)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "best_tie": self.best_tie}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.best_tie = state_dict.get("best_tie")
