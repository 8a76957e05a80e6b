"""Resume: a restarted run continues where it stopped and ends as an uninterrupted run would.

`resume=auto` — continue this run's own folder: the folder Hydra gave it when that folder already holds a
run (an explicit `hydra.run.dir`, a multirun job folder of a re-launched sweep, a re-queued SLURM job),
else the newest unfinished run under `<paths.log_dir>/runs` with the same config (`config_hash`).
`resume=<run folder>` — continue that folder (its config must be the same).

A finished run (metrics.json) is not run again: its results are returned (a re-launched multirun skips
the jobs that finished). In an unfinished run every stage that finished is loaded back from its best
checkpoint, and the stage that was stopped continues from its `checkpoints/last.ckpt` (written at every validation:
each epoch's end, and within epochs with `trainer.val_check_interval` < 1): model, optimizer, scheduler,
step, epoch, best-checkpoint tracking (Lightning), the RNG states (`RNGStates`) and the position in the
epoch (kdlab.data.sampling.TrainPosition; the data order depends only on (seed, epoch)). The stage's CSV
log keeps the rows written before the checkpoint (`KeptCSVRows`).
Checkpoints are written atomically (`AtomicCheckpointIO`), so a kill while writing leaves the previous
one valid. Without `resume`, a run never writes into a folder that holds a finished run.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf

from kdlab.errors import ConfigError
from kdlab.utils.atomic import replacing
from kdlab.utils.distributed import is_global_zero
from kdlab.utils.run_folder import write_text

log = logging.getLogger(__name__)

# what decides a run's results (not where it writes, how it logs, or whether it resumes)
RESULT_KEYS = ("method", "model", "loss", "data", "seed", "callbacks", "optimized_metric")
TRAINER_DISPLAY_KEYS = ("enable_progress_bar", "enable_model_summary")
HASH_FILE = "config_hash.txt"


def config_hash(cfg: DictConfig) -> str:
    """sha256 (16 hex digits) of everything that decides a run's results."""
    parts: dict[str, Any] = {key: _plain(cfg.get(key)) for key in RESULT_KEYS}
    parts["trainer"] = {k: v for k, v in (_plain(cfg.get("trainer")) or {}).items() if k not in TRAINER_DISPLAY_KEYS}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def is_finished(run_dir: Path) -> bool:
    """A run folder whose run ended (its metrics.json is written last)."""
    return (Path(run_dir) / "metrics.json").is_file()


def _same_config(run_dir: Path, wanted: str) -> bool:
    path = run_dir / HASH_FILE
    return path.is_file() and path.read_text(encoding="utf-8").strip() == wanted


def resume_folder(cfg: DictConfig, run_dir: Path) -> Path | None:
    """The run folder this run continues (None: a new run in `run_dir`); ConfigError when that cannot be."""
    mode = cfg.get("resume")
    wanted = config_hash(cfg)
    if mode in (None, False, "") and not is_global_zero():
        return None  # ranks 1..N-1 run in the folder rank 0 chose (and has just marked)
    if mode in (None, False, ""):
        if is_finished(run_dir):
            raise ConfigError(
                "hydra.run.dir",
                f"{run_dir} holds a finished run; nothing was changed. Choose another folder, "
                "or add resume=auto to return its results",
            )
        if (run_dir / HASH_FILE).exists():
            raise ConfigError(
                "hydra.run.dir",
                f"{run_dir} holds an unfinished run; add resume=auto to continue it, or choose another folder",
            )
        return None
    if mode != "auto":
        folder = Path(str(mode)).expanduser()
        if not (folder / HASH_FILE).is_file():
            raise ConfigError(
                "resume", f"{folder} is not a kdlab run folder (no {HASH_FILE}); use resume=auto or a run folder"
            )
        if not _same_config(folder, wanted):
            raise ConfigError("resume", f"{folder} was started with another config; resume it with the same overrides")
        return folder
    if (run_dir / HASH_FILE).is_file():  # the same folder again: explicit run dir, sweep job, re-queued job
        if not _same_config(run_dir, wanted):
            raise ConfigError(
                "resume",
                f"{run_dir} was started with another config; resume it with the same overrides, or start a new folder",
            )
        return run_dir
    runs = Path(str(cfg.paths.log_dir)) / "runs"
    candidates = (
        [d for d in runs.iterdir() if d != run_dir and d.is_dir() and _same_config(d, wanted)] if runs.is_dir() else []
    )
    unfinished = [d for d in candidates if not is_finished(d)]
    if unfinished:
        return max(unfinished, key=lambda d: (d / HASH_FILE).stat().st_mtime)
    return None


