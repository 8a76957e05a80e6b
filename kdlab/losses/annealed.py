"""BAM teacher annealing (Clark et al. 2019): the target moves from the teacher's prediction to the gold label.

λ ∈ [0, 1] (rising linearly 0 → 1 over training, or fixed). Classification, student logits z_S, teacher
logits z_T, gold class y:

    L = mean_i CE( z_S,i , λ · onehot(y_i) + (1 − λ) · softmax(z_T,i) )
      = mean_i − Σ_c [λ · onehot(y_i)_c + (1 − λ) · softmax(z_T,i)_c] · log softmax(z_S,i)_c

Regression (one output, targets scaled to [0, 1]):

    L = mean_i ( z_S,i − (λ · y_i + (1 − λ) · z_T,i) )²

λ = 1 is plain supervised training on gold labels; λ = 0 is pure distillation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def annealed_target(teacher_logits: torch.Tensor, labels: torch.Tensor, lam: float, task: str) -> torch.Tensor:
    """The mixed target: λ·onehot(y) + (1 − λ)·softmax(z_T) per class, or λ·y + (1 − λ)·z_T for regression."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lambda must be in [0, 1], got {lam}")
    if task == "regression":
        return lam * labels.view(-1).float() + (1.0 - lam) * teacher_logits.view(-1).float()
    onehot = F.one_hot(labels.long(), teacher_logits.shape[-1]).float()
    return lam * onehot + (1.0 - lam) * F.softmax(teacher_logits.float(), dim=-1)


def annealed_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, lam: float, task: str
) -> torch.Tensor:
    """CE against the annealed soft target (classification) or squared error to the annealed score, batch mean."""
    target = annealed_target(teacher_logits, labels, lam, task)
    if task == "regression":
        return F.mse_loss(student_logits.view(-1).float(), target)
    return F.cross_entropy(student_logits.float(), target)
