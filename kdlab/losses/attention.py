"""Attention transfer (TinyBERT, Jiao et al. 2020, §3.1), an optional extra term of Hinton KD:

    L_attn = w · Σ_(s,t) ∈ map  MSE_mask( A_S[s], A_T[t] )

A[l] ∈ [0, 1]^(B × H × L × L) holds layer l's attention probabilities (softmax over the keys, before attention
dropout), l = 1..number of layers. Heads are matched one to one (head h ↔ head h) when student and teacher have
the same number of heads; when the counts differ, each side is first averaged over its heads, Ā = 1/H Σ_h A_h,
and the two averages are compared (H = 1 below). Positions where the query or the key is padding are left out:

    MSE_mask(A_S, A_T) = Σ_(b,h,i,j) m_bi · m_bj · (A_S − A_T)²_bhij  /  ( H · Σ_b (Σ_i m_bi)² )

i.e. the mean over the compared heads and the (query, key) pairs of real tokens. TinyBERT itself fits the
unnormalised scores QKᵀ/√d; kdlab compares the probabilities, which every attention implementation defines alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


def masked_attention_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE between (B, H, L, L) attention maps over the heads (averaged first when the counts differ) and over the
    (query, key) pairs where mask is 1 for both."""
    if student.shape[1] != teacher.shape[1]:
        student, teacher = student.mean(dim=1, keepdim=True), teacher.mean(dim=1, keepdim=True)
    real = mask.to(student.dtype)
    pairs = (real.unsqueeze(-1) * real.unsqueeze(-2)).unsqueeze(1)  # (B, 1, L, L): query real and key real
    squared = (student - teacher.to(student.dtype)).pow(2) * pairs
    return squared.sum() / (pairs.sum() * student.shape[1]).clamp_min(1.0)


class AttentionMSE(nn.Module):
    """Weighted sum of masked MSEs between student and teacher attention probabilities of mapped layers (1-based)."""

    def __init__(self, layer_map: Sequence[Sequence[int]], weight: float = 1.0):
        super().__init__()
        self.layer_map = [(int(s), int(t)) for s, t in layer_map]
        self.weight = float(weight)

    @classmethod
    def from_models(
        cls, layer_map: Sequence[Sequence[int]], weight: float, student_config: Any, teacher_config: Any
    ) -> AttentionMSE:
        """The term for a student and a teacher (head counts are read from the maps themselves)."""
        return cls(layer_map, weight)

    def forward(
        self, student_attentions: Sequence[torch.Tensor], teacher_attentions: Sequence[torch.Tensor], mask: torch.Tensor
    ) -> torch.Tensor:
        deepest = (max(s for s, _ in self.layer_map), max(t for _, t in self.layer_map))
        if len(student_attentions or ()) < deepest[0] or len(teacher_attentions or ()) < deepest[1]:
            raise ValueError(
                f"attention transfer needs layers {deepest} (student, teacher) but the models returned "
                f"{len(student_attentions or ())} and {len(teacher_attentions or ())} attention maps "
                "(run the forward under kdlab.models.attention_maps.attention_probabilities)"
            )
        total = student_attentions[0].new_zeros(())
        for s, t in self.layer_map:
            total = total + masked_attention_mse(student_attentions[s - 1], teacher_attentions[t - 1], mask)
        return self.weight * total
