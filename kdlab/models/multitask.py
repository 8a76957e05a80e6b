"""The multi-task model (BAM): one shared Hugging Face encoder, one head per task.

A head is dropout + Linear(hidden, k): k classes for a classification task, 1 output for a regression task,
on the encoder's pooled output (BERT's tanh pooler over [CLS]) when it has a pooler, else on the first
token's last hidden state — for a BERT encoder each task sees exactly a `BertForSequenceClassification`.

The encoder comes from a model spec as in `kdlab.models.backbone`: ``name_or_path`` (pretrained weights) or
``config`` (random init). The tasks are the entries of ``data.tasks`` (``name``, ``task``, ``labels``).

An export is a folder: the encoder and tokenizer as a Hugging Face folder (``AutoModel.from_pretrained``
loads the shared encoder alone), plus ``heads.json`` (pooling, dropout, each task's name, kind and labels)
and ``heads.safetensors`` (``<task>.weight`` / ``<task>.bias``).

This is the `multitask` kind of kdlab.models.kinds: `build`, `payload`, `from_payload`, `load` and `export` below
are its entries.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from kdlab.data.checks import check_labels, check_task
from kdlab.data.collate import model_inputs
from kdlab.data.task_list import task_names
from kdlab.errors import DataError
from kdlab.models.files import export_model
from kdlab.models.hf import config_from_spec, hf_config, load_pretrained
from kdlab.models.layers import pretrained_layers
from kdlab.models.spec import check_encoder_source
from kdlab.models.tokenization import load_tokenizer

HEADS_CONFIG, HEADS_WEIGHTS = "heads.json", "heads.safetensors"
FORMAT = "kdlab-multitask-heads"


def head_specs(tasks: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """{name, task, labels, num_labels} per task, from `data.tasks` entries."""
    names = task_names(tasks)
    specs = []
    for position, (name, entry) in enumerate(zip(names, tasks)):
        kind = check_task(entry.get("task"), f"data.tasks[{position}].task")
        labels = [str(label) for label in (entry.get("labels") or [])] if kind == "classification" else []
        check_labels(kind, labels, f"data.tasks[{position}].labels")
        specs.append({"name": name, "task": kind, "labels": labels, "num_labels": len(labels) if labels else 1})
    return specs


class MultiTaskModel(nn.Module):
    """A shared encoder and a ModuleDict of heads, one per task; `forward(batch, task)` gives that task's logits."""

    kdlab_kind = "multitask"

    def __init__(self, encoder: nn.Module, tasks: Sequence[Mapping[str, Any]], dropout: float | None = None):
        super().__init__()
        self.encoder = encoder
        self.tasks = head_specs(tasks)
        self.names = [spec["name"] for spec in self.tasks]
        self.pooling = "pooler" if getattr(encoder, "pooler", None) is not None else "first_token"
        config = encoder.config
        if dropout is None:
            dropout = getattr(config, "classifier_dropout", None) or getattr(config, "hidden_dropout_prob", 0.1)
        self.dropout_p = float(dropout)
        self.dropout = nn.Dropout(self.dropout_p)
        self.heads = nn.ModuleDict(
            {spec["name"]: nn.Linear(config.hidden_size, spec["num_labels"]) for spec in self.tasks}
        )
        std = float(getattr(config, "initializer_range", None) or 0.02)
        for head in self.heads.values():  # as Hugging Face initialises a task head: normal(0, std), zero bias
            nn.init.normal_(head.weight, std=std)
            nn.init.zeros_(head.bias)

    @property
    def config(self) -> Any:
        """The shared encoder's Hugging Face config."""
        return self.encoder.config

    def task_index(self, task: int | str) -> int:
        """A task's position from its name or index."""
        if isinstance(task, str):
            if task not in self.names:
                raise KeyError(f"unknown task {task!r}; the model's tasks are {self.names}")
            return self.names.index(task)
        return int(task)

    def encode(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The shared representation each head reads: [B, hidden]."""
        out = self.encoder(**model_inputs(dict(batch)))
        return out.pooler_output if self.pooling == "pooler" else out.last_hidden_state[:, 0]

    def forward(self, batch: Mapping[str, torch.Tensor], task: int | str) -> torch.Tensor:
        """Logits of one task's head: [B, classes], or [B, 1] for a regression task."""
        return self.heads[self.names[self.task_index(task)]](self.dropout(self.encode(batch)))

    def heads_config(self) -> dict[str, Any]:
        """What `heads.json` holds: enough to rebuild the heads around the saved encoder."""
        tasks = [{key: spec[key] for key in ("name", "task", "labels", "num_labels")} for spec in self.tasks]
        return {"format": FORMAT, "version": 1, "pooling": self.pooling, "dropout": self.dropout_p, "tasks": tasks}


def build_multitask_model(
    spec: Mapping[str, Any], tasks: Sequence[Mapping[str, Any]], tokenizer: Any, key: str = "model.student"
) -> MultiTaskModel:
    """A multi-task model whose encoder is pretrained (`name_or_path`, under its `trust_remote_code`) or random-init (`config`), with fresh heads."""
    from transformers import AutoModel

    head_specs(tasks)  # bad task lists fail before any model is built
    check_encoder_source(spec, key)
    if spec.get("name_or_path"):
        encoder = pretrained_layers(load_pretrained(AutoModel, spec, f"{key}.name_or_path"), spec, key)
    else:
        encoder = AutoModel.from_config(config_from_spec(spec, tokenizer))
    return MultiTaskModel(encoder, tasks)


def export_multitask(model: MultiTaskModel, tokenizer: Any, folder: str | Path) -> Path:
    """Write encoder + tokenizer (Hugging Face folder), heads.json and heads.safetensors, atomically."""
    return export_model(model, tokenizer, folder)


def load_multitask(folder: str | Path) -> tuple[MultiTaskModel, Any]:
    """A multi-task model and its tokenizer from an `export_multitask` folder."""
    from transformers import AutoModel

    folder = Path(folder)
    path = folder / HEADS_CONFIG
    if not path.exists():
        raise DataError(path, "not found: not a kdlab multi-task export (expected heads.json next to the encoder)")
    try:
        described = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(path, f"invalid JSON ({err.msg})", line=err.lineno) from None
    if described.get("format") != FORMAT:
        raise DataError(path, f"format is {described.get('format')!r}, expected {FORMAT!r}")
    model = MultiTaskModel(AutoModel.from_pretrained(str(folder)), described["tasks"], dropout=described["dropout"])
    if model.pooling != described["pooling"]:
        raise DataError(path, f"the heads read {described['pooling']!r} but the saved encoder gives {model.pooling!r}")
    weights_path = folder / HEADS_WEIGHTS
    if not weights_path.exists():
        raise DataError(weights_path, "not found: the heads.json of this export has no weights beside it")
    weights = load_file(str(weights_path))
    expected = {f"{name}.{key}" for name in model.names for key in ("weight", "bias")}
    if set(weights) != expected:
        raise DataError(weights_path, f"holds {sorted(weights)}, but heads.json describes {sorted(expected)}")
    for name, head in model.heads.items():
        head.load_state_dict({key: weights[f"{name}.{key}"] for key in ("weight", "bias")})
    return model, load_tokenizer(str(folder))


# -- the kind's entries (kdlab.models.kinds) --------------------------------------------------------------------------


def build(
    spec: Mapping[str, Any],
    task: str | None,
    labels: Sequence[Mapping[str, Any]],
    tokenizer: Any,
    teacher: nn.Module | None = None,
    key: str = "model.student",
) -> MultiTaskModel:
    """A multi-task model with one head per entry of `labels` (the data.tasks entries; `task`, `teacher`: unused)."""
    return build_multitask_model(spec, labels, tokenizer, key)


def payload(model: MultiTaskModel) -> dict[str, Any]:
    """What a .ckpt stores to rebuild the model: the encoder's config and heads.json's values."""
    return {"encoder": model.encoder.config.to_dict(), "heads": model.heads_config()}


def from_payload(config: Mapping[str, Any]) -> MultiTaskModel:
    """An empty multi-task model of a .ckpt's payload (the weights go in next)."""
    from transformers import AutoModel

    heads = config["heads"]
    return MultiTaskModel(AutoModel.from_config(hf_config(config["encoder"])), heads["tasks"], heads["dropout"])


def load(folder: Path, key: str) -> MultiTaskModel:
    """An `export_multitask` folder (its errors name the folder's files)."""
    return load_multitask(folder)[0]


def export(model: MultiTaskModel, folder: str) -> None:
    """The encoder (Hugging Face folder), heads.json and heads.safetensors into `folder` (the tokenizer: beside)."""
    model.encoder.save_pretrained(folder, safe_serialization=True)
    Path(folder, HEADS_CONFIG).write_text(json.dumps(model.heads_config(), indent=2) + "\n", encoding="utf-8")
    weights = {
        f"{name}.{key}": value.detach().cpu().contiguous()
        for name, head in model.heads.items()
        for key, value in head.state_dict().items()
    }
    save_file(weights, str(Path(folder, HEADS_WEIGHTS)))
