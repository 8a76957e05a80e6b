"""What the small non-transformer students (kdlab.models.bilstm, kdlab.models.textcnn) share: word embeddings over
the teacher's tokenizer, the padding mask, the classifier, the config, and a folder format of their own.

    ids → E[ids] (· P when a learnt projection is on) → zero at padding → encoder (the subclass) → dropout → W·h + b

Embeddings (the spec's `embeddings` and `projection` keys): `random` (N(0, 1), torch's default), or `teacher`: a
copy of the teacher's input embeddings (same tokenizer, so the same rows). When `config.embedding_dim` is smaller
than the teacher's width, `projection` says how: `pca`, a fixed projection onto the top `embedding_dim` principal
components of the teacher's embedding rows, applied once at build time (the student stores and trains
vocab × embedding_dim); or `learnt`, the teacher-width embeddings plus a bias-free Linear to `embedding_dim`, both
trained with the student.

An export folder holds model.safetensors, a config.json with the kind (`kdlab_kind`) and sizes, and the tokenizer:

    from transformers import AutoTokenizer
    from kdlab.models.bilstm import BiLSTMClassifier      # or kdlab.models.textcnn.TextCNNClassifier
    model, tokenizer = BiLSTMClassifier.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)

`model(**tokenizer(texts, padding=True, return_tensors="pt")).logits` then gives the logits (the model comes back
in eval mode). These modules import torch, safetensors and transformers only, none of kdlab's training code.

The kinds' entries (kdlab.models.kinds): `payload` and `export` below serve both students; `build`, `from_payload`
and `load` need the student's class, so each student module makes its own with `kind_functions(<its class>)`. This
module imports neither student (they import it).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from kdlab.errors import ConfigError

WEIGHTS_NAME, CONFIG_NAME = "model.safetensors", "config.json"


@dataclass
class WordStudentConfig:
    """Sizes and head of a word-embedding student (what its config.json holds, besides `kdlab_kind`)."""

    model_type: str  # the kind: bilstm | textcnn
    vocab_size: int
    pad_token_id: int
    embedding_dim: int
    num_labels: int
    problem_type: str = "single_label_classification"
    id2label: dict[int, str] = field(default_factory=dict)
    label2id: dict[str, int] = field(default_factory=dict)
    dropout: float = 0.1
    source_dim: int | None = None  # projection=learnt: the width of the stored embeddings (the teacher's)
    embedding_init: str = (
        "random"  # how the embeddings started (a record: random | teacher | teacher, pca | teacher, learnt)
    )

    def __post_init__(self) -> None:
        self.id2label = {int(i): str(label) for i, label in self.id2label.items()}  # JSON keys are strings

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON-able values, the kind under `kdlab_kind` (no `model_type` key: transformers would
        take the folder for one of its own models when it loads the tokenizer)."""
        values = dataclasses.asdict(self)
        return {"kdlab_kind": values.pop("model_type"), **values}


