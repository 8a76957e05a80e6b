"""Settings the tests share, written once: an optimizer config for modules built by hand, and the tiny per-method
overrides that make a run take seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]


def adamw(**given: Any) -> dict[str, Any]:
    """An optimizer config for a module or `build_optimizer` called by hand: conf/optimizer/adamw.yaml (every key; the
    code defaults none) without warm-up, which these tests were written for, and `given` (lr at least)."""
    defaults = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "optimizer" / "adamw.yaml"))
    return {**defaults, "warmup_ratio": 0.0, **given}
