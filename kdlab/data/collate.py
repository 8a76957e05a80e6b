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


def pad(sequences: list[list[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask) of token sequences padded to the longest one."""
    longest = max(len(seq) for seq in sequences)
    ids = torch.full((len(sequences), longest), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask


class PadCollator:
    """Stack features into a batch, padding token sequences to the longest one in the batch."""

    def __init__(self, pad_token_id: int, label_dtype: torch.dtype = torch.long):
        self.pad_token_id = pad_token_id
        self.label_dtype = label_dtype

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        input_ids, attention_mask = pad([f["input_ids"] for f in features], self.pad_token_id)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in features[0]:
            batch["token_type_ids"] = pad([f["token_type_ids"] for f in features], 0)[0]
        if "label" in features[0]:
            batch["labels"] = torch.tensor([f["label"] for f in features], dtype=self.label_dtype)
        for key in ("index", "teacher_index", "lang"):
            if key in features[0]:
                batch[key] = torch.tensor([f[key] for f in features], dtype=torch.long)
        if "gold" in features[0]:  # transfer sets: which rows have a gold label (kdlab/data/transfer.py)
            batch["gold"] = torch.tensor([f["gold"] for f in features], dtype=torch.bool)
        return batch


class ParallelCollator:
    """Batches of two separately encoded sides ((source, translation), or a sentence pair for a
    bi-encoder): each side padded to its own longest sequence, as `<side>_input_ids` / `<side>_attention_mask`."""

    def __init__(self, pad_token_id: int, sides: tuple[str, str] = ("source", "target")):
        self.pad_token_id = pad_token_id
        self.sides = sides

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch: dict[str, torch.Tensor] = {}
        for side in self.sides:
            ids, mask = pad([f[side] for f in features], self.pad_token_id)
            batch[f"{side}_input_ids"], batch[f"{side}_attention_mask"] = ids, mask
        for key in ("index", "teacher_index", "lang"):
            if key in features[0]:
                batch[key] = torch.tensor([f[key] for f in features], dtype=torch.long)
        if "label" in features[0]:
            batch["labels"] = torch.tensor([f["label"] for f in features], dtype=torch.float32)
        return batch


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The part of a batch a Hugging Face encoder takes as keyword arguments."""
    return {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
