"""Batched no-grad inference over raw texts, through the shared tokenise + collate layer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from kdlab.data.collate import PadCollator, model_inputs, tokenize


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    tokenizer: Any,
    inputs: Sequence[tuple[str, str | None]],
    max_length: int,
    batch_size: int,
    select: Callable[[Any], torch.Tensor] = lambda output: output,
    desc: str = "teacher outputs",
) -> torch.Tensor:
    """`select(model(batch))` for each (text, pair) input, in input order; batches are formed by length."""
    if not inputs:
        raise ValueError("predict needs at least one input")
    texts = [text for text, _ in inputs]
    pairs = [pair for _, pair in inputs] if inputs[0][1] is not None else None
    features = tokenize(tokenizer, texts, pairs, max_length)
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    collate = PadCollator(tokenizer.pad_token_id)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    rows: list[torch.Tensor] = [None] * len(features)  # type: ignore[list-item]
    starts = range(0, len(order), batch_size)
    for start in tqdm(starts, desc=desc, total=len(starts), disable=None):
        chunk = order[start : start + batch_size]
        batch = collate([features[i] for i in chunk])
        out = select(model(**{k: v.to(device) for k, v in model_inputs(batch).items()})).float().cpu()
        for i, row in zip(chunk, out):
            rows[i] = row
    model.train(was_training)
    return torch.stack(rows)


def predict_logits(
    model: torch.nn.Module, tokenizer: Any, inputs: Sequence[tuple[str, str | None]], max_length: int, batch_size: int
) -> torch.Tensor:
    """Logits of a sequence classifier/regressor for each input."""
    return predict(model, tokenizer, inputs, max_length, batch_size, select=lambda output: output.logits)


def encode(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    max_length: int,
    batch_size: int,
    desc: str = "encoding",
) -> torch.Tensor:
    """Sentence embeddings of a SentenceEncoder for each text."""
    return predict(model, tokenizer, [(text, None) for text in texts], max_length, batch_size, desc=desc)
