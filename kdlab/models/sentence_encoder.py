"""Sentence encoders: a Hugging Face encoder + pooling (+ optional linear projection, + optional L2 normalisation).

    e(x) = normalize?( P?( pool(h(x), mask) ) ),   pool = mean over non-padding tokens (default) | CLS | max
                                                    P(v) = W v + b, a learnt Linear(hidden → dim)

A teacher can be a sentence-transformers folder (its pooling, identity-activation Dense layer and
normalisation are read from modules.json and the module folders) or any HF encoder with a pooling
config; a student can be any HF encoder or a copy of the teacher keeping a subset of its layers, and
gets a projection when its width must match a teacher of another width. `save_sentence_transformers`
writes a folder that `sentence_transformers.SentenceTransformer(path)` loads with the same embeddings
(Transformer → Pooling [→ Dense, identity activation] [→ Normalize]).

This is the `sentence_encoder` kind of kdlab.models.kinds: `build`, `payload`, `from_payload`, `load` and `export`
below are its entries.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.errors import ConfigError
from kdlab.models.files import export_model
from kdlab.models.hf import config_from_spec, hf_config, load_pretrained
from kdlab.models.layers import keep_layers
from kdlab.models.spec import check_pooling
from kdlab.models.tokenization import load_tokenizer

IDENTITY = "torch.nn.modules.linear.Identity"


def pool(token_embeddings: torch.Tensor, attention_mask: torch.Tensor, mode: str) -> torch.Tensor:
    """One vector per sequence from token states: masked mean, first token, or masked max."""
    if mode == "cls":
        return token_embeddings[:, 0]
    mask = attention_mask.unsqueeze(-1).to(token_embeddings.dtype)
    if mode == "max":
        return token_embeddings.masked_fill(mask == 0, torch.finfo(token_embeddings.dtype).min).max(dim=1).values
    return (token_embeddings * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1e-9)


class SentenceEncoder(nn.Module):
    """An HF encoder whose pooled (optionally projected, optionally normalised) output is the sentence embedding.

    `max_seq_length` (None until known): the input length its sentence-transformers folder declares."""

    kdlab_kind = "sentence_encoder"

    def __init__(
        self,
        backbone: nn.Module,
        pooling: str = "mean",
        normalize: bool = False,
        projection: nn.Linear | None = None,
        key: str = "model.pooling",
        max_seq_length: int | None = None,
    ):
        super().__init__()
        pooling = check_pooling(pooling, key) or "mean"  # `key`: the spec's pooling key, for the error
        if projection is not None and projection.in_features != int(backbone.config.hidden_size):
            raise ValueError(
                f"projection takes {projection.in_features}-d inputs, the encoder's width is {backbone.config.hidden_size}"
            )
        self.backbone = backbone
        # the sentence embedding pools the token states: a backbone's own pooler (BERT's) is never used, so it
        # is frozen (kept in exports) — DDP refuses trainable parameters that get no gradient
        pooler = getattr(backbone, "pooler", None)
        if isinstance(pooler, nn.Module):
            pooler.requires_grad_(False)
        self.pooling = pooling
        self.normalize = bool(normalize)
        self.projection = projection
        self.max_seq_length = None if max_seq_length is None else int(max_seq_length)

    @property
    def config(self) -> Any:
        return self.backbone.config

    @property
    def hidden_size(self) -> int:
        """Width of the token states (and of the pooled vector)."""
        return int(self.backbone.config.hidden_size)

    @property
    def dim(self) -> int:
        """Width of the sentence embedding: the projection's output width if there is one."""
        return self.projection.out_features if self.projection is not None else self.hidden_size

    def add_projection(self, dim: int) -> None:
        """Add a learnt Linear(hidden_size → dim) after pooling (before normalisation); nn.Linear's default init."""
        self.projection = nn.Linear(self.hidden_size, int(dim))

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        states = self.backbone(**kwargs).last_hidden_state
        embeddings = pool(states, attention_mask, self.pooling)
        if self.projection is not None:
            embeddings = self.projection(embeddings)
        return F.normalize(embeddings, p=2, dim=-1) if self.normalize else embeddings

    def save_sentence_transformers(self, folder: str | Path, tokenizer: Any, max_seq_length: int) -> Path:
        """Write a sentence-transformers folder (Transformer → Pooling [→ Dense] [→ Normalize]) declaring
        `max_seq_length` (kept as the encoder's), and the tokenizer, atomically (kdlab.models.files.export_model)."""
        self.max_seq_length = int(max_seq_length)
        return export_model(self, tokenizer, folder)

    def write_folder(self, folder: str | Path) -> None:
        """The sentence-transformers files of this encoder, all but the tokenizer's, into `folder` (which exists)."""
        from safetensors.torch import save_file

        root = Path(folder)
        self.backbone.save_pretrained(str(root), safe_serialization=True)
        modules = [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        ]

        def add(kind: str) -> Path:
            """A module folder `<idx>_<kind>` listed in modules.json."""
            path = root / f"{len(modules)}_{kind}"
            modules.append(
                {
                    "idx": len(modules),
                    "name": str(len(modules)),
                    "path": path.name,
                    "type": f"sentence_transformers.models.{kind}",
                }
            )
            path.mkdir()
            return path

        if self.projection is not None:
            dense = add("Dense")
            (dense / "config.json").write_text(
                json.dumps(
                    {
                        "in_features": self.projection.in_features,
                        "out_features": self.projection.out_features,
                        "bias": self.projection.bias is not None,
                        "activation_function": IDENTITY,
                    },
                    indent=2,
                )
            )
            weights = {
                f"linear.{name}": tensor.detach().cpu().contiguous()
                for name, tensor in self.projection.state_dict().items()
            }
            save_file(weights, str(dense / "model.safetensors"))
        if self.normalize:
            add("Normalize")
        (root / "modules.json").write_text(json.dumps(modules, indent=2))
        if self.max_seq_length is not None:
            (root / "sentence_bert_config.json").write_text(
                json.dumps({"max_seq_length": self.max_seq_length, "do_lower_case": False}, indent=2)
            )
        (root / "1_Pooling").mkdir()
        (root / "1_Pooling" / "config.json").write_text(
            json.dumps(
                {
                    "word_embedding_dimension": self.hidden_size,
                    "pooling_mode_cls_token": self.pooling == "cls",
                    "pooling_mode_mean_tokens": self.pooling == "mean",
                    "pooling_mode_max_tokens": self.pooling == "max",
                    "pooling_mode_mean_sqrt_len_tokens": False,
                },
                indent=2,
            )
        )


