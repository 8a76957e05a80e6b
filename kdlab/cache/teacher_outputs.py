"""Teacher outputs computed once per distinct input and stored on disk, addressed by teacher and by content, per row.

An *entry* is one folder ``<root>/<name>/`` per (teacher identity and weights fingerprint, tokenizer fingerprint,
max_length, output kind with its pooling, storage: dtype and top-k); `name` hashes them (`entry_name`). It holds

    meta.json                      what the name hashes, in words (kdlab-cache lists it)
    <seq>-<sha16>.safetensors      append-only shards: content_ids [n, 16] (uint8 digest of each input) and its n
                                   rows (kdlab/cache/storage.py), metadata {"sha256": checksum of every tensor, ...}
    uses.jsonl                     one line per use: time, run folder, rows computed and read

A run asks for its inputs' rows: the shards' content ids are the index, the rows it finds are read, and only the
inputs it lacks go to the teacher, whose rows become one new shard. So runs over growing or overlapping input sets (a
sweep over data.train.limit, a transfer set that grows) run the teacher once per distinct input in total. Why shards
and not one file per entry: an append never rewrites the rows other runs read (a kill mid-append loses only the new
rows), a shard is written whole with one rename (`kdlab.utils.atomic`), and the index needs no file of its own that
could disagree with the rows (it is read back from the shards, 16 bytes a row). A later shard wins where two hold the
same input (only a second writer without locks, on Windows, writes one twice).

Several processes of one run (DDP ranks, once their process group is up) compute an entry's missing rows in shares:
rank 0 finds what is missing and writes the shard, every rank computes its part and reads the stored rows
(`get_or_compute`). Between runs: a reader holds a shared lock on ``<root>/.locks/<name>.lock`` while it reads; an
append holds it exclusively and looks again for what is missing once it has it, so two processes needing overlapping
rows compute each row once (the second computes only what the first did not write). `kdlab-cache prune` removes only
an entry whose lock it can take at once. Lock files stay: removing one that another process waits on would break it.

Integrity: every shard carries the sha256 of its tensors, verified whenever it is read; a mismatch (a flipped byte) is
one DataError naming the shard and how to rebuild. Every input asked for must have its row after the append
(`rows`), else one DataError says how many lack one and names an example text.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from kdlab.cache.storage import Storage, decode, encode
from kdlab.data.identity import Input, content_id
from kdlab.errors import DataError
from kdlab.utils.atomic import remove_stale, replacing
from kdlab.utils.distributed import process_group

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent runs may compute rows twice (writes stay atomic)
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)
LOCKS = ".locks"
META = "meta.json"
USES = "uses.jsonl"
SHARD = re.compile(r"^(\d{6})-([0-9a-f]{16})\.safetensors$")
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.\d+\.[A-Za-z0-9-]+\.[^.]+\.tmp$")


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


def describe(
    *,
    identity: str,
    teacher: torch.nn.Module,
    tokenizer: Any,
    max_length: int,
    kind: str,
    storage: Storage,
    name: str | None = None,
) -> dict[str, Any]:
    """What addresses an entry (every field but `teacher`, the name it was loaded under, shown by kdlab-cache)."""
    return {
        "teacher": name or identity,
        "identity": identity,
        "weights": weights_fingerprint(teacher),
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "max_length": int(max_length),
        "kind": kind,
        "dtype": storage.dtype,
        "top_k": storage.top_k,
    }


def entry_name(description: dict[str, Any]) -> str:
    """The entry folder's name: sha256 over the description (the teacher's display name left out)."""
    fields = {k: v for k, v in description.items() if k != "teacher"}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]


def checksum(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def ids_of(inputs: Sequence[Input]) -> list[bytes]:
    return [content_id(text, pair) for text, pair in inputs]


class TeacherOutputCache:
    """A folder of teacher-output entries, shared by all runs and sweep jobs that point at it."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, name: str) -> Path:
        return self.root / name

    def shards(self, name: str) -> list[Path]:
        """The entry's shards, oldest first."""
        folder = self.path(name)
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if SHARD.match(p.name))

    def index(self, name: str) -> dict[bytes, tuple[Path, int]]:
        """content id → (shard, row) for every stored row (a later shard wins)."""
        found: dict[bytes, tuple[Path, int]] = {}
        for shard in self.shards(name):
            try:
                with safe_open(str(shard), framework="pt") as handle:
                    ids = handle.get_tensor("content_ids")
            except Exception as err:  # noqa: BLE001 - any unreadable shard is the same error
                raise self._damaged(shard, f"unreadable teacher-output cache shard ({err})") from None
            for row, digest in enumerate(ids.numpy()):
                found[digest.tobytes()] = (shard, row)
        return found

    def load(self, name: str, inputs: Sequence[Input]) -> torch.Tensor | None:
        """The stored rows for these inputs in order (float32, full width), or None when any is missing."""
        with self._lock(name, shared=True):
            index = self.index(name)
            ids = ids_of(inputs)
            if any(i not in index for i in ids):
                return None
            return self._read(index, ids)

    def rows(
        self, name: str, inputs: Sequence[Input], index: dict[bytes, tuple[Path, int]] | None = None
    ) -> torch.Tensor:
        """The stored rows for these inputs; one DataError when some have none (how many, and an example text)."""
        index = self.index(name) if index is None else index
        ids = ids_of(inputs)
        missing = [item for item, i in zip(inputs, ids) if i not in index]
        if missing:
            text, pair = missing[0]
            example = text if pair is None else f"{text} ||| {pair}"
            raise DataError(
                self.path(name),
                f"{len(missing)} of {len(inputs)} inputs have no teacher-output row, e.g. {example[:80]!r}; "
                "run again to compute them",
            )
        return self._read(index, ids)

    def store(
        self,
        name: str,
        inputs: Sequence[Input],
        outputs: torch.Tensor,
        storage: Storage,
        description: dict[str, Any] | None = None,
    ) -> Path:
        """Append the rows of `inputs` as one shard (atomically, under the entry's exclusive lock); its path."""
        with self._lock(name):
            return self._append(name, inputs, outputs, storage, description)

    def get_or_compute(
        self,
        description: dict[str, Any],
        inputs: Sequence[Input],
        compute: Callable[[Sequence[Input]], torch.Tensor],
        run: str | None = None,
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """(rows for the distinct `inputs` in order, {entry, path, rows, computed, read}); only the rows the entry
        lacks are computed, by `compute(missing inputs)`.

        In a process group (DDP ranks) every process calls this with the same inputs: rank 0 finds the missing rows
        under the exclusive lock and tells the others, every process calls `compute` on them (which shares the work
        out, `kdlab.utils.distributed.computed_in_shares`, and returns every row to every process), rank 0 writes
        the shard, and every process then reads the same stored rows."""
        name = entry_name(description)
        storage = Storage(description["dtype"], description["top_k"])
        ids = ids_of(inputs)
        group = process_group()
        if group is not None:
            missing = self._fill_in_shares(group, name, inputs, ids, compute, storage, description)
            with self._lock(name, shared=True):
                outputs = self.rows(name, inputs)
        else:
            with self._lock(name, shared=True):
                index = self.index(name)
                missing = [item for item, i in zip(inputs, ids) if i not in index]
                if not missing:
                    outputs = self.rows(name, inputs, index)
            if missing:
                with self._lock(name):  # one process appends at a time; it looks again once it holds the lock
                    index = self.index(name)
                    missing = [item for item, i in zip(inputs, ids) if i not in index]
                    if missing:
                        self._append(name, missing, compute(missing), storage, description)
                        index = self.index(name)
                    outputs = self.rows(name, inputs, index)
        info = {
            "entry": name,
            "path": str(self.path(name)),
            "rows": len(inputs),
            "computed": len(missing),
            "read": len(inputs) - len(missing),
            "processes": 1 if group is None else group.get_world_size(),
        }
        if group is None or group.get_rank() == 0:
            self._record_use(name, run, info)
        log.info(
            "teacher outputs: %d rows computed%s, %d read from the cache (%s)",
            info["computed"],
            f" in shares by {info['processes']} processes" if info["processes"] > 1 and missing else "",
            info["read"],
            name,
        )
        return outputs, info

    def _fill_in_shares(
        self,
        group: Any,
        name: str,
        inputs: Sequence[Input],
        ids: Sequence[bytes],
        compute: Callable[[Sequence[Input]], torch.Tensor],
        storage: Storage,
        description: dict[str, Any],
    ) -> list[Input]:
        """The missing rows computed by every process, written by rank 0 (which holds the exclusive lock throughout,
        so no other run appends the same rows meanwhile); returns the missing inputs."""
        rank = group.get_rank()
        with self._lock(name) if rank == 0 else nullcontext():
            found: list[Any] = [None]
            if rank == 0:
                try:
                    index = self.index(name)
                    found = [[position for position, i in enumerate(ids) if i not in index]]
                except DataError as err:  # every rank stops with rank 0's error, none waits for the others
                    found = [(err.path, str(err)[len(err.path) + 2 :])]
            group.broadcast_object_list(found, src=0)
            if isinstance(found[0], tuple):
                raise DataError(*found[0])
            missing = [inputs[position] for position in found[0]]
            if missing:
                outputs = compute(missing)
                if rank == 0:
                    self._append(name, missing, outputs, storage, description)
        group.barrier()  # rank 0's shard is in place before anyone reads
        return missing

    # --- inside -----------------------------------------------------------------------------------------------------
    def _damaged(self, shard: Path, problem: str) -> DataError:
        return DataError(
            shard,
            f"{problem}; delete this file to rebuild its rows (the next run computes them again), "
            f"or `kdlab-cache prune --entry {shard.parent.name}` for the whole entry",
        )

    def _read(self, index: dict[bytes, tuple[Path, int]], ids: Sequence[bytes]) -> torch.Tensor:
        """Rows of `ids` (all in `index`) from their shards, each shard's checksum verified."""
        by_shard: dict[Path, list[tuple[int, int]]] = {}
        for position, digest in enumerate(ids):
            shard, row = index[digest]
            by_shard.setdefault(shard, []).append((position, row))
        out: torch.Tensor | None = None
        for shard, places in by_shard.items():
            rows = self._shard_rows(shard)
            if out is None:
                out = rows.new_empty((len(ids), *rows.shape[1:]))
            positions, picked = zip(*places)
            out[torch.tensor(positions)] = rows[torch.tensor(picked)]
        assert out is not None
        return out

    def _shard_rows(self, shard: Path) -> torch.Tensor:
        try:
            tensors = load_file(str(shard))
            with safe_open(str(shard), framework="pt") as handle:
                metadata = handle.metadata() or {}
        except Exception as err:  # noqa: BLE001
            raise self._damaged(shard, f"unreadable teacher-output cache shard ({err})") from None
        if metadata.get("sha256") != checksum(tensors):
            raise self._damaged(shard, "teacher-output cache shard fails its checksum (its bytes changed on disk)")
        return decode(tensors, metadata)

    def _append(
        self,
        name: str,
        inputs: Sequence[Input],
        outputs: torch.Tensor,
        storage: Storage,
        description: dict[str, Any] | None,
    ) -> Path:
        """Write one shard (the caller holds the exclusive lock): temporary file, then rename."""
        folder = self.path(name)
        folder.mkdir(parents=True, exist_ok=True)
        for entry in os.scandir(folder):  # temporary files of writers killed mid-append
            found = _TEMPORARY.match(entry.name)
            if found:
                remove_stale(folder / found.group("name"))
        if description is not None and not (folder / META).exists():
            with replacing(folder / META) as tmp:
                Path(tmp).write_text(json.dumps({**description, "created": time.time()}, indent=1) + "\n")
        tensors, metadata = encode(outputs, storage)
        tensors["content_ids"] = torch.tensor([list(i) for i in ids_of(inputs)], dtype=torch.uint8).reshape(-1, 16)
        digest = checksum(tensors)
        shards = self.shards(name)
        sequence = int(SHARD.match(shards[-1].name).group(1)) + 1 if shards else 1  # type: ignore[union-attr]
        path = folder / f"{sequence:06d}-{digest[:16]}.safetensors"
        with replacing(path) as tmp:
            save_file(tensors, str(tmp), metadata={**metadata, "sha256": digest, "rows": str(len(inputs))})
        return path

    def _record_use(self, name: str, run: str | None, info: dict[str, Any]) -> None:
        """One line in the entry's uses.jsonl (a single short append; a reader skips a line a kill cut short)."""
        line = json.dumps({"time": time.time(), "run": run, "computed": info["computed"], "read": info["read"]})
        folder = self.path(name)
        if folder.is_dir():
            with open(folder / USES, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")

    @contextmanager
    def _lock(self, name: str, shared: bool = False) -> Iterator[None]:
        """A lock on one entry across processes: shared to read it, exclusive to append to it."""
        with entry_lock(self.root, name, shared=shared, wait=True):
            yield


@contextmanager
def entry_lock(root: Path, name: str, *, shared: bool, wait: bool) -> Iterator[bool]:
    """The lock of entry `name` (yields whether it was taken: with wait=False, False when another process holds it)."""
    (root / LOCKS).mkdir(parents=True, exist_ok=True)
    with open(root / LOCKS / f"{name}.lock", "a+b") as handle:
        if fcntl is None:
            yield True
            return
        mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB)
        try:
            fcntl.flock(handle, mode)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
