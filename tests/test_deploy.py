"""The exported models' size and speed (kdlab/deploy, kdlab-bench): measured after a tiny hinton run, each model in a
process of its own with no other model alive, in metrics.json and the results table as "× teacher"."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO, kdlab_folders, run_dirs

from kdlab.deploy import FIGURES

TINY = [
    "debug=fast",
    "method.deploy_benchmark=true",
    "method.reuse_teacher=false",
    "data.train.size=128",
    "data.validation.size=64",
    "data.test.size=32",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny hinton run (teacher trained in it, KD student) that times its exports."""
    from kdlab.api import train

    root = tmp_path_factory.mktemp("deploy")
    with kdlab_folders(root):
        yield train(*TINY).path


def test_every_export_of_a_hinton_run_has_positive_size_and_speed_figures(run):
    metrics = json.loads((run / "metrics.json").read_text())
    for role in ("teacher", "student"):
        for name in FIGURES:
            assert metrics[f"{role}/deploy/{name}"] > 0, (role, name)
        record = json.loads((run / role / "deploy.json").read_text())
        assert record["threads"] == 1  # the run's `threads`
        assert record["calls_b1"] >= 50 and record["inputs"] == "64 validation inputs of data reviews"
        assert record["disk_bytes"] > record["weights_bytes"] > 0  # the folder also holds config and tokenizer
    # the tiny BERT teacher is far bigger than the 2-layer default student: sizes are the models', not a constant
    assert metrics["teacher/deploy/params"] > 10 * metrics["student/deploy/params"]


def test_the_results_table_gives_the_student_as_times_the_teacher(run):
    log = (run / "train.log").read_text()
    table = log[log.index("kdlab results") :]
    assert "speed-up × teacher" in table and "size × teacher" in table
    teacher_row = next(line for line in table.splitlines() if line.startswith("│ teacher"))
    assert teacher_row.count("1.0×") == 3
    student_row = next(line for line in table.splitlines() if line.startswith("│ student (KD)"))
    assert student_row.rstrip(" │").endswith("×") and "-" not in student_row.split("│")[-2]


def test_a_second_model_alive_in_the_benchmark_process_is_refused(run):
    from kdlab.deploy.measure import assert_only_model, load_export

    student, _, _ = load_export(run / "student" / "model")
    teacher, _, _ = load_export(run / "teacher" / "model")
    with pytest.raises(RuntimeError, match="parameter tensors .* of another model are alive"):
        assert_only_model(student, "student")
    del teacher


def test_the_student_is_timed_in_a_process_without_the_teacher(run):
    """The timing process holds the student's parameters and nothing else (checked there before timing)."""
    record = json.loads((run / "student" / "deploy.json").read_text())
    teacher_params = json.loads((run / "metrics.json").read_text())["teacher/deploy/params"]
    assert record["params_alive_in_process"] == record["params"] < teacher_params
    assert record["folder"] == str(run / "student" / "model")


def test_kdlab_bench_prints_a_table_against_the_first_folder(run):
    done = subprocess.run(
        [sys.executable, "-m", "kdlab.bench", str(run / "teacher" / "model"), str(run / "student" / "model")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert "speed-up × first" in done.stdout and "teacher/model" in done.stdout
    assert "64 validation inputs of the run" in done.stdout


def test_kdlab_bench_refuses_a_folder_that_is_not_an_export_in_one_line(run):
    done = subprocess.run(
        [sys.executable, "-m", "kdlab.bench", str(run / "teacher" / "model"), str(run / "teacher")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 2
    assert done.stderr == f"kdlab: error: {run / 'teacher'} has no config.json: not an exported model folder\n"
    assert done.stdout == ""


@pytest.mark.parametrize("value", ["maybe", "1"])
def test_a_deploy_benchmark_that_is_not_a_boolean_is_one_line_naming_the_key(cli, value):
    done = cli("debug=fast", f"method.deploy_benchmark={value}")
    shown = repr(value) if value == "maybe" else value
    assert done.returncode == 2
    assert done.stderr == f"kdlab: error: method.deploy_benchmark: must be true or false, got {shown}\n"
    assert run_dirs(cli.tmp_path) == []


def test_gpu_figures_reach_the_metrics_and_the_kdlab_bench_table_only_when_measured():
    # no GPU here: the CUDA timing itself is unchecked; this is what a GPU record becomes downstream
    from kdlab.bench import _table
    from kdlab.deploy import GPU_FIGURES, metrics_of

    cpu = {name: 2.0 for name in FIGURES} | {"params": 100, "threads": 1, "gpu": None}
    gpu = cpu | {"gpu": "NVIDIA H200", "gpu_latency_ms_b1": 0.5, "gpu_throughput_b32": 9000.0}
    assert not any("gpu" in key for key in metrics_of("student", cpu))
    assert {f"student/deploy/{name}" for name in GPU_FIGURES} <= set(metrics_of("student", gpu))
    assert metrics_of("student", gpu)["student/deploy/gpu_throughput_b32"] == 9000.0
    assert "GPU ex/s b32" not in _table([cpu, cpu], ["teacher", "student"])
    with_gpu = _table([gpu, cpu], ["teacher", "student"])
    assert "GPU ex/s b32" in with_gpu and "9000" in with_gpu
