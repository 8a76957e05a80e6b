"""What every method shares: the trained model and its tokenizer, the optimiser factory, step logging,
train mode at fit start, exports; plus `TaskModule` for classifiers/regressors with task metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from kdlab.data.collate import model_inputs
from kdlab.errors import TrainingError
from kdlab.evaluation.task_metrics import build_metrics
from kdlab.losses import hard_loss
from kdlab.models.files import checkpoint_payload, export_model
from kdlab.optim import build_optimizer


def task_predictions(logits: torch.Tensor, task: str) -> torch.Tensor:
    """What a task metric compares with the labels: the score (regression) or the arg-max class."""
    return logits.view(-1).float() if task == "regression" else logits.argmax(dim=-1)


def _loss_value(value: torch.Tensor) -> str:
    """A loss term for a one-line message: 4 significant digits, `nan`/`inf` as such."""
    value = value.detach().float()
    return f"{value.item():.4g}" if value.numel() == 1 else f"{value.mean().item():.4g}(mean)"


class KDModule(pl.LightningModule):
    """A trained `model` + `tokenizer`; subclasses define `compute_loss` (and evaluation)."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, optimizer: Mapping[str, Any]):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.optimizer_cfg = dict(optimizer)

    def on_fit_start(self) -> None:
        # from_pretrained() and copies of a frozen teacher come in eval mode, and Lightning keeps the
        # mode it finds: switch the trained model to train mode so dropout is on while it learns.
        self.model.train()

    def compute_loss(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The training loss terms of a batch; `loss` is the one optimised, the rest are logged."""
        raise NotImplementedError

    def trainable_named_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        """What the optimiser updates: the model, plus any trainable parts a method adds."""
        return list(self.model.named_parameters())

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        terms = self.compute_loss(batch)
        self._stop_on_non_finite_loss(terms, batch_idx)
        if self._logs_this_step():
            size = len(next(iter(batch.values())))
            self.log_dict({f"train/{name}": value.detach() for name, value in terms.items()}, batch_size=size)
        return terms["loss"]

    def _stop_on_non_finite_loss(self, terms: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        """Raise TrainingError before a NaN/inf loss is back-propagated: never train on with it.

        Every process decides together (one boolean all-reduce under DDP), so all ranks stop at the same step
        instead of one waiting for the others' gradients. The checkpoints already written stay as they were.
        """
        local = bool(torch.isfinite(terms["loss"].detach()).all())
        trainer = self._trainer
        if local if trainer is None else trainer.strategy.reduce_boolean_decision(local, all=True):
            return
        shown = " ".join(f"{name}={_loss_value(value)}" for name, value in terms.items())
        where = " (in another process)" if local else ""
        raise TrainingError(
            self.global_step,
            f"train loss is not finite at step {self.global_step}{where}: {shown} "
            f"(epoch {self.current_epoch}, batch {batch_idx}); training stopped",
        )

    def _logs_this_step(self) -> bool:
        """Whether Lightning writes step logs now (every `log_every_n_steps`); train terms are logged on
        steps only, so the other steps skip `self.log` and its bookkeeping (about 1 ms a step on CPU)."""
        trainer = self._trainer
        connector = getattr(trainer, "_logger_connector", None) if trainer is not None else None
        return True if connector is None else bool(connector.should_update_logs)

    def configure_optimizers(self) -> dict[str, Any]:
        return build_optimizer(
            self.trainable_named_parameters(),
            self.optimizer_cfg,
            int(self.trainer.estimated_stepping_batches),
            key=getattr(self, "optimizer_key", "optimizer"),  # the stage's real key, set by kdlab.runner.fit_stage
        )

    def export(self, folder: Path) -> Path:
        """Write the trained model as a Hugging Face folder (weights + tokenizer)."""
        return export_model(self.model, self.tokenizer, folder)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Config and tokenizer files travel with the weights: a .ckpt loads on its own, weights-only.
        checkpoint["kdlab"] = checkpoint_payload(self.model, self.tokenizer)


class TaskModule(KDModule):
    """A sequence classifier/regressor with val/test task metrics."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        task: str,
        num_labels: int,
        optimizer: Mapping[str, Any],
        metrics: Sequence[str],
    ):
        super().__init__(model, tokenizer, optimizer)
        self.task = task
        self.val_metrics = build_metrics(task, num_labels, metrics, prefix="val/")
        self.test_metrics = build_metrics(task, num_labels, metrics, prefix="test/")

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.model(**model_inputs(batch)).logits

    def _evaluate(self, batch: Mapping[str, torch.Tensor], split: str, metrics: Any) -> None:
        logits = self(batch)
        size = len(batch["input_ids"])
        self.log(f"{split}/loss", hard_loss(logits, batch["labels"], self.task), batch_size=size, sync_dist=True)
        metrics.update(task_predictions(logits, self.task), batch["labels"])
        self.log_dict(metrics, batch_size=size)

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_metrics)

    def test_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_metrics)
