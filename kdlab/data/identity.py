"""Content ids: what an input *is*, independent of where it sits in a file.

The teacher-output cache keys its rows by them, BAM looks teacher predictions up by them, and the
teacher store keys a fine-tuned teacher by the fingerprint of the data it was trained and scored on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

Input = tuple[str, "str | None"]


# opens a pair's digest: 0xFF never occurs in UTF-8, so no single sentence's bytes begin like a pair's
PAIR = b"\xff"


def content_id(text: str, text_pair: str | None = None) -> bytes:
    """16-byte digest of one input: sha256 of a sentence's UTF-8 bytes; of a pair, 0xFF, the first sentence's byte
    length (8 bytes), then both sentences. So no sentence has a pair's id and no two pairs share one (a separator
    byte alone let a sentence holding it, or a pair split at another place, collide with a pair)."""
    first = text.encode("utf-8")
    if text_pair is None:
        return hashlib.sha256(first).digest()[:16]
    framed = PAIR + len(first).to_bytes(8, "big") + first + text_pair.encode("utf-8")
    return hashlib.sha256(framed).digest()[:16]


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
