"""Everything a run needs is in its run folder: resolved config, git commit, metrics."""

from __future__ import annotations

import json
import logging
import platform
import subprocess
import sys
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kdlab.errors import KdlabError
from kdlab.utils.atomic import replacing

# a failed run's or multirun job's record in its folder, read by the sweep summary (kdlab/sweep.py) and kdlab-report
ERROR_FILE = "error.json"


def to_log_files(logger: logging.Logger, level: int, message: str, exc_info: Any = None) -> None:
    """Write a log record to the log files only (the run's train.log): what the console already shows in its own form."""
    record = logger.makeRecord(logger.name, level, __file__, 0, "%s", (message,), exc_info)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def write_text(path: str | Path, text: str) -> None:
    """Write a text file through a temporary file in the same folder and rename it (`kdlab.utils.atomic`)."""
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically (`write_text`)."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def git_state(cwd: str | Path | None = None) -> dict[str, Any]:
    """The commit and dirtiness of the kdlab checkout (or of `cwd`), or nulls outside git."""
    where = Path(cwd) if cwd else Path(__file__).resolve().parents[2]

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def write_run_info(run_dir: str | Path, resolved_config_yaml: str) -> None:
    """config.yaml (resolved) and run.json (git commit, command line, versions, start time)."""
    import pytorch_lightning
    import torch
    import transformers

    from kdlab import __version__

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(resolved_config_yaml, encoding="utf-8")
    write_json(
        run_dir / "run.json",
        {
            "git": git_state(),
            "command": sys.argv,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "host": platform.node(),
            "versions": {
                "kdlab": __version__,
                "python": platform.python_version(),
                "torch": torch.__version__,
                "pytorch_lightning": pytorch_lightning.__version__,
                "transformers": transformers.__version__,
            },
        },
    )


def is_fresh(run_dir: Path) -> bool:
    """True when a folder holds nothing but what Hydra wrote at start-up (safe to remove after a config error)."""
    return run_dir.is_dir() and all(p.name in (".hydra", "train.log", "eval.log") for p in run_dir.iterdir())


def record_failure(job_dir: Path, err: BaseException) -> None:
    """Write <job>/error.json: the error's type, message and traceback (the sweep summary shows it)."""
    write_json(
        job_dir / ERROR_FILE,
        {
            "type": type(err).__name__,
            "message": str(err),
            "kdlab_error": isinstance(err, KdlabError),
            "traceback": "".join(traceback.format_exception(type(err), err, err.__traceback__)),
        },
    )
