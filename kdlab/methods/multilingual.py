"""`multilingual`: a frozen monolingual teacher's sentence space taught to a multilingual student
(Reimers & Gurevych 2020), loss in kdlab.losses.embedding_mse:

    L = 1/|B| · Σ_i [ ‖Ŝ(s_i) − M(s_i)‖² + ‖Ŝ(t_i) − M(s_i)‖² ]

M(s_i) comes from the teacher-output cache (computed once per distinct source sentence before
training), so the teacher never runs during training. Validation logs, per language pair and
averaged, MSE×100 of Ŝ(t_i) against M(s_i) and translation accuracy (both directions, ×100) on the
dev pairs; validation and test log the configured embedding evaluators (Tatoeba, cross-lingual STS).
The dev pairs pick the checkpoint, so test does not score them again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from kdlab.evaluation.multilingual import parallel_dev_metrics
from kdlab.losses import multilingual_mse
from kdlab.methods.base import KDModule
from kdlab.models.inference import encode
from kdlab.models.sentence_encoder import SentenceEncoder


class MultilingualDistillation(KDModule):
    """Student sentence encoder trained to put sources and their translations at the teacher's embedding."""

    def __init__(
        self,
        model: SentenceEncoder,
        tokenizer: Any,
        optimizer: Mapping[str, Any],
        teacher_train: torch.Tensor,
        teacher_dev: torch.Tensor,
        languages: Sequence[str],
        max_length: int,
        eval_batch_size: int,
        evaluators: Mapping[str, Sequence[Callable[[Callable], dict[str, float]]]] | None = None,
    ):
        super().__init__(model, tokenizer, optimizer)
        if teacher_train.shape[-1] != model.dim:
            raise ValueError(f"teacher embeddings are {teacher_train.shape[-1]}-d, the student's {model.dim}-d")
        self.register_buffer("teacher_train", teacher_train, persistent=False)
        self.register_buffer("teacher_dev", teacher_dev, persistent=False)
        self.languages = list(languages)
        self.max_length = max_length
        self.eval_batch_size = eval_batch_size
        self.evaluators = dict(evaluators or {})
        self._collected: list[tuple[torch.Tensor, ...]] = []

    def embed(self, batch: Mapping[str, torch.Tensor], side: str) -> torch.Tensor:
        return self.model(batch[f"{side}_input_ids"], batch[f"{side}_attention_mask"])

    def compute_loss(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = multilingual_mse(
            self.embed(batch, "source"), self.embed(batch, "target"), self.teacher_train[batch["teacher_index"]]
        )
        return {"loss": out.total, "loss_source": out.source, "loss_target": out.target}

    def _collect(self, batch: Mapping[str, torch.Tensor]) -> None:
        self._collected.append(
            (
                self.embed(batch, "source").float().cpu(),
                self.embed(batch, "target").float().cpu(),
                batch["teacher_index"].cpu(),
                batch["lang"].cpu(),
            )
        )

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        self._collect(batch)

    def test_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        """Dev pairs choose the checkpoint, so they are not scored again at test: test = the configured evaluators."""

    def dev_metrics(self) -> dict[str, float]:
        """MSE×100 and translation accuracy ×100 per language pair on the collected dev pairs, and their means."""
        source, target, teacher_rows, langs = (torch.cat(parts) for parts in zip(*self._collected))
        teacher = self.teacher_dev[teacher_rows.to(self.teacher_dev.device)].float().cpu()
        return parallel_dev_metrics(source, target, teacher, langs, self.languages)

    def _epoch_end(self, split: str) -> None:
        metrics = self.dev_metrics() if self._collected else {}
        self._collected = []
        memo: dict[str, torch.Tensor] = {}  # evaluators share sentences (STS English side, per language pair)

        def encoder(texts: Sequence[str]) -> torch.Tensor:
            new = list(dict.fromkeys(t for t in texts if t not in memo))
            if new:
                rows = encode(
                    self.model, self.tokenizer, new, self.max_length, self.eval_batch_size, desc=f"{split} evaluation"
                )
                memo.update(zip(new, rows))
            return torch.stack([memo[t] for t in texts])

        for evaluator in self.evaluators.get(split, []):
            metrics.update(evaluator(encoder))
        self.log_dict({f"{split}/{name}": value for name, value in metrics.items()})

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._epoch_end("test")

    def export(self, folder: Path) -> Path:
        """Write the student as a sentence-transformers folder (also a Hugging Face model folder)."""
        return self.model.save_sentence_transformers(folder, self.tokenizer, self.max_length)
