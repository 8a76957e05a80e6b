"""Bi-encoders: a sentence encoder (kdlab.models.sentence_encoder) scoring a pair by the cosine of
its two embeddings, each sentence encoded on its own:  score(a, b) = cos(e(a), e(b))."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from kdlab.models.inference import encode
from kdlab.models.sentence_encoder import SentenceEncoder


@torch.no_grad()
def pair_cosines(
    model: SentenceEncoder, tokenizer: Any, pairs: Sequence[tuple[str, str]], max_length: int, batch_size: int
) -> torch.Tensor:
    """cos(e(a), e(b)) per pair, each distinct sentence encoded once."""
    texts = list(dict.fromkeys(text for pair in pairs for text in pair))
    rows = {text: i for i, text in enumerate(texts)}
    embeddings = encode(model, tokenizer, texts, max_length, batch_size, desc="bi-encoder scores")
    first = embeddings[[rows[a] for a, _ in pairs]]
    second = embeddings[[rows[b] for _, b in pairs]]
    return F.cosine_similarity(first, second, dim=-1)
