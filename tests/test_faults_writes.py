"""Nothing lost (issue 9): a write killed at any moment, a full disk, an output folder that cannot be written.

The three writers every run depends on — `write_json` (metrics.json), `TeacherOutputCache.store` (a shard appended
to a cache entry) and `export_model` (an exported model, through `save_atomically`) — are killed with SIGKILL in a
separate process: once before each of their file-system steps in turn (an audit hook sends the signal, so
every step is hit, deterministically), and at random moments while they write large payloads. kdlab's own
readers then find the old version, the new one, or nothing — never a partial file — and the next write
succeeds and removes what the killed one left. The same writers on a file system that refuses the bytes
raise one OutputError naming the path. Run as a script, this file is that separate process (`drive`).
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, run_dirs

KINDS = ("metrics", "cache", "export")
KEY = "f" * 32  # a teacher-output cache key
ROWS, WIDTH = 1000, 1000  # a cache entry of 4 MB
VALUES = 50_000  # floats in metrics.json (about 1 MB)
LIMIT = 256 * 1024  # RLIMIT_FSIZE for the refused-write check: every payload is larger
ASYNC_ROUNDS = {
    "metrics": 16,
    "cache": 8,
    "export": 6,
}  # metrics.json's write is the shortest: more tries to land in it
STEP_EVENTS = {
    "open",
    "os.mkdir",
    "os.remove",
    "os.rename",
    "os.rmdir",
    "shutil.rmtree",
    "tempfile.mkstemp",
    "tempfile.mkdtemp",
}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT


# --- the writers, their payloads and kdlab's readers ---------------------------------------------------------------
def target(kind: str, folder: Path) -> Path:
    """The file or folder a writer of `kind` produces in `folder`."""
    return folder / {"metrics": "metrics.json", "cache": KEY, "export": "model"}[kind]


def inputs() -> list[tuple[str, None]]:
    return [(f"sentence {i}", None) for i in range(ROWS)]


def metrics_payload(version: int) -> dict[str, Any]:
    return {"version": version, "values": [version + i / 7 for i in range(VALUES)]}


def cache_outputs(version: int) -> Any:
    import torch

    return torch.arange(ROWS * WIDTH, dtype=torch.float32).reshape(ROWS, WIDTH) + 1000.0 * version


def export_model_of(version: int, tokenizer: Any) -> Any:
    """A 0.5M-parameter BERT classifier whose every weight is `version` (so a load says which version it holds)."""
    import torch

    from kdlab.models.backbone import build_model

    config = {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 512}
    model = build_model({"config": config}, "classification", ["neg", "pos"], tokenizer)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(float(version))
    return model


def writers(root: Path) -> dict[str, Callable[[Path, int], None]]:
    """kind → write(folder, version), each payload built once (the versions a killed write may leave: 0, 1, 2)."""
    from kdlab.cache.storage import Storage
    from kdlab.cache.teacher_outputs import TeacherOutputCache
    from kdlab.data.embedded import reviews
    from kdlab.models.files import export_model
    from kdlab.models.tokenization import train_wordpiece
    from kdlab.utils.run_folder import write_json

    tokenizer = train_wordpiece([row["text"] for row in reviews("train", size=200)], 500, root / "tokenizer")
    metrics = [metrics_payload(v) for v in range(3)]
    outputs = [cache_outputs(v) for v in range(3)]
    models = [export_model_of(v, tokenizer) for v in range(3)]
    rows = inputs()
    return {
        "metrics": lambda folder, v: write_json(target("metrics", folder), metrics[v]),
        "cache": lambda folder, v: TeacherOutputCache(folder).store(KEY, rows, outputs[v], Storage("float32", None)),
        "export": lambda folder, v: export_model(models[v], tokenizer, target("export", folder)),
    }


def read(kind: str, folder: Path) -> int | None:
    """The version kdlab's reader finds in `folder` (None: nothing there); fails on anything else."""
    import torch

    if kind == "metrics":
        from kdlab.api import load_run

        if not target(kind, folder).exists():
            return None
        metrics = load_run(folder).metrics
        assert metrics == metrics_payload(metrics["version"]), f"{folder}: metrics.json holds a partial payload"
        return metrics["version"]
    if kind == "cache":
        from kdlab.cache.teacher_outputs import TeacherOutputCache

        found = TeacherOutputCache(folder).load(KEY, inputs())
        if found is None:
            return None
        version = int(found[0, 0].item()) // 1000
        assert torch.equal(found, cache_outputs(version)), f"{folder}: the cache entry holds a partial payload"
        return version
    from kdlab.models.files import load_trained

    if not target(kind, folder).exists():
        return None
    model, _ = load_trained(target(kind, folder))
    values = {float(v) for p in model.parameters() for v in p.detach().unique().tolist()}
    assert len(values) == 1, f"{folder}: the export mixes weights of several versions"
    return int(values.pop())


