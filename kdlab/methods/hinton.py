"""`hinton`: soft-target knowledge distillation from a frozen teacher (Hinton et al. 2015).

    L = α · soft(z_S, z_T) + (1 − α) · CE(z_S, y)      the soft term `loss.soft` names (kdlab.losses.registry):
                                                      soft_target τ²·KL (kdlab.losses.soft_target) or logit_mse
      [+ Σ_name w_name · term_name(S, T)]             optional extra terms with the live teacher: hidden-state
                                                      matching, attention transfer (kdlab.losses.hidden_states, .attention)

With a transfer set (`data.transfer`), batches mix gold rows with unlabelled ones (`gold` marks which): the soft term
averages over every example, the hard term over the gold ones only (kdlab.losses.soft_target.LogitKDLoss.forward).

The teacher's outputs come live (a frozen teacher, kept in eval mode whatever Lightning does, and
left out of the student's checkpoints) or from the teacher-output cache: a tensor of teacher logits
per training example, looked up by the batch's example index. Both give the same loss.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from typing import Any

import torch

from kdlab.data.collate import model_inputs
from kdlab.losses.registry import TERMS, check_live_teacher, term
from kdlab.methods.base import TaskModule
from kdlab.models.attention_maps import attention_probabilities
from kdlab.models.backbone import freeze

# The frozen teacher's modules are in eval mode on purpose; Lightning's notice about them is noise here.
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")


class HintonKD(TaskModule):
    """A student trained on the teacher's softened outputs plus the gold labels, plus any extra terms.

    `soft` names the logit term (built here from alpha and the temperature it reads); `terms` maps extra term names
    to their modules (weighted already; `hidden_loss=m` is short for terms={"hidden": m}). Each is logged as
    train/loss_<name> and kept as the attribute `<name>_loss`, so its parameters (projections) are trained and saved.
    """

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
        temperature: float | None,
        teacher_outputs: torch.Tensor | None = None,
        hidden_loss: torch.nn.Module | None = None,
        soft: str = "soft_target",
        terms: Mapping[str, torch.nn.Module] | None = None,
    ):
        super().__init__(model, tokenizer, task, num_labels, optimizer, metrics)
        if (teacher is None) == (teacher_outputs is None):
            raise ValueError("HintonKD needs exactly one of a live teacher or cached teacher_outputs")
        self.teacher = freeze(teacher) if teacher is not None else None
        # cached logits of every training example, indexed by the batch's `index`; not saved in checkpoints
        self.register_buffer("teacher_outputs", teacher_outputs, persistent=False)
        entry = term(soft, "soft", "loss.soft")
        given = {"alpha": alpha, "temperature": temperature}
        self.kd_loss = entry.load()(task=task, **{param: given[param] for param in entry.params})
        self.extra_terms = {**({"hidden": hidden_loss} if hidden_loss is not None else {}), **(terms or {})}
        for name, module in self.extra_terms.items():
            check_live_teacher(
                f"loss.{name}.weight", term(name, "extra", "loss"), "live" if self.teacher is not None else "cache"
            )
            self.add_module(f"{name}_loss", module)
        self.reads = sorted({TERMS[name].reads for name in self.extra_terms})  # model outputs the extra terms compare
        self.strict_loading = False  # checkpoints hold the student only

    def train(self, mode: bool = True) -> HintonKD:
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        return self

    def trainable_named_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        extra = [
            item for name, module in self.extra_terms.items() for item in module.named_parameters(prefix=f"{name}_loss")
        ]
        return super().trainable_named_parameters() + extra

    def _forward(self, model: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> Any:
        """The model's output, with the per-layer outputs the extra terms read (attention maps: their probabilities)."""
        with ExitStack() as stack:
            if "attentions" in self.reads:
                stack.enter_context(attention_probabilities(model))
            return model(**model_inputs(batch), **{f"output_{field}": True for field in self.reads})

    @torch.no_grad()
    def teacher_forward(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, Any]:
        """The teacher's logits for a training batch, and its whole output: from the cache when there is one
        (no output then), else a live forward."""
        if self.teacher_outputs is not None:
            return self.teacher_outputs[batch["index"]], None
        out = self._forward(self.teacher, batch)
        return out.logits, out

    def compute_loss(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        student = self._forward(self.model, batch)
        teacher_logits, teacher = self.teacher_forward(batch)
        labels = batch.get("labels") if self.kd_loss.alpha < 1.0 else None
        out = self.kd_loss(student.logits, teacher_logits, labels, batch.get("gold"))
        terms = {"loss": out.total, "loss_soft": out.soft, "loss_hard": out.hard}
        for name, module in self.extra_terms.items():
            field = TERMS[name].reads
            terms[f"loss_{name}"] = module(getattr(student, field), getattr(teacher, field), batch["attention_mask"])
            terms["loss"] = terms["loss"] + terms[f"loss_{name}"]
        return terms

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith("teacher.")]:
            del state[key]
