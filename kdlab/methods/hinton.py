"""`hinton`: soft-target knowledge distillation from a frozen teacher (Hinton et al. 2015).

    L = α · τ² · KL(softmax(z_T/τ) ‖ softmax(z_S/τ)) + (1 − α) · CE(z_S, y)   (see kdlab.losses.soft_target)
      [+ Σ_l w · MSE(P_l(h_S^{m(l)}), h_T^{l})   optional hidden-state matching, kdlab.losses.hidden_states]

The teacher's outputs come live (a frozen teacher, kept in eval mode whatever Lightning does, and
left out of the student's checkpoints) or from the teacher-output cache: a tensor of teacher logits
per training example, looked up by the batch's example index. Both give the same loss.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from kdlab.data.collate import model_inputs
from kdlab.losses import HiddenStateMSE, SoftTargetKDLoss
from kdlab.methods.base import TaskModule
from kdlab.models.backbone import freeze


# The frozen teacher's modules are in eval mode on purpose; Lightning's notice about them is noise here.
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")


class HintonKD(TaskModule):
    """A student trained on the teacher's softened outputs plus the gold labels."""

    def __init__(
        self,
        model: torch.nn.Module,
        teacher: torch.nn.Module | None,
        tokenizer: Any,
        task: str,
        num_labels: int,
        optimizer: Mapping[str, Any],
        metrics: Sequence[str],
        alpha: float,
        temperature: float,
        teacher_outputs: torch.Tensor | None = None,
        hidden_loss: HiddenStateMSE | None = None,
    ):
        super().__init__(model, tokenizer, task, num_labels, optimizer, metrics)
        if (teacher is None) == (teacher_outputs is None):
            raise ValueError("HintonKD needs exactly one of a live teacher or cached teacher_outputs")
        self.teacher = freeze(teacher) if teacher is not None else None
        # cached logits of every training example, indexed by the batch's `index`; not saved in checkpoints
        self.register_buffer("teacher_outputs", teacher_outputs, persistent=False)
        self.kd_loss = SoftTargetKDLoss(alpha=alpha, temperature=temperature, task=task)
        if hidden_loss is not None and self.teacher is None:
            raise ValueError("hidden-state matching needs the live teacher (cached outputs hold logits only)")
        self.hidden_loss = hidden_loss
        self.strict_loading = False  # checkpoints hold the student only

    def train(self, mode: bool = True) -> "HintonKD":
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        return self

    def trainable_named_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        extra = list(self.hidden_loss.named_parameters(prefix="hidden_loss")) if self.hidden_loss is not None else []
        return super().trainable_named_parameters() + extra

    @torch.no_grad()
    def teacher_forward(self, batch: Mapping[str, torch.Tensor], hidden: bool = False) -> Any:
        """The teacher's output for a training batch: logits from the cache when there is one, else a live forward."""
        if self.teacher_outputs is not None:
            return self.teacher_outputs[batch["index"]], None
        out = self.teacher(**model_inputs(batch), output_hidden_states=hidden)
        return out.logits, out.hidden_states if hidden else None

    def compute_loss(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        hidden = self.hidden_loss is not None
        student = self.model(**model_inputs(batch), output_hidden_states=hidden)
        teacher_logits, teacher_hidden = self.teacher_forward(batch, hidden)
        labels = batch.get("labels") if self.kd_loss.alpha < 1.0 else None
        out = self.kd_loss(student.logits, teacher_logits, labels)
        terms = {"loss": out.total, "loss_soft": out.soft, "loss_hard": out.hard}
        if hidden:
            terms["loss_hidden"] = self.hidden_loss(student.hidden_states, teacher_hidden, batch["attention_mask"])
            terms["loss"] = terms["loss"] + terms["loss_hidden"]
        return terms

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith("teacher.")]:
            del state[key]
