"""Property-based fuzzing of the data loaders (issue 9): random malformed files either load correctly or
raise kdlab's own DataError/ConfigError naming the file (and the line, where one line is at fault).

Each generated file is built from fragments that real data gets wrong: wrong column counts, invalid UTF-8,
empty and whitespace-only lines, huge lines, quotes, non-numeric/NaN/inf/overflowing scores, unknown labels,
bad JSON and non-object JSON lines, missing header columns, mismatched parallel files, empty files. What
loads is checked against the raw file: one record per data line, each record's `_where` line holding its text.

Deterministic (`derandomize`, no example database) and small (`max_examples` modest): seconds, never flaky.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from kdlab.data.loading import check_columns, load_records
from kdlab.data.pairs import PairData
from kdlab.data.parallel import read_pairs
from kdlab.data.text import TextDataModule
from kdlab.errors import ConfigError, DataError, KdlabError

FUZZ = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
LABELS = ["neg", "pos"]
HUGE = "<huge>"  # expanded after generation: a 200 000-character field (cheaper than generating one)
# errors about a whole file (or a pair of files), which have no single line to name
WHOLE_FILE = ("empty file", "zipped files must be row-aligned", "file not found")

plain = st.sampled_from(["good", "bad movie", "it is fine", "café", "日本語", "x" * 40])  # texts every loader takes
words = st.sampled_from(
    ["good", "bad movie", 'it is "great"', "café", "日本語", "a,b", "x" * 40, HUGE, "\x00", "\u2028"]
)
scores = st.sampled_from(
    ["0.5", "3", "-1", "nan", "NaN", "inf", "-Infinity", "1e400", "abc", "", " ", "0x1A", "1_0", "4,5"]
)
labels = st.sampled_from(["neg", "pos", " pos ", "neutral", "", "1", "NEG"])
cells = st.one_of(words, scores, labels, st.text(max_size=12))
garbage = st.sampled_from([b"\xff\xfe", b"\xc3", b"\x80abc", b"caf\xe9", b"\xef\xbb\xbf", b"\xed\xa0\x80"])
GOOD_LABELS = {
    "classification": st.sampled_from(["neg", "pos", " pos"]),
    "regression": st.sampled_from(["0.5", "3", "-1", "4.25"]),
}
# most lines are good, so that whole files load often enough for the checks on what loaded to bite
ROW_KINDS = ["good"] * 14 + ["short", "long", "blank", "garbage", "random"]


def expand(cell: str) -> str:
    return "y" * 200_000 if cell == HUGE else cell


@st.composite
def delimited_file(draw, sep: str, header: list[str] | None, good: st.SearchStrategy[list[str]]) -> bytes:
    """A tsv/csv file: an optional (maybe broken) header, then mostly `good` rows among rows of the wrong width,
    random cells, blank lines and invalid UTF-8."""
    lines: list[bytes] = []
    if header is not None:
        broken = draw(st.sampled_from(["ok"] * 8 + ["missing", "renamed", "extra"]))
        head = list(header)
        if broken == "missing":
            head = head[:-1]
        elif broken == "renamed":
            head[0] = head[0] + "_x"
        elif broken == "extra":
            head.append("extra")
        lines.append(sep.join(head).encode())
    width = len(header) if header else 3
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(ROW_KINDS))
        if kind == "blank":
            lines.append(draw(st.sampled_from([b"", b"   ", sep.encode(), b"\t "])))
            continue
        if kind == "good":
            row = draw(good)
        else:
            row = [expand(draw(cells)) for _ in range({"short": max(0, width - 1), "long": width + 1}.get(kind, width))]
        line = sep.join(row).encode("utf-8", "surrogatepass")
        lines.append(draw(garbage) + line if kind == "garbage" else line)
    newline = draw(st.sampled_from([b"\n", b"\r\n"]))
    body = newline.join(lines) + (newline if lines and draw(st.booleans()) else b"")
    return (b"\xef\xbb\xbf" if draw(st.booleans()) else b"") + body


def good_rows(*columns: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    return st.tuples(*columns).map(list)


json_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=True, allow_infinity=True),
    words,
    labels,
    scores,
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
bad_json_lines = st.sampled_from(
    [
        "{bad",
        "[1, 2]",
        "null",
        '"a string"',
        "3",
        '{"text": "a", "label": 1e400}',
        '{"text": "a", "label": ' + "9" * 5000 + "}",
        "[" * 5_000 + "]" * 5_000,
        '{"text": "\\ud800", "label": "pos"}',
        '{"text": NaN, "label": "pos"}',
        "\x00",
    ]
)


@st.composite
def jsonl_file(draw, task: str) -> bytes:
    """Mostly good objects among objects with values of every JSON type, bad JSON, blank lines and invalid UTF-8."""
    lines: list[bytes] = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(ROW_KINDS))
        if kind == "good":
            obj = {"text": draw(plain), "label": draw(GOOD_LABELS[task])}
            if task == "regression" and draw(st.booleans()):
                obj["label"] = float(obj["label"])
            lines.append(json.dumps(obj, ensure_ascii=draw(st.booleans())).encode())
        elif kind == "random":
            obj = {
                key: expand(v) if isinstance(v, str) else v
                for key, v in draw(
                    st.fixed_dictionaries(
                        {}, optional={"text": json_values, "label": json_values, "other": json_values}
                    )
                ).items()
            }
            lines.append(json.dumps(obj).encode())
        elif kind in ("short", "long"):
            lines.append(draw(bad_json_lines).encode())
        elif kind == "blank":
            lines.append(b"  ")
        else:
            lines.append(draw(garbage) + b'{"text": "a", "label": "pos"}')
    return b"\n".join(lines) + b"\n"


def file_lines(raw: bytes) -> list[str] | None:
    """The file's lines as the loader splits them (None when it is not UTF-8, so nothing should have loaded)."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    return list(io.StringIO(text, newline=""))


