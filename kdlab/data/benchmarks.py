"""Readers for multilingual evaluation data: LASER Tatoeba test sets and stsb-multi-mt (torch-free).

Tatoeba (LASER v1): ``tatoeba.{lang}-eng.{lang}`` and ``tatoeba.{lang}-eng.eng``, one sentence per
line, line i of one file translating line i of the other. stsb-multi-mt: ``stsb-{lang}-{split}.csv``,
standard CSV without a header, fields ``sentence1, sentence2, score`` (0-5), row i the same pair in
every language. Every malformed input raises DataError naming the file and line.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from kdlab.data.loading import first_undecodable_line, iter_rows, open_text
from kdlab.errors import DataError

TATOEBA_FILE = re.compile(r"^tatoeba\.([^.]+)-eng\.([^.]+)$")
STSB_FILE = re.compile(r"^stsb-([^-]+)-([^-.]+)\.csv$")
SCORE_RANGE = (0.0, 5.0)


def _read_lines(path: Path) -> list[str]:
    """The lines of a text file without their line ends; an empty (or blank) line raises DataError."""
    lines = []
    try:
        with open_text(path, "utf-8-sig") as handle:
            for number, line in enumerate(handle, start=1):
                text = line[:-1] if line.endswith("\n") else line
                text = text[:-1] if text.endswith("\r") else text
                if not text.strip():
                    raise DataError(path, "empty line (every line must hold one sentence)", line=number)
                lines.append(text)
    except UnicodeDecodeError as err:
        line = first_undecodable_line(path, "utf-8-sig")
        raise DataError(path, f"not valid utf-8 text ({err.reason})", line=line) from None
    if not lines:
        raise DataError(path, "empty file: no sentences")
    return lines


def read_tatoeba(folder: str | Path, lang: str) -> tuple[list[str], list[str]]:
    """The line-aligned (foreign, english) sentences of one LASER Tatoeba test set."""
    foreign_path = Path(folder) / f"tatoeba.{lang}-eng.{lang}"
    english_path = Path(folder) / f"tatoeba.{lang}-eng.eng"
    foreign, english = _read_lines(foreign_path), _read_lines(english_path)
    if len(foreign) != len(english):
        message = f"has {len(foreign)} lines but {english_path} has {len(english)}; they must be line-aligned"
        raise DataError(foreign_path, message)
    return foreign, english


def tatoeba_languages(folder: str | Path) -> list[str]:
    """The sorted language codes with a Tatoeba test set (both files) in folder."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(root, "folder not found (set KDLAB_DATA_DIR or paths.data_dir to the data root)")
    sides: dict[str, set[str]] = {}
    for path in root.iterdir():
        match = TATOEBA_FILE.match(path.name)
        if match and match.group(2) in (match.group(1), "eng"):
            sides.setdefault(match.group(1), set()).add(match.group(2))
    if not sides:
        expected = "tatoeba.{lang}-eng.{lang} and tatoeba.{lang}-eng.eng"
        raise DataError(root, f"no Tatoeba test sets here (expected files {expected})")
    for lang, present in sorted(sides.items()):
        missing = {lang, "eng"} - present
        if missing:
            absent = root / f"tatoeba.{lang}-eng.{missing.pop()}"
            raise DataError(absent, f"file not found, but its partner for {lang!r} is there")
    return sorted(sides)


def _stsb_path(folder: str | Path, lang: str, split: str) -> Path:
    """The stsb-multi-mt file for lang and split; a missing one raises DataError listing what is there."""
    path = Path(folder) / f"stsb-{lang}-{split}.csv"
    if not path.exists() and Path(folder).is_dir():
        names = (STSB_FILE.match(p.name) for p in Path(folder).iterdir())
        found = sorted(m.group(1) for m in names if m and m.group(2) == split)
        raise DataError(path, f"file not found (languages with a {split!r} split in this folder: {found or 'none'})")
    return path


def _read_stsb_rows(path: Path) -> list[tuple[int, str, str, float]]:
    """(line, sentence1, sentence2, score) for every row of an stsb-multi-mt CSV file."""
    rows = []
    for number, row in iter_rows(path, "csv", "utf-8-sig", None):
        if len(row) != 3:
            raise DataError(path, f"expected 3 fields (sentence1, sentence2, score), found {len(row)}", line=number)
        sentence1, sentence2, raw = row
        try:
            score = float(raw)
        except ValueError:
            score = math.nan
        if not math.isfinite(score):
            raise DataError(path, f"score {raw!r} is not a number", line=number)
        if not SCORE_RANGE[0] <= score <= SCORE_RANGE[1]:
            raise DataError(path, f"score {score} is outside {SCORE_RANGE[0]}-{SCORE_RANGE[1]}", line=number)
        for name, text in (("sentence1", sentence1), ("sentence2", sentence2)):
            if not text.strip():
                raise DataError(path, f"{name} is empty", line=number)
        rows.append((number, sentence1, sentence2, score))
    if not rows:
        raise DataError(path, "empty file: no data rows")
    return rows


def read_stsb_multi(folder: str | Path, lang: str, split: str) -> tuple[list[str], list[str], list[float]]:
    """The (sentence1, sentence2, score 0-5) columns of one stsb-multi-mt file."""
    rows = _read_stsb_rows(_stsb_path(folder, lang, split))
    return [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows]


def crosslingual_sts(
    folder: str | Path, lang_a: str, lang_b: str, split: str
) -> tuple[list[str], list[str], list[float]]:
    """Cross-lingual STS pairs: sentence1 of lang_a's row i, sentence2 of lang_b's row i, the gold score."""
    path_a, path_b = _stsb_path(folder, lang_a, split), _stsb_path(folder, lang_b, split)
    rows_a = _read_stsb_rows(path_a)
    rows_b = rows_a if path_b == path_a else _read_stsb_rows(path_b)
    if len(rows_a) != len(rows_b):
        message = f"has {len(rows_a)} rows but {path_b} has {len(rows_b)}; row i must be the same pair in both"
        raise DataError(path_a, message)
    for index, (a, b) in enumerate(zip(rows_a, rows_b), start=1):
        if a[3] != b[3]:
            message = f"row {index} has score {a[3]} but row {index} of {path_b} (line {b[0]}) has {b[3]}"
            raise DataError(path_a, f"{message}; the files are not aligned", line=a[0])
    return [a[1] for a in rows_a], [b[2] for b in rows_b], [a[3] for a in rows_a]
