"""`bam`: Born-Again Multi-task networks (Clark et al. 2019): one multi-task student learns from single-task teachers.

A training batch holds one task or mixes tasks (kdlab.data.multitask, `method.mixing`): the shared encoder reads
the whole batch once and each task's head its own rows. Each example's loss is against the annealed target of
kdlab.losses.annealed, with λ = global step / total steps rising 0 → 1 (`teacher_annealing`), or a fixed
λ (`teacher_annealing: false`); with no teachers it is plain multi-task training on gold labels. The batch loss is
Σ_i w_t(i) · ℓ_i (`loss_reduction: sum`, BAM's code) or that over the batch size (`mean`), w_t the task's loss
weight (1 with one-task batches; BAM's task weights with mixed ones). The
teachers' logits come from the teacher-output cache and attach to examples by content id, never by
position; an example without a prediction stops training with an error.

A task may carry a transfer set (`data.tasks[i].transfer`, kdlab/pipelines/bam.py): its teacher labels those rows
too, and a transfer row (`gold` False in the batch) has no gold label, so its target is the teacher's alone,
CE(z_S, softmax(z_T)) or (z_S − z_T)², at every λ (kdlab.losses.annealed); `train/lambda` is the gold rows' λ.

Evaluation is per task as GLUE reports it: `val/<task>/<metric>`, `test/<task>/<metric>`, and
`<split>/glue_mean`, the unweighted mean of each task's main metric. The planned task mix of each epoch is
logged as `train/mix/<task>` (share of the epoch's batches).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdlab.errors import DataError
from kdlab.evaluation.task_metrics import build_metrics, glue_mean
from kdlab.losses.annealed import annealed_losses, reduce_losses
from kdlab.methods.bam_checks import check_fixed_lambda
from kdlab.methods.base import KDModule, task_predictions
from kdlab.models.multitask import MultiTaskModel, export_multitask


def annealing_lambda(step: int, total_steps: int) -> float:
    """λ = step / total steps, clipped to [0, 1] (1 when there are no steps)."""
    return 1.0 if total_steps <= 0 else min(1.0, max(0.0, step / total_steps))


class TeacherPredictions:
    """One teacher's outputs for its task's training examples, looked up by content id."""

    def __init__(self, ids: Sequence[bytes], outputs: torch.Tensor, source: str | Path):
        if len(ids) != len(outputs):
            raise ValueError(f"{len(ids)} content ids for {len(outputs)} teacher outputs")
        self.rows = {bytes(i): row for row, i in enumerate(ids)}
        self.outputs = outputs
        self.source = str(source)

    def lookup(self, content_ids: torch.Tensor, task: str) -> torch.Tensor:
        """Rows for a batch's `content_id` [B, 16]; DataError when an example has no prediction."""
        rows = []
        for digest in content_ids.tolist():
            row = self.rows.get(bytes(digest))
            if row is None:
                raise DataError(
                    self.source,
                    f"no teacher prediction for training example {bytes(digest).hex()} of task "
                    f"{task!r}; BAM never trains an example without its teacher",
                )
            rows.append(row)
        return self.outputs[torch.tensor(rows)]


