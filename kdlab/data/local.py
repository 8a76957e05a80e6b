"""`data=local` (conf/data/local.yaml): your own tsv/csv/jsonl files in a few flat keys.

    kdlab-train data=local data.train=my.csv data.text=sentence data.label=kind

When the config is checked (`kdlab.methods.text_data_checks.check_text_data`), these keys become the data config every DataModule
reads: `train` / `validation` / `test` sources ({path: <absolute path>, ...}), `columns`, `labels`, `metrics`.

- `data.validation`, `data.test`: a file, or null: held out of `data.train`, `holdout.size` rows each (a share of
  the training file's rows when below 1), chosen by `holdout.seed` alone: the same rows on every machine and for
  every training seed.
- `data.labels`: null: the distinct values of the training file's label column, sorted (numerically when all are
  numbers) and written to the log; or a list (its order gives the class indices).
- `data.text_pair`: a second text column (sentence pairs); `data.task=regression`: `data.label` holds scores.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kdlab.data.loading import check_columns, load_records, missing_file
from kdlab.data.records import check_labels, label_rows
from kdlab.errors import ConfigError

log = logging.getLogger(__name__)

SHORT_KEYS = ("text", "text_pair", "label", "holdout", "format", "header")
HELD_OUT = ("validation", "test")
METRICS = {"classification": ["acc", "f1"], "regression": ["pearson", "spearman"]}
SHOWN = 20  # inferred labels written out in the log line


def is_short_form(data: Mapping[str, Any]) -> bool:
    """Whether a data config is data=local's short form: no `columns` node, a `text` column key at the top."""
    return "columns" not in data and "text" in data


def _source(data: Mapping[str, Any], split: str) -> dict[str, Any] | None:
    """The source of a split given as a file name (relative to the current folder), a full source mapping, or None."""
    value = data.get(split)
    if value is None or isinstance(value, Mapping):
        return dict(value) if value is not None else None
    path = Path(str(value)).expanduser()
    path = path if path.is_absolute() else Path.cwd() / path
    if path.is_dir():
        raise ConfigError(f"data.{split}", f"{path} is a folder, expected a .tsv, .csv or .jsonl file")
    if not path.exists():
        raise ConfigError(f"data.{split}", f"{path}: {missing_file(path, f' (there is no folder {path.parent})')}")
    source: dict[str, Any] = {"path": str(path)}
    if data.get("format") is not None:
        source["format"] = data["format"]
    if data.get("header") is False:
        source["header"] = False
    return source


def holdout_rows(spec: Mapping[str, Any], total: int, where: str) -> int:
    """The rows held out for each missing split: `size` rows, or that share of `total` when 0 < size < 1 (at least 1)."""
    size = spec.get("size")
    if isinstance(size, float) and 0 < size < 1:
        return max(1, round(size * total))
    if isinstance(size, float) and size.is_integer():
        size = int(size)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(
            "data.holdout.size", f"must be a share in (0, 1) or a number of rows >= 1 (of {where}), got {size!r}"
        )
    return size


def sorted_labels(values: list[str]) -> list[str]:
    """Label values in order: numerically when every one is a number, else as strings."""
    try:
        return sorted(values, key=float)
    except ValueError:
        return sorted(values)


def _infer_labels(seen: Mapping[str, str], column: str, where: str) -> list[str]:
    """The training file's label values as the label list; ConfigError when they cannot be classes."""
    labels = sorted_labels(list(seen))
    if len(labels) < 2:
        raise ConfigError(
            "data.label", f"column {column!r} of {where} has one value {labels}: a classification task needs at least 2"
        )
    try:
        fractional = [value for value in labels if not float(value).is_integer()]
    except ValueError:
        fractional = []
    if fractional:
        raise ConfigError(
            "data.task",
            f"column {column!r} of {where} holds numbers such as {fractional[0]!r} ({len(labels)} distinct "
            "values): for scores set data.task=regression; for classes list them with data.labels=[...]",
        )
    shown = labels if len(labels) <= SHOWN else [*labels[:SHOWN], f"... ({len(labels)} labels)"]
    log.info("data: labels inferred from %s (column %r), sorted: %s", where, column, shown)
    return labels


def expand(data: Mapping[str, Any]) -> dict[str, Any]:
    """data=local's short form (resolved, plain) as the usual single-task data config."""
    task = data["task"]
    columns = {"text": data.get("text"), "text_pair": data.get("text_pair"), "label": data.get("label")}
    sources = {split: _source(data, split) for split in ("train", *HELD_OUT)}
    for source in sources.values():
        if source is not None:
            check_columns(source, columns, "data")  # names the short keys: data.text, data.label, ...
    train = sources["train"]
    where = train.get("path", "data.train")
    rows = load_records(train, {"label": columns["label"]})
    labels = data.get("labels")
    if task == "regression" and labels is not None:
        raise ConfigError(
            "data.labels", "names classes; with data.task=regression data.label is a column of scores: set it to null"
        )
    if task == "classification" and labels is None:
        labels = _infer_labels(label_rows(rows), columns["label"], where)
        for split in HELD_OUT:
            if sources[split] is not None:
                given = label_rows(load_records(sources[split], {"label": columns["label"]}))
                check_labels(
                    given, labels, origin=f"the labels of data.train {where}; list every label with data.labels=[...]"
                )
    missing = [split for split in HELD_OUT if sources[split] is None]
    if missing:
        spec = data.get("holdout") or {}
        size = holdout_rows(spec, len(rows), where)
        if size * len(missing) >= len(rows):
            raise ConfigError(
                "data.holdout.size",
                f"holding out {size} row(s) for each of {' and '.join(missing)} leaves no training "
                f"rows of the {len(rows)} in {where}; give smaller data.holdout.size or the files",
            )
        own = train.get("holdout")  # a training source given as a mapping may hold out rows itself
        steps = [own] if isinstance(own, Mapping) else list(own or [])
        for split in missing:
            part = {"size": size, "seed": int(spec.get("seed") or 0)}
            sources[split] = {**train, "holdout": [*steps, {**part, "part": "held"}]}
            steps = [*steps, {**part, "part": "rest"}]
        sources["train"] = {**train, "holdout": steps}
        log.info(
            "data: %s held out of %s (%d rows each, holdout.seed=%d); %d rows left to train on",
            " and ".join(missing),
            where,
            size,
            int(spec.get("seed") or 0),
            len(rows) - size * len(missing),
        )
    metrics = list(data.get("metrics") or METRICS[task])
    head = {
        "name": data.get("name"),
        "task": task,
        "labels": labels,
        "label_scale": data.get("label_scale"),
        "columns": columns,
        **sources,
    }
    rest = {key: value for key, value in data.items() if key not in SHORT_KEYS and key not in head}
    return {**head, **rest, "metrics": metrics, "main_metric": data.get("main_metric") or metrics[0]}
