"""Content ids: what an input *is*, independent of where it sits in a file.

The teacher-output cache keys its rows by them, BAM looks teacher predictions up by them, and the
teacher store keys a fine-tuned teacher by the fingerprint of the data it was trained and scored on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

Input = tuple[str, "str | None"]


def content_id(text: str, text_pair: str | None = None) -> bytes:
    """16-byte digest of one input (a sentence or a sentence pair)."""
    digest = hashlib.sha256(text.encode("utf-8"))
    if text_pair is not None:
        digest.update(b"\x1f")
        digest.update(text_pair.encode("utf-8"))
    return digest.digest()[:16]


def distinct(inputs: Sequence[Input]) -> tuple[list[Input], list[int]]:
    """The distinct inputs in order of first appearance, and for each input the row of its distinct copy."""
    rows: dict[bytes, int] = {}
    unique: list[Input] = []
    where: list[int] = []
    for item in inputs:
        key = content_id(*item)
        if key not in rows:
            rows[key] = len(unique)
            unique.append(item)
        where.append(rows[key])
    return unique, where


def records_fingerprint(records: Iterable[dict[str, Any]]) -> str:
    """sha256 over parsed records in order: each input's content id and its label (any edit, reorder or relabel changes it)."""
    digest = hashlib.sha256()
    for record in records:
        digest.update(content_id(record["text"], record.get("text_pair")))
        digest.update(repr(record.get("label")).encode("utf-8"))
        digest.update(b"\x1e")
    return digest.hexdigest()
