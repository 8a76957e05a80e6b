"""Cross-encoders: a Hugging Face encoder over the concatenated pair ([CLS] a [SEP] b [SEP]) with a
one-logit head; the pair's score is σ(logit).

Built from a model spec like the other models (``name_or_path``: a pretrained encoder with a new
head; ``config``: random init; or, in Trans-Encoder, ``from_bi_start``: the starting bi-encoder's
weights) and exported as a plain Hugging Face folder, which
`AutoModelForSequenceClassification` (and sentence-transformers' `CrossEncoder`) load.

This is the `cross_encoder` kind of kdlab.models.kinds: `build` below is its entry; a built cross-encoder is a
Hugging Face classifier, so its checkpoint payload, loading and export are the `hf_classifier` kind's.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from kdlab.errors import ConfigError
from kdlab.models.hf import build_hf_classifier
from kdlab.models.inference import predict


def check_pair_tokenizer(tokenizer: Any, key: str) -> None:
    """A cross-encoder's tokenizer must mark where the first sentence ends (a separator token between the two)."""
    sep = getattr(tokenizer, "sep_token_id", None)
    single = tokenizer("a")["input_ids"]
    pair = tokenizer("a", "b")["input_ids"]
    if sep is None or pair.count(sep) <= single.count(sep):
        raise ConfigError(
            key,
            f"the tokenizer ({type(tokenizer).__name__}) cannot encode sentence pairs: it puts no separator token "
            "between the two sentences; use an encoder whose tokenizer has a pair template (BERT, RoBERTa, ...)",
        )


def build_cross_encoder(spec: Mapping[str, Any], tokenizer: Any, key: str) -> nn.Module:
    """A fresh cross-encoder (one-logit sequence classifier) from a spec, after checking its tokenizer takes pairs."""
    check_pair_tokenizer(tokenizer, f"{key}.tokenizer")
    return build_hf_classifier(spec, "regression", [], tokenizer, key=key)


def build(
    spec: Mapping[str, Any],
    task: str | None,
    labels: Sequence[str],
    tokenizer: Any,
    teacher: nn.Module | None = None,
    key: str = "model.cross_encoders[0]",
) -> nn.Module:
    """The kind's build: a cross-encoder from its spec, or, with `from_bi_start`, from `teacher` (the starting
    bi-encoder, under the spec's trust_remote_code); `task`, `labels`: unused (one-logit regression head)."""
    if spec.get("from_bi_start") is not None:
        if teacher is None:
            raise ConfigError(f"{key}.from_bi_start", "needs the starting bi-encoder")
        backbone = getattr(teacher, "backbone", teacher)
        return cross_encoder_from(backbone, tokenizer, key, bool(spec.get("trust_remote_code", False)))
    return build_cross_encoder(spec, tokenizer, key)


def cross_encoder_from(backbone: nn.Module, tokenizer: Any, key: str, trust_remote_code: bool = False) -> nn.Module:
    """A cross-encoder whose encoder starts from `backbone`'s weights (e.g. the starting bi-encoder), with a new head;
    `trust_remote_code` as the spec the backbone was loaded under."""
    from transformers import AutoModelForSequenceClassification

    check_pair_tokenizer(tokenizer, f"{key}.tokenizer")
    config = copy.deepcopy(backbone.config)
    config.num_labels, config.problem_type = 1, "regression"
    model = AutoModelForSequenceClassification.from_config(
        config, **({"trust_remote_code": True} if trust_remote_code else {})
    )
    missing, unexpected = model.base_model.load_state_dict(backbone.state_dict(), strict=False)
    if unexpected or any(not name.startswith("pooler.") for name in missing):
        raise ConfigError(
            key,
            f"cannot initialise a cross-encoder from this encoder (missing {missing[:3]}, unexpected {unexpected[:3]})",
        )
    return model


def cross_scores(
    model: nn.Module,
    tokenizer: Any,
    pairs: Sequence[tuple[str, str]],
    max_length: int,
    batch_size: int,
    both_orders: bool = True,
) -> torch.Tensor:
    """σ(logit) per pair; with `both_orders`, the mean of σ(C(a, b)) and σ(C(b, a))."""
    logit = lambda output: output.logits.view(-1)  # noqa: E731
    scores = torch.sigmoid(
        predict(model, tokenizer, list(pairs), max_length, batch_size, select=logit, desc="cross-encoder scores")
    )
    if not both_orders:
        return scores
    reverse = torch.sigmoid(
        predict(
            model,
            tokenizer,
            [(b, a) for a, b in pairs],
            max_length,
            batch_size,
            select=logit,
            desc="cross-encoder scores",
        )
    )
    return (scores + reverse) / 2
