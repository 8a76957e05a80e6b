"""Labelled text records, torch-free: a split's rows parsed into `text`, `text_pair` and `label`, errors naming file:line.

The config check (`kdlab.methods.text_data_checks.check_text_data`, before any model is loaded) and `TextDataModule` (kdlab/data/text.py)
parse rows with the same functions, so a data error reads the same whenever it is found.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from typing import Any

from kdlab.data.loading import Record, load_records
from kdlab.errors import ConfigError, DataError

SPLITS = ("train", "validation", "test")
LISTED = 10  # unknown label values named in one error; the rest are counted


def split_columns(cfg: Mapping[str, Any], split: str) -> dict[str, Any]:
    """The column mapping for a split: `data.columns`, overridden by the split's own `columns`."""
    columns = dict(cfg.get("columns") or {})
    columns.update(dict((cfg.get(split) or {}).get("columns") or {}))
    return columns


def _short(value: Any, limit: int = 60) -> str:
    """repr(value), cut to `limit` characters, for error messages about huge fields."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _position(where: str) -> tuple[str, int]:
    """("file", line) of a record's "file:line"."""
    path, _, line = where.rpartition(":")
    return path, int(line) if line.isdigit() else 0


def label_rows(rows: Iterable[Record]) -> dict[str, str]:
    """Each label value of `rows` (as the stripped raw string) with the file:line of its first row, in row order."""
    seen: dict[str, str] = {}
    for row in rows:
        raw = row.get("label")
        if raw is not None:
            seen.setdefault(str(raw).strip(), row["_where"])
    return seen


def merge_label_rows(seen: dict[str, str], more: Mapping[str, str]) -> None:
    """Add `more` (another split's `label_rows`) to `seen`, keeping for each value its earliest row of a file."""
    for value, where in more.items():
        if value not in seen or (
            _position(where)[0] == _position(seen[value])[0] and _position(where) < _position(seen[value])
        ):
            seen[value] = where


def check_labels(seen: Mapping[str, str], labels: list[str], origin: str = "data.labels") -> None:
    """For rows whose label values and first rows are `seen`: a DataError at the first row with a label not in
    `labels`, naming every such value with its first row, and any label of the list that no row has but that looks
    like one of them (a typo in the list). `origin` says where `labels` came from."""
    unknown = {value: where for value, where in seen.items() if value not in labels}
    if not unknown:
        return
    files: dict[str, int] = {}
    for where in seen.values():
        files.setdefault(_position(where)[0], len(files))
    (value, where), *others = sorted(
        unknown.items(), key=lambda item: (files[_position(item[1])[0]], _position(item[1])[1])
    )
    message = f"label {_short(value)} is not in the label set {labels} ({origin})"
    if others:
        named = ", ".join(f"{_short(v)} ({w})" for v, w in others[: LISTED - 1])
        rest = len(others) - (LISTED - 1)
        message += f"; nor are {named}" + (f" and {rest} more values" if rest > 0 else "")
    for label in labels:
        near = difflib.get_close_matches(label, list(unknown), n=1, cutoff=0.6) if label not in seen else []
        if near:
            message += f"; {label!r} of {origin} is in no row: a typo for {near[0]!r}?"
    raise DataError(where, message)


def parse_label(record: Record, task: str, labels: list[str], scale: float | None) -> int | float:
    """The label of a record as a class index or a (scaled) float; DataError naming file:line if invalid."""
    raw = record.get("label")
    where = record["_where"]
    if raw is None:
        raise DataError(where, "missing label")
    if task == "classification":
        value = str(raw).strip()
        if value not in labels:
            raise DataError(where, f"label {_short(value)} is not in the label set {labels} (data.labels)")
        return labels.index(value)
    if isinstance(raw, bool):  # a JSON true/false is not a score (float(True) would be 1.0)
        raise DataError(where, f"score {raw!r} is not a number")
    try:
        score = float(raw)
    except OverflowError:  # a JSON integer too large for a float
        score = math.inf
    except (TypeError, ValueError):
        raise DataError(where, f"score {_short(raw)} is not a number") from None
    if not math.isfinite(score):
        raise DataError(where, f"score {_short(raw)} is not finite")
    return score / scale if scale else score


def parse_text(record: Record, role: str) -> str:
    """The text in a record's `role` column; DataError naming file:line when empty, missing, not a string or not valid Unicode."""
    value = record.get(role)
    if value is None or not str(value).strip():
        raise DataError(record["_where"], f"empty {role}")
    if not isinstance(value, str):  # a jsonl number, NaN, list, ... is not a sentence
        raise DataError(record["_where"], f"{role} must be a string, got {type(value).__name__} {_short(value)}")
    text = value
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:  # a JSON "\ud800": the tokenizer would fail on it with a TypeError
        raise DataError(
            record["_where"], f"{role} is not valid Unicode ({err.reason} {text[err.start]!r} at character {err.start})"
        ) from None
    return text


def check_label_width(
    width: int, expected: int, key: str, subject: str = "the teacher", source: str = "", origin: str = "data.labels"
) -> None:
    """ConfigError naming `key` when a trained model's output width differs from the task's label count (1 for
    regression); `source` (e.g. a config.json) says where the width was read, `origin` where the labels come from."""
    if int(width) != int(expected):
        where = f" ({source})" if source else ""
        raise ConfigError(key, f"{subject} has {width} output labels{where} but {origin} gives {expected}")


def task_labels(cfg: Mapping[str, Any]) -> list[str]:
    """A data config's labels as strings (the raw values rows are compared with)."""
    return [str(label) for label in (cfg.get("labels") or [])]


def parse_records(cfg: Mapping[str, Any], rows: list[Record]) -> list[Record]:
    """Rows of a single-task data config parsed: `text`, `text_pair` (pairs), `label` (class index or score), `_where`.

    Unknown labels are reported all at once (`check_labels`) before any row is parsed.
    """
    task, labels, scale = cfg["task"], task_labels(cfg), cfg.get("label_scale")
    if task == "classification":
        check_labels(label_rows(rows), labels)
    pair = (cfg.get("columns") or {}).get("text_pair") is not None
    parsed = []
    for row in rows:
        item = {"text": parse_text(row, "text"), "_where": row["_where"]}
        if pair:
            item["text_pair"] = parse_text(row, "text_pair")
        item["label"] = parse_label(row, task, labels, scale)
        parsed.append(item)
    return parsed


def split_records(cfg: Mapping[str, Any], split: str) -> list[Record]:
    """A split's rows, loaded (kdlab/data/loading.py) and parsed."""
    return parse_records(cfg, load_records(cfg[split], split_columns(cfg, split)))


def check_files(cfg: Mapping[str, Any]) -> None:
    """Load and parse every split that is a local file, as a run would (reading files is cheap, loading models is not):
    the unknown labels of all splits in one error, then the first bad text or score."""
    loaded = {
        split: load_records(cfg[split], split_columns(cfg, split))
        for split in SPLITS
        if (cfg.get(split) or {}).get("path") is not None
    }
    if cfg["task"] == "classification":
        seen: dict[str, str] = {}
        for rows in loaded.values():
            merge_label_rows(seen, label_rows(rows))
        check_labels(seen, task_labels(cfg))
    for rows in loaded.values():
        parse_records(cfg, rows)