def sentence_transformers_settings(folder: str | Path) -> dict[str, Any]:
    """Pooling mode, normalisation and max length declared by a sentence-transformers folder ({} if it is not one)."""
    folder = Path(folder)
    modules_file = folder / "modules.json"
    if not modules_file.exists():
        return {}
    modules = json.loads(modules_file.read_text(encoding="utf-8"))
    kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
    supported = [k for k in ("Transformer", "Pooling", "Dense", "Normalize") if k in kinds]
    if kinds != supported:
        raise ConfigError(
            "model.name_or_path",
            f"{modules_file}: modules {kinds} are not supported (Transformer → Pooling [→ Dense] [→ Normalize])",
        )
    settings: dict[str, Any] = {"normalize": "Normalize" in kinds}
    for module in modules:
        if module["type"].endswith("Dense"):
            config_file = folder / module["path"] / "config.json"
            dense = json.loads(config_file.read_text(encoding="utf-8"))
            if dense.get("activation_function", IDENTITY) != IDENTITY or dense.get("use_residual"):
                raise ConfigError(
                    "model.name_or_path",
                    f"{config_file}: only a Dense layer with identity activation and no residual is supported",
                )
            settings["dense"] = folder / module["path"]
        if module["type"].endswith("Pooling"):
            pooling = json.loads((folder / module["path"] / "config.json").read_text(encoding="utf-8"))
            if pooling.get("pooling_mode_cls_token"):
                settings["pooling"] = "cls"
            elif pooling.get("pooling_mode_max_tokens"):
                settings["pooling"] = "max"
            elif pooling.get("pooling_mode_mean_tokens"):
                settings["pooling"] = "mean"
            else:
                raise ConfigError(
                    "model.pooling", f"{folder}: pooling mode {pooling} is not supported (mean, cls or max)"
                )
    bert_config = folder / "sentence_bert_config.json"
    if bert_config.exists():
        settings["max_seq_length"] = json.loads(bert_config.read_text(encoding="utf-8")).get("max_seq_length")
    return settings


def load_dense(folder: Path) -> nn.Linear:
    """The Linear layer of a sentence-transformers Dense module folder (config.json + model.safetensors)."""
    from safetensors.torch import load_file

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    layer = nn.Linear(int(config["in_features"]), int(config["out_features"]), bias=bool(config.get("bias", True)))
    if (folder / "model.safetensors").exists():
        weights = load_file(str(folder / "model.safetensors"))
    elif (folder / "pytorch_model.bin").exists():  # older sentence-transformers folders
        weights = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise ConfigError(
            "model.name_or_path", f"{folder} has no model.safetensors or pytorch_model.bin for its Dense layer"
        )
    layer.load_state_dict({name.removeprefix("linear."): tensor for name, tensor in weights.items()})
    return layer


