"""resume=auto: a run killed with SIGKILL continues from its last checkpoint and ends with the metrics of an
uninterrupted run; finished runs and finished sweep jobs are not run again; run folders are never overwritten."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from conftest import REPO, run_dirs

RUN = [
    "method.deploy_benchmark=false",  # no export timing in tests (tests/test_deploy.py times them)
    "data.train.size=1200",
    "data.validation.size=100",
    "data.test.size=100",
    "data.batch_size=16",
    "method.teacher.epochs=2",
    "method.teacher.optimizer.lr=1e-3",
    "method.student.epochs=3",
    "model.teacher.config.num_hidden_layers=2",
    "model.teacher.config.hidden_size=64",
    "model.teacher.config.intermediate_size=128",
    "trainer.enable_progress_bar=false",  # dropout stays on: the restored RNG state must give the same masks
]


def env_for(root: Path) -> dict[str, str]:
    return {
        **os.environ,
        "KDLAB_OUTPUT_DIR": str(root / "outputs"),
        "KDLAB_CACHE_DIR": str(root / "cache"),
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "disabled",
    }


def start(args: list[str], root: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "kdlab.train", *args],
        cwd=REPO,
        env=env_for(root),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def kill_when(process: subprocess.Popen, ready, timeout: float = 300) -> None:
    """SIGKILL the process group as soon as `ready()` holds (fails if the process ends first)."""
    deadline = time.time() + timeout
    while not ready():
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline, "timed out waiting to kill the run"
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def finish(args: list[str], root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kdlab.train", *args],
        cwd=REPO,
        env=env_for(root),
        capture_output=True,
        text=True,
        timeout=600,
    )


def digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_a_run_killed_mid_epoch_continues_and_ends_as_if_never_stopped(tmp_path):
    whole = finish(RUN, tmp_path / "a")
    assert whole.returncode == 0, whole.stderr[-3000:]
    (uninterrupted,) = run_dirs(tmp_path / "a")

    process = start(RUN, tmp_path / "b")
    found: list[Path] = []

    def student_epoch_saved() -> bool:
        found[:] = run_dirs(tmp_path / "b")
        return bool(found) and (found[-1] / "student" / "checkpoints" / "last.ckpt").exists()

    kill_when(process, student_epoch_saved)
    (killed,) = found
    assert not (killed / "metrics.json").exists() and not (killed / "student" / "metrics.json").exists()
    checkpoint = torch.load(killed / "student" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["epoch"] == 0  # killed after the first epoch's checkpoint, before the second's

    resumed = finish([*RUN, "resume=auto"], tmp_path / "b")  # no folder given: found by its config
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = "\n".join(
        p.read_text()
        for p in run_dirs(tmp_path / "b")[-1:] + [killed]
        if (p / "train.log").exists()
        for p in [p / "train.log"]
    )
    assert f"resume: continuing {killed}" in log
    assert "stage student: continuing from" in log and "stage teacher: finished in an earlier attempt" not in log
    expected = json.loads((uninterrupted / "metrics.json").read_text())
    got = json.loads((killed / "metrics.json").read_text())
    assert expected.keys() == got.keys()
    for key in expected:
        assert abs(expected[key] - got[key]) <= 1e-6, (key, expected[key], got[key])
    assert expected["student/val/acc"] > 0.6  # it learnt: equal figures are not two copies of chance


def test_a_run_killed_after_a_mid_epoch_checkpoint_trains_the_rest_of_that_epoch_only(tmp_path):
    # validation (and last.ckpt) twice per epoch: 75 batches per epoch, a checkpoint after batch 37 of each
    args = [*RUN, "trainer.val_check_interval=0.5"]
    whole = finish(args, tmp_path / "a")
    assert whole.returncode == 0, whole.stderr[-3000:]
    (uninterrupted,) = run_dirs(tmp_path / "a")

    process = start(args, tmp_path / "b")
    found: list[Path] = []
    seen = {"stamp": None}

    def student_mid_epoch_saved() -> bool:
        found[:] = run_dirs(tmp_path / "b")
        path = found[-1] / "student" / "checkpoints" / "last.ckpt" if found else None
        if path is None or not path.exists() or path.stat().st_mtime_ns == seen["stamp"]:
            return False
        seen["stamp"] = path.stat().st_mtime_ns
        return torch.load(path, map_location="cpu", weights_only=True)["global_step"] % 75 != 0

    kill_when(process, student_mid_epoch_saved)
    (killed,) = found
    checkpoint = torch.load(killed / "student" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["callbacks"]["TrainPosition"] == {"epoch": 0, "batches": 37}

    resumed = finish([*args, "resume=auto"], tmp_path / "b")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "not resumable" not in resumed.stderr  # Lightning's warning for loaders that restart the epoch
    expected = json.loads((uninterrupted / "metrics.json").read_text())
    got = json.loads((killed / "metrics.json").read_text())
    assert expected.keys() == got.keys()
    for key in expected:
        assert abs(expected[key] - got[key]) <= 1e-6, (key, expected[key], got[key])
    steps = lambda run: [
        row["step"]
        for row in csv.DictReader((run / "logs" / "student" / "metrics.csv").open())  # noqa: E731
        if row.get("train/loss")
    ]
    assert steps(killed) == steps(
        uninterrupted
    )  # the same optimizer steps, and the log kept its rows from before the kill


def test_a_finished_run_folder_is_never_overwritten_and_resume_returns_its_results(cli, tmp_path):
    folder = tmp_path / "run"
    first = cli("debug=fast", f"hydra.run.dir={folder}")
    assert first.returncode == 0, first.stderr[-3000:]
    before = digests(folder)

    again = cli("debug=fast", f"hydra.run.dir={folder}")
    assert again.returncode == 2
    assert again.stderr.strip().splitlines()[-1] == (
        f"kdlab: error: hydra.run.dir: {folder} holds a finished run; nothing was changed. Choose another folder, "
        "or add resume=auto to return its results"
    )
    assert digests(folder) == before  # refused before Hydra wrote anything

    returned = cli("debug=fast", f"hydra.run.dir={folder}", "resume=auto")
    assert returned.returncode == 0, returned.stderr[-3000:]
    assert "finished earlier; its results are returned" in (folder / "train.log").read_text()
    assert "kdlab results" in returned.stdout
    # Hydra records this attempt's overrides (.hydra/, train.log); the run itself is untouched
    kept = lambda found: {k: v for k, v in found.items() if k != "train.log" and not k.startswith(".hydra/")}  # noqa: E731
    assert kept(digests(folder)) == kept(before)

    other = cli("debug=fast", "loss.temperature=4", f"hydra.run.dir={folder}", "resume=auto")
    assert other.returncode == 2 and "kdlab: error: resume:" in other.stderr and "another config" in other.stderr


def test_a_relaunched_sweep_skips_finished_jobs_and_completes_the_rest(tmp_path):
    sweep = tmp_path / "sweep"
    args = [
        "-m",
        "loss.temperature=1,4",
        "debug=fast",
        "method.student.epochs=3",
        "data.train.size=600",
        f"hydra.sweep.dir={sweep}",
        "resume=auto",
    ]
    process = start(args, tmp_path)
    kill_when(process, lambda: (sweep / "1" / "student" / "checkpoints" / "last.ckpt").exists())
    assert (sweep / "0" / "metrics.json").exists() and not (sweep / "1" / "metrics.json").exists()
    job0 = digests(sweep / "0" / "student")

    again = finish(args, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "finished earlier; its results are returned" in (sweep / "0" / "train.log").read_text()
    assert digests(sweep / "0" / "student") == job0  # job 0 was not trained again
    assert "stage student: continuing from" in (sweep / "1" / "train.log").read_text()
    with open(sweep / "summary.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["job"] for row in rows] == ["0", "1"] and all(row["status"] == "ok" for row in rows), rows
    for job in ("0", "1"):
        assert json.loads((sweep / job / "metrics.json").read_text())["student/test/acc"] >= 0
