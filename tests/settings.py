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


# --- the tiny settings of each method: a run in seconds (a few batches of small data through tiny models) ---------------
# hinton (the default method) or finetune on the embedded reviews: one epoch of 4 batches per stage, no export timing
FAST = ["debug=fast", "data.train.size=200", "data.validation.size=50", "data.test.size=50"]
# the default's teacher (4 layers, 128 wide) cut to 1 layer, 32 wide
TINY_TEACHER = [
    "model.teacher.config.hidden_size=32",
    "model.teacher.config.num_hidden_layers=1",
    "model.teacher.config.num_attention_heads=2",
    "model.teacher.config.intermediate_size=64",
]
# multilingual on the embedded parallel toy: 64 train and 32 dev pairs of each of its two languages
MULTILINGUAL = [
    "experiment=multilingual_toy",
    "data.sources.0.size=64",
    "data.sources.1.size=64",
    "data.dev.0.size=32",
    "data.dev.1.size=32",
]
# Trans-Encoder on the embedded sts_toy pairs: one cycle, one epoch per stage
TRANS_ENCODER = [
    "experiment=trans_encoder_toy",
    "trainer.enable_progress_bar=false",
    "method.cycles=1",
    "data.train.size=160",
    "data.validation.size=80",
    "data.test.size=80",
    "method.simcse.epochs=1",
    "method.cross.epochs=1",
    "method.bi.epochs=1",
    "method.bi.batch_size=32",
]
# BAM on the embedded two-task toy: small tasks, 32-wide teachers and student, a teacher epoch and two student epochs
BAM = [
    "method.deploy_benchmark=false",  # no export timing in tests (tests/test_deploy.py times them)
    "experiment=bam_toy",
    "data.tasks.0.train.size=160",
    "data.tasks.0.validation.size=48",
    "data.tasks.0.test.size=48",
    "data.tasks.1.train.size=96",
    "data.tasks.1.validation.size=32",
    "data.tasks.1.test.size=32",
    "data.batch_size=16",
    "data.max_length=32",
    "model.teacher.config.hidden_size=32",
    "model.teacher.config.num_hidden_layers=1",
    "model.teacher.config.intermediate_size=64",
    "model.student.config.hidden_size=32",
    "model.student.config.intermediate_size=64",
    "method.teacher.epochs=1",
    "method.student.epochs=2",
    "trainer.log_every_n_steps=1",
]
