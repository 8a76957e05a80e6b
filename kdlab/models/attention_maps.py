"""Attention probabilities out of a Hugging Face forward, for attention transfer.

With transformers 5 a model built the usual way runs `sdpa` attention, which returns no attention maps
(`output_attentions=True` gives an empty tuple and a warning); `eager` returns them, but after attention dropout
(in train mode a dropped-out student map is not a probability distribution). `attention_probabilities(model)`
switches a model, for one forward, to `kdlab_probabilities`: eager attention's maths and dropout, unchanged
(the same outputs and random draws), returning the softmax probabilities from before the dropout. The model's own
implementation is restored afterwards; nothing is stored in its config or exports.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, eager_mask

from kdlab.errors import ConfigError

IMPLEMENTATION = "kdlab_probabilities"


def probabilities_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager attention (softmax(QKᵀ·scaling + mask), dropout, times V); returns the output and the pre-dropout probabilities."""
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask
    probabilities = nn.functional.softmax(scores, dim=-1)
    dropped = nn.functional.dropout(probabilities, p=dropout, training=module.training)
    return torch.matmul(dropped, value).transpose(1, 2).contiguous(), probabilities


AttentionInterface.register(IMPLEMENTATION, probabilities_attention)
AttentionMaskInterface.register(IMPLEMENTATION, eager_mask)


@contextmanager
def attention_probabilities(model: Any, key: str = "loss.attention.weight") -> Iterator[Any]:
    """Within the block, `model(..., output_attentions=True)` returns each layer's attention probabilities.

    ConfigError naming `key` when the model has no switchable attention (not a Hugging Face transformer, or one
    whose attention does not go through transformers' AttentionInterface).
    """
    before = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if before is None or not hasattr(model, "set_attn_implementation"):
        raise ConfigError(key, f"attention transfer needs a Hugging Face transformer, got a {type(model).__name__}")
    try:
        model.set_attn_implementation(IMPLEMENTATION)
    except (ValueError, ImportError) as err:
        raise ConfigError(
            key, f"{type(model).__name__} cannot return attention probabilities ({str(err).splitlines()[0]})"
        ) from None
    try:
        yield model
    finally:
        model.set_attn_implementation(before)
