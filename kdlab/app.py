"""What the command-line entry points share: the config folder, resolvers, one-line errors.

Only hydra/omegaconf are imported here; torch, Lightning and transformers load when a run starts.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from kdlab.api import compose
from kdlab.errors import ConfigError, KdlabError
from kdlab.utils.run_folder import ERROR_FILE, is_fresh, record_failure

log = logging.getLogger("kdlab")


def refuse_finished_run_dir(argv: list[str]) -> None:
    """Exit 2 when `hydra.run.dir=` names a folder holding a finished run and `resume` is not given.

    Checked on the command line, before Hydra starts: Hydra would otherwise rewrite the folder's .hydra/
    record of the finished run before kdlab's own check (kdlab/resume.py) could refuse.
    """
    if any(arg in ("-m", "--multirun") for arg in argv) or any(arg.startswith(("resume=", "+resume=")) for arg in argv):
        return
    for arg in argv:
        if arg.startswith("hydra.run.dir="):
            folder = Path(os.path.expanduser(arg.split("=", 1)[1].strip("\"'")))
            if (folder / "metrics.json").is_file():
                print(
                    f"kdlab: error: hydra.run.dir: {folder} holds a finished run; nothing was changed. Choose another "
                    "folder, or add resume=auto to return its results",
                    file=sys.stderr,
                )
                raise SystemExit(2)


def refuse_bad_overrides(argv: list[str], config_name: str = "train") -> None:
    """Exit 2 with one `kdlab: error: …` line when the command line's overrides do not compose or add (+) a key
    that kdlab does not read.

    Hydra reports its own composition errors (a misspelt key, an unknown config group option) in several lines
    with exit 1, and accepts any added key; composing the overrides first (a sweep's keys with its first value,
    from the user's `--config-dir` too) turns them into kdlab's one line. Skipped for Hydra's help and info
    flags and when `--config-path`, `--config-name` or `--experimental-rerun` replace the primary config.
    """
    import contextlib
    import io

    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser

    with contextlib.redirect_stderr(io.StringIO()):
        try:
            args = get_args_parser().parse_intermixed_args(argv)  # `key=1 -m key2=1,2` too
        except SystemExit:  # a malformed flag: Hydra's own usage message says it
            return
    if (
        args.help
        or args.hydra_help
        or args.shell_completion
        or args.info is not None
        or args.config_path is not None
        or args.config_name is not None
        or args.experimental_rerun is not None
    ):
        return
    if args.config_dir is not None and not Path(args.config_dir).is_dir():
        print(f"kdlab: error: --config-dir: {Path(args.config_dir).resolve()} is not a folder", file=sys.stderr)
        raise SystemExit(2)
    try:
        parsed = OverridesParser.create().parse_overrides(args.overrides)
    except Exception:  # Hydra's own grammar error is already one clear message
        return
    first_job = [_first_of_sweep(text, override) for text, override in zip(args.overrides, parsed)]
    try:
        compose(*[text for text in first_job if text is not None], config_name=config_name, config_dir=args.config_dir)
    except ConfigError as err:
        print(f"kdlab: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def _first_of_sweep(text: str, override: Any) -> str | None:
    """A sweep override (`key=1,2`) as its first job's (`key=1`, as Hydra's basic sweeper writes it), so that composing
    checks its key; None for an interval (Optuna's), which has no first value; other overrides as given."""
    if not override.is_sweep_override():
        return text
    try:
        return f"{override.get_key_element()}={next(iter(override.sweep_string_iterator()))}"
    except Exception:  # an interval sweep: its key goes unchecked here
        return None


def _refuse_unwritable(config: DictConfig, key: str) -> None:
    """Exit 2 with one line when the folder `key` names cannot be created or written."""
    from kdlab.utils.atomic import check_writable

    try:
        check_writable(
            str(OmegaConf.select(config, key)), key, f" (set KDLAB_OUTPUT_DIR or {key} to a writable folder)"
        )
    except ConfigError as err:
        print(f"kdlab: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


class OutputFolderCheck(Callback):
    """Hydra callback: refuse a run or sweep folder that cannot be written, before Hydra creates it."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _refuse_unwritable(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _refuse_unwritable(config, "hydra.sweep.dir")


def _hydra_job() -> tuple[Path | None, bool]:
    """(this job's output folder, whether it is a multirun job); (None, False) outside Hydra."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra_cfg = HydraConfig.get()
        return Path(hydra_cfg.runtime.output_dir), hydra_cfg.mode == RunMode.MULTIRUN
    except Exception:  # not under Hydra
        return None, False


def _finish_wandb() -> None:
    """End a W&B run left open by a failed job (marked failed), so the next job starts its own."""
    wandb = sys.modules.get("wandb")  # never imported here: only a job that used W&B has a run to end
    if wandb is not None and getattr(wandb, "run", None) is not None:
        try:
            wandb.finish(exit_code=1)
        except Exception as err:  # noqa: BLE001 - the job's own error is the one reported
            log.warning("could not finish the W&B run: %s", err)


def _as_output_error(err: Exception, job_dir: Path | None) -> Exception:
    """A write the file system refused (full disk, read-only) as one OutputError naming the file, else `err`."""
    from kdlab.utils.atomic import output_error

    if isinstance(err, KdlabError) or not isinstance(err, OSError):
        return err
    return output_error(err.filename or job_dir or Path.cwd(), err) or err


def guarded(task: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """Run a task and report its failure.

    A single run: a KdlabError becomes one line on stderr and exit code 2 (an untouched run folder is
    removed; a run that had started records the error in its train.log and error.json), and so does an OSError saying the disk is full or read-only (as an OutputError); any other
    error propagates with its traceback. A multirun job: any error is logged with its traceback
    (<job>/train.log), recorded in <job>/error.json, an open W&B run is finished, and the job returns None so
    that the sweep goes on; the sweep summary (kdlab/sweep.py) then reports it and sets the multirun's exit
    status.
    """
    job_dir, multirun = _hydra_job()
    if multirun and job_dir is not None:
        (job_dir / ERROR_FILE).unlink(missing_ok=True)  # a stale record of an earlier attempt
    try:
        return task(cfg)
    except Exception as caught:
        err = _as_output_error(caught, job_dir)
        if multirun and job_dir is not None:
            if isinstance(err, KdlabError):
                print(f"kdlab: error: {err}", file=sys.stderr)
                log.error("job failed: %s", err)
            else:
                log.exception("job failed: %s: %s", type(err).__name__, err)
            record_failure(job_dir, err)
            _finish_wandb()
            return None
        late = job_dir is not None and job_dir.is_dir() and not is_fresh(job_dir)
        if late:  # the run had started: its folder says how it ended (train.log, error.json for kdlab-report)
            from kdlab.utils.run_folder import to_log_files

            exc_info = None if isinstance(err, KdlabError) else (type(err), err, err.__traceback__)
            to_log_files(
                log, logging.ERROR, f"run failed: {type(err).__name__}: {err}", exc_info
            )  # stderr has its own line
            record_failure(job_dir, err)
        if not isinstance(err, KdlabError):
            _finish_wandb()
            raise
        print(f"kdlab: error: {err}", file=sys.stderr)
        if job_dir is not None and is_fresh(job_dir):
            shutil.rmtree(job_dir, ignore_errors=True)
        raise SystemExit(2) from None
