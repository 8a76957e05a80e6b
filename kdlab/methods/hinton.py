"""`hinton`: soft-target knowledge distillation from a frozen teacher (Hinton et al. 2015).

    L = α · τ² · KL(softmax(z_T/τ) ‖ softmax(z_S/τ)) + (1 − α) · CE(z_S, y)   (see kdlab.losses.soft_target)

The teacher stays frozen and in eval mode for the whole run (Lightning's `train()` calls do not
reach it) and its weights are left out of the student's checkpoints.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from kdlab.data.collate import model_inputs
from kdlab.losses import SoftTargetKDLoss
from kdlab.methods.base import TaskModule
from kdlab.models.backbone import freeze


# The frozen teacher's modules are in eval mode on purpose; Lightning's notice about them is noise here.
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")


class HintonKD(TaskModule):
    """A student trained on the teacher's softened outputs plus the gold labels."""

    def __init__(
        self,
        model: torch.nn.Module,
        teacher: torch.nn.Module,
        tokenizer: Any,
        task: str,
        num_labels: int,
        optimizer: Mapping[str, Any],
        metrics: Sequence[str],
        alpha: float,
        temperature: float,
    ):
        super().__init__(model, tokenizer, task, num_labels, optimizer, metrics)
        self.teacher = freeze(teacher)
        self.kd_loss = SoftTargetKDLoss(alpha=alpha, temperature=temperature, task=task)
        self.strict_loading = False  # checkpoints hold the student only

    def train(self, mode: bool = True) -> "HintonKD":
        super().train(mode)
        self.teacher.eval()
        return self

    @torch.no_grad()
    def teacher_logits(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.teacher(**model_inputs(batch)).logits

    def compute_loss(self, batch: Mapping[str, torch.Tensor], logits: torch.Tensor) -> dict[str, torch.Tensor]:
        labels = batch.get("labels") if self.kd_loss.alpha < 1.0 else None
        out = self.kd_loss(logits, self.teacher_logits(batch), labels)
        return {"loss": out.total, "loss_soft": out.soft, "loss_hard": out.hard}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith("teacher.")]:
            del state[key]