class WordStudent(nn.Module):
    """Embeddings, the padding mask, dropout and the classifier around a subclass's `encode` (states → features)."""

    kdlab_kind: ClassVar[str]
    config_class: ClassVar[type[WordStudentConfig]]

    def __init__(self, config: WordStudentConfig):
        super().__init__()
        self.config = config
        self.embeddings = nn.Embedding(config.vocab_size, config.source_dim or config.embedding_dim)
        self.projection = nn.Linear(config.source_dim, config.embedding_dim, bias=False) if config.source_dim else None
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(self.feature_size(), config.num_labels)

    def get_input_embeddings(self) -> nn.Embedding:
        """The word embeddings (as a Hugging Face model names them: a student of this one can copy them)."""
        return self.embeddings

    def feature_size(self) -> int:
        """The width of `encode`'s output."""
        raise NotImplementedError

    def encode(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(batch, length, embedding_dim) word vectors, zero at padding, and the (batch, length) mask → (batch, features)."""
        raise NotImplementedError

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> SequenceClassifierOutput:
        """Logits for a batch of right-padded token ids (`token_type_ids` are not used: a pair is one token sequence).

        The `output_*` flags are a transformer's: asked for (a layer-matching loss term), they are an error, never ignored."""
        if output_hidden_states or output_attentions:
            raise ValueError(
                f"a {self.kdlab_kind} student has no layer outputs (hidden states, attentions) to match: "
                "turn the layer-matching loss terms off (loss.<term>.weight=0)"
            )
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        states = self.embeddings(input_ids)
        if self.projection is not None:
            states = self.projection(states)
        states = states * mask.unsqueeze(-1).to(states.dtype)
        return SequenceClassifierOutput(logits=self.classifier(self.dropout(self.encode(states, mask.bool()))))

    # -- the folder format -------------------------------------------------------------------------------------------

    def save_pretrained(self, folder: str | Path) -> None:
        """Write model.safetensors and config.json into `folder` (which exists)."""
        save_file(
            {name: tensor.detach().contiguous() for name, tensor in self.state_dict().items()},
            str(Path(folder) / WEIGHTS_NAME),
            metadata={"format": "pt"},
        )
        (Path(folder) / CONFIG_NAME).write_text(
            json.dumps(self.config.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )

    @classmethod
    def from_config_dict(cls, data: Mapping[str, Any]) -> WordStudent:
        """An untrained model of a config.json's values (checked: its kind must be this class's)."""
        data = dict(data)
        found = data.pop("kdlab_kind", None)
        if found != cls.kdlab_kind:
            raise ValueError(f"this is a {found!r} model, not {cls.kdlab_kind!r} ({cls.__name__})")
        return cls(cls.config_class(model_type=found, **data))

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> WordStudent:
        """The exported model in `folder`, in eval mode."""
        model = cls.from_config_dict(json.loads((Path(folder) / CONFIG_NAME).read_text(encoding="utf-8")))
        model.load_state_dict(load_file(str(Path(folder) / WEIGHTS_NAME)))
        return model.eval()


def masked_max(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over time of (batch, length, width) states at the positions `mask` (batch, length) keeps."""
    return states.masked_fill(~mask.unsqueeze(-1), torch.finfo(states.dtype).min).amax(dim=1)


# -- the kind's functions (kdlab.models.kinds) ----------------------------------------------------------------------


def _head(task: str, labels: Sequence[str]) -> dict[str, Any]:
    if task == "regression":
        return {
            "num_labels": 1,
            "problem_type": "regression",
            "id2label": {0: "LABEL_0"},
            "label2id": {"LABEL_0": 0},
        }  # as transformers
    return {
        "num_labels": len(labels),
        "id2label": {i: str(label) for i, label in enumerate(labels)},
        "label2id": {str(label): i for i, label in enumerate(labels)},
    }


def principal_components(weights: torch.Tensor, width: int) -> torch.Tensor:
    """`weights` (rows × d) projected onto its top `width` principal components (a fixed d × width map, signs made
    deterministic: each component's largest entry is positive)."""
    rows = weights.detach().float()
    _, _, vh = torch.linalg.svd(rows - rows.mean(dim=0), full_matrices=False)
    components = vh[:width].T
    signs = torch.sign(components.gather(0, components.abs().argmax(dim=0, keepdim=True)))
    return rows @ (components * signs)


def build_student(
    cls: type[WordStudent],
    spec: Mapping[str, Any],
    task: str,
    labels: Sequence[str],
    tokenizer: Any,
    teacher: nn.Module | None = None,
    key: str = "model.student",
) -> WordStudent:
    """A fresh `cls` student for the task over `tokenizer`, embeddings random or from the teacher's (see the module
    doc); errors name the spec's keys under `key`."""
    kind = cls.kdlab_kind
    arch = dict(spec.get("config") or {})
    embeddings, projection = spec.get("embeddings", "random"), spec.get("projection")
    source = None
    if embeddings == "teacher":
        if teacher is None:
            raise ConfigError(f"{key}.embeddings", "teacher needs the teacher model (method=hinton)")
        source = teacher.get_input_embeddings().weight
        if source.shape[0] != len(tokenizer):
            raise ConfigError(
                f"{key}.tokenizer",
                f"embeddings=teacher needs the teacher's tokenizer ({source.shape[0]} rows, "
                f"the tokenizer has {len(tokenizer)})",
            )
        if arch.get("embedding_dim") is None:
            arch["embedding_dim"] = source.shape[1]
    width = int(arch.get("embedding_dim") or 0)
    init, learnt = str(embeddings), None
    if source is not None and width != source.shape[1]:
        if projection not in ("pca", "learnt") or width > source.shape[1]:
            raise ConfigError(
                f"{key}.projection",
                f"embedding_dim {width} differs from the teacher's width {source.shape[1]}: "
                "set projection to pca (fixed) or learnt, and embedding_dim at most the teacher's",
            )
        init = f"teacher, {projection} to {width}"
        learnt = source.shape[1] if projection == "learnt" else None
    config = cls.config_class(
        model_type=kind,
        vocab_size=len(tokenizer),
        pad_token_id=int(tokenizer.pad_token_id),
        source_dim=learnt,
        embedding_init=init,
        **_head(task, labels),
        **arch,
    )
    model = cls(config)
    if source is not None:
        with torch.no_grad():
            model.embeddings.weight.copy_(
                principal_components(source, width) if init.startswith("teacher, pca") else source
            )
    return model


def payload(model: WordStudent) -> dict[str, Any]:
    """The config a .ckpt stores."""
    return model.config.to_dict()


def kind_functions(cls: type[WordStudent]) -> tuple[Callable[..., WordStudent], ...]:
    """The kind entries that need the student's class: build(spec, task, labels, tokenizer, teacher, key),
    from_payload(config) (an untrained model of a .ckpt's config) and load(folder, key) (an exported folder; one that
    does not load is one ConfigError naming `key`)."""

    def load(folder: Path, key: str) -> WordStudent:
        try:
            return cls.from_pretrained(folder)
        except (OSError, ValueError, TypeError, KeyError, RuntimeError) as err:
            raise ConfigError(
                key, f"cannot load {folder} ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
            ) from None

    return partial(build_student, cls), cls.from_config_dict, load


def export(model: WordStudent, folder: str) -> None:
    """The weights (safetensors) and config.json into `folder`."""
    model.save_pretrained(folder)
