"""multilingual's config check (kdlab.registry's `check`): the parallel data, the evaluation folders, the student
(a copy of the teacher or a pretrained encoder). Torch-free; its stage's optimizer is checked for every method."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from kdlab.cache.storage import check_storage
from kdlab.data.checks import check_parallel_data
from kdlab.errors import ConfigError
from kdlab.methods.hinton_checks import check_teacher_layers

PROJECTIONS = (None, True, False)


def check_evaluation_folders(cfg: DictConfig) -> None:
    """`method.evaluation.<tatoeba|sts>.folder`: an existing folder when the evaluator is on."""
    evaluation = cfg.method.get("evaluation") or {}
    for name in ("tatoeba", "sts"):
        spec = evaluation.get(name)
        if spec and not Path(str(spec.folder)).is_dir():
            raise ConfigError(f"method.evaluation.{name}.folder", f"{spec.folder} is not a folder (set KDLAB_DATA_DIR)")


def check_student(cfg: DictConfig) -> None:
    """`model.student`: a copy of the teacher (its layers within the teacher's) or a pretrained encoder with its own
    tokenizer; `projection` true or false."""
    student = cfg.model.get("student") or {}
    if not student.get("copy_teacher") and not student.get("name_or_path"):
        raise ConfigError("model.student", "needs copy_teacher: true or a name_or_path")
    if not student.get("copy_teacher") and student.get("tokenizer") == "teacher":
        raise ConfigError(
            "model.student.tokenizer",
            "a student loaded from name_or_path uses its own tokenizer: set it to null (or a path)",
        )
    if student.get("copy_teacher"):
        check_teacher_layers(cfg)
    if student.get("projection") not in PROJECTIONS:
        raise ConfigError(
            "model.student.projection",
            f"must be true (learn a Linear to the teacher's width) or false, got {student.get('projection')!r}",
        )


def check(cfg: DictConfig) -> None:
    """multilingual: the parallel data, the evaluation folders, the student."""
    check_parallel_data(cfg)
    check_storage(cfg.get("cache") or {}, "embeddings")
    check_evaluation_folders(cfg)
    check_student(cfg)