class BAM(KDModule):
    """A multi-task student trained on annealed teacher/gold targets (or gold labels only), evaluated per task."""

    # a batch may come from one task: the other heads get no gradient in that step (DDP must be told)
    unused_parameters = True

    def __init__(
        self,
        model: MultiTaskModel,
        tokenizer: Any,
        optimizer: Mapping[str, Any],
        metrics: Mapping[str, Sequence[str]],
        main_metrics: Mapping[str, str],
        teacher_outputs: Mapping[str, TeacherPredictions] | None = None,
        teacher_annealing: bool = True,
        fixed_lambda: float = 0.5,
        loss_reduction: str = "mean",
        task_weights: Mapping[str, float] | None = None,
    ):
        super().__init__(model, tokenizer, optimizer)
        if teacher_outputs is not None and set(teacher_outputs) != set(model.names):
            raise ValueError(f"teacher outputs for {sorted(teacher_outputs)}, but the model's tasks are {model.names}")
        check_fixed_lambda(fixed_lambda)
        self.teacher_outputs = dict(teacher_outputs) if teacher_outputs is not None else None
        self.teacher_annealing = bool(teacher_annealing)
        self.fixed_lambda = float(fixed_lambda)
        self.loss_reduction = str(loss_reduction)
        weights = dict(task_weights) if task_weights is not None else {}
        self.task_weights = [float(weights.get(name, 1.0)) for name in model.names]
        self.main_metrics = dict(main_metrics)
        self.split_metrics = nn.ModuleDict(
            {
                split: nn.ModuleDict(
                    {
                        spec["name"]: build_metrics(
                            spec["task"], spec["num_labels"], metrics[spec["name"]], prefix=f"{split}/{spec['name']}/"
                        )
                        for spec in model.tasks
                    }
                )
                for split in ("val", "test")
            }
        )

    def current_lambda(self) -> float:
        """λ of the coming step: step / total steps when annealing, else the fixed mix weight."""
        if not self.teacher_annealing:
            return self.fixed_lambda
        return annealing_lambda(int(self.global_step), int(self.trainer.estimated_stepping_batches))

    def compute_loss(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        tasks = batch["task"]
        lam = self.current_lambda() if self.teacher_outputs is not None else 1.0
        shared = self.model.dropout(self.model.encode(batch))  # what model(batch, task) feeds its head
        losses, weights = [], []
        for task in sorted(set(tasks.tolist())):
            rows = (tasks == task).nonzero(as_tuple=True)[0]
            spec = self.model.tasks[task]
            logits = self.model.heads[spec["name"]](shared[rows])
            teacher = None
            if self.teacher_outputs is not None:
                found = self.teacher_outputs[spec["name"]].lookup(batch["content_id"][rows], spec["name"])
                teacher = found.to(logits.device)
            gold = batch["gold"][rows] if "gold" in batch else None  # False: a transfer row, the teacher's target
            losses.append(annealed_losses(logits, teacher, batch["labels"][rows], lam, spec["task"], gold))
            weights.append(torch.full_like(losses[-1], self.task_weights[task]))
        loss = reduce_losses(torch.cat(losses), torch.cat(weights), self.loss_reduction)
        if self.teacher_outputs is None:
            return {"loss": loss}
        return {"loss": loss, "lambda": loss.new_tensor(lam)}

    def on_train_epoch_start(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "epoch_mix"):
            mix = datamodule.epoch_mix(self.current_epoch)
            total = sum(mix.values())
            for name, count in mix.items():
                self.log(f"train/mix/{name}", count / total, on_step=False, on_epoch=True)

    def _evaluate(self, batch: Mapping[str, torch.Tensor], split: str) -> None:
        task = int(batch["task"][0])
        spec = self.model.tasks[task]
        logits = self.model(batch, task)
        self.split_metrics[split][spec["name"]].update(task_predictions(logits, spec["task"]), batch["labels"])

    def _log_epoch(self, split: str) -> None:
        values: dict[str, torch.Tensor] = {}
        main = []
        for name, collection in self.split_metrics[split].items():
            if not collection[self.main_metrics[name]].update_called:
                continue  # the task has no source for this split (no labelled GLUE test set)
            computed = collection.compute()
            collection.reset()
            values.update(computed)
            main.append(float(computed[f"{split}/{name}/{self.main_metrics[name]}"]))
        if len(main) == len(self.split_metrics[split]):  # the mean only over every task
            values[f"{split}/glue_mean"] = torch.tensor(glue_mean(main))
        self.log_dict(values, add_dataloader_idx=False)

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def export(self, folder: Path) -> Path:
        """Write the student as a multi-task folder (Hugging Face encoder + tokenizer, heads.json, heads.safetensors)."""
        return export_multitask(self.model, self.tokenizer, folder)
