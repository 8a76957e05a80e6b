"""One loading layer for every DataModule: local tsv/csv/jsonl, Hugging Face datasets, embedded data.

A *source* is a mapping from config, one of:

    {path: train.tsv, format: null, header: true, quoting: null, encoding: utf-8-sig, limit: null, seed: 0}
    {path: pairs.txt, separator: "||"}      # one `field||field` per line, no header; columns are field indices
    {hf: glue, hf_config: sst2, hf_split: train, data_files: null, limit: null}
    {embedded: reviews, split: train}

A *column mapping* maps kdlab roles (``text``, ``text_pair``, ``label``, ...) to a header name, a
jsonl key or, for header-less files, a 0-based field index. Every record that comes back is a dict
role -> raw value plus ``_where`` ("file:line") so later checks can name the line at fault.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import json
import random
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from kdlab.errors import ConfigError, DataError

FORMATS = ("tsv", "csv", "jsonl")
# the keys a split source may have (besides `columns`, which maps roles to columns for that split)
SOURCE_KEYS = (
    "path",
    "format",
    "header",
    "quoting",
    "encoding",
    "separator",
    "limit",
    "seed",
    "holdout",
    "columns",
    "hf",
    "hf_config",
    "hf_split",
    "data_files",
    "embedded",
    "split",
    "size",
)
DATA_ROOT_HINT = " (set KDLAB_DATA_DIR or paths.data_dir to the data root)"
Record = dict[str, Any]


def infer_format(path: Path, fmt: str | None) -> str:
    """The file format: the configured one, else the extension (.tsv/.txt -> tsv, .csv, .jsonl/.json)."""
    if fmt:
        if fmt not in FORMATS:
            raise ConfigError("format", f"must be one of {list(FORMATS)}, got {fmt!r} (for {path})")
        return fmt
    suffix = path.suffix.lower()
    if suffix in (".tsv", ".txt"):
        return "tsv"
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".json"):
        return "jsonl"
    raise DataError(path, f"cannot infer the format from the extension {suffix!r}; set format: tsv|csv|jsonl")


def missing_file(path: Path, folder_hint: str = DATA_ROOT_HINT) -> str:
    """Why `path` is not there: when its folder exists, the names like it there; else `folder_hint` (the data root
    may be wrong)."""
    folder = path.parent
    if not folder.is_dir():
        return f"file not found{folder_hint}"
    near = difflib.get_close_matches(path.name, sorted(entry.name for entry in folder.iterdir()), n=3, cutoff=0.75)
    return (
        f"file not found; similar names in {folder}: {', '.join(near)}"
        if near
        else f"file not found (nothing similar in {folder})"
    )


def open_text(path: Path, encoding: str):
    """The file opened for reading text; DataError for a missing/unreadable file, ConfigError for an unknown encoding."""
    if not path.exists():
        raise DataError(path, missing_file(path))
    if path.is_dir():
        raise DataError(path, "is a folder, expected a data file")
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ConfigError("encoding", f"unknown text encoding {encoding!r} (for {path})") from None
    try:
        return open(path, encoding=encoding, newline="")
    except OSError as err:
        raise DataError(path, f"cannot read this file ({err.strerror or type(err).__name__})") from None


def parse_json_line(path: Path, number: int, line: str) -> dict[str, Any]:
    """One jsonl line as a JSON object; DataError naming the line for bad JSON or anything but an object."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError(path, f"invalid JSON ({err.msg})", line=number) from None
    except (ValueError, RecursionError) as err:  # an integer too long to convert, nesting too deep
        raise DataError(path, f"invalid JSON ({type(err).__name__}: {str(err).split(';')[0]})", line=number) from None
    if not isinstance(obj, dict):
        raise DataError(path, f"expected a JSON object, got {type(obj).__name__}", line=number)
    return obj


def _csv_reader(handle, fmt: str, quoting: str | None):
    if fmt == "tsv":
        # Tab-separated files (GLUE, STS-B) contain bare quote characters: no CSV quoting by default.
        mode = csv.QUOTE_MINIMAL if quoting == "minimal" else csv.QUOTE_NONE
        return csv.reader(handle, delimiter="\t", quoting=mode)
    return csv.reader(handle)


def _separated_rows(handle, path: Path, separator: str) -> Iterator[tuple[int, list[str]]]:
    """Rows of a plain text file whose fields are joined by `separator`; a non-blank line without it is an error."""
    for number, line in enumerate(handle, start=1):
        text = line.rstrip("\r\n")
        if not text.strip():
            continue
        if separator not in text:
            raise DataError(
                path, f"no {separator!r} separator in this line (expected field{separator}field)", line=number
            )
        yield number, text.split(separator)


