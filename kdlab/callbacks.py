"""Lightning callbacks kdlab configures in conf/callbacks/ (and `EpochLine`, which the runner adds).

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

import time
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint, TQDMProgressBar

from kdlab.evaluation.names import format_metric
from kdlab.utils.quiet import without_version

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

    def _update_best_and_save(
        self, current: torch.Tensor, trainer: pl.Trainer, monitor_candidates: dict[str, torch.Tensor]
    ) -> None:
        self.best_tie = self._tie_value(trainer)  # before saving: the value is part of the checkpoint's callback state
        super()._update_best_and_save(current, trainer, monitor_candidates)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "best_tie": self.best_tie}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.best_tie = state_dict.get("best_tie")


class EpochLine(pl.Callback):
    """One log line per epoch when the progress bar is off: the last training loss, the monitored metric, elapsed, ETA."""

    def __init__(self, stage: str, monitor: str | None, log: Any):
        self.stage, self.monitor, self.out = stage, monitor, log
        self.started = 0.0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.started = time.monotonic()
        self.last_loss: float | None = None

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # the loss of every step, not only of the logged ones: an epoch shorter than log_every_n_steps logs none
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            self.last_loss = float(loss.detach())

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        done = trainer.current_epoch + 1
        elapsed = time.monotonic() - self.started
        total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else done
        metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
        if self.last_loss is not None:
            metrics["train/loss"] = self.last_loss
        parts = [
            f"{name} {format_metric(name, metrics[name])}" for name in ("train/loss", self.monitor) if name in metrics
        ]
        eta = elapsed / done * max(total - done, 0)
        self.out.info(
            "stage %s: epoch %d/%d  %s  elapsed %s  ETA %s",
            self.stage,
            done,
            total,
            "  ".join(parts),
            _duration(elapsed),
            _duration(eta),
        )


def _duration(seconds: float) -> str:
    """12s, 3m05s, 1h02m."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class QuietProgressBar(TQDMProgressBar):
    """Lightning's progress bar without the logger version (`v_num`) beside the metrics."""

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        return without_version(super().get_metrics(trainer, pl_module))


class ValidateEvery(pl.Callback):
    """Validate after every `steps` training batches of an epoch and after its last batch (sentence-transformers'
    `fit(evaluation_steps=steps)`: the count restarts each epoch), every validation a candidate for the best checkpoint.

    Lightning validates when `(batch_idx + 1) % trainer.val_check_batch == 0`; this sets `val_check_batch` after each
    batch so that the test holds exactly at those batches. The checkpoint callbacks save after each validation
    (their `save_on_train_epoch_end` off), mid-epoch ones included.
    """

    def __init__(self, steps: int):
        self.steps = int(steps)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for callback in trainer.checkpoint_callbacks:
            callback._save_on_train_epoch_end = False  # the constructor's save_on_train_epoch_end=False

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        done = batch_idx + 1
        due = done % self.steps == 0 or done >= trainer.num_training_batches
        trainer.val_check_batch = done if due else done + 1
