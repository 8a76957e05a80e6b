"""Hinton soft-target distillation (Hinton, Vinyals & Dean 2015).

Classification (C classes), teacher logits z_T, student logits z_S, gold label y:

    L = α · τ² · KL( softmax(z_T/τ) ‖ softmax(z_S/τ) ) + (1 − α) · CE(z_S, y)

KL is summed over classes and averaged over the batch; τ² is always applied to the soft term.
With a transfer set (kdlab/data/transfer.py) a batch B mixes gold examples G and unlabelled ones: the soft term is the
mean over all of B, the hard term the mean over G only (0 when G is empty).
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


class LogitKDLoss(nn.Module):
    """α · soft(z_S, z_T) + (1 − α) · hard(z_S, y), the soft term on logits defined by a subclass; returns all three.

    hard is the cross-entropy with gold classes (MSE with gold scores for regression); α = 1 needs no labels.
    """

    def __init__(self, alpha: float = 0.5, task: str = "classification"):
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.alpha = alpha
        self.task = task

    def soft(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        """The soft term, a scalar."""
        raise NotImplementedError

    def forward(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        labels: torch.Tensor | None = None,
        gold: torch.Tensor | None = None,
    ) -> KDLossOutput:
        """`gold` (bool per example, optional): which examples have a gold label (transfer-set rows have none). Then

            L = α · soft(all B examples) + (1 − α) · hard(the gold examples G ⊆ B)

        each term the mean over its own examples; hard = 0 for a batch without gold examples.
        """
        soft = self.soft(student_logits, teacher_logits)
        if self.alpha < 1.0:
            if labels is None:
                raise ValueError("alpha < 1 needs gold labels for the hard term")
            if gold is None:
                hard = hard_loss(student_logits, labels, self.task)
            elif bool(gold.any()):
                hard = hard_loss(student_logits[gold], labels[gold], self.task)
            else:
                hard = soft.new_zeros(())
        else:
            hard = soft.new_zeros(())
        return KDLossOutput(self.alpha * soft + (1.0 - self.alpha) * hard, soft, hard)


class SoftTargetKDLoss(LogitKDLoss):
    """α · τ² · KL(softmax(z_T/τ) ‖ softmax(z_S/τ)) + (1 − α) · CE(z_S, y); regression: MSE for both terms."""

    def __init__(self, alpha: float = 0.5, temperature: float = 2.0, task: str = "classification"):
        super().__init__(alpha, task)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def soft(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        if self.task == "regression":
            return F.mse_loss(student_logits.view(-1).float(), teacher_logits.view(-1).float())
        return soft_target_loss(student_logits.float(), teacher_logits.float(), self.temperature)