def leftovers(kind: str, folder: Path) -> list[str]:
    """Temporary siblings of the target: hidden names that start with its own (.<name>.<pid>.<host>.<random>.tmp);
    for the cache, whose writes append shards to the entry folder, the temporary files in that folder."""
    if kind == "cache":
        entry = target(kind, folder)
        return sorted(p.name for p in entry.iterdir() if p.name.endswith(".tmp")) if entry.exists() else []
    name = target(kind, folder).name
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}.")) if folder.exists() else []


def written(kind: str, folder: Path) -> list[str]:
    """What a write left in place: the target (for the cache, the shards in its entry folder)."""
    path = target(kind, folder)
    if kind == "cache":
        return sorted(p.name for p in path.glob("*.safetensors")) if path.exists() else []
    return [path.name] if path.exists() else []


# --- the killing process (this file run as a script) -----------------------------------------------------------------
def _kill_at_step(step: int, root: str) -> Callable[[str, tuple], None]:
    """An audit hook that sends SIGKILL to this process just before its `step`-th file-system step under `root`."""
    seen = 0

    def hook(event: str, args: tuple) -> None:
        nonlocal seen
        if event not in STEP_EVENTS:
            return
        path = str(args[0])
        if event == "open":
            mode, flags = args[1], args[2] or 0
            if not ((mode and any(c in mode for c in "wax+")) or flags & WRITE_FLAGS):
                return
        relative = event in ("os.remove", "os.rmdir") and args[-1] not in (None, -1)  # rmtree's unlinks by folder fd
        if not (path.startswith(root) or relative):
            return
        seen += 1
        if seen == step:
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def _in_child(work: Callable[[], None], hook: Callable[[str, tuple], None] | None = None) -> int:
    """Fork; the child installs `hook` and runs `work` (exit 0 when it returns, 1 when it raises). Returns its pid."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            if hook is not None:
                sys.addaudithook(hook)
            work()
            code = 0
        finally:
            os._exit(code)
    return pid


def _ended(pid: int) -> bool:
    """Whether the child has ended (it stays waitable)."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _outcome(pid: int, timeout: float = 60.0) -> str:
    """killed (by SIGKILL), done (the write returned), failed (it raised) or hung (killed after `timeout` s)."""
    deadline = time.monotonic() + timeout
    while not _ended(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "hung"
        time.sleep(0.001)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return "killed" if os.WTERMSIG(status) == signal.SIGKILL else f"signal {os.WTERMSIG(status)}"
    return "done" if os.WEXITSTATUS(status) == 0 else "failed"


def _prepared(root: Path, kind: str, name: str, old: int | None, write: Callable[[Path, int], None]) -> Path:
    """A fresh folder for one kill, holding a complete version `old` of the target (or nothing when None)."""
    folder = root / kind / name
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("seed: 42\n")  # so that kdlab.api.load_run reads the folder as a run
    if old is not None:
        write(folder, old)
    return folder


def _record(kind: str, folder: Path, old: int | None, outcome: str) -> dict[str, Any]:
    return {"folder": str(folder), "old": old, "outcome": outcome, "left": leftovers(kind, folder)}


def drive(root: Path) -> dict[str, Any]:
    """Kill each writer before each of its steps, then at random moments; then write under a file-size limit."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # no tqdm thread that a fork could copy while it holds a lock
    by_kind = writers(root)
    report: dict[str, Any] = {kind: {"steps": [], "async": []} for kind in KINDS}
    chance = random.Random(0)
    for kind, write in by_kind.items():
        warm = _prepared(root, kind, "warm-up", None, write)
        write(warm, 0)  # lazy imports and first calls happen here, not in the children
        started = time.perf_counter()
        write(warm, 1)
        duration = time.perf_counter() - started
        for old in (None, 0):  # the first write of a name, and one that replaces a complete earlier version
            for step in range(1, 100):
                folder = _prepared(root, kind, f"steps-{old}-{step}", old, write)
                outcome = _outcome(_in_child(functools.partial(write, folder, 1), _kill_at_step(step, str(folder))))
                report[kind]["steps"].append(_record(kind, folder, old, outcome))
                if outcome != "killed":
                    break  # past the last step: the write finished
        for number in range(ASYNC_ROUNDS[kind]):
            old = 0 if number % 4 >= 2 else None
            folder = _prepared(root, kind, f"async-{number}", old, write)
            pid = _in_child(functools.partial(write, folder, 1))
            deadline = time.monotonic() + 60
            while not leftovers(kind, folder) and not _ended(pid) and time.monotonic() < deadline:
                time.sleep(0)  # until its temporary file exists (or it has finished)
            time.sleep(chance.uniform(0, duration) if number % 2 else 0.0)  # every other one as soon as it exists
            os.kill(pid, signal.SIGKILL)  # a no-op on a child that has already finished
            report[kind]["async"].append(_record(kind, folder, old, _outcome(pid)))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit a write fails with EFBIG instead of killing us
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    from kdlab.errors import OutputError

    for kind, write in by_kind.items():
        folder = root / kind / "limit"
        try:
            write(folder, 1)
            report[kind]["limit"] = None
        except Exception as err:  # noqa: BLE001 - reported for the test to compare
            report[kind]["limit"] = str(err) if isinstance(err, OutputError) else repr(err)
        report[kind]["limit_left"] = leftovers(kind, folder) + written(kind, folder)
    return report


@pytest.fixture(scope="module")
def killed_writes(tmp_path_factory) -> tuple[Path, dict[str, Any]]:
    """Run `drive` in a fresh process (it forks the processes it kills; pytest itself is never forked)."""
    root = tmp_path_factory.mktemp("writes")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, __file__, str(root)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return root, json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def write_here(tmp_path_factory) -> dict[str, Callable[[Path, int], None]]:
    """The same writers in this process: the next run's write."""
    return writers(tmp_path_factory.mktemp("here"))


def check_killed_writes(kind: str, runs: list[dict[str, Any]], write: dict[str, Callable[[Path, int], None]]) -> None:
    """Each folder holds the old version, the new one or (an export replacing an old one: between its two renames)
    nothing, as kdlab's reader sees it; the next write (version 2) succeeds, reads back whole and leaves no
    temporary file, the killed write's included."""
    for run in runs:
        folder = Path(run["folder"])
        assert run["outcome"] in ("killed", "done"), run
        allowed = (
            {1}
            if run["outcome"] == "done"
            else {None, 1}
            if run["old"] is None
            else {0, 1} | ({None} if kind == "export" else set())
        )
        found = read(kind, folder)
        assert found in allowed, (run, found)
        write[kind](folder, 2)
        assert read(kind, folder) == 2 and leftovers(kind, folder) == [], run


@pytest.mark.parametrize("kind", KINDS)
def test_a_write_killed_before_any_of_its_steps_leaves_the_old_version_or_nothing(killed_writes, write_here, kind):
    _, report = killed_writes
    runs = report[kind]["steps"]
    for old in (None, 0):
        mine = [run for run in runs if run["old"] == old]
        assert len(mine) >= 3 and [run["outcome"] for run in mine] == ["killed"] * (len(mine) - 1) + ["done"], mine
    assert any(run["left"] for run in runs), runs  # kills did leave temporary files for the next write to remove
    check_killed_writes(kind, runs, write_here)


@pytest.mark.parametrize("kind", KINDS)
def test_a_write_killed_at_a_random_moment_leaves_the_old_version_or_nothing(killed_writes, write_here, kind):
    _, report = killed_writes
    runs = report[kind]["async"]
    assert any(run["outcome"] == "killed" and run["left"] for run in runs), runs  # at least one kill landed mid-write
    check_killed_writes(kind, runs, write_here)


@pytest.mark.parametrize("kind", KINDS)
def test_a_write_the_file_system_refuses_is_one_error_naming_the_path(killed_writes, kind):
    """RLIMIT_FSIZE makes the kernel refuse the bytes (EFBIG), in Python's writes and safetensors' Rust alike."""
    root, report = killed_writes
    path = target(kind, root / kind / "limit")
    refused = ": cannot be written: File too large (free space or choose another folder)"
    if kind == "cache":  # the shard being appended is named
        assert re.fullmatch(
            rf"{re.escape(str(path))}/000001-[0-9a-f]{{16}}\.safetensors{re.escape(refused)}", report[kind]["limit"]
        )
    else:
        assert report[kind]["limit"] == f"{path}{refused}"
    assert report[kind]["limit_left"] == []  # no partial file, no temporary file


# --- folders that cannot be written, a full disk ---------------------------------------------------------------------
SMALL = ["debug=fast", "data.train.size=200", "data.validation.size=50", "data.test.size=50"]


@functools.cache
def namespaces() -> str | None:
    """Why this machine cannot mount a file system in a user namespace (no root needed), or None when it can."""
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", "mount -t tmpfs tmpfs /mnt"],
        capture_output=True,
        text=True,
        check=False,
    )
    return None if probe.returncode == 0 else f"no user namespaces here ({probe.stderr.strip()})"


