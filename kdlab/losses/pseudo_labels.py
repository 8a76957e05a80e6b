"""Trans-Encoder's pseudo-label losses (Liu et al. 2022), mean over the pairs of a batch:

    bce, on a logit z (bi → cross, the method's pairing):       −[ŷ·log σ(z) + (1 − ŷ)·log(1 − σ(z))]
    mse, on a cosine c (cross → bi, the method's pairing):      (c − ỹ)²

and, for ablations, the swapped pairings: mse on a logit compares σ(z) with the label; bce on a
cosine treats c, clamped to [ε, 1 − ε], as the probability.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdlab.losses.registry import PAIR_LOSSES

EPS = 1e-6


def pseudo_label_loss(name: str, scores: torch.Tensor, targets: torch.Tensor, scores_are_logits: bool) -> torch.Tensor:
    """The `bce` or `mse` loss between model scores (logits or cosines) and soft labels in [0, 1]."""
    targets = targets.to(scores.dtype)
    if name == "bce":
        if scores_are_logits:
            return F.binary_cross_entropy_with_logits(scores, targets)
        return F.binary_cross_entropy(scores.clamp(EPS, 1 - EPS), targets)
    if name == "mse":
        return F.mse_loss(torch.sigmoid(scores) if scores_are_logits else scores, targets)
    raise ValueError(f"unknown pseudo-label loss {name!r}; choose from {list(PAIR_LOSSES)}")
