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


def multilingual(pairs: int = 64, dev: int = 32) -> list[str]:
    """multilingual on the embedded parallel toy: `pairs` train and `dev` dev pairs of each of its two languages."""
    return [
        "experiment=multilingual_toy",
        f"data.sources.0.size={pairs}",
        f"data.sources.1.size={pairs}",
        f"data.dev.0.size={dev}",
        f"data.dev.1.size={dev}",
    ]


def trans_encoder(train: int = 160, held_out: int = 80) -> list[str]:
    """Trans-Encoder on the embedded sts_toy pairs (`train` pairs, `held_out` for validation and for test): one cycle,
    one epoch per stage."""
    return [
        "experiment=trans_encoder_toy",
        "trainer.enable_progress_bar=false",
        "method.cycles=1",
        f"data.train.size={train}",
        f"data.validation.size={held_out}",
        f"data.test.size={held_out}",
        "method.simcse.epochs=1",
        "method.cross.epochs=1",
        "method.bi.epochs=1",
        "method.bi.batch_size=32",
    ]


def bam(train: tuple[int, int] = (160, 96), held_out: tuple[int, int] = (48, 32)) -> list[str]:
    """BAM on the embedded two-task toy: each task's `train` rows and `held_out` rows for validation and for test;
    32-wide teachers and student, a teacher epoch and two student epochs, no export timing."""
    sizes = [
        f"data.tasks.{task}.{split}.size={size}"
        for task, (rows, held) in enumerate(zip(train, held_out))
        for split, size in (("train", rows), ("validation", held), ("test", held))
    ]
    return [
        "method.deploy_benchmark=false",  # no export timing in tests (tests/test_deploy.py times them)
        "experiment=bam_toy",
        *sizes,
        "data.batch_size=16",
        "data.max_length=32",
        "model.teacher.config.hidden_size=32",
        "model.teacher.config.num_hidden_layers=1",
        "model.teacher.config.intermediate_size=64",
        "model.student.config.hidden_size=32",
        "model.student.config.intermediate_size=64",
        "method.teacher.epochs=1",
        "method.student.epochs=2",
    ]


MULTILINGUAL = multilingual()
TRANS_ENCODER = trans_encoder()
BAM = [*bam(), "trainer.log_every_n_steps=1"]