def on_own_file_system(mount: Path, options: str, *command: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run `command` with a fresh tmpfs (mount `options`) at `mount`, in a user and mount namespace; after it, the
    namespace's shell lists what is left under `mount` (the tmpfs goes with the namespace)."""
    script = f'mount -t tmpfs -o {options} tmpfs "$0" && "$@"; code=$?; echo "--- left:"; find "$0" -mindepth 1 | sort; exit $code'
    return subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, str(mount), *command],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The run failed with exit 2 and one `kdlab: error:` line, no traceback; that line."""
    errors = [line for line in result.stderr.splitlines() if line.startswith("kdlab: error:")]
    assert result.returncode == 2 and len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return errors[0]


@pytest.mark.parametrize("multirun", [False, True], ids=["run", "multirun"])
def test_an_output_folder_under_a_file_is_refused_before_anything_is_written(cli, tmp_path, multirun):
    """Works as root too: no permission can make a regular file hold a folder."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file\n")
    result = cli(*(["-m"] if multirun else []), *SMALL, env={"KDLAB_OUTPUT_DIR": str(blocker / "outputs")})
    key, kind = ("hydra.sweep.dir", "sweeps") if multirun else ("hydra.run.dir", "runs")
    assert re.fullmatch(
        rf"kdlab: error: {key}: cannot create {re.escape(str(blocker))}/outputs/{kind}/\S+: {re.escape(str(blocker))} "
        rf"is a file, not a folder \(set KDLAB_OUTPUT_DIR or {key} to a writable folder\)",
        one_error_line(result),
    )
    assert blocker.read_text() == "a file\n"


