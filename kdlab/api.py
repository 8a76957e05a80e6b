"""kdlab from Python (notebooks, scripts): the same config, checks and run folders as `kdlab-train`.

    from kdlab import api
    run = api.train("experiment=bam_toy", "method.student.epochs=2")   # any kdlab-train overrides
    run.path, run.metrics["student/val/glue_mean"]
    sweep = api.sweep({"loss.temperature": [1, 4]}, "debug=fast")     # a grid, one job folder each
    [(job.overrides, job.metrics) for job in sweep.jobs]

`train` composes conf/ with Hydra's compose API, checks the config (`kdlab.config.validate`) and runs
the method (`kdlab.pipelines.run`) in this process. The run folder is the one `kdlab-train` would
use (`hydra.run.dir`: <paths.log_dir>/runs/<date>_<time>_<run_name>, made unique if it exists) or
`output_dir`; it gets `.hydra/config.yaml` and `.hydra/overrides.yaml` like a CLI run, and the log
in train.log. A sweep writes <paths.log_dir>/sweeps/<date>_<time>/<job>/ folders, laid out like a
Hydra multirun's (with error.json for a failed job and summary.csv), so `kdlab-sweep-summary`,
`kdlab-report` and `kdlab.plots` read both alike.

Errors are kdlab's: a bad override or value raises `ConfigError`, bad data `DataError` (one line
naming the key or file), before any model is loaded where the check allows it.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from kdlab.errors import ConfigError, KdlabError
from kdlab.resolvers import conf_dir, register_resolvers
from kdlab.utils.atomic import check_writable
from kdlab.utils.run_folder import is_fresh, record_failure

log = logging.getLogger("kdlab")


@dataclass
class Run:
    """A finished run: its folder, its metrics (metrics.json) and its resolved config."""

    path: Path
    metrics: dict[str, float]
    config: DictConfig
    overrides: list[str] = field(default_factory=list)

    @property
    def method(self) -> str:
        return str(self.config.method.name)

    @property
    def optimized_metric(self) -> float | None:
        """The value of `optimized_metric` (what a sweeper would optimise), or None if the run did not produce it."""
        name = self.config.get("optimized_metric")
        return self.metrics.get(name) if name else None


@dataclass
class Sweep:
    """A grid of runs under one sweep folder; `jobs` in job-number order."""

    path: Path
    jobs: list[Run]


def _compose_error(err: Exception, folders: list[str]) -> ConfigError:
    """Hydra's multi-line composition error as one ConfigError line (the search-path listing dropped); a key that no
    config file has gets the nearest one that does instead of Hydra's advice to add it with +."""
    from kdlab.data.checks import OWN_DATA_HINT
    from kdlab.overrides import known_keys, nearest_key

    lines = []
    for line in str(err).splitlines():
        if line.startswith("Config search path") or line.startswith("See https://"):
            break
        if line.strip():
            lines.append(line.strip())
    text = " ".join(lines) or type(err).__name__
    missing = re.match(r"Could not override '([^']+)'\.", text)
    if missing:
        key = missing.group(1)
        known = known_keys(OmegaConf.create(), folders)
        if tuple("*" if part.isdigit() else part for part in key.split(".")) not in known:
            near = nearest_key(key, known)
            text = f"Could not override '{key}'. No config file has this key" + (
                f"; did you mean {near}?" if near else ""
            )
        elif key.startswith("data."):
            text = f"Could not override '{key}'. The chosen data config has no such key"
        if key.startswith("data."):
            text += OWN_DATA_HINT
    return ConfigError("overrides", text)


