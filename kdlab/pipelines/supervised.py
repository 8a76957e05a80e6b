"""Supervised pipelines: `finetune` (one model) and `hinton` (teacher → KD student [→ no-KD baseline]).

A hinton run fine-tunes its teacher first with `finetune` — or reuses a teacher an earlier run
trained with the same config on the same data (kept under `paths.teacher_store`, keyed by a hash of that config
and of the training and validation rows' content), or
takes `model.teacher.trained` as is (kdlab/pipelines/teachers.py) — then distils the student and evaluates all on
val and test.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from kdlab.data.text import TextDataModule
from kdlab.data.transfer import TransferSet, add_copies, collect
from kdlab.losses.registry import TERMS, check_layer_map, check_live_teacher, check_weight, default_layer_map, names
from kdlab.methods.hinton import HintonKD
from kdlab.models.backbone import build_model
from kdlab.pipelines.common import container, module_arguments, prefixed, resolve_tokenizer, seed
from kdlab.pipelines.teachers import finetune_module, obtain_teacher, teacher_logits, teacher_record
from kdlab.runner import fit_stage
from kdlab.utils.run_folder import write_json

log = logging.getLogger(__name__)


def _module(
    kind: str,
    cfg: DictConfig,
    stage_cfg: DictConfig,
    model: Any,
    tokenizer: Any,
    datamodule: TextDataModule,
    teacher: Any = None,
    teacher_outputs: Any = None,
) -> pl.LightningModule:
    if kind != "hinton":
        return finetune_module(cfg, stage_cfg, model, tokenizer, datamodule)
    temperature = cfg.loss.get("temperature")
    return HintonKD(
        teacher=teacher,
        teacher_outputs=teacher_outputs,
        alpha=float(cfg.loss.alpha),
        temperature=None if temperature is None else float(temperature),
        soft=cfg.loss.get("soft", "soft_target"),
        terms=loss_terms(cfg, model, teacher),
        **module_arguments(cfg, stage_cfg, model, tokenizer, datamodule),
    )


def loss_terms(cfg: DictConfig, student: Any, teacher: Any) -> dict[str, Any]:
    """The extra loss terms `loss.<name>` turns on (weight > 0), built from kdlab.losses.registry."""
    built = {}
    for name in names("extra"):
        spec = cfg.loss.get(name) or {}
        weight = check_weight(f"loss.{name}.weight", float(spec.get("weight") or 0.0))
        if weight == 0.0:
            continue
        entry = TERMS[name]
        check_live_teacher(f"loss.{name}.weight", entry, "live" if teacher is not None else "cache")
        s_layers, t_layers = student.config.num_hidden_layers, teacher.config.num_hidden_layers
        pairs = (
            OmegaConf.to_container(spec.layer_map, resolve=True)
            if spec.get("layer_map")
            else default_layer_map(s_layers, t_layers)
        )
        layer_map = check_layer_map(f"loss.{name}.layer_map", pairs, entry, s_layers, t_layers)
        built[name] = entry.load().from_models(layer_map, weight, student.config, teacher.config)
    return built


def cached_teacher_logits(
    cfg: DictConfig, teacher: Any, tokenizer: Any, datamodule: TextDataModule
) -> tuple[Any, dict[str, Any]]:
    """Teacher logits for every training example (the transfer set's too, when the datamodule uses one)."""
    return teacher_logits(cfg, teacher, tokenizer, datamodule.train_inputs())


def collect_transfer(cfg: DictConfig, datamodule: TextDataModule) -> TransferSet | None:
    """The transfer set's source rows (kdlab/data/transfer.py), checked against the evaluation rows; None without one."""
    evaluation = [
        r for split in ("validation", "test") if datamodule.has_split(split) for r in datamodule.records(split)
    ]
    return collect(container(cfg.data), datamodule.records("train"), evaluation)


def run_finetune(cfg: DictConfig, run_dir: Path) -> dict[str, float]:
    """Fine-tune the model `method.train` names (teacher or student spec) on gold labels."""
    datamodule = TextDataModule(cfg.data)
    role = cfg.method.train
    spec = cfg.model[role]
    tokenizer = resolve_tokenizer(cfg, spec, f"model.{role}", lambda: datamodule.texts("train"))
    datamodule.tokenizer = tokenizer
    seed(cfg)
    model = build_model(spec, datamodule.task, datamodule.labels, tokenizer, key=f"model.{role}")
    module = finetune_module(cfg, cfg.method[role], model, tokenizer, datamodule)
    return prefixed(role, fit_stage(cfg, role, module, datamodule, cfg.method[role], run_dir))


def run_hinton(cfg: DictConfig, run_dir: Path) -> dict[str, float]:
    """Teacher (fine-tuned, reused or given) → Hinton-KD student, and optionally the student without KD."""
    datamodule = TextDataModule(cfg.data)
    transfer = collect_transfer(cfg, datamodule)  # before the teacher: a leaking source is refused first
    teacher, tokenizer, teacher_metrics, origin = obtain_teacher(cfg, datamodule, run_dir)
    results = prefixed("teacher", teacher_metrics)
    if transfer is not None:
        add_copies(
            transfer, container(cfg.data), datamodule.records("train"), tokenizer.mask_token, cfg.paths.cache_dir
        )
        datamodule.use_transfer(transfer)
        write_json(run_dir / "student" / "transfer.json", transfer.info)
        log.info(
            "student: %d labelled rows%s + %d transfer rows per epoch, shuffled together; the teacher labels the "
            "transfer rows; the no-KD baseline trains on the %d labelled rows only",
            len(datamodule.records("train")),
            f" (x{transfer.gold_repeat})" if transfer.gold_repeat > 1 else "",
            len(transfer.inputs),
            len(datamodule.records("train")),
        )

    if cfg.method.teacher_outputs == "cache":
        teacher_outputs, outputs_info = cached_teacher_logits(cfg, teacher, tokenizer, datamodule)
        live_teacher = None
    else:
        teacher_outputs, outputs_info, live_teacher = None, {"mode": "live"}, teacher
    write_json(run_dir / "teacher" / "teacher.json", teacher_record(origin, teacher_metrics, outputs_info))

    seed(cfg)
    student = build_model(cfg.model.student, datamodule.task, datamodule.labels, tokenizer, teacher, "model.student")
    module = _module(
        "hinton",
        cfg,
        cfg.method.student,
        student,
        tokenizer,
        datamodule,
        teacher=live_teacher,
        teacher_outputs=teacher_outputs,
    )
    results.update(prefixed("student", fit_stage(cfg, "student", module, datamodule, cfg.method.student, run_dir)))

    if cfg.method.baseline:
        datamodule.use_transfer(None)  # the comparison a user faces: the same student on the labelled rows alone
        seed(cfg)
        baseline = build_model(
            cfg.model.student, datamodule.task, datamodule.labels, tokenizer, teacher, "model.student"
        )
        module = _module("finetune", cfg, cfg.method.student, baseline, tokenizer, datamodule)
        results.update(
            prefixed("baseline", fit_stage(cfg, "baseline", module, datamodule, cfg.method.student, run_dir))
        )
    return results
