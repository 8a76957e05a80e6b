"""Logit MSE as the soft term (Tang et al. 2019, *Distilling Task-Specific Knowledge from BERT into Simple Neural
Networks*, §3.2), teacher logits z_T, student logits z_S (C outputs), gold label y:

    L = α · 1/|B| Σ_i ‖z_S,i − z_T,i‖²₂ + (1 − α) · CE(z_S, y)

‖·‖²₂ is the squared L2 distance between the raw logit vectors (summed over the C classes, not averaged), then
averaged over the batch — the paper's L_distill per example. No temperature: the logits are compared as they are.
Regression (one output): the same sum over one output, i.e. MSE(z_S, z_T); the hard term is MSE(z_S, y).
Convention: Tang et al. write L = α·L_CE + (1 − α)·L_distill, so their α is kdlab's 1 − α (loss.alpha weights the
soft term here, as for the soft-target KL).
"""

from __future__ import annotations

import torch

from kdlab.losses.soft_target import LogitKDLoss


def logit_mse_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """1/|B| Σ_i ‖z_S,i − z_T,i‖²₂ (squared L2 distance summed over outputs, mean over the batch)."""
    student = student_logits.float().reshape(len(student_logits), -1)
    teacher = teacher_logits.float().reshape(len(teacher_logits), -1)
    return (student - teacher).pow(2).sum(dim=-1).mean()


class LogitMSEKDLoss(LogitKDLoss):
    """α · ‖z_S − z_T‖² (batch mean) + (1 − α) · CE(z_S, y); regression: MSE for both terms."""

    def soft(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        return logit_mse_loss(student_logits, teacher_logits)
