"""Multilingual distillation's metrics: its dev metrics on the parallel pairs, and the embedding evaluators run on
an encoder at validation and test (Tatoeba retrieval and cross-lingual STS).

`parallel_dev_metrics`: mse/<lang> (MSE ×100 of the student's target-language embeddings against the teacher's source
embeddings) and translation/<lang>/{src2trg, trg2src, mean} (accuracy ×100) per language pair, and their means `mse`
and `translation_acc` over the pairs present.

Each is called with `encode(texts) -> [N, D] tensor` and returns flat metrics:
- `TatoebaEvaluator`: tatoeba/<lang>/{src2trg, trg2src, mean} (accuracy ×100, foreign → English is src2trg)
  and `tatoeba_acc`, the mean over languages;
- `CrosslingualSTSEvaluator`: sts/<a>-<b> (Spearman ×100 of cosine vs gold, sentence 1 in language a,
  sentence 2 in language b) and `sts_spearman`, the mean over pairs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from kdlab.data.benchmarks import crosslingual_sts, read_tatoeba
from kdlab.evaluation.retrieval import embedding_mse, translation_accuracy
from kdlab.evaluation.sts import cosine_spearman

Encode = Callable[[Sequence[str]], torch.Tensor]


def parallel_dev_metrics(
    source: torch.Tensor, target: torch.Tensor, teacher: torch.Tensor, langs: torch.Tensor, languages: Sequence[str]
) -> dict[str, float]:
    """Dev metrics of parallel pairs: the student's source and target embeddings, the teacher's source embedding of
    each pair, and each pair's language index into `languages`."""
    metrics: dict[str, float] = {}
    for index, lang in enumerate(languages):
        rows = langs == index
        if not rows.any():
            continue
        metrics[f"mse/{lang}"] = embedding_mse(target[rows], teacher[rows])
        accuracy = translation_accuracy(source[rows], target[rows])
        metrics.update({f"translation/{lang}/{k}": 100 * v for k, v in accuracy.items()})
    present = [lang for lang in languages if f"mse/{lang}" in metrics]
    metrics["mse"] = sum(metrics[f"mse/{lang}"] for lang in present) / len(present)
    metrics["translation_acc"] = sum(metrics[f"translation/{lang}/mean"] for lang in present) / len(present)
    return metrics


class TatoebaEvaluator:
    """Translation retrieval accuracy on LASER Tatoeba test sets, both directions."""

    def __init__(self, folder: str, languages: Sequence[str]):
        self.sets = {lang: read_tatoeba(folder, lang) for lang in languages}

    def __call__(self, encode: Encode) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for lang, (foreign, english) in self.sets.items():
            accuracy = translation_accuracy(encode(foreign), encode(english))
            metrics.update({f"tatoeba/{lang}/{k}": 100 * v for k, v in accuracy.items()})
        metrics["tatoeba_acc"] = sum(metrics[f"tatoeba/{lang}/mean"] for lang in self.sets) / len(self.sets)
        return metrics


class CrosslingualSTSEvaluator:
    """Spearman ×100 on stsb-multi-mt pairs whose two sentences come from different languages."""

    def __init__(self, folder: str, pairs: Sequence[Sequence[str]], split: str):
        self.sets = {f"{a}-{b}": crosslingual_sts(folder, a, b, split) for a, b in pairs}

    def __call__(self, encode: Encode) -> dict[str, float]:
        metrics = {
            f"sts/{name}": cosine_spearman(encode(first), encode(second), gold)
            for name, (first, second, gold) in self.sets.items()
        }
        metrics["sts_spearman"] = sum(metrics.values()) / len(metrics)
        return metrics
