"""Multilingual distillation pipeline (Reimers & Gurevych 2020).

teacher sentence encoder (frozen) → its embeddings of every distinct source sentence, from the
teacher-output cache → student (a copy of the teacher, optionally with fewer layers, or any HF
encoder) evaluated before training, trained with the multilingual MSE, evaluated after, exported as
a sentence-transformers folder. A student of another width than the teacher's needs
`model.student.projection: true` (a learnt Linear after pooling, exported as a Dense module).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from kdlab.data.parallel import ParallelDataModule
from kdlab.errors import ConfigError
from kdlab.evaluation.multilingual import CrosslingualSTSEvaluator, TatoebaEvaluator
from kdlab.methods.multilingual import MultilingualDistillation
from kdlab.models.backbone import build_model, freeze
from kdlab.models.sentence_encoder import SentenceEncoder, spec_tokenizer
from kdlab.models.tokenization import load_tokenizer
from kdlab.pipelines.common import container, prefixed, resolve_tokenizer, seed
from kdlab.pipelines.teachers import cached_teacher_outputs, teacher_record
from kdlab.runner import evaluate, fit_stage
from kdlab.utils.run_folder import write_json

log = logging.getLogger(__name__)


def build_teacher(cfg: DictConfig, datamodule: ParallelDataModule) -> tuple[SentenceEncoder, Any]:
    """The frozen teacher encoder and its tokenizer (pretrained folder/name, or random-init for toy runs)."""
    spec = container(cfg.model.teacher)
    if spec.get("name_or_path"):  # a pretrained encoder, then its folder's tokenizer
        teacher = build_model(spec, None, [], None, key="model.teacher", method="multilingual")
        tokenizer = spec_tokenizer(spec)
    else:
        tokenizer = resolve_tokenizer(
            cfg,
            spec,
            "model.teacher",
            lambda: [text for p in datamodule.pairs("train") for text in (p["source"], p["target"])],
        )
        seed(cfg)
        teacher = build_model(spec, None, [], tokenizer, key="model.teacher", method="multilingual")
    return freeze(teacher), tokenizer


def build_student(cfg: DictConfig, teacher: SentenceEncoder, teacher_tokenizer: Any) -> tuple[SentenceEncoder, Any]:
    """The student: a copy of the teacher (optionally keeping `from_teacher_layers`) or any HF encoder, with a
    learnt projection to the teacher's width when `projection` is true."""
    spec = container(cfg.model.student)
    choice = spec.get("tokenizer")
    if spec.get("copy_teacher"):
        student = build_model(spec, None, [], None, teacher, "model.student", method="multilingual")
        tokenizer = teacher_tokenizer if choice in (None, "teacher") else load_tokenizer(str(choice))
    else:  # any HF encoder, then its folder's tokenizer; pooling and normalisation default to the teacher's
        spec.update(
            {
                "tokenizer": None if choice == "teacher" else choice,
                "pooling": spec.get("pooling") or teacher.pooling,
                "normalize": teacher.normalize if spec.get("normalize") is None else spec["normalize"],
            }
        )
        student = build_model(spec, None, [], None, teacher, "model.student", method="multilingual")
        tokenizer = teacher_tokenizer if choice == "teacher" else spec_tokenizer(spec)
    if spec.get("projection"):
        if student.projection is not None:
            raise ConfigError(
                "model.student.projection",
                f"the student already ends in a Dense layer ({student.hidden_size} → {student.dim}), "
                "which trains with it; set model.student.projection=false",
            )
        student.add_projection(teacher.dim)  # a learnt Linear(student width → teacher width), trained with the student
    elif student.dim != teacher.dim:
        fix = (
            "its Dense layer must output the teacher's width"
            if student.projection is not None
            else f"set model.student.projection=true to learn a linear map {student.dim} → {teacher.dim} after pooling"
        )
        raise ConfigError(
            "model.student",
            f"the student's embedding width {student.dim} differs from the teacher's {teacher.dim}; {fix}",
        )
    return student, tokenizer


def build_evaluators(cfg: DictConfig) -> dict[str, list[Any]]:
    """Tatoeba and cross-lingual STS evaluators for val and test, from `method.evaluation`."""
    spec = container(cfg.method.get("evaluation")) or {}
    evaluators: dict[str, list[Any]] = {"val": [], "test": []}
    tatoeba = spec.get("tatoeba")
    if tatoeba:
        evaluator = TatoebaEvaluator(tatoeba["folder"], tatoeba["languages"])
        for split in tatoeba.get("splits") or ("val", "test"):
            evaluators[split].append(evaluator)
    sts = spec.get("sts")
    if sts:
        for split, key in (("val", "val_split"), ("test", "test_split")):
            if sts.get(key):
                evaluators[split].append(CrosslingualSTSEvaluator(sts["folder"], sts["pairs"], sts[key]))
    return evaluators


def run_multilingual(cfg: DictConfig, run_dir: Path) -> dict[str, float]:
    """Teacher embeddings (cached) → student trained on parallel pairs; metrics before and after training."""
    datamodule = ParallelDataModule(cfg.data)
    teacher, teacher_tokenizer = build_teacher(cfg, datamodule)
    seed(cfg)
    student, tokenizer = build_student(cfg, teacher, teacher_tokenizer)
    datamodule.tokenizer = tokenizer

    kind = f"embedding/{teacher.pooling}/{'normalized' if teacher.normalize else 'raw'}"
    outputs = {}
    infos = {}
    for split in ("train", "validation"):
        sources, _ = datamodule.distinct_sources(split)
        outputs[split], infos[split] = cached_teacher_outputs(
            cfg, teacher, teacher_tokenizer, [(text, None) for text in sources], kind, lambda embeddings: embeddings
        )
    evaluators = build_evaluators(cfg)

    def module_for(model: SentenceEncoder, model_tokenizer: Any) -> MultilingualDistillation:
        return MultilingualDistillation(
            model,
            model_tokenizer,
            container(cfg.method.student.optimizer),
            outputs["train"],
            outputs["validation"],
            datamodule.languages(),
            int(cfg.data.max_length),
            int(cfg.data.eval_batch_size),
            evaluators,
        )

    teacher_metrics: dict[str, float] = {}
    full_copy = bool(cfg.model.student.get("copy_teacher")) and not cfg.model.student.get("from_teacher_layers")
    if not full_copy:  # a full copy's metrics before training are the teacher's own
        teacher_metrics = evaluate(cfg, module_for(teacher, teacher_tokenizer), datamodule, run_dir / "teacher")
    name = cfg.model.teacher.get("name_or_path")
    origin = f"given: {name}" if name else "random init in this run"
    write_json(run_dir / "teacher" / "teacher.json", teacher_record(origin, teacher_metrics, infos, model=name))
    results = prefixed("teacher", teacher_metrics)
    module = module_for(student, tokenizer)
    results.update(prefixed("student_init", evaluate(cfg, module, datamodule, run_dir / "student_init")))
    results.update(prefixed("student", fit_stage(cfg, "student", module, datamodule, cfg.method.student, run_dir)))
    return results
