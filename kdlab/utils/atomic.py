"""Writes that a kill cannot leave half-done: write a temporary sibling, then rename it into place.

A reader of `path` sees nothing or a complete file (or folder), never part of one. The temporary sibling is
named `.<name>.<pid>.<host>.<random>.tmp`: a process killed mid-write leaves it behind, and the next write
of the same name on the same host removes those whose process is gone (a live writer's are kept, so two
processes may write the same name at once: the last rename wins).

A write that fails because the disk is full, a quota or file-size limit is reached or the file system is
read-only raises `OutputError` naming `path`, whichever library wrote the bytes (Python, or the Rust of
safetensors and tokenizers, whose messages carry the errno as `(os error N)`; an error with no errno counts as a
full disk when the file system has no byte left).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kdlab.errors import ConfigError, OutputError

SUFFIX = ".tmp"
# errnos that mean "this file system will not take the bytes", as opposed to a bug in what is written
FULL_OR_READ_ONLY = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})
# and, while the temporary sibling is made, that the folder cannot be written
UNWRITABLE = FULL_OR_READ_ONLY | {errno.EACCES, errno.EPERM, errno.ENOTDIR}
_RUST_ERRNO = re.compile(r"\(os error (\d+)\)")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"


def _prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}.{_host()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_stale(path: str | Path) -> list[Path]:
    """Remove the temporary siblings of `path` that writers on this host left when they were killed; returns them."""
    path = Path(path)
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(\d+)\.{re.escape(_host())}\.[^.]+{re.escape(SUFFIX)}$")
    stale = []
    try:
        entries = list(os.scandir(path.parent))
    except FileNotFoundError:
        return stale
    for entry in entries:
        found = pattern.match(entry.name)
        if found and int(found.group(1)) != os.getpid() and not _alive(int(found.group(1))):
            _remove(Path(entry.path))
            stale.append(Path(entry.path))
    return stale


def _free_bytes(folder: Path) -> int:
    """Bytes this process may still write on `folder`'s file system (root may use the blocks kept for it)."""
    stats = os.statvfs(folder)
    return (stats.f_bfree if os.geteuid() == 0 else stats.f_bavail) * stats.f_frsize


def check_writable(folder: str | Path, key: str, hint: str = "") -> None:
    """Raise ConfigError naming `key` unless `folder` is, or can be made, a writable folder on a file system with space."""
    folder = Path(folder).expanduser().absolute()
    existing = folder
    while not os.path.exists(existing) and existing != existing.parent:  # False also where a parent cannot be searched
        existing = existing.parent
    if not existing.is_dir():
        problem = f"{existing} is a file, not a folder"
    elif not os.access(existing, os.W_OK | os.X_OK):
        problem = f"{existing} is not writable" + (
            " (read-only file system)" if os.statvfs(existing).f_flag & os.ST_RDONLY else ""
        )
    elif _free_bytes(existing) == 0:
        problem = f"the file system of {existing} is full"
    else:
        return
    where = "cannot write to" if existing == folder else "cannot create"
    raise ConfigError(key, f"{where} {folder}: {problem}{hint}")


def write_errno(err: BaseException) -> int | None:
    """The errno of a failed write: an OSError's, or the one a Rust library put in its message."""
    if isinstance(err, OSError):
        return err.errno
    found = _RUST_ERRNO.search(str(err))
    return int(found.group(1)) if found else None


def _full(folder: Path) -> bool:
    try:
        return _free_bytes(folder) == 0
    except OSError:
        return False


def output_error(path: str | Path, err: BaseException, codes: frozenset[int] = FULL_OR_READ_ONLY) -> OutputError | None:
    """`err` as an OutputError naming `path` when its errno is one of `codes`, else None.

    An error without an errno (torch.save's "unexpected pos") counts as ENOSPC when `path`'s file system is full.
    """
    code = write_errno(err)
    if code is None and _full(Path(path).parent):
        code = errno.ENOSPC
    if code not in codes:
        return None
    return OutputError(path, f"cannot be written: {os.strerror(code)} (free space or choose another folder)")


@contextmanager
def _reported(path: Path, codes: frozenset[int] = FULL_OR_READ_ONLY) -> Iterator[None]:
    """Re-raise an error of the block as `output_error(path, ...)` when it is one."""
    try:
        yield
    except Exception as err:
        converted = output_error(path, err, codes)
        if converted is None:
            raise
        raise converted from err


def _temporary(path: Path, folder: bool) -> Path:
    if folder:
        return Path(tempfile.mkdtemp(prefix=_prefix(path), suffix=SUFFIX, dir=path.parent))
    fd, name = tempfile.mkstemp(prefix=_prefix(path), suffix=SUFFIX, dir=path.parent)
    os.close(fd)
    return Path(name)


def _replace_folder(tmp: Path, folder: Path) -> None:
    """Rename `tmp` to `folder`; an existing `folder` is first renamed aside, then removed (never half-deleted)."""
    aside: list[Path] = []
    try:
        while True:
            try:
                os.replace(tmp, folder)  # one step when `folder` is absent
                return
            except OSError as err:
                if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
            aside.append(_temporary(folder, folder=True))
            try:
                os.replace(folder, aside[-1])
            except FileNotFoundError:  # another writer moved it first
                pass
    finally:
        for old in aside:
            _remove(old)


@contextmanager
def replacing(path: str | Path, folder: bool = False) -> Iterator[Path]:
    """A temporary sibling of `path` (a file, or a folder when `folder`) to write; on success it becomes `path`."""
    path = Path(path)
    with _reported(path, UNWRITABLE):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(path)
        tmp = _temporary(path, folder)
    try:
        with _reported(path):
            yield tmp
            if folder:
                _replace_folder(tmp, path)
            else:
                os.replace(tmp, path)
    finally:
        if tmp.exists():
            _remove(tmp)


def save_atomically(folder: str | Path, write: Callable[[str], Any]) -> None:
    """Write a folder through a temporary sibling and rename it, so a half-written folder is never read."""
    with replacing(folder, folder=True) as tmp:
        write(str(tmp))
