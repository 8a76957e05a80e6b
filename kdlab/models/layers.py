"""The encoder layers of Hugging Face models: finding the layer stack, keeping some layers (DistilBERT-style
students, `from_teacher_layers`; a pretrained model's `layers`)."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from kdlab.errors import ConfigError
from kdlab.models.spec import check_layer_indices


def encoder_layers(model: nn.Module, key: str = "model.student.from_teacher_layers") -> nn.ModuleList:
    """The transformer layer stack of a HF encoder (the ModuleList as long as num_hidden_layers)."""
    depth = model.config.num_hidden_layers
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == depth:
            return module
    raise ConfigError(key, f"cannot find the layer stack of {type(model).__name__}")


def keep_layers(teacher: nn.Module, layers: Sequence[int], key: str = "model.student.from_teacher_layers") -> nn.Module:
    """A copy of `teacher` with only the given encoder layers (DistilBERT-style initialisation)."""
    layers = check_layer_indices(layers, teacher.config.num_hidden_layers, key, owner="this model")
    student = copy.deepcopy(teacher)
    stack = encoder_layers(student, key)
    kept = [stack[int(i)] for i in layers]
    for position in range(len(stack) - 1, -1, -1):
        del stack[position]
    stack.extend(kept)
    student.config.num_hidden_layers = len(kept)
    for position, layer in enumerate(kept):  # some architectures index their caches by layer_idx
        for sub in layer.modules():
            if hasattr(sub, "layer_idx"):
                sub.layer_idx = position
    for parameter in student.parameters():
        parameter.requires_grad_(True)
    return student


def pretrained_layers(model: nn.Module, spec: Mapping[str, Any], key: str = "model") -> nn.Module:
    """A pretrained model cut to the encoder layers `spec.layers` lists (all of them when the key is null); `key` is
    the spec's (model.student, ...)."""
    layers = spec.get("layers")
    return model if layers is None else keep_layers(model, list(layers), key=f"{key}.layers")