def check_error(err: KdlabError, *paths: Path) -> None:
    """The error is one line naming one of the files, and a line of it unless it is about the whole file."""
    message = str(err)
    assert "\n" not in message.strip(), message
    assert len(message) < 1000, message[:1000]  # a huge field is cut, not printed whole
    assert any(str(path) in message for path in paths), message
    if isinstance(err, DataError) and not any(phrase in message for phrase in WHOLE_FILE):
        numbers = [int(n) for path in paths for n in re.findall(re.escape(str(path)) + r":(\d+)", message)]
        assert numbers and min(numbers) >= 1, message


def line_of(where: str, path: Path) -> int:
    found = re.fullmatch(re.escape(str(path)) + r":(\d+)", where)
    assert found, where
    return int(found.group(1))


def check_record(record: dict, lines: list[str] | None, path: Path, roles: tuple[str, ...]) -> None:
    """A loaded record: its line exists and holds each of its texts; texts are non-empty UTF-8 strings."""
    assert lines is not None, "a file that is not UTF-8 loaded"
    number = line_of(record["_where"], path)
    assert 1 <= number <= len(lines)
    for role in roles:
        text = record[role]
        assert isinstance(text, str) and text.strip()
        text.encode("utf-8")  # no lone surrogates reach the tokenizer
        assert text in lines[number - 1] or path.suffix == ".jsonl"


def data_lines(lines: list[str], sep: str, header: bool) -> int:
    """How many rows a tsv file without quoting has: lines whose fields are not all blank, less the header."""
    rows = [line for line in lines if any(field.strip() for field in line.rstrip("\r\n").split(sep))]
    return max(0, len(rows) - (1 if header else 0))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def text_cfg(path: Path, task: str, **source) -> dict:
    return {
        "task": task,
        "labels": LABELS if task == "classification" else None,
        "label_scale": 5.0 if task == "regression" else None,
        "columns": {"text": "text", "text_pair": None, "label": "label"},
        "train": {"path": str(path), **source},
    }


def load_text_file(path: Path, raw: bytes, task: str) -> list[dict] | None:
    """Write `raw` to `path` and load it as the config check and TextDataModule do; None after a checked kdlab error."""
    path.write_bytes(raw)
    cfg = text_cfg(path, task)
    try:
        check_columns(cfg["train"], cfg["columns"], "data.columns")
        records = TextDataModule(cfg).records("train")
    except (DataError, ConfigError) as err:
        check_error(err, path)
        event(f"refused: {type(err).__name__}")  # --hypothesis-show-statistics shows how often each outcome came up
        return None
    event("loaded")
    lines = file_lines(raw)
    for record in records:
        check_record(record, lines, path, ("text",))
        if task == "classification":
            assert record["label"] in (0, 1)
        else:
            assert isinstance(record["label"], float) and math.isfinite(record["label"])
    return records


@FUZZ
@given(data=st.data(), task=st.sampled_from(["classification", "regression"]))
def test_tsv_and_csv_either_load_correctly_or_name_file_and_line(folder, data, task):
    fmt = data.draw(st.sampled_from(["tsv", "csv"]))
    path = folder / f"train.{fmt}"
    raw = data.draw(
        delimited_file(
            "\t" if fmt == "tsv" else ",", ["text", "label", "id"], good_rows(plain, GOOD_LABELS[task], plain)
        )
    )
    records = load_text_file(path, raw, task)
    if records is not None and fmt == "tsv":
        assert len(records) == data_lines(file_lines(raw), "\t", header=True)  # no row silently dropped


