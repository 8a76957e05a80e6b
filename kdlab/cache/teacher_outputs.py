"""Teacher outputs computed once per distinct input and stored on disk, keyed by content.

Key = sha256 over (teacher identity, teacher weights fingerprint, tokenizer fingerprint, max_length,
output kind, the exact distinct inputs in order). Any change gives a new key, so a stale entry is
never read. An entry is one safetensors file ``<root>/<key>.safetensors`` (never pickle) with

    outputs      [N, ...]   one row per distinct input, in order of first appearance
    content_ids  [N, 16]    uint8 digest of each input (sha256 of text and pair), checked on load

written to a temporary name in the same folder and renamed (`kdlab.utils.atomic`), so a half-written entry is never
read; the temporary file of a process killed mid-write is removed by the next store of that entry. A missing
entry is computed under an exclusive lock (``<root>/.locks/<key>.lock``; lock files stay, since removing one
that another process waits on would break the lock): when several processes need an entry at once (the
ranks of a DDP run, parallel jobs of a sweep), one computes it and the others read it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from kdlab.data.identity import Input, content_id
from kdlab.errors import DataError
from kdlab.utils.atomic import replacing

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent runs may compute an entry twice (writes stay atomic)
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)
LOCKS = ".locks"


def weights_fingerprint(model: torch.nn.Module) -> str:
    """sha256 of every parameter and buffer (names, dtypes, shapes and bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """sha256 of a tokenizer's full serialisation (vocabulary, normaliser, special tokens)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # leave out the truncation/padding state a call leaves behind
        state = {k: v for k, v in json.loads(backend.to_str()).items() if k not in ("truncation", "padding")}
        text = json.dumps(state, sort_keys=True)
    else:
        text = repr(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(f"{type(tokenizer).__name__}\n{text}".encode()).hexdigest()


class TeacherOutputCache:
    """A folder of teacher-output entries, shared by all runs and sweep jobs that point at it."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def key(
        self,
        *,
        identity: str,
        teacher: torch.nn.Module,
        tokenizer: Any,
        max_length: int,
        kind: str,
        inputs: Sequence[Input],
    ) -> str:
        digest = hashlib.sha256()
        for part in (identity, weights_fingerprint(teacher), tokenizer_fingerprint(tokenizer), str(max_length), kind):
            digest.update(part.encode())
            digest.update(b"\0")
        for text, pair in inputs:
            digest.update(content_id(text, pair))
        return digest.hexdigest()[:32]

    def path(self, key: str) -> Path:
        return self.root / f"{key}.safetensors"

    def load(self, key: str, inputs: Sequence[Input]) -> torch.Tensor | None:
        """The stored outputs for these distinct inputs, or None when there is no entry."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            tensors = load_file(str(path))
        except Exception as err:
            raise DataError(path, f"unreadable teacher-output cache entry ({err}); delete it to rebuild") from None
        expected = torch.tensor([list(content_id(*item)) for item in inputs], dtype=torch.uint8)
        if tensors.get("content_ids") is None or not torch.equal(tensors["content_ids"], expected):
            raise DataError(path, "teacher-output cache entry does not match its inputs; delete it to rebuild")
        return tensors["outputs"]

    def store(self, key: str, inputs: Sequence[Input], outputs: torch.Tensor) -> Path:
        """Write an entry atomically (temporary file in the same folder, then rename; `kdlab.utils.atomic`)."""
        ids = torch.tensor([list(content_id(*item)) for item in inputs], dtype=torch.uint8)
        with replacing(self.path(key)) as tmp:
            save_file(
                {"outputs": outputs.contiguous(), "content_ids": ids}, str(tmp), metadata={"rows": str(len(inputs))}
            )
        return self.path(key)

    def get_or_compute(
        self, key: str, inputs: Sequence[Input], compute: Callable[[Sequence[Input]], torch.Tensor]
    ) -> tuple[torch.Tensor, bool]:
        """(outputs for `inputs` in order, whether they came from the cache). `inputs` must be distinct."""
        cached = self.load(key, inputs)
        if cached is None:
            with self._lock(key):  # one process computes; the others wait here, then read its entry
                cached = self.load(key, inputs)
                if cached is None:
                    outputs = compute(inputs)
                    self.store(key, inputs, outputs)
                    log.info("teacher outputs: computed %d rows, cached as %s", len(inputs), self.path(key))
                    return outputs, False
        log.info("teacher outputs: read %d rows from cache %s", len(inputs), self.path(key))
        return cached, True

    @contextmanager
    def _lock(self, key: str) -> Iterator[None]:
        """An exclusive lock on one entry across processes (DDP ranks, parallel sweep jobs on one file system)."""
        (self.root / LOCKS).mkdir(parents=True, exist_ok=True)
        with open(self.root / LOCKS / f"{key}.lock", "a+b") as handle:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                if fcntl is not None:
                    fcntl.flock(handle, fcntl.LOCK_UN)
