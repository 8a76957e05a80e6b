"""What a run prints (issue 16): kdlab's own lines, one per epoch when the progress bar is off, the results table in
train.log too; the libraries' routine notices only with verbose=true; the thread count a config key."""

from __future__ import annotations

import pytest

from conftest import run_dirs

NOISE = ("Seed set", "GPU available", "TPU available", "litlogger", "val_check_interval", "LeafSpec", "Loading weights",
         "Writing model shards")
FAST = ["debug=fast", "data.train.size=200", "data.validation.size=64", "data.test.size=64"]


def test_a_run_prints_kdlab_lines_only_and_one_line_per_epoch(cli):
    result = cli(*FAST, "method.teacher.epochs=2")
    assert result.returncode == 0, result.stderr[-3000:]
    printed = result.stdout + result.stderr
    assert [word for word in NOISE if word in printed] == []
    assert "stage teacher: epoch 1/2  train/loss " in printed and "stage teacher: epoch 2/2  " in printed
    assert "val/acc " in printed.split("stage teacher: epoch 2/2", 1)[1].splitlines()[0]
    (run,) = run_dirs(cli.tmp_path)
    log = (run / "train.log").read_text()
    assert "kdlab results" in log and "student (KD)" in log  # the table is in the run's log, not only on the screen


def test_verbose_brings_the_libraries_notices_back(cli):
    result = cli(*FAST, "verbose=true")
    assert result.returncode == 0, result.stderr[-3000:]
    printed = result.stdout + result.stderr
    assert "Seed set" in printed and "GPU available" in printed


@pytest.mark.parametrize("value", ["0", "two", "true"])
def test_threads_must_be_a_positive_integer_or_null(value):
    from kdlab.api import compose
    from kdlab.config import validate
    from kdlab.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^threads: must be a positive integer or null"):
        validate(compose(f"threads={value}"))
    validate(compose("threads=null"))