def iter_rows(
    path: Path, fmt: str, encoding: str, quoting: str | None, separator: str | None = None
) -> Iterator[tuple[int, Any]]:
    """Yield (line number, row) where row is a list of fields (tsv/csv, or `separator`-joined text) or a dict (jsonl)."""
    try:
        with open_text(path, encoding) as handle:
            if separator:
                yield from _separated_rows(handle, path, separator)
            elif fmt == "jsonl":
                for number, line in enumerate(handle, start=1):
                    if line.strip():
                        yield number, parse_json_line(path, number, line)
            else:
                reader = _csv_reader(handle, fmt, quoting)
                start = 1  # a quoted field may span lines: a row is named by the line it starts on
                try:
                    for row in reader:
                        if row and any(field.strip() for field in row):
                            yield start, row
                        start = reader.line_num + 1
                except csv.Error as err:
                    if "field larger than field limit" in str(err):
                        message = f"a field is longer than {csv.field_size_limit()} characters (csv's limit; an unclosed quote?)"
                    else:
                        message = f"malformed {fmt} ({err})"
                    raise DataError(path, message, line=start) from None
    except UnicodeDecodeError as err:
        line = first_undecodable_line(path, encoding)
        raise DataError(path, f"not valid {encoding} text ({err.reason})", line=line) from None


def first_undecodable_line(path: Path, encoding: str) -> int | None:
    """The number of the first line that does not decode, to point the user at it."""
    for number, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        try:
            raw.decode(encoding)
        except UnicodeDecodeError:
            return number
    return None


def read_header(source: Mapping[str, Any]) -> list[str] | None:
    """The header of a local file source, or an embedded dataset's columns (None for header-less files, HF datasets
    and unknown embedded names, which loading reports)."""
    if source.get("embedded") is not None:
        from kdlab.data.embedded import COLUMNS

        return COLUMNS.get(str(source["embedded"]))
    if "path" not in source or source.get("path") is None:
        return None
    path = Path(str(source["path"]))
    if source.get("separator"):
        return None
    fmt = infer_format(path, source.get("format"))
    encoding = source.get("encoding") or "utf-8-sig"
    if fmt == "jsonl":
        for _, obj in iter_rows(path, fmt, encoding, None):
            return list(obj.keys())
        raise DataError(path, "empty file: no rows")
    if not source.get("header", True):
        return None
    for _, row in iter_rows(path, fmt, encoding, source.get("quoting")):
        return [field.strip() for field in row]
    raise DataError(path, "empty file: no header and no rows")


def check_columns(source: Mapping[str, Any], columns: Mapping[str, Any], key: str) -> None:
    """Raise ConfigError if a mapped column is not in the source's header (read without loading the file)."""
    header = read_header(source)
    if header is None:
        return
    for role, column in columns.items():
        if column is None or isinstance(column, int):
            continue
        if column not in header:
            where = source.get("path") or f"embedded dataset {source.get('embedded')!r}"
            raise ConfigError(f"{key}.{role}", f"column {column!r} is not in {where} (columns: {header})")


def _records_from_file(source: Mapping[str, Any], columns: Mapping[str, Any]) -> list[Record]:
    path = Path(str(source["path"]))
    separator = source.get("separator")
    fmt = "tsv" if separator else infer_format(path, source.get("format"))
    encoding = source.get("encoding") or "utf-8-sig"
    wanted = {role: col for role, col in columns.items() if col is not None}
    records: list[Record] = []
    header: list[str] | None = None
    rows = iter_rows(path, fmt, encoding, source.get("quoting"), separator)
    if separator:
        source = {**source, "header": False}
    if fmt == "jsonl":
        for number, obj in rows:
            record: Record = {"_where": f"{path}:{number}"}
            for role, col in wanted.items():
                if col not in obj:
                    raise DataError(path, f"missing key {col!r} (for {role})", line=number)
                record[role] = obj[col]
            records.append(record)
    else:
        index: dict[str, int] = {}
        width = None
        for number, row in rows:
            if header is None and source.get("header", True):
                header = [field.strip() for field in row]
                for role, col in wanted.items():
                    if isinstance(col, int):
                        index[role] = col
                    elif col in header:
                        index[role] = header.index(col)
                    else:
                        raise DataError(path, f"column {col!r} (for {role}) not in header {header}", line=number)
                width = len(header)
                continue
            if not index:
                for role, col in wanted.items():
                    if not isinstance(col, int):
                        raise DataError(path, f"file has no header, so column {col!r} must be a field index")
                    index[role] = col
            needed = width if width is not None else max(index.values()) + 1
            if len(row) < needed:
                raise DataError(path, f"expected {needed} columns, found {len(row)}", line=number)
            if separator and len(row) > needed:
                raise DataError(
                    path, f"expected {needed} fields separated by {separator!r}, found {len(row)}", line=number
                )
            if width is not None and len(row) > width:
                raise DataError(path, f"expected {width} columns (as the header), found {len(row)}", line=number)
            record = {"_where": f"{path}:{number}"}
            for role, i in index.items():
                record[role] = row[i]
            records.append(record)
    if not records:
        raise DataError(
            path, "empty file: a header but no data rows" if header is not None else "empty file: no data rows"
        )
    return records


