"""`finetune`: plain supervised training (trains teachers and the no-KD baseline student).

Loss: CE(z, y) for classification, MSE(z, y) for regression — Hinton KD with α = 0 and no teacher.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from kdlab.losses import hard_loss
from kdlab.methods.base import TaskModule


class Finetune(TaskModule):
    """Supervised fine-tuning on gold labels."""

    def compute_loss(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"loss": hard_loss(self(batch), batch["labels"], self.task)}

    def tracked_settings(self) -> dict[str, Any]:
        """What the trackers show as this stage's loss: gold labels only (the run's `loss` node is the KD student's)."""
        return {"loss": {"alpha": 0.0, "terms": "gold labels only: no teacher, no KD term"}}
