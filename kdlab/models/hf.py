"""The Hugging Face classifier kind (kdlab.models.kinds' default): building from a spec (pretrained, random config
or teacher layers), the spec's own trust_remote_code, its checkpoint payload, loading and exporting its folder."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from kdlab.errors import ConfigError, first_line
from kdlab.models.layers import keep_layers, pretrained_layers
from kdlab.models.spec import check_trust_remote_code
from kdlab.utils.quiet import load_report_held, release, routine_load

log = logging.getLogger(__name__)


def _head_kwargs(task: str, labels: Sequence[str]) -> dict[str, Any]:
    if task == "regression":
        return {"num_labels": 1, "problem_type": "regression"}
    return {
        "num_labels": len(labels),
        "problem_type": "single_label_classification",
        "id2label": {i: str(label) for i, label in enumerate(labels)},
        "label2id": {str(label): i for i, label in enumerate(labels)},
    }


def config_from_spec(spec: Mapping[str, Any], tokenizer: Any, **extra: Any) -> Any:
    """A transformers config for a random-init model: `spec.config` (BERT-style keys) sized to the tokenizer."""
    from transformers import AutoConfig

    arch = dict(spec.get("config") or {})
    model_type = arch.pop("model_type", "bert")
    arch.setdefault("vocab_size", len(tokenizer))
    arch.setdefault("pad_token_id", tokenizer.pad_token_id)
    return AutoConfig.for_model(model_type, **arch, **extra)


def remote_code(spec: Mapping[str, Any], name: str, key: str = "model") -> dict[str, bool]:
    """`from_pretrained` keywords for a spec's own `trust_remote_code` (off unless the spec turns it on).

    When on, the model's own Python files run: a WARNING naming the model goes to the run's log (<run>/train.log)
    and the key is in the run's resolved config (<run>/config.yaml). Never on for any other model of the run.
    """
    if not check_trust_remote_code(spec, key):  # `key`: the spec's own (model.student, model.bi_encoders[0], ...)
        return {}
    log.warning("trust_remote_code: true for %s: the Python code shipped with this model runs", name)
    return {"trust_remote_code": True}


def _remote_code_hint(err: BaseException) -> str:
    """What to do when transformers refused a model's own code."""
    if "trust_remote_code" not in str(err):
        return ""
    return (
        "; it ships its own code, which kdlab runs only if this model's trust_remote_code is true in its model config"
    )


def load_pretrained(auto_class: Any, spec: Mapping[str, Any], key: str, **kwargs: Any) -> nn.Module:
    """`auto_class.from_pretrained(spec.name_or_path)` under the spec's own trust_remote_code; a failure is one ConfigError
    naming `key` (`<spec key>.name_or_path`)."""
    name = str(spec["name_or_path"])
    trust = remote_code(spec, name, key.removesuffix(".name_or_path"))
    try:
        with load_report_held() as report:
            model, info = auto_class.from_pretrained(name, output_loading_info=True, **kwargs, **trust)
    except (OSError, ValueError) as err:  # ValueError: the folder ships its own code and trust_remote_code is off
        raise ConfigError(key, f"cannot load {name!r} ({first_line(err)}){_remote_code_hint(err)}") from None
    if not routine_load(model, info):  # e.g. encoder weights the checkpoint lacks: transformers' report says which
        release(report)
    return model


def build_hf_classifier(
    spec: Mapping[str, Any],
    task: str,
    labels: Sequence[str],
    tokenizer: Any,
    teacher: nn.Module | None = None,
    key: str = "model",
) -> nn.Module:
    """A Hugging Face classifier/regressor: pretrained backbone, random config, or teacher layers."""
    from transformers import AutoModelForSequenceClassification

    head = _head_kwargs(task, labels)
    if spec.get("from_teacher_layers") is not None:
        if teacher is None:
            raise ConfigError(f"{key}.from_teacher_layers", "needs a teacher (method hinton)")
        return keep_layers(teacher, list(spec["from_teacher_layers"]), key=f"{key}.from_teacher_layers")
    if spec.get("name_or_path"):
        return pretrained_layers(
            load_pretrained(AutoModelForSequenceClassification, spec, f"{key}.name_or_path", **head), spec, key
        )
    return AutoModelForSequenceClassification.from_config(config_from_spec(spec, tokenizer, **head))


def hf_payload(model: nn.Module) -> dict[str, Any]:
    """A Hugging Face model's config as a plain dict (for a .ckpt)."""
    return model.config.to_dict()


def hf_config(config: Mapping[str, Any]) -> Any:
    """A transformers config from its `to_dict()` values (what a .ckpt payload stores)."""
    from transformers import AutoConfig

    config = dict(config)
    return AutoConfig.for_model(config.pop("model_type"), **config)


def hf_from_payload(config: Mapping[str, Any]) -> nn.Module:
    """An empty Hugging Face classifier of the config a .ckpt stores."""
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_config(hf_config(config))


def load_hf_folder(path: Path, key: str) -> nn.Module:
    """A fine-tuned Hugging Face classifier from its folder (its own code is never run)."""
    from transformers import AutoModelForSequenceClassification

    try:
        return AutoModelForSequenceClassification.from_pretrained(str(path))
    except (OSError, ValueError) as err:  # ValueError: the folder ships its own code (never run for a trained model)
        raise ConfigError(key, f"cannot load {path} ({first_line(err)}){_remote_code_hint(err)}") from None


def export_hf(model: nn.Module, folder: str) -> None:
    """A Hugging Face model's weights (safetensors) and config.json into `folder`."""
    model.save_pretrained(folder, safe_serialization=True)
