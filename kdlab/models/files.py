"""Model files of every kind: kdlab checkpoints (their payload, loading them weights-only), trained models from an
export folder or a .ckpt, and exporting a model with its tokenizer atomically."""

from __future__ import annotations

import json
import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdlab.errors import ConfigError, DataError, first_line
from kdlab.models import kinds
from kdlab.models.tokenization import load_tokenizer
from kdlab.utils.atomic import save_atomically


def checkpoint_payload(model: nn.Module, tokenizer: Any) -> dict[str, Any]:
    """What a kdlab checkpoint stores besides weights so it can be loaded on its own: config + tokenizer files
    (and the model's kind when it is not the default)."""
    files: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        for name in os.listdir(tmp):
            files[name] = Path(tmp, name).read_text(encoding="utf-8")
    entry = kinds.of_model(model)
    kind = {} if entry.name == kinds.DEFAULT_KIND else {kinds.PAYLOAD_KEY: entry.name}
    return {"model_config": entry.call("payload", model), "tokenizer_files": files, **kind}


def load_checkpoint_file(path: str | Path, key: str) -> dict[str, Any]:
    """A checkpoint unpickled weights-only (tensors and plain values; a pickled callable is refused, never called).

    A user hands checkpoints in (`key` names where), so a file that would import or call anything while being
    unpickled is refused with one line naming the file and what it asked for; nothing in it runs.
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        wanted = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if wanted:
            raise DataError(
                path,
                f"not a loadable kdlab checkpoint, given as {key}: refused, unpickling it would call {wanted.group(1)} "
                "(kdlab loads checkpoints weights-only, tensors and plain values, so no code in a file runs)",
            ) from None
        raise DataError(
            path, f"not a loadable kdlab checkpoint, given as {key} (corrupt or not a torch file: {first_line(err)})"
        ) from None
    except Exception as err:  # a truncated zip, a folder-like file, ...: one line, never a deep traceback
        raise DataError(
            path, f"not a loadable kdlab checkpoint, given as {key} ({type(err).__name__}: {first_line(err)})"
        ) from None
    if not isinstance(checkpoint, dict):
        raise DataError(
            path, f"not a kdlab checkpoint, given as {key} (it holds a {type(checkpoint).__name__}, not a dict)"
        )
    return checkpoint


def _folder_config(path: Path) -> dict[str, Any]:
    """A model folder's config.json as a dict ({} when it is not readable JSON: the kind's loader then says why)."""
    try:
        data = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _classifier(entry: kinds.ModelKind, path: Path, key: str) -> kinds.ModelKind:
    """`entry`, when it is a sequence classifier kind; a DataError naming the file and `key` otherwise."""
    if not entry.classifier:
        raise DataError(path, f"holds a {entry.name} model, not a sequence classifier, given as {key}")
    return entry


def load_trained(path: str | Path, key: str = "model.teacher.trained") -> tuple[nn.Module, Any]:
    """A fine-tuned sequence classifier and its tokenizer from an export folder or a kdlab ``.ckpt`` (loaded
    weights-only), by its kind (a .ckpt of another kind, e.g. a sentence encoder's, is refused naming it)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(key, f"{path} does not exist (expected a model folder or a kdlab .ckpt)")
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ConfigError(key, f"{path} has no config.json (expected a Hugging Face model folder)")
        model = kinds.of_folder_config(
            _folder_config(path), f"{key} ({path / 'config.json'}: {kinds.FOLDER_KEY})"
        ).call("load", path, key)
        return model, load_tokenizer(str(path))
    checkpoint = load_checkpoint_file(path, key)
    payload = checkpoint.get("kdlab")
    if not isinstance(payload, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise DataError(
            path, f"checkpoint has no 'kdlab' and 'state_dict' entries (was it written by kdlab?), given as {key}"
        )
    entry = _classifier(kinds.kind(payload.get(kinds.PAYLOAD_KEY), f"{key} ({path}: {kinds.PAYLOAD_KEY})"), path, key)
    try:
        model = entry.call("from_payload", dict(payload["model_config"]))
        prefix = "model."
        state = {k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:  # a damaged payload: one line, not a deep traceback
        raise DataError(
            path,
            f"checkpoint does not hold a model kdlab can rebuild, given as {key} ({type(err).__name__}: {first_line(err)})",
        ) from None
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in payload["tokenizer_files"].items():
            Path(tmp, name).write_text(text, encoding="utf-8")
        tokenizer = load_tokenizer(tmp)
    return model, tokenizer


def export_model(model: nn.Module, tokenizer: Any, folder: str | Path) -> Path:
    """Write `model` (safetensors weights and config.json, by its kind) and `tokenizer` into a folder, atomically."""
    folder = Path(folder)
    entry = kinds.of_model(model)

    def write(tmp: str) -> None:
        entry.call("export", model, tmp)
        tokenizer.save_pretrained(tmp)

    save_atomically(folder, write)
    return folder