def start_folder(cfg: DictConfig, run_dir: Path) -> None:
    """Mark a folder as holding a run of this config (what `resume=auto` looks for)."""
    from kdlab.utils.run_folder import write_text

    write_text(run_dir / HASH_FILE, config_hash(cfg) + "\n")


def last_checkpoint(stage_dir: Path) -> Path | None:
    """The stage's last.ckpt when an earlier attempt wrote one."""
    path = stage_dir / "checkpoints" / "last.ckpt"
    return path if path.is_file() else None


def finished_checkpoint(stage_dir: Path) -> Path | None:
    """For a stage an earlier attempt finished (its metrics.json), the checkpoint its weights come from."""
    if not (stage_dir / "metrics.json").is_file():
        return None
    for name in ("best.ckpt", "last.ckpt"):
        if (stage_dir / "checkpoints" / name).is_file():
            return stage_dir / "checkpoints" / name
    return None


class RNGStates(pl.Callback):
    """Saves Python's, NumPy's and torch's RNG states in each checkpoint and restores them on resume."""

    def state_dict(self) -> dict[str, Any]:
        numpy_state = np.random.get_state()
        return {
            "torch": torch.get_rng_state(),
            "python": list(_tuples_to_lists(random.getstate())),
            "numpy": {
                "name": numpy_state[0],
                "keys": torch.from_numpy(numpy_state[1].astype(np.int64)),
                "pos": int(numpy_state[2]),
                "has_gauss": int(numpy_state[3]),
                "cached_gaussian": float(numpy_state[4]),
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        random.setstate(_lists_to_tuples(state["python"]))
        n = state["numpy"]
        np.random.set_state(
            (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
        )


def _tuples_to_lists(value: Any) -> Any:
    return [_tuples_to_lists(v) for v in value] if isinstance(value, (tuple, list)) else value


def _lists_to_tuples(value: Any) -> Any:
    return tuple(_lists_to_tuples(v) for v in value) if isinstance(value, list) else value


class KeptCSVRows:
    """The rows of a resumed stage's CSV logs (`logs/<stage>/metrics.csv`) from before its checkpoint.

    Lightning's CSV writer deletes an existing metrics.csv when the resumed stage starts logging; `restore()`
    puts the rows logged before the checkpoint's step back in front of the new ones (written atomically).
    """

    def __init__(self, loggers: list[Any], checkpoint: Path):
        step = int(torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)["global_step"])
        self.rows: dict[Path, list[dict[str, str]]] = {}
        for logger in loggers:
            if type(logger).__name__ == "CSVLogger":
                path = Path(logger.log_dir) / "metrics.csv"
                if path.is_file():
                    self.rows[path] = [row for row in _csv_rows(path) if row.get("step") and int(row["step"]) < step]

    def restore(self) -> None:
        """Write each metrics.csv as the kept rows followed by what the resumed stage logged."""
        for path, before in self.rows.items():
            after = _csv_rows(path) if path.is_file() else []
            rows = before + after
            columns = sorted({key for row in rows for key in row})
            out = io.StringIO()
            writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
            write_text(path, out.getvalue())


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to a temporary file in its folder, flushes it to disk, then renames it into place
    (kdlab.utils.atomic.replacing: a full disk is one OutputError naming the checkpoint)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        with replacing(path) as tmp, open(tmp, "wb") as handle:
            torch.save(checkpoint, handle)
            handle.flush()
            os.fsync(handle.fileno())
