"""STS evaluation: Spearman ×100 between pair cosines and gold similarity scores.

    score = 100 · ρ_Spearman( [cos(a_i, b_i)]_i , [gold_i]_i ),   cos(a, b) = a·b / (‖a‖ ‖b‖)

ρ is Pearson's r of the ranks, ties getting their average rank (``scipy.stats.spearmanr``). For
cross-lingual STS a_i and b_i embed sentences in different languages. `spearman` does the same for any
scores (a cross-encoder's σ(logit)). Constant scores (a collapsed encoder) give NaN, as Spearman is
undefined there; constant gold scores raise ValueError.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from scipy.stats import spearmanr


def spearman(scores: Sequence[float] | torch.Tensor, gold: Sequence[float]) -> float:
    """Spearman correlation ×100 between model scores and gold scores (NaN when the scores are constant)."""
    values = scores.double().cpu().numpy() if isinstance(scores, torch.Tensor) else [float(s) for s in scores]
    if len(gold) != len(values):
        raise ValueError(f"{len(values)} scores but {len(gold)} gold scores")
    if len(gold) < 2:
        raise ValueError(f"Spearman correlation needs at least 2 pairs, got {len(gold)}")
    gold_values = [float(g) for g in gold]
    if len(set(gold_values)) == 1:
        raise ValueError(f"all {len(gold_values)} gold scores are {gold_values[0]}: Spearman correlation is undefined")
    with warnings.catch_warnings():
        # Constant scores: scipy warns and returns NaN, which is the documented result here.
        warnings.simplefilter("ignore")
        rho = spearmanr(values, gold_values)[0]
    return float(rho) * 100


@torch.no_grad()
def cosine_spearman(emb_a: torch.Tensor, emb_b: torch.Tensor, gold: Sequence[float]) -> float:
    """Spearman correlation ×100 between the row-wise cosine of emb_a and emb_b and the gold scores."""
    if emb_a.dim() != 2 or emb_a.shape != emb_b.shape:
        shapes = f"{tuple(emb_a.shape)} and {tuple(emb_b.shape)}"
        raise ValueError(f"emb_a and emb_b must be [N, D] with the same shape, got {shapes}")
    if len(gold) != emb_a.shape[0]:
        raise ValueError(f"{emb_a.shape[0]} embedding pairs but {len(gold)} gold scores")
    return spearman(F.cosine_similarity(emb_a.double(), emb_b.double(), dim=1), gold)
