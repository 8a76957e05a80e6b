"""One tokenisation/collation layer: tokenise once, pad dynamically per batch.

Texts are tokenised a single time when a DataModule is set up (truncated to ``max_length``, no
padding); each batch is then padded to its own longest sequence by `PadCollator`. Single sentences
and sentence pairs go through the same path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def tokenize(
    tokenizer: Any, texts: Sequence[str], pairs: Sequence[str] | None, max_length: int
) -> list[dict[str, list[int]]]:
    """Token ids (and token types where the tokenizer has them) per example, truncated, unpadded."""
    encoded = tokenizer(
        list(texts),
        list(pairs) if pairs is not None else None,
        truncation=True,
        max_length=max_length,
        padding=False,
        return_attention_mask=False,
    )
    keys = [k for k in ("input_ids", "token_type_ids") if k in encoded]
    return [{k: encoded[k][i] for k in keys} for i in range(len(texts))]


class PadCollator:
    """Stack features into a batch, padding token sequences to the longest one in the batch."""

    def __init__(self, pad_token_id: int, label_dtype: torch.dtype = torch.long):
        self.pad_token_id = pad_token_id
        self.label_dtype = label_dtype

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in features)
        batch_size = len(features)
        input_ids = torch.full((batch_size, longest), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((batch_size, longest), dtype=torch.long)
        has_types = "token_type_ids" in features[0]
        token_type_ids = torch.zeros((batch_size, longest), dtype=torch.long) if has_types else None
        for row, feature in enumerate(features):
            length = len(feature["input_ids"])
            input_ids[row, :length] = torch.tensor(feature["input_ids"], dtype=torch.long)
            attention_mask[row, :length] = 1
            if token_type_ids is not None:
                token_type_ids[row, :length] = torch.tensor(feature["token_type_ids"], dtype=torch.long)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            batch["token_type_ids"] = token_type_ids
        if "label" in features[0]:
            batch["labels"] = torch.tensor([f["label"] for f in features], dtype=self.label_dtype)
        if "index" in features[0]:
            batch["index"] = torch.tensor([f["index"] for f in features], dtype=torch.long)
        return batch


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The part of a batch a Hugging Face encoder takes as keyword arguments."""
    return {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
