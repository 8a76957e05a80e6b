"""SimCSE's unsupervised contrastive loss (Gao et al. 2021): each sentence encoded twice with dropout,
z and z', is the positive of itself; the other sentences of the batch are negatives:

    L = 1/|B| · Σ_i −log( exp(cos(z_i, z'_i)/τ) / Σ_j exp(cos(z_i, z'_j)/τ) )

With several processes each holds a part of the batch B: it passes its own rows z_i and every process's z'_j
(`offset` = where its rows sit among them), and the mean of the processes' losses is L.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def simcse_loss(first: torch.Tensor, second: torch.Tensor, temperature: float = 0.05, offset: int = 0) -> torch.Tensor:
    """Cross-entropy over the in-batch cosine matrix of two dropout views: row i of `first` against every row of
    `second`, the target being row `offset + i`."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    similarity = F.cosine_similarity(first.unsqueeze(1), second.unsqueeze(0), dim=-1) / temperature
    return F.cross_entropy(similarity, offset + torch.arange(len(first), device=first.device))
