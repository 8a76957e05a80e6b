"""`trans_encoder`'s training stages (Liu et al., ICLR 2022); the cycle itself is kdlab.pipelines.trans_encoder.

- `CrossEncoderStage`: a one-logit cross-encoder on pseudo-labelled pairs (both orders), loss
  `bce` by default:  BCEWithLogits(C(a, b), ŷ),  ŷ = the bi-encoder's cosine, clipped or raw (`method.cross.label_rule`).
- `BiEncoderStage`: a sentence encoder on pseudo-labelled pairs, loss `mse` by default:
  (cos(B(a), B(b)) − ỹ)²,  ỹ = the cross-encoder's σ(logit), on both orders or one (`method.bi.label_orders`).
- `SimCSEStage`: the optional contrastive warm-up that turns a raw language model into the starting
  bi-encoder (kdlab.losses.contrastive).

Every stage is evaluated the same way at validation and test: Spearman ×100 between its scores
(bi: cosine; cross: σ(logit) of the pair as given) and the gold similarity of the labelled pairs; with
`val_check_steps` (`method.<stage>.val_check_steps`) also every that many batches within each epoch, as the reference
does (kdlab.callbacks.ValidateEvery), each validation a candidate for the stage's best checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from kdlab.callbacks import ValidateEvery
from kdlab.data.collate import model_inputs
from kdlab.evaluation.sts import spearman
from kdlab.losses import pseudo_label_loss, simcse_loss
from kdlab.methods.base import KDModule
from kdlab.models.sentence_encoder import SentenceEncoder
from kdlab.utils.distributed import gathered_rows


class PairScoringStage(KDModule):
    """A model that scores sentence pairs; val/test log `spearman` (×100) of its scores against the gold scores."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        optimizer: Mapping[str, Any],
        loss: str,
        loss_key: str,
        val_check_steps: int | None,
    ):
        super().__init__(model, tokenizer, optimizer)
        self.loss_name, self.loss_key = loss, loss_key
        self.val_check_steps = val_check_steps
        self._scores: list[torch.Tensor] = []
        self._gold: list[torch.Tensor] = []

    def scores(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """One score per pair in the batch (a logit or a cosine; any monotone map keeps Spearman)."""
        raise NotImplementedError

    def configure_callbacks(self) -> list[Any]:
        """Validation every `val_check_steps` batches of an epoch (and at its end) when set; else once per epoch."""
        return [ValidateEvery(self.val_check_steps)] if self.val_check_steps else []

    def _collect(self, batch: Mapping[str, torch.Tensor]) -> None:
        self._scores.append(self.scores(batch).float().cpu())
        self._gold.append(batch["labels"].float().cpu())

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        self._collect(batch)

    def test_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        self._collect(batch)

    def _epoch_end(self, split: str) -> None:
        if not self._scores:
            return
        value = spearman(torch.cat(self._scores), torch.cat(self._gold).tolist())
        self._scores, self._gold = [], []
        self.log(f"{split}/spearman", value)

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._epoch_end("test")


class CrossEncoderStage(PairScoringStage):
    """Cross-encoder C trained on soft labels: `bce` on its logit (default) or `mse` on σ(logit)."""

    def scores(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.model(**model_inputs(batch)).logits.view(-1)

    def compute_loss(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {
            "loss": pseudo_label_loss(
                self.loss_name, self.scores(batch), batch["labels"], scores_are_logits=True, key=self.loss_key
            )
        }


class BiEncoderStage(PairScoringStage):
    """Bi-encoder B trained on soft labels: `mse` on cos(B(a), B(b)) (default) or `bce` on the clamped cosine."""

    def __init__(
        self,
        model: SentenceEncoder,
        tokenizer: Any,
        optimizer: Mapping[str, Any],
        loss: str,
        loss_key: str,
        val_check_steps: int | None,
        max_length: int,
    ):
        super().__init__(model, tokenizer, optimizer, loss, loss_key, val_check_steps)
        self.max_length = max_length

    def scores(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        first = self.model(batch["a_input_ids"], batch["a_attention_mask"])
        second = self.model(batch["b_input_ids"], batch["b_attention_mask"])
        return F.cosine_similarity(first, second, dim=-1)

    def compute_loss(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {
            "loss": pseudo_label_loss(
                self.loss_name, self.scores(batch), batch["labels"], scores_are_logits=False, key=self.loss_key
            )
        }

    def export(self, folder: Path) -> Path:
        """Write the bi-encoder as a sentence-transformers folder (also a Hugging Face model folder)."""
        return self.model.save_sentence_transformers(folder, self.tokenizer, self.max_length)


class SimCSEStage(BiEncoderStage):
    """Unsupervised SimCSE warm-up: each sentence twice through the encoder (two dropout masks) is its own positive."""

    def __init__(
        self, model: SentenceEncoder, tokenizer: Any, optimizer: Mapping[str, Any], temperature: float, max_length: int
    ):
        super().__init__(model, tokenizer, optimizer, "simcse", "method.simcse", None, max_length)
        self.temperature = float(temperature)

    def compute_loss(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The loss over the global batch: under DDP the negatives are every process's second views."""
        first = self.model(batch["input_ids"], batch["attention_mask"])
        second, offset = gathered_rows(self.model(batch["input_ids"], batch["attention_mask"]))
        return {"loss": simcse_loss(first, second, self.temperature, offset)}
