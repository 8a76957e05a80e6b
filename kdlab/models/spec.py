"""Torch-free facts about model specs, used when configs are checked."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
