"""Hidden-state matching (optional extra term of Hinton KD, as in METHODS §1):

    L_hidden = Σ_(s,t) ∈ map  w · MSE( P_(s,t)(h_S[s]), h_T[t] )

h[0] is the embedding output and h[i] the output of layer i (Hugging Face `hidden_states`). P is a
learnable linear projection when the widths differ, the identity otherwise. MSE is the mean over the
non-padding tokens of the batch and the hidden dimensions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


def masked_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared difference over the tokens where mask is 1 and over the hidden dimensions."""
    weights = mask.unsqueeze(-1).to(student.dtype)
    squared = (student - teacher).pow(2) * weights
    return squared.sum() / (weights.sum() * student.shape[-1]).clamp_min(1.0)


class HiddenStateMSE(nn.Module):
    """Weighted sum of masked MSEs between (projected) student and teacher hidden states."""

    def __init__(self, layer_map: Sequence[Sequence[int]], student_width: int, teacher_width: int, weight: float = 1.0):
        super().__init__()
        self.layer_map = [(int(s), int(t)) for s, t in layer_map]
        self.weight = float(weight)
        self.projections = nn.ModuleList(
            nn.Linear(student_width, teacher_width) if student_width != teacher_width else nn.Identity()
            for _ in self.layer_map
        )

    @classmethod
    def from_models(
        cls, layer_map: Sequence[Sequence[int]], weight: float, student_config: Any, teacher_config: Any
    ) -> HiddenStateMSE:
        """The term for a student and a teacher (their Hugging Face configs give the widths)."""
        return cls(layer_map, student_config.hidden_size, teacher_config.hidden_size, weight)

    def forward(
        self, student_hidden: Sequence[torch.Tensor], teacher_hidden: Sequence[torch.Tensor], mask: torch.Tensor
    ) -> torch.Tensor:
        total = student_hidden[0].new_zeros(())
        for (s, t), project in zip(self.layer_map, self.projections):
            total = total + masked_mse(project(student_hidden[s]), teacher_hidden[t], mask)
        return self.weight * total