def pretrained_encoder(spec: Mapping[str, Any], key: str, path_key: str | None = None) -> SentenceEncoder:
    """An encoder from a spec {name_or_path, pooling, normalize, trust_remote_code}; null pooling/normalize take the
    sentence-transformers folder's own settings (else mean pooling, no normalisation). Errors about the folder name
    `path_key` (default `<key>.name_or_path`)."""
    from transformers import AutoModel

    path = spec.get("name_or_path")
    path_key = path_key or f"{key}.name_or_path"
    if not path:
        raise ConfigError(path_key, "a sentence encoder needs a model name or folder")
    declared = sentence_transformers_settings(path) if Path(str(path)).is_dir() else {}
    pooling = check_pooling(spec.get("pooling"), f"{key}.pooling") or declared.get("pooling") or "mean"
    normalize = spec.get("normalize")
    normalize = declared.get("normalize", False) if normalize is None else bool(normalize)
    backbone = load_pretrained(AutoModel, spec, path_key)
    projection = load_dense(declared["dense"]) if declared.get("dense") else None
    return SentenceEncoder(
        backbone, pooling, normalize, projection, key=f"{key}.pooling", max_seq_length=declared.get("max_seq_length")
    )


def spec_tokenizer(spec: Mapping[str, Any]) -> Any:
    """The tokenizer of a pretrained encoder's spec: its `tokenizer` path, else its `name_or_path` folder's."""
    return load_tokenizer(str(spec.get("tokenizer") or spec.get("name_or_path")))


def load_sentence_encoder(spec: Mapping[str, Any], key: str) -> tuple[SentenceEncoder, Any]:
    """An encoder (`pretrained_encoder`) and its tokenizer (`spec_tokenizer`) from a spec."""
    return pretrained_encoder(spec, key), spec_tokenizer(spec)


def random_encoder(spec: Mapping[str, Any], tokenizer: Any, key: str = "model") -> SentenceEncoder:
    """A random-init encoder from `spec.config` (tests, toy data), with `spec.pooling` / `spec.normalize`; `key` is
    the spec's."""
    from transformers import AutoModel

    backbone = AutoModel.from_config(config_from_spec(spec, tokenizer))
    pooling = check_pooling(spec.get("pooling"), f"{key}.pooling") or "mean"
    return SentenceEncoder(backbone, pooling, bool(spec.get("normalize") or False), key=f"{key}.pooling")


def copy_encoder(teacher: SentenceEncoder, layers: Sequence[int] | None) -> SentenceEncoder:
    """A trainable copy of a teacher encoder, optionally keeping only the given layers."""
    backbone = keep_layers(teacher.backbone, list(layers)) if layers else copy.deepcopy(teacher.backbone)
    projection = copy.deepcopy(teacher.projection)
    for part in (backbone, projection):
        if part is not None:
            part.requires_grad_(True)  # a frozen teacher's copy learns (SentenceEncoder then freezes the unused pooler)
    return SentenceEncoder(backbone.train(), teacher.pooling, teacher.normalize, projection)


# -- the kind's entries (kdlab.models.kinds) --------------------------------------------------------------------------


def build(
    spec: Mapping[str, Any],
    task: str | None,
    labels: Sequence[str],
    tokenizer: Any,
    teacher: SentenceEncoder | None = None,
    key: str = "model",
) -> SentenceEncoder:
    """A sentence encoder from a spec (`task`, `labels`: unused): a copy of `teacher` (`copy_teacher`, keeping
    `from_teacher_layers`), a pretrained `name_or_path`, or a random-init `config` over `tokenizer`."""
    if spec.get("copy_teacher"):
        if teacher is None:
            raise ConfigError(f"{key}.copy_teacher", "needs a teacher encoder to copy")
        return copy_encoder(teacher, spec.get("from_teacher_layers"))
    if spec.get("name_or_path") or not spec.get("config"):
        return pretrained_encoder(spec, key)
    if tokenizer is None:
        raise ConfigError(f"{key}.tokenizer", "a random-init encoder needs a tokenizer (train, or a path)")
    return random_encoder(spec, tokenizer, key)


def payload(model: SentenceEncoder) -> dict[str, Any]:
    """What a .ckpt stores to rebuild the encoder: the backbone's config, pooling, normalisation, the projection's
    shape and the declared max length."""
    projection = model.projection
    return {
        "backbone": model.backbone.config.to_dict(),
        "pooling": model.pooling,
        "normalize": model.normalize,
        "projection": None
        if projection is None
        else {"in": projection.in_features, "out": projection.out_features, "bias": projection.bias is not None},
        "max_seq_length": model.max_seq_length,
    }


def from_payload(config: Mapping[str, Any]) -> SentenceEncoder:
    """An empty encoder of a .ckpt's payload (the weights go in next)."""
    from transformers import AutoModel

    shape = config.get("projection")
    projection = None if shape is None else nn.Linear(int(shape["in"]), int(shape["out"]), bias=bool(shape["bias"]))
    return SentenceEncoder(
        AutoModel.from_config(hf_config(config["backbone"])),
        config["pooling"],
        bool(config["normalize"]),
        projection,
        max_seq_length=config.get("max_seq_length"),
    )


def load(folder: Path, key: str) -> SentenceEncoder:
    """An exported sentence-transformers folder (its own code is never run); errors name `key`."""
    return pretrained_encoder({"name_or_path": str(folder)}, key, path_key=key)


def export(model: SentenceEncoder, folder: str) -> None:
    """The sentence-transformers files (all but the tokenizer's) into `folder`."""
    model.write_folder(folder)
