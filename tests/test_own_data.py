"""Your own data (issue 16): `data=local` in one line, the README's "Your own data" commands, data-file errors before
any model is loaded, keys added with `+` that kdlab does not read, and `--config-dir` with kdlab's own checks.

The README commands of that section run on files written here with the columns each command names (the one-line
recipe and kdlab-eval through the real command line, the other variants in this process through `kdlab.api.train`,
which composes, checks and runs as kdlab-train does), with `debug=fast`. Each error is checked as
tests/test_config_faults.py does: composed in-process and checked through the CLI's own entry point
(`kdlab.app.guarded(kdlab.config.validate)`): exit code 2, one line `kdlab: error: ...` naming the key or file:line,
nothing written; one of them, and the override checks, through the real command line.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, kdlab_folders
from omegaconf import OmegaConf
from test_readme import COMMANDS, Command, category

OWN = [c for c in COMMANDS if category(c) == "own data"]
FAST = ["debug=fast"]
LOCAL = ["data=local", "data.text=sentence", "data.label=kind"]


# --- files ------------------------------------------------------------------------------------------------------


def write_rows(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    """`rows` under `header` as tsv, csv or jsonl (by the extension)."""
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(dict(zip(header, row))) + "\n" for row in rows), encoding="utf-8")
    elif path.suffix == ".tsv":
        path.write_text("".join("\t".join(row) + "\n" for row in [header, *rows]), encoding="utf-8")
    else:
        with path.open("w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows([header, *rows])
    return path


def options(cmd: Command) -> dict[str, str]:
    """A command's `key=value` overrides."""
    return dict(o.lstrip("+").split("=", 1) for o in cmd.overrides if "=" in o)


def write_files_for(cmd: Command, folder: Path) -> None:
    """The data files a README command names, with its columns (text, text_pair, label) and its task's labels."""
    opts = options(cmd)
    regression = opts.get("data.task") == "regression"
    labels = opts["data.labels"].strip("[]").split(",") if "data.labels" in opts else ["question", "statement"]
    header = [opts["data.text"], *([opts["data.text_pair"]] if "data.text_pair" in opts else []), opts["data.label"]]
    for split, size in (("train", 40), ("validation", 12), ("test", 12)):
        if f"data.{split}" not in opts:
            continue
        rows = []
        for i in range(size):
            label = f"{(i % 11) / 2:.1f}" if regression else labels[i % 2]
            texts = [f"{label} sentence {i}", f"another {i}"][: len(header) - 1]
            rows.append([*texts, label])
        write_rows(folder / opts[f"data.{split}"], header, rows)


# --- the README's commands --------------------------------------------------------------------------------------


def env(root: Path) -> dict[str, str]:
    return {
        **os.environ,
        "KDLAB_OUTPUT_DIR": str(root / "outputs"),
        "KDLAB_CACHE_DIR": str(root / "cache"),
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "disabled",
    }


