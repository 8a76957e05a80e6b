"""kdlab's own error types: each carries a one-line message naming the key, file or line at fault."""

from __future__ import annotations

import re


class KdlabError(Exception):
    """Base class for errors that kdlab reports as a single line and a non-zero exit."""


class ConfigError(KdlabError):
    """A config value is missing, out of range or inconsistent with another one."""

    def __init__(self, key: str, message: str):
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}")


class DataError(KdlabError):
    """A data file is missing, empty or malformed; the message names the file and line."""

    def __init__(self, path: object, message: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")


class TrainingError(KdlabError):
    """Training cannot go on (a non-finite loss); the message names the step and the loss terms."""

    def __init__(self, step: int, message: str):
        self.step = step
        super().__init__(message)


class OutputError(KdlabError):
    """A file or folder kdlab writes cannot be written (full disk, read-only or unwritable folder); names the path."""

    def __init__(self, path: object, message: str):
        self.path = str(path)
        super().__init__(f"{path}: {message}")


def first_line(err: BaseException) -> str:
    """An exception's first non-empty line without terminal colour codes."""
    lines = [line for line in re.sub(r"\x1b\[[0-9;]*m", "", str(err)).splitlines() if line.strip()]
    return lines[0].strip() if lines else type(err).__name__