def test_a_cache_folder_that_cannot_be_created_is_refused_before_training(cli, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file\n")
    result = cli(*SMALL, env={"KDLAB_CACHE_DIR": str(blocker / "cache")})
    assert one_error_line(result) == (
        f"kdlab: error: paths.cache_dir: cannot create {blocker}/cache: {blocker} is a file, "
        "not a folder (set KDLAB_CACHE_DIR or paths.cache_dir to a writable folder)"
    )
    assert run_dirs(tmp_path) == []  # the run folder Hydra made is removed: nothing looks like a run


@pytest.mark.skipif(namespaces() is not None, reason=str(namespaces()))
def test_an_output_folder_on_a_read_only_file_system_is_refused_before_anything_is_written(cli, tmp_path):
    mount = tmp_path / "read-only"
    mount.mkdir()
    env = {**os.environ, "KDLAB_OUTPUT_DIR": str(mount / "outputs"), "KDLAB_CACHE_DIR": str(tmp_path / "cache")}
    result = on_own_file_system(mount, "ro", sys.executable, "-m", "kdlab.train", *SMALL, env=env)
    assert re.fullmatch(
        rf"kdlab: error: hydra.run.dir: cannot create {re.escape(str(mount))}/outputs/runs/\S+: {re.escape(str(mount))} "
        r"is not writable \(read-only file system\) \(set KDLAB_OUTPUT_DIR or hydra.run.dir to a writable folder\)",
        one_error_line(result),
    )


@pytest.mark.skipif(namespaces() is not None, reason=str(namespaces()))
def test_a_full_disk_stops_the_run_with_one_line_naming_the_file_and_leaves_no_partial_file(tmp_path):
    """The run folder on a 1 MB tmpfs: the run starts, trains its teacher, and the export (4 MB) meets the full disk.
    Checkpoints are off so that the export is the first large write (a checkpoint's full disk: see RELIABILITY.md)."""
    mount = tmp_path / "small"
    mount.mkdir()
    env = {**os.environ, "KDLAB_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    result = on_own_file_system(
        mount,
        "size=1m",
        sys.executable,
        "-m",
        "kdlab.train",
        *SMALL,
        f"hydra.run.dir={mount / 'run'}",
        "callbacks.model_checkpoint=null",
        "+trainer.enable_checkpointing=false",
        env=env,
    )
    export = mount / "run" / "teacher" / "model"
    assert (
        one_error_line(result)
        == f"kdlab: error: {export}: cannot be written: No space left on device (free space or choose another folder)"
    )
    left = result.stdout.split("--- left:\n", 1)[1].split()
    assert str(mount / "run" / "train.log") in left  # the run did start
    assert not [
        name for name in left if name.startswith(str(export.parent) + "/")
    ]  # no partial export, no temporary file


@pytest.mark.skipif(namespaces() is not None, reason=str(namespaces()))
def test_a_checkpoint_meeting_a_full_disk_is_one_line_naming_it(tmp_path):
    """Checkpoints on (as by default): the teacher's first checkpoint (a few MB) is the write that meets the full disk."""
    mount = tmp_path / "small"
    mount.mkdir()
    env = {**os.environ, "KDLAB_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    result = on_own_file_system(
        mount, "size=1m", sys.executable, "-m", "kdlab.train", *SMALL, f"hydra.run.dir={mount / 'run'}", env=env
    )
    folder = mount / "run" / "teacher" / "checkpoints"
    assert re.fullmatch(
        rf"kdlab: error: {re.escape(str(folder))}/\w+\.ckpt: cannot be written: No space left on device "
        r"\(free space or choose another folder\)",
        one_error_line(result),
    )
    left = result.stdout.split("--- left:\n", 1)[1].split()
    assert not [name for name in left if name.startswith(str(folder) + "/")]  # no partial checkpoint, no temporary file


if __name__ == "__main__":
    print(json.dumps(drive(Path(sys.argv[1]))))