def run_cli(root: Path, entry: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python -m kdlab.<entry> args` started in `root` (the README's relative file names are there)."""
    return subprocess.run(
        [sys.executable, "-m", f"kdlab.{entry}", *args],
        cwd=root,
        env=env(root),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """A working folder holding every file the section's commands name, and my_conf/data/mine.yaml."""
    root = tmp_path_factory.mktemp("own_data")
    for cmd in OWN:
        if cmd.argv[0] == "kdlab-train" and "--config-dir" not in cmd.argv:
            write_files_for(cmd, root)
    (root / "my_conf" / "data").mkdir(parents=True)
    (root / "my_conf" / "data" / "mine.yaml").write_text(
        "defaults: [local, _self_]\ntrain: my.csv\ntext: sentence\nlabel: kind\n", encoding="utf-8"
    )
    return root


RECIPE = OWN[0]
EVAL = next(c for c in OWN if c.argv[0] == "kdlab-eval")
CONFIG_DIR = next(c for c in OWN if "--config-dir" in c.argv)
VARIANTS = [c for c in OWN if c not in (RECIPE, EVAL, CONFIG_DIR)]


def test_every_command_of_the_section_is_run_here():
    assert RECIPE.text == "kdlab-train data=local data.train=my.csv data.text=sentence data.label=kind"
    assert len(VARIANTS) >= 5 and all(c.argv[0] == "kdlab-train" for c in VARIANTS)


@pytest.fixture(scope="module")
def recipe(ws) -> tuple[subprocess.CompletedProcess, Path]:
    """The one-line recipe through the real command line (with debug=fast); its result and run folder."""
    result = run_cli(ws, "train", *RECIPE.overrides, *FAST)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = (ws / "outputs" / "runs").iterdir()
    return result, run


def test_the_one_line_recipe_infers_the_labels_holds_out_dev_and_test_and_prints_results(recipe, ws):
    result, run = recipe
    assert "kdlab results" in result.stdout and "student (KD)" in result.stdout
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"teacher/val/acc", "teacher/test/acc", "student/val/acc", "student/test/acc"} <= set(metrics)
    log = (run / "train.log").read_text()
    assert f"labels inferred from {ws / 'my.csv'} (column 'kind'), sorted: ['question', 'statement']" in log
    assert (
        f"validation and test held out of {ws / 'my.csv'} (4 rows each, holdout.seed=0); 32 rows left to train on"
        in log
    )
    data = OmegaConf.load(run / "config.yaml").data
    assert data.labels == ["question", "statement"] and data.columns == {
        "text": "sentence",
        "text_pair": None,
        "label": "kind",
    }
    assert data.train.path == data.validation.path == data.test.path == str(ws / "my.csv")


def test_the_held_out_rows_are_disjoint_and_chosen_by_the_holdout_seed_alone(tmp_path):
    from kdlab.data.local import expand
    from kdlab.data.records import split_records

    path = write_rows(tmp_path / "my.csv", ["sentence", "kind"], [[f"s{i}", KINDS[i % 2][1]] for i in range(40)])
    short = {
        **OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "data" / "local.yaml")),
        "train": str(path),
        "text": "sentence",
        "label": "kind",
    }

    def rows(data: dict) -> dict[str, list[str]]:
        return {split: [r["_where"] for r in split_records(data, split)] for split in ("train", "validation", "test")}

    split = rows(expand(short))
    assert [len(split[s]) for s in ("train", "validation", "test")] == [32, 4, 4]
    assert sorted(sum(split.values(), [])) == sorted(f"{path}:{line}" for line in range(2, 42))
    assert rows(expand(short)) == split and rows(expand({**short, "seed": 7})) == split
    assert rows(expand({**short, "holdout": {"size": 0.1, "seed": 1}}))["validation"] != split["validation"]


def test_kdlab_eval_scores_the_recipe_run_on_its_own_held_out_rows(recipe, ws):
    _, run = recipe
    result = run_cli(ws, "eval", *[a.replace("outputs/runs/<run>", str(run.relative_to(ws))) for a in EVAL.argv[1:]])
    assert result.returncode == 0, result.stderr[-3000:]
    (folder,) = (ws / "outputs" / "eval").iterdir()
    scores = json.loads((folder / "metrics.json").read_text())
    trained = json.loads((run / "metrics.json").read_text())
    assert scores["test/acc"] == pytest.approx(trained["student/test/acc"]) and scores["val/acc"] == pytest.approx(
        trained["student/val/acc"]
    )


@pytest.mark.parametrize("cmd", VARIANTS, ids=[f"L{c.line}" for c in VARIANTS])
def test_each_variant_of_the_section_trains_and_prints_results(cmd, ws, monkeypatch, capsys):
    from kdlab import api

    monkeypatch.chdir(ws)
    with kdlab_folders(ws / "variants"):
        run = api.train(*cmd.overrides, *FAST)
    assert "kdlab results" in capsys.readouterr().out
    opts, data = options(cmd), run.config.data
    role = "teacher" if opts.get("method") == "finetune" else "student"
    metric = "pearson" if opts.get("data.task") == "regression" else "acc"
    assert {f"{role}/val/{metric}", f"{role}/test/{metric}"} <= set(run.metrics)
    for split in ("validation", "test"):  # given files are read as given; missing ones are held out of data.train
        assert data[split].path == str(ws / opts.get(f"data.{split}", opts["data.train"]))
        assert (data[split].get("holdout") is None) == (f"data.{split}" in opts)
    assert data.columns.text_pair == opts.get("data.text_pair")
    if "data.labels" in opts:
        assert list(data.labels) == opts["data.labels"].strip("[]").split(",")  # their order, not sorted
    if opts.get("data.task") == "regression":
        assert data.labels is None and list(data.metrics) == ["pearson", "spearman"]


def test_the_config_dir_command_composes_checks_and_keeps_the_override_checks(ws, monkeypatch):
    from kdlab import api
    from kdlab.config import validate

    result = run_cli(ws, "train", *CONFIG_DIR.argv[1:], "--cfg", "job", timeout=120)
    assert result.returncode == 0 and "name: local" in result.stdout, result.stderr[-2000:]
    monkeypatch.chdir(ws)
    with kdlab_folders(ws / "config_dir"):
        cfg = api.compose("data=mine", config_dir="my_conf")
        job = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
        validate(job)
    assert job.data.train.path == str(ws / "my.csv") and list(job.data.labels) == ["question", "statement"]
    bad = run_cli(ws, "train", *CONFIG_DIR.argv[1:], "+data.txt=x", timeout=120)
    assert (bad.returncode, bad.stderr.strip()) == (
        2,
        "kdlab: error: data.txt: no part of kdlab reads this key, so adding it with + "
        "would change nothing; did you mean data.text?",
    )
    missing = run_cli(ws, "train", "--config-dir", "no_conf", "data=mine", timeout=120)
    assert (missing.returncode, missing.stderr.strip()) == (
        2,
        f"kdlab: error: --config-dir: {ws / 'no_conf'} is not a folder",
    )


# --- data-file errors, before any model is loaded -----------------------------------------------------------------


def refused(tmp_path: Path, monkeypatch, capsys, *args: str) -> str:
    """Compose `args` as kdlab-train does (in `tmp_path`) and check them through the CLI's entry point: the one line
    printed, after asserting exit code 2 and that nothing was written."""
    from kdlab import api
    from kdlab.app import guarded
    from kdlab.config import validate

    monkeypatch.chdir(tmp_path)
    with kdlab_folders(tmp_path):
        cfg = api.compose(*args)
        job = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
        with pytest.raises(SystemExit) as stopped:
            guarded(validate, job)
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and "Traceback" not in err
    assert not [path for path in tmp_path.glob("outputs/**/*") if path.is_file()]
    (line,) = err.strip().splitlines()
    assert line.startswith("kdlab: error: ")
    return line.removeprefix("kdlab: error: ")


KINDS = [
    ["a", "question"],
    ["b", "statement"],
    ["c", "neutral"],
    ["d", "Question"],
    ["e", "neutral"],
    ["f", "statement"],
]


def test_labels_outside_the_given_labels_are_all_named_with_the_line_they_first_occur_on(tmp_path, monkeypatch, capsys):
    path = write_rows(tmp_path / "my.csv", ["sentence", "kind"], KINDS)
    line = refused(tmp_path, monkeypatch, capsys, *LOCAL, "data.train=my.csv", "data.labels=[question,statement]")
    assert line == (
        f"{path}:4: label 'neutral' is not in the label set ['question', 'statement'] (data.labels); "
        f"nor are 'Question' ({path}:5)"
    )


def test_a_typo_in_the_label_list_is_named(tmp_path, monkeypatch, capsys):
    path = write_rows(tmp_path / "my.tsv", ["sentence", "kind"], [["a", "question"], ["b", "statement"]] * 3)
    line = refused(tmp_path, monkeypatch, capsys, *LOCAL, f"data.train={path}", "data.labels=[question,statment]")
    assert line == (
        f"{path}:3: label 'statement' is not in the label set ['question', 'statment'] (data.labels); "
        "'statment' of data.labels is in no row: a typo for 'statement'?"
    )


def test_a_label_of_a_given_file_that_the_training_file_lacks_names_where_the_labels_came_from(
    tmp_path, monkeypatch, capsys
):
    write_rows(tmp_path / "train.jsonl", ["sentence", "kind"], KINDS[:2] * 3)
    dev = write_rows(tmp_path / "dev.jsonl", ["sentence", "kind"], [["x", "question"], ["y", "maybe"]])
    line = refused(tmp_path, monkeypatch, capsys, *LOCAL, "data.train=train.jsonl", "data.validation=dev.jsonl")
    assert line == (
        f"{dev}:2: label 'maybe' is not in the label set ['question', 'statement'] (the labels of data.train "
        f"{tmp_path / 'train.jsonl'}; list every label with data.labels=[...])"
    )


@pytest.mark.parametrize(
    "content,error",
    [("sentence,kind\n", "empty file: a header but no data rows"), ("", "empty file: no header and no rows")],
    ids=["header-only", "empty"],
)
def test_a_file_without_rows(content, error, tmp_path, monkeypatch, capsys):
    (tmp_path / "my.csv").write_text(content)
    assert refused(tmp_path, monkeypatch, capsys, *LOCAL, "data.train=my.csv") == f"{tmp_path / 'my.csv'}: {error}"


def test_a_missing_file_names_similar_files_in_its_folder_not_kdlab_data_dir(tmp_path, monkeypatch, capsys):
    write_rows(tmp_path / "my_data.csv", ["sentence", "kind"], KINDS)
    line = refused(tmp_path, monkeypatch, capsys, *LOCAL, f"data.train={tmp_path / 'my_dta.csv'}")
    assert line == f"data.train: {tmp_path / 'my_dta.csv'}: file not found; similar names in {tmp_path}: my_data.csv"
    line = refused(tmp_path, monkeypatch, capsys, *LOCAL, f"data.train={tmp_path / 'nowhere' / 'my.csv'}")
    assert (
        line
        == f"data.train: {tmp_path / 'nowhere' / 'my.csv'}: file not found (there is no folder {tmp_path / 'nowhere'})"
    )


def test_a_file_of_a_configured_source_names_similar_files_too(tmp_path, monkeypatch, capsys):
    sst = tmp_path / "data" / "glue" / "SST-2"
    sst.mkdir(parents=True)
    for name in ("train.tsv", "dev.tsv", "test.csv"):
        write_rows(sst / name, ["sentence", "label"], [["good", "1"], ["bad", "0"]])
    monkeypatch.setenv("KDLAB_DATA_DIR", str(tmp_path / "data"))
    line = refused(tmp_path, monkeypatch, capsys, "data=sst2")
    assert line == f"{sst / 'test.tsv'}: file not found; similar names in {sst}: test.csv"


def test_a_score_that_is_not_a_number(tmp_path, monkeypatch, capsys):
    path = write_rows(tmp_path / "scores.csv", ["sentence", "score"], [["a", "0.5"], ["b", "high"], ["c", "1"]])
    line = refused(
        tmp_path,
        monkeypatch,
        capsys,
        "data=local",
        "data.text=sentence",
        "data.label=score",
        "data.task=regression",
        "data.train=scores.csv",
        "data.holdout.size=1",
    )
    assert line == f"{path}:3: score 'high' is not a number"


def test_fractional_numbers_as_classes_suggest_regression(tmp_path, monkeypatch, capsys):
    path = write_rows(tmp_path / "scores.csv", ["sentence", "score"], [["a", "0.5"], ["b", "4.25"], ["c", "1"]])
    line = refused(
        tmp_path, monkeypatch, capsys, "data=local", "data.text=sentence", "data.label=score", "data.train=scores.csv"
    )
    assert line == (
        f"data.task: column 'score' of {path} holds numbers such as '0.5' (3 distinct values): for scores set "
        "data.task=regression; for classes list them with data.labels=[...]"
    )


def test_a_column_that_is_not_in_the_file_names_the_short_key(tmp_path, monkeypatch, capsys):
    path = write_rows(tmp_path / "my.csv", ["sentence", "kind"], KINDS)
    line = refused(tmp_path, monkeypatch, capsys, *LOCAL, "data.train=my.csv", "data.text_pair=second")
    assert line == f"data.text_pair: column 'second' is not in {path} (columns: ['sentence', 'kind'])"


def test_a_file_name_for_a_split_of_another_data_config_points_at_data_local(tmp_path, monkeypatch, capsys):
    line = refused(tmp_path, monkeypatch, capsys, "data=reviews", "data.train=my.csv")
    assert line == (
        "data.train: a file name (my.csv) stands for a split only in data=local (for your own files: data=local "
        "data.train=FILE data.text=COLUMN data.label=COLUMN, see the README)"
    )


def test_a_holdout_that_leaves_nothing_to_train_on(tmp_path, monkeypatch, capsys):
    path = write_rows(tmp_path / "my.csv", ["sentence", "kind"], KINDS)
    line = refused(tmp_path, monkeypatch, capsys, *LOCAL, "data.train=my.csv", "data.holdout.size=3")
    assert line == (
        f"data.holdout.size: holding out 3 row(s) for each of validation and test leaves no training rows of the 6 in "
        f"{path}; give smaller data.holdout.size or the files"
    )


@pytest.mark.parametrize("given", ["labels", "dev"], ids=["label-list", "dev-file-with-test-held-out"])
def test_a_bad_label_through_the_command_line_stops_before_heavy_imports_and_leaves_no_run_folder(given, tmp_path):
    if given == "labels":
        path = write_rows(tmp_path / "my.csv", ["sentence", "kind"], KINDS)
        argv = ["kdlab-train", *LOCAL, "data.train=my.csv", "data.labels=[question,statement]"]
        error = f"{path}:4: label 'neutral' is not in the label set ['question', 'statement'] (data.labels); "
        error += f"nor are 'Question' ({path}:5)"
    else:  # the labels are inferred and the test rows held out before the dev file's bad label is found
        train = write_rows(tmp_path / "my.csv", ["sentence", "kind"], KINDS[:2] * 3)
        path = write_rows(tmp_path / "dev.csv", ["sentence", "kind"], [["x", "question"], ["y", "maybe"]])
        argv = ["kdlab-train", *LOCAL, "data.train=my.csv", "data.validation=dev.csv"]
        error = f"{path}:3: label 'maybe' is not in the label set ['question', 'statement'] (the labels of data.train "
        error += f"{train}; list every label with data.labels=[...])"
    probe = (
        f"import sys, runpy; sys.argv={argv!r}\ntry:\n    runpy.run_module('kdlab.train', run_name='__main__')\n"
        "except SystemExit as stop:\n    print('EXIT', stop.code)\n"
        "print('HEAVY', sorted(m for m in ('torch', 'transformers', 'pytorch_lightning') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env(tmp_path), capture_output=True, text=True, timeout=120
    )
    assert "EXIT 2" in result.stdout and "HEAVY []" in result.stdout, result.stdout[-2000:] + result.stderr[-2000:]
    # the one line, and no note about the data above it (a held-out split, inferred labels)
    assert result.stderr.strip() == f"kdlab: error: {error}"
    assert "data:" not in result.stdout + result.stderr, result.stdout
    assert not (tmp_path / "outputs" / "runs").exists() or not list((tmp_path / "outputs" / "runs").iterdir())


# --- keys added with + --------------------------------------------------------------------------------------------


def test_a_key_added_with_plus_that_kdlab_does_not_read_is_refused_naming_the_nearest_key(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "kdlab.train", "+loss.temprature=4"],
        cwd=tmp_path,
        env=env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (result.returncode, result.stderr.strip()) == (
        2,
        "kdlab: error: loss.temprature: no part of kdlab reads this key, so "
        "adding it with + would change nothing; did you mean loss.temperature?",
    )
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize(
    "args,error",
    [
        (
            ["+model.student.confg.layers=2"],
            "model.student.confg.layers: no part of kdlab reads this key, so adding it with + would "
            "change nothing; did you mean model.student.config?",
        ),
        (
            ["-m", "+loss.temprature=1,2"],
            "loss.temprature: no part of kdlab reads this key, so adding it with + would change "
            "nothing; did you mean loss.temperature?",
        ),
        (
            ["+model.teacher.config.num_hiden_layers=2"],
            "model.teacher.config.num_hiden_layers: is not an architecture key of this "
            "model type, so adding it with + would change nothing; did you mean "
            "model.teacher.config.num_hidden_layers?",
        ),
        (
            ["loss.temprature=2"],
            "overrides: Could not override 'loss.temprature'. No config file has this key; did you mean "
            "loss.temperature?",
        ),
        (
            ["data.train.path=my.csv"],
            "overrides: Could not override 'data.train.path'. The chosen data config has no such key (for "
            "your own files: data=local data.train=FILE data.text=COLUMN data.label=COLUMN, see the README)",
        ),
    ],
    ids=["plus-typo", "plus-typo-swept", "plus-architecture-typo", "typo", "data-path-on-embedded-data"],
)
def test_override_errors_are_one_line_with_a_suggestion(args, error, capsys):
    from kdlab.app import refuse_bad_overrides

    with pytest.raises(SystemExit) as stopped:
        refuse_bad_overrides(args)
    assert (stopped.value.code, capsys.readouterr().err.strip()) == (2, f"kdlab: error: {error}")


@pytest.mark.parametrize(
    "args",
    [
        ["+data.train.limit=100"],  # a key of a data source (kdlab/data/loading.py SOURCE_KEYS)
        ["+trainer.accumulate_grad_batches=2"],  # Lightning's Trainer refuses unknown arguments itself
        ["+export_artifact.csv=true"],  # logger names: the runner checks them
        ["experiment=bam_toy", "+method.trained_teachers.reviews=x"],  # task names
        ["experiment=bam_toy", "+data.tasks.0.batch_size=8"],  # a task may have any key of a single-task data config
        ["experiment=bam_toy", "++data.tasks.0.train.limit=64"],
        ["+hydra.job.env_set.A=1"],
        ["+model.teacher.config.hidden_act=relu"],  # an architecture key of the model type's transformers config class
    ],
    ids=[
        "source-key",
        "trainer",
        "export-artifact",
        "trained-teachers",
        "task-key",
        "force-add",
        "hydra",
        "architecture",
    ],
)
def test_keys_kdlab_reads_may_be_added(args):
    from kdlab import api

    api.compose(*args)
