"""Trans-Encoder's pseudo-labels and pseudo-label losses (Liu et al. 2022), losses averaged over the pairs of a batch.

Labels, for N models (N = 1, or the mutual variant's N > 1):

    bi → cross (`cosine_labels`)    ŷ = (1/N) Σ_n r(cos(B_n(a), B_n(b)))     r = clip to [0, 1] (`clipped`) or identity (`raw`)
    cross → bi (`orders` of `cross_scores`, kdlab.models.cross_encoder)
                                    ỹ = (1/N) Σ_n σ(C_n(a, b))                (`one`: the pair as given)
                                    ỹ = (1/N) Σ_n ½(σ(C_n(a, b)) + σ(C_n(b, a)))   (`both`)

Losses:

    bce, on a logit z (bi → cross, the method's pairing):       −[ŷ·log σ(z) + (1 − ŷ)·log(1 − σ(z))]
    mse, on a cosine c (cross → bi, the method's pairing):      (c − ỹ)²

and, for ablations, the swapped pairings: mse on a logit compares σ(z) with the label; bce on a
cosine treats c, clamped to [ε, 1 − ε], as the probability. With `raw` labels ŷ may be negative; bce then
is the formula above as written (torch's BCEWithLogits, as sentence-transformers' CrossEncoder uses it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdlab.losses.registry import LABEL_RULES, PAIR_LOSSES, check_label_choice, check_pair_loss

EPS = 1e-6
__all__ = ["EPS", "PAIR_LOSSES", "cosine_labels", "pseudo_label_loss"]


def cosine_labels(per_model: list[torch.Tensor], rule: str, key: str) -> torch.Tensor:
    """The bi → cross labels: each model's cosines under `rule` (clipped to [0, 1], or raw), averaged over the models;
    `key` names the rule's config key in the error for an unknown rule."""
    check_label_choice(rule, LABEL_RULES, key)
    ruled = [cosines.clamp(0.0, 1.0) if rule == "clipped" else cosines for cosines in per_model]
    return torch.stack(ruled).mean(dim=0)


def pseudo_label_loss(
    name: str, scores: torch.Tensor, targets: torch.Tensor, scores_are_logits: bool, key: str
) -> torch.Tensor:
    """The `bce` or `mse` loss between model scores (logits or cosines) and soft labels; `key` names the loss's config
    key (`method.<stage>.loss`) in the error for an unknown loss."""
    check_pair_loss(name, key)
    targets = targets.to(scores.dtype)
    if name == "bce":
        if scores_are_logits:
            return F.binary_cross_entropy_with_logits(scores, targets)
        return F.binary_cross_entropy(scores.clamp(EPS, 1 - EPS), targets)
    return F.mse_loss(torch.sigmoid(scores) if scores_are_logits else scores, targets)
