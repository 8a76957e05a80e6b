"""Multilingual distillation loss (Reimers & Gurevych 2020), teacher M frozen, student Ŝ, pairs (s_i, t_i):

    L = 1/|B| · Σ_i [ ‖Ŝ(s_i) − M(s_i)‖² + ‖Ŝ(t_i) − M(s_i)‖² ]     (squared norms averaged over the D dims)

The first term keeps the source-language space, the second maps translations onto it.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class MultilingualLossOutput(NamedTuple):
    total: torch.Tensor
    source: torch.Tensor
    target: torch.Tensor


def multilingual_mse(
    student_source: torch.Tensor, student_target: torch.Tensor, teacher_source: torch.Tensor
) -> MultilingualLossOutput:
    """Both terms (mean over batch and embedding dims) and their sum."""
    if student_source.shape[-1] != teacher_source.shape[-1]:
        raise ValueError(f"student width {student_source.shape[-1]} != teacher width {teacher_source.shape[-1]}")
    teacher_source = teacher_source.to(student_source.dtype)
    source = F.mse_loss(student_source, teacher_source)
    target = F.mse_loss(student_target, teacher_source)
    return MultilingualLossOutput(source + target, source, target)