def compose(*overrides: str, config_name: str = "train", config_dir: str | Path | None = None) -> DictConfig:
    """The composed `train` (or `config_name`) config for these overrides, with its `hydra` node (nothing resolved or
    run). `config_dir`: a folder of the user's own config files, searched after kdlab's conf/ (`--config-dir`).

    A key that a `+key=value` (or `++`) override adds must be one kdlab reads (`kdlab.overrides.check_added_key`),
    and a key or config group the user sets (here, in an experiment file or a sweep's search space) must be one the
    chosen method reads (`kdlab.overrides.check_method_reads`); else the value would be silently ignored.
    """
    from hydra import compose as hydra_compose
    from hydra import version
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.config_search_path import SearchPathQuery
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from hydra.initialize import get_gh_backup, restore_gh_from_backup
    from omegaconf.errors import OmegaConfBaseException

    register_resolvers()
    folders = [conf_dir(), *([str(Path(config_dir).resolve())] if config_dir is not None else [])]
    outer = get_gh_backup()  # a Hydra already set up by the caller (a @hydra.main script, a test) is put back after
    GlobalHydra.instance().clear()
    try:
        version.setbase("1.3")
        search_path = create_config_search_path(search_path_dir=folders[0])
        for folder in folders[1:]:  # where Hydra's --config-dir puts it
            search_path.prepend(
                provider="command-line", path=f"file://{folder}", anchor=SearchPathQuery(provider="schema")
            )
        Hydra.create_main_hydra2(task_name="app", config_search_path=search_path)
        parsed = OverridesParser.create().parse_overrides(list(overrides))
        added = [
            o
            for o in parsed
            if (o.is_add() or o.is_force_add())
            and o.package is None
            and not any((Path(folder) / o.key_or_group).is_dir() for folder in folders)
        ]  # `+group=option` adds a config
        if added:
            from kdlab.overrides import check_added_key, known_keys

            kept = [text for text, o in zip(overrides, parsed) if all(o is not a for a in added)]
            base = hydra_compose(config_name, overrides=kept, return_hydra_config=True)
            known = known_keys(base, folders)
            for override in added:
                check_added_key(override.key_or_group, base, known)
        cfg = hydra_compose(config_name, overrides=list(overrides), return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as err:
        raise _compose_error(err, folders) from None
    finally:
        restore_gh_from_backup(outer)
    from kdlab.overrides import check_method_reads

    check_method_reads(cfg, parsed, folders)  # a key or group the chosen method does not read: refused, not ignored
    return cfg


def _select(cfg: DictConfig, key: str) -> str:
    """A config value resolved to a string; a value that cannot be resolved is a ConfigError naming `key`."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        return str(OmegaConf.select(cfg, key, throw_on_missing=True))
    except OmegaConfBaseException as err:
        raise ConfigError(key, f"cannot be resolved ({str(err).splitlines()[0]})") from None


def _unique(folder: Path) -> Path:
    """`folder`, or folder_1, folder_2, ... when a run already used it (two runs in the same second)."""
    candidate, n = folder, 0
    while candidate.exists() and any(candidate.iterdir()):
        n += 1
        candidate = folder.with_name(f"{folder.name}_{n}")
    return candidate


def _job_config(
    cfg: DictConfig, run_dir: Path, job_num: int | None = None, sweep_dir: Path | None = None
) -> DictConfig:
    """The job's config as `kdlab-train` sees it (no `hydra` node, paths.output_dir = run_dir); `cfg.hydra`
    becomes what Hydra sets for a run or for job `job_num` of the multirun in `sweep_dir`."""
    from hydra.types import RunMode

    with open_dict(cfg.hydra):
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.mode = RunMode.RUN if job_num is None else RunMode.MULTIRUN
        if job_num is not None:
            cfg.hydra.job.num = job_num
            cfg.hydra.sweep.dir = str(sweep_dir)
            cfg.hydra.sweep.subdir = str(job_num)
    job = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
    with open_dict(job):
        job.paths.output_dir = str(run_dir)  # ${hydra:runtime.output_dir} outside a Hydra app
    return job


def _write_hydra_files(cfg: DictConfig, job: DictConfig, run_dir: Path) -> None:
    """<run_dir>/.hydra/{config,hydra,overrides}.yaml, as Hydra writes them for a CLI run or multirun job."""
    meta = run_dir / ".hydra"
    meta.mkdir(parents=True, exist_ok=True)
    (meta / "config.yaml").write_text(OmegaConf.to_yaml(job), encoding="utf-8")
    (meta / "hydra.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create({"hydra": cfg.hydra})), encoding="utf-8")
    (meta / "overrides.yaml").write_text(OmegaConf.to_yaml(cfg.hydra.overrides.task), encoding="utf-8")


@contextmanager
def _as_hydra_job(cfg: DictConfig, log_file: Path) -> Iterator[None]:
    """For the block: `HydraConfig` holds cfg.hydra (so ${hydra:...} and kdlab's multirun checks work as under
    kdlab-train), and INFO and above of every logger also go to `log_file` (train.log, as kdlab-train writes)."""
    from hydra.core.hydra_config import HydraConfig

    hydra_config = HydraConfig.instance()
    previous = hydra_config.cfg
    hydra_config.set_config(cfg)
    root = logging.getLogger()
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    handler.setLevel(logging.INFO)
    level = root.level
    root.addHandler(handler)
    root.setLevel(min(level, logging.INFO) if level else logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()
        hydra_config.cfg = previous


def _run_job(cfg: DictConfig, job: DictConfig, run_dir: Path, overrides: list[str], sweep_job: bool = False) -> Run:
    """Run a checked job config in `run_dir`. A single run that stops on a KdlabError before writing anything
    leaves no folder behind; a sweep job keeps its folder (the sweep summary lists it)."""
    if "ddp" in str(OmegaConf.select(job, "trainer.strategy")):
        raise ConfigError(
            "trainer.strategy",
            "DDP starts its other processes by running the command line again: "
            "run several-process configs (hardware=ddp_cpu|multi_gpu|multi_node) with kdlab-train",
        )
    from kdlab.pipelines import run

    _write_hydra_files(cfg, job, run_dir)
    try:
        with _as_hydra_job(cfg, run_dir / "train.log"):
            run(job)
    except KdlabError:
        if not sweep_job and is_fresh(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return load_run(run_dir, overrides)


def load_run(path: str | Path, overrides: Sequence[str] | None = None) -> Run:
    """A finished run folder as a `Run` (metrics.json and the resolved config.yaml)."""
    from kdlab.errors import DataError

    path = Path(path)
    for name in ("metrics.json", "config.yaml"):
        if not (path / name).is_file():
            raise DataError(path / name, "is missing: not a finished kdlab run folder")
    if overrides is None:
        saved = path / ".hydra" / "overrides.yaml"
        overrides = [str(o) for o in OmegaConf.load(saved)] if saved.is_file() else []
    metrics = json.loads((path / "metrics.json").read_text(encoding="utf-8"))
    return Run(path=path, metrics=metrics, config=OmegaConf.load(path / "config.yaml"), overrides=list(overrides))


def train(*overrides: str, output_dir: str | Path | None = None) -> Run:
    """Compose, check and run one kdlab-train config in this process; returns the finished `Run`.

    `overrides` are kdlab-train's command-line overrides ("experiment=bam_toy", "loss.alpha=0.9");
    `output_dir` is the run folder (default: the one kdlab-train would make under paths.log_dir/runs).
    """
    from kdlab.config import validate

    cfg = compose(*overrides)
    run_dir = Path(output_dir) if output_dir is not None else _unique(Path(_select(cfg, "hydra.run.dir")))
    if (run_dir / "metrics.json").is_file() and not any(o.startswith(("resume=", "+resume=")) for o in overrides):
        raise ConfigError(
            "output_dir",
            f"{run_dir} holds a finished run; nothing was changed. Choose another folder, "
            "or add the override resume=auto to return its results",
        )
    check_writable(run_dir, "output_dir" if output_dir is not None else "hydra.run.dir")
    job = _job_config(cfg, run_dir)
    validate(job)
    return _run_job(cfg, job, run_dir, list(overrides))


def grid(params: Mapping[str, Sequence[Any]]) -> list[list[str]]:
    """The override sets of a grid, first key slowest: {"a": [1, 2], "b": [x]} → [["a=1", "b=x"], ["a=2", "b=x"]]."""
    if not params:
        raise ConfigError("sweep", "the grid is empty: give at least one key with a list of values")
    for key, values in params.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ConfigError(key, f"a sweep needs a non-empty list of values, got {values!r}")
    keys = list(params)
    return [[f"{k}={v}" for k, v in zip(keys, combo)] for combo in itertools.product(*(params[k] for k in keys))]


def sweep(params: Mapping[str, Sequence[Any]], *overrides: str, sweep_dir: str | Path | None = None) -> Sweep:
    """Run every point of a grid (`grid(params)`, plus the common `overrides`) one after another.

    Every job's config is composed and checked before the first job starts, so a bad value stops the
    sweep at once. Job folders: <sweep_dir>/<n>/ (default sweep_dir: hydra.sweep.dir, i.e.
    <paths.log_dir>/sweeps/<date>_<time>), each with .hydra/overrides.yaml, like a `kdlab-train -m` sweep,
    and <sweep_dir>/summary.csv (kdlab.sweep). As in a multirun, a job that fails is recorded in its
    <job>/error.json and the sweep goes on; afterwards the first failure is raised (the log names the
    summary), else the finished sweep is returned.
    """
    from kdlab.config import validate
    from kdlab.sweep import SUMMARY_FILE, failure_report, summarise

    points = grid(params)
    configs = [compose(*overrides, *point) for point in points]
    root = Path(sweep_dir) if sweep_dir is not None else _unique(Path(_select(configs[0], "hydra.sweep.dir")))
    check_writable(root, "sweep_dir" if sweep_dir is not None else "hydra.sweep.dir")
    jobs = [_job_config(cfg, root / str(num), num, root) for num, cfg in enumerate(configs)]
    for job in jobs:
        validate(job)
    runs, failures = [], []
    for num, (cfg, job) in enumerate(zip(configs, jobs)):
        job_overrides = [*overrides, *points[num]]
        log.info("sweep job %d: %s", num, " ".join(job_overrides))
        try:
            runs.append(_run_job(cfg, job, root / str(num), job_overrides, sweep_job=True))
        except Exception as err:  # recorded as kdlab-train -m records it; the next job runs
            log.error("sweep job %d failed: %s: %s", num, type(err).__name__, err)
            record_failure(root / str(num), err)
            failures.append(err)
    report = failure_report(summarise(root, echo=False))
    if failures:
        log.error("%s; table: %s", report[0] if report else f"{len(failures)} sweep jobs failed", root / SUMMARY_FILE)
        raise failures[0]
    return Sweep(path=root, jobs=runs)
