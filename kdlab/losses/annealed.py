"""BAM teacher annealing (Clark et al. 2019): the target moves from the teacher's prediction to the gold label.

λ ∈ [0, 1] (rising linearly 0 → 1 over training, or fixed). Classification, student logits z_S, teacher
logits z_T, gold class y:

    L = mean_i CE( z_S,i , λ · onehot(y_i) + (1 − λ) · softmax(z_T,i) )
      = mean_i − Σ_c [λ · onehot(y_i)_c + (1 − λ) · softmax(z_T,i)_c] · log softmax(z_S,i)_c

Regression (one output, targets scaled to [0, 1]):

    L = mean_i ( z_S,i − (λ · y_i + (1 − λ) · z_T,i) )²

λ = 1 is plain supervised training on gold labels; λ = 0 is pure distillation. `annealed_losses` gives the
per-example terms ℓ_i (no teacher: the gold target, λ = 1) for a weighted mean or sum over the batch: BAM's code
(google-research bam/run_classifier.py) sums w_t(i) · ℓ_i over the batch, kdlab's default takes the mean.

Transfer rows (a task's transfer set, kdlab/data/transfer.py; `gold` False) have no gold label, so annealing has
nothing to anneal to: their target is the teacher's alone, whatever λ (the annealed target at λ = 0):

    ℓ_i = CE( z_S,i , softmax(z_T,i) )        regression: ( z_S,i − z_T,i )²        (i a transfer row)

while the gold rows keep λ's target above. Without `gold` (no transfer set) the computation is the one above,
operation for operation.
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


REDUCTIONS = ("mean", "sum")


def annealed_losses(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    labels: torch.Tensor,
    lam: float,
    task: str,
    gold: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-example losses [B]: CE against the annealed target, or its squared error for regression; with no teacher
    (None) the gold target alone (λ = 1: CE with the gold class, squared error to the gold score). `gold` [B] bool
    (optional): False marks a transfer row, whose target is the teacher's alone (λ = 0 for that row)."""
    if teacher_logits is None:
        if gold is not None and not bool(gold.all()):
            raise ValueError("transfer rows (gold False) need a teacher: they have no gold label")
        if task == "regression":
            return (student_logits.view(-1).float() - labels.view(-1).float()) ** 2
        return F.cross_entropy(student_logits.float(), labels.long(), reduction="none")
    target = annealed_target(teacher_logits, labels, lam, task)
    if gold is not None:
        mask = gold.to(target.device).view(-1, *([1] * (target.dim() - 1)))
        target = torch.where(mask, target, annealed_target(teacher_logits, labels, 0.0, task))
    if task == "regression":
        return (student_logits.view(-1).float() - target) ** 2
    return -(target * F.log_softmax(student_logits.float(), dim=-1)).sum(-1)


def reduce_losses(losses: torch.Tensor, weights: torch.Tensor, reduction: str) -> torch.Tensor:
    """Σ_i w_i · ℓ_i (`sum`) or its mean over the batch (`mean`)."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {list(REDUCTIONS)}, got {reduction!r}")
    weighted = (weights.to(losses.dtype) * losses).sum()
    return weighted if reduction == "sum" else weighted / max(1, losses.numel())
