"""Hinton soft-target distillation (Hinton, Vinyals & Dean 2015).

Classification (C classes), teacher logits z_T, student logits z_S, gold label y:

    L = α · τ² · KL( softmax(z_T/τ) ‖ softmax(z_S/τ) ) + (1 − α) · CE(z_S, y)

KL is summed over classes and averaged over the batch; τ² is always applied to the soft term.
Regression (one output): soft = MSE(z_S, z_T), hard = MSE(z_S, y), L = α · soft + (1 − α) · hard
(temperature has no meaning for a single real output and is not used there).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


def soft_target_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """τ² · KL(softmax(z_T/τ) ‖ softmax(z_S/τ)), summed over classes, mean over the batch."""
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2


def hard_loss(student_logits: torch.Tensor, labels: torch.Tensor, task: str) -> torch.Tensor:
    """Cross-entropy with gold class indices, or MSE with gold scores for regression."""
    if task == "regression":
        return F.mse_loss(student_logits.view(-1).float(), labels.view(-1).float())
    return F.cross_entropy(student_logits.float(), labels)


class KDLossOutput(NamedTuple):
    total: torch.Tensor
    soft: torch.Tensor
    hard: torch.Tensor


class SoftTargetKDLoss(nn.Module):
    """α-weighted sum of the soft-target term and the gold-label term; returns all three."""

    def __init__(self, alpha: float = 0.5, temperature: float = 2.0, task: str = "classification"):
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.alpha = alpha
        self.temperature = temperature
        self.task = task

    def forward(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor | None = None
    ) -> KDLossOutput:
        if self.task == "regression":
            soft = F.mse_loss(student_logits.view(-1).float(), teacher_logits.view(-1).float())
        else:
            soft = soft_target_loss(student_logits.float(), teacher_logits.float(), self.temperature)
        if self.alpha < 1.0:
            if labels is None:
                raise ValueError("alpha < 1 needs gold labels for the hard term")
            hard = hard_loss(student_logits, labels, self.task)
        else:
            hard = soft.new_zeros(())
        return KDLossOutput(self.alpha * soft + (1.0 - self.alpha) * hard, soft, hard)