def _records_from_hf(source: Mapping[str, Any], columns: Mapping[str, Any]) -> list[Record]:
    name = source["hf"]
    try:
        import datasets  # noqa: PLC0415 - optional extra, imported only when asked for
    except ImportError:
        raise ConfigError(
            "hf", f"dataset {name!r} needs the Hugging Face `datasets` package: pip install 'kdlab[hf]'"
        ) from None
    split = source.get("hf_split") or "train"
    try:
        dataset = datasets.load_dataset(name, source.get("hf_config"), split=split, data_files=source.get("data_files"))
    except Exception as err:  # datasets raises many types; report one line naming the dataset
        raise DataError(f"hf:{name}/{split}", f"could not load the dataset ({type(err).__name__}: {err})") from None
    missing = [c for c in columns.values() if c is not None and c not in dataset.column_names]
    if missing:
        raise ConfigError("columns", f"{missing} not in HF dataset {name!r} (columns: {dataset.column_names})")
    records = []
    for number, row in enumerate(dataset, start=1):
        record = {"_where": f"hf:{name}/{split}:{number}"}
        record.update({role: row[col] for role, col in columns.items() if col is not None})
        records.append(record)
    if not records:
        raise DataError(f"hf:{name}/{split}", "empty dataset split")
    return records


def _records_from_embedded(source: Mapping[str, Any], columns: Mapping[str, Any]) -> list[Record]:
    from kdlab.data.embedded import embedded_split

    name, split = source["embedded"], source.get("split") or "train"
    rows = embedded_split(name, split, size=source.get("size"), seed=source.get("seed", 0))
    records = []
    for number, row in enumerate(rows, start=1):
        record = {"_where": f"embedded:{name}/{split}:{number}"}
        record.update({role: row[col] for role, col in columns.items() if col is not None})
        records.append(record)
    return records


def load_records(source: Mapping[str, Any], columns: Mapping[str, Any]) -> list[Record]:
    """Load every row of a source as role -> raw value, then subsample `limit` rows if asked."""
    if source.get("path") is not None:
        records = _records_from_file(source, columns)
    elif source.get("hf") is not None:
        records = _records_from_hf(source, columns)
    elif source.get("embedded") is not None:
        records = _records_from_embedded(source, columns)
    else:
        raise ConfigError("source", f"needs one of path, hf or embedded; got keys {sorted(source)}")
    holdout = source.get("holdout")
    for step in [holdout] if isinstance(holdout, Mapping) else holdout or []:
        records = holdout_part(records, step)
    return subsample(records, source.get("limit"), source.get("seed", 0))


def held_out_indices(total: int, size: int, key: str) -> set[int]:
    """A seeded choice of `size` of `total` row positions (seeded by `key`), the same on every machine and call."""
    return set(random.Random(key).sample(range(total), size))


def holdout_part(records: list[Record], spec: Mapping[str, Any]) -> list[Record]:
    """One part of a seeded split of a source: `holdout: {size: N, seed: S, part: held|rest}`.

    For a file without a dev split (MRPC here): the same source with `part: held` as validation and
    `part: rest` as train gives disjoint sets, whatever `limit` is applied afterwards. A source's `holdout` may
    also be a list of such steps, applied in turn (data=local holds out validation, then test: kdlab/data/local.py).
    """
    where = records[0]["_where"].rsplit(":", 1)[0] if records else "source"
    unknown = sorted(set(spec) - {"size", "seed", "part"})
    if unknown:
        raise ConfigError("holdout", f"unknown keys {unknown} for {where} (expected size, seed, part)")
    part = spec.get("part")
    if part not in ("held", "rest"):
        raise ConfigError(
            "holdout.part", f"must be held (the held-out rows) or rest (the others), got {part!r} for {where}"
        )
    size = spec.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 < size < len(records):
        raise ConfigError(
            "holdout.size",
            f"must be an integer in [1, {len(records) - 1}] for the {len(records)} rows of {where}, got {size!r}",
        )
    held = held_out_indices(len(records), size, f"holdout/{spec.get('seed', 0)}")
    return [r for i, r in enumerate(records) if (i in held) == (part == "held")]


def subsample(records: list[Record], limit: int | None, seed: int) -> list[Record]:
    """A seeded random subset of `limit` records in file order (files are often sorted by label or source)."""
    if limit is None or limit >= len(records):
        return records
    keep = sorted(random.Random(seed).sample(range(len(records)), int(limit)))
    return [records[i] for i in keep]
