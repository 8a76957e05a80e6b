"""Torch-free facts about model specs and the rules on them, used when configs are checked and when models are built."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf.errors import OmegaConfBaseException

from kdlab.errors import ConfigError

# how a sentence encoder pools its token states (kdlab.models.sentence_encoder.pool)
POOLING_MODES = ("mean", "cls", "max")


def tokenizer_identity(spec: Mapping[str, Any], teacher_identity: str | None = None) -> str:
    """What a spec's tokenizer is, computed from config and tokenizer files only (no model loading)."""
    choice = spec.get("tokenizer")
    if choice == "teacher" or (choice is None and spec.get("from_teacher_layers") is not None):
        return teacher_identity or "teacher"
    path = choice if choice != "train" else None
    path = path or spec.get("trained") or spec.get("name_or_path")
    if choice == "train" or path is None:
        return f"train:{spec.get('vocab_size') or 'default'}"
    folder = Path(str(path))
    if folder.is_file():  # a kdlab checkpoint carries its tokenizer; identify it by path
        return f"ckpt:{folder.resolve()}"
    if folder.is_dir():
        digest = hashlib.sha256()
        found = False
        for name in ("tokenizer.json", "vocab.txt"):
            if (folder / name).exists():
                digest.update((folder / name).read_bytes())
                found = True
        if found:
            return f"files:{digest.hexdigest()[:16]}"
    return f"name:{path}"


# --- the rules on a model spec, one function each: called by the config check (kdlab.config) and when a model is
# built or loaded, each time with the spec's own key (model.student, model.bi_encoders[0], ...) ------------------------
def check_trust_remote_code(spec: Mapping[str, Any], key: str) -> bool:
    """`<key>.trust_remote_code`: true or false (absent: false)."""
    trusted = spec.get("trust_remote_code", False)
    if not isinstance(trusted, bool):
        raise ConfigError(f"{key}.trust_remote_code", f"must be true or false, got {trusted!r}")
    return trusted


def check_pooling(pooling: Any, key: str) -> Any:
    """`<key>` (a sentence encoder's pooling): a known mode, or null (the folder's own, else mean)."""
    if pooling is not None and pooling not in POOLING_MODES:
        raise ConfigError(key, f"must be one of {list(POOLING_MODES)} or null, got {pooling!r}")
    return pooling


def check_layer_indices(layers: Any, depth: int | None, key: str, owner: str = "this teacher") -> list[int]:
    """`<key>` (from_teacher_layers, layers): distinct layer indices, within [0, depth - 1] when the depth is known."""
    layers = list(layers)
    if not layers or len(set(layers)) != len(layers) or not all(isinstance(i, int) for i in layers):
        noun = "teacher layer" if owner == "this teacher" else "layer"
        raise ConfigError(key, f"must list distinct {noun} indices, got {layers}")
    if depth is not None and not all(0 <= i < depth for i in layers):
        raise ConfigError(key, f"needs layer indices in [0, {depth - 1}] for {owner}, got {layers}")
    return layers


def check_encoder_source(spec: Mapping[str, Any], key: str) -> None:
    """`<key>` (an encoder built from a spec): a pretrained `name_or_path` or a random-init `config`."""
    if not spec.get("name_or_path") and not spec.get("config"):
        raise ConfigError(key, "needs name_or_path (a pretrained encoder) or config (random init)")


def folder_config(path: Path) -> dict[str, Any] | None:
    """A local model folder's config.json, or None when `path` is not such a folder (a hub name, a .ckpt)."""
    config = path / "config.json"
    return json.loads(config.read_text(encoding="utf-8")) if config.is_file() else None


def folder_num_labels(path: Path) -> int | None:
    """The output width a local model folder's config.json states (None: not such a folder, or it does not say)."""
    data = folder_config(path)
    if data is None:
        return None
    if "id2label" in data:
        return len(data["id2label"])
    return data.get("num_labels")


def check_remote_code_folder(spec: Mapping[str, Any], key: str) -> None:
    """`<key>.name_or_path`: a local folder that ships its own Python code needs `<key>.trust_remote_code: true`."""
    try:
        folder = spec.get("name_or_path")
    except OmegaConfBaseException:  # e.g. ${minilm_path:} without the extra: loading the model says so
        folder = None
    described = folder_config(Path(str(folder))) if folder else None
    if not check_trust_remote_code(spec, key) and described is not None and described.get("auto_map"):
        raise ConfigError(
            f"{key}.name_or_path",
            f"{folder} ships its own Python code (auto_map in its config.json), "
            f"which kdlab runs only if {key}.trust_remote_code is true",
        )


def depth(spec: Any, teacher: Any = None) -> int | None:
    """Number of transformer layers a model spec will have, when config files tell without loading it."""
    if spec is None:
        return None
    layers = spec.get("from_teacher_layers")
    if layers is not None:
        return len(layers)
    if spec.get("layers") is not None and spec.get("name_or_path") and not spec.get("trained"):
        return len(spec["layers"])
    if spec.get("config") and spec["config"].get("num_hidden_layers") is not None and not spec.get("name_or_path"):
        return int(spec["config"]["num_hidden_layers"])
    for key in ("trained", "name_or_path"):
        folder = spec.get(key)
        if folder and (Path(str(folder)) / "config.json").exists():
            return json.loads((Path(str(folder)) / "config.json").read_text(encoding="utf-8")).get("num_hidden_layers")
    return None