@FUZZ
@given(data=st.data())
def test_jsonl_either_loads_correctly_or_names_file_and_line(folder, data):
    path = folder / "train.jsonl"
    task = data.draw(st.sampled_from(["classification", "regression"]))
    raw = data.draw(jsonl_file(task))
    records = load_text_file(path, raw, task)
    if records is not None:
        lines = file_lines(raw)
        for record in records:
            assert json.loads(lines[line_of(record["_where"], path) - 1])["text"] == record["text"]
        assert len(records) == sum(1 for line in lines if line.strip())


@FUZZ
@given(data=st.data())
def test_separated_pair_files_either_load_or_name_file_and_line(folder, data):
    """Trans-Encoder's `sentence||sentence` files (no header) and its labelled tsv dev pairs."""
    path = folder / "pairs.txt"
    raw = data.draw(delimited_file("||", None, good_rows(plain, plain)))
    path.write_bytes(raw)
    dev = folder / "dev.tsv"
    dev.write_bytes(
        data.draw(delimited_file("\t", ["s1", "s2", "score"], good_rows(plain, plain, GOOD_LABELS["regression"])))
    )
    pair_data = PairData(
        {
            "train": {"path": str(path), "separator": "||", "columns": {"text": 0, "text_pair": 1}},
            "validation": {"path": str(dev)},
            "columns": {"text": "s1", "text_pair": "s2", "label": "score"},
            "max_length": 16,
        }
    )
    try:
        pairs = pair_data.pairs()
    except (DataError, ConfigError) as err:
        check_error(err, path)
        event(f"refused: {type(err).__name__}")
    else:
        event("loaded")
        lines = file_lines(raw)
        assert lines is not None and pairs
        assert all(isinstance(s, str) and s.strip() for pair in pairs for s in pair)
    try:
        _, gold = pair_data.labelled("validation")
    except (DataError, ConfigError) as err:
        check_error(err, dev)
    else:
        assert all(math.isfinite(score) for score in gold)


@FUZZ
@given(data=st.data())
def test_parallel_sources_either_load_or_name_file_and_line(folder, data):
    """Multilingual pairs: one tsv with source/target columns, or two line-aligned files zipped (mismatched lengths too)."""
    if data.draw(st.booleans()):
        path = folder / "parallel.tsv"
        path.write_bytes(data.draw(delimited_file("\t", ["en", "de"], good_rows(plain, plain))))
        source, paths = {"path": str(path), "columns": {"source": "en", "target": "de"}, "lang": "en-de"}, (path,)
    else:
        first, second = folder / "side.en.txt", folder / "side.de.txt"
        first.write_bytes(data.draw(delimited_file("\t", None, good_rows(plain))))
        second.write_bytes(data.draw(delimited_file("\t", None, good_rows(plain, plain))))
        source = {
            "zip": [
                {"path": str(first), "header": False, "column": 0},
                {"path": str(second), "header": False, "column": 1},
            ],
            "lang": "en-de",
        }
        paths = (first, second)
    source["skip_empty"] = data.draw(st.booleans())
    try:
        pairs = read_pairs(source, "data.sources[0]")
    except (DataError, ConfigError) as err:
        check_error(err, *paths)
        event(f"refused: {type(err).__name__}")
        return
    event("loaded")
    for pair in pairs:
        assert pair["lang"] == "en-de"
        for side in ("source", "target"):
            assert isinstance(pair[side], str) and pair[side].strip()
            pair[side].encode("utf-8")


@pytest.mark.parametrize("encoding", ["no-such-codec"])
def test_an_unknown_encoding_is_a_config_error(tmp_path, encoding):
    path = tmp_path / "a.tsv"
    path.write_text("text\tlabel\ngood\tpos\n")
    with pytest.raises(ConfigError, match=rf"encoding: unknown text encoding {encoding!r} \(for .*a\.tsv\)"):
        load_records({"path": str(path), "encoding": encoding}, {"text": "text"})


def test_an_unreadable_file_is_a_data_error(tmp_path):
    path = tmp_path / "locked.tsv"
    path.write_text("text\tlabel\ngood\tpos\n")
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("this user reads files whatever their permissions (root)")
        with pytest.raises(DataError, match=r"locked\.tsv: cannot read this file \(Permission denied\)"):
            load_records({"path": str(path)}, {"text": "text"})
    finally:
        path.chmod(0o644)


NASTY = [  # (file name, content, task, the error expected): the faults the fuzzing above found or aims at, pinned
    (
        "surrogate.jsonl",
        b'{"text": "a\\ud800", "label": "pos"}\n',
        "classification",
        r"surrogate\.jsonl:1: text is not valid Unicode \(surrogates not allowed '\\ud800' at character 1\)",
    ),
    (
        "longint.jsonl",
        b'{"text": "a", "label": ' + b"9" * 5000 + b"}\n",
        "regression",
        r"longint\.jsonl:1: invalid JSON \(ValueError: Exceeds the limit \(4300 digits\) for integer string conversion",
    ),
    (
        "bigint.jsonl",
        b'{"text": "a", "label": 0.5}\n{"text": "b", "label": 1' + b"0" * 400 + b"}\n",
        "regression",
        r"bigint\.jsonl:2: score 1000+\.\.\. \(401 characters\) is not finite",
    ),
    (
        "deep.jsonl",
        b"[" * 5000 + b"]" * 5000 + b"\n",
        "classification",
        r"deep\.jsonl:1: invalid JSON \(RecursionError: maximum recursion depth",
    ),
    ("bool.jsonl", b'{"text": "a", "label": true}\n', "regression", r"bool\.jsonl:1: score True is not a number"),
    (
        "list.jsonl",
        b'{"text": ["a", "b"], "label": "pos"}\n',
        "classification",
        r"list\.jsonl:1: text must be a string, got list \['a', 'b'\]",
    ),
    (
        "nantext.jsonl",
        b'{"text": NaN, "label": "pos"}\n',
        "classification",
        r"nantext\.jsonl:1: text must be a string, got float nan",
    ),
    (
        "array.jsonl",
        b'{"text": "a", "label": "pos"}\n["a", "pos"]\n',
        "classification",
        r"array\.jsonl:2: expected a JSON object, got list",
    ),
    (
        "huge.tsv",
        b"text\tlabel\nfine\tpos\n" + b"y" * 200_000 + b"\tpos\n",
        "classification",
        r"huge\.tsv:3: a field is longer than 131072 characters",
    ),
    (
        "hugelabel.tsv",
        b"text\tlabel\nfine\t" + b"z" * 100_000 + b"\n",
        "classification",
        r"hugelabel\.tsv:2: label 'z+\.\.\. \(100002 characters\) is not in",
    ),
    (
        "multiline.csv",
        b'text,label\n"two\nlines",maybe\n',
        "classification",
        r"multiline\.csv:2: label 'maybe' is not in the label set",
    ),
    ("nan.tsv", b"text\tlabel\na\t0.5\nb\tNaN\n", "regression", r"nan\.tsv:3: score 'NaN' is not finite"),
    ("inf.tsv", b"text\tlabel\na\t-inf\n", "regression", r"inf\.tsv:2: score '-inf' is not finite"),
    (
        "latin1.tsv",
        b"text\tlabel\na\tpos\ncaf\xe9\tneg\n",
        "classification",
        r"latin1\.tsv:3: not valid utf-8-sig text",
    ),
    (
        "noheadercol.tsv",
        b"text\tscore\na\tpos\n",
        "classification",
        r"noheadercol\.tsv:1: column 'label' \(for label\) not in header",
    ),
]


@pytest.mark.parametrize("name,raw,task,match", NASTY, ids=[case[0] for case in NASTY])
def test_known_malformed_files_raise_a_data_error_naming_file_and_line(tmp_path, name, raw, task, match):
    path = tmp_path / name
    path.write_bytes(raw)
    with pytest.raises(DataError, match=match) as caught:
        TextDataModule(text_cfg(path, task)).records("train")
    check_error(caught.value, path)


def test_zipped_parallel_files_of_different_lengths_name_both_files(tmp_path):
    first, second = tmp_path / "a.en", tmp_path / "a.de"
    first.write_text("one\ntwo\nthree\n")
    second.write_text("eins\nzwei\n")
    source = {
        "zip": [
            {"path": str(first), "format": "tsv", "header": False, "column": 0},
            {"path": str(second), "format": "tsv", "header": False, "column": 0},
        ],
        "lang": "en-de",
    }
    with pytest.raises(
        DataError,
        match=rf"{re.escape(str(first))}: has 3 rows but {re.escape(str(second))} has 2; zipped files must be row-aligned",
    ):
        read_pairs(source, "data.sources[0]")
