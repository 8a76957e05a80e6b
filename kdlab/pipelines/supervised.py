"""Supervised pipelines: `finetune` (one model) and `hinton` (teacher → KD student [→ no-KD baseline]).

A hinton run fine-tunes its teacher first with `finetune` — or reuses a teacher an earlier run
trained with the same config on the same data (kept under `paths.teacher_store`, keyed by a hash of that config
and of the training and validation rows' content), or
takes `model.teacher.trained` as is — then distils the student and evaluates all on val and test.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from kdlab import __version__
from kdlab.data.identity import records_fingerprint
from kdlab.data.text import TextDataModule
from kdlab.errors import ConfigError
from kdlab.losses.registry import TERMS, check_layer_map, check_live_teacher, check_weight, default_layer_map, names
from kdlab.methods.finetune import Finetune
from kdlab.methods.hinton import HintonKD
from kdlab.models.backbone import build_model, load_tokenizer, load_trained, save_atomically, train_wordpiece
from kdlab.pipelines.common import cached_teacher_outputs, container
from kdlab.runner import evaluate, fit_stage, log_to_trackers
from kdlab.utils.distributed import is_global_zero
from kdlab.utils.run_folder import write_json

log = logging.getLogger(__name__)


def resolve_tokenizer(cfg: DictConfig, spec: DictConfig, datamodule: TextDataModule) -> Any:
    """The tokenizer a model spec asks for (its folder's, a trained WordPiece, or a given path)."""
    choice = spec.get("tokenizer")
    if choice == "teacher":
        return resolve_tokenizer(cfg, cfg.model.teacher, datamodule)
    if choice == "train" or (choice is None and not spec.get("name_or_path") and not spec.get("trained")):
        return train_wordpiece(datamodule.texts("train"), int(spec.get("vocab_size") or 2000), cfg.paths.cache_dir)
    return load_tokenizer(str(choice or spec.get("trained") or spec.get("name_or_path")))


SOURCES = ("train", "validation", "test")


def data_fingerprints(datamodule: TextDataModule) -> dict[str, str]:
    """Content fingerprint of every configured split (texts and parsed labels, in order)."""
    return {split: records_fingerprint(datamodule.records(split)) for split in SOURCES if datamodule.has_split(split)}


def teacher_key(cfg: DictConfig, datamodule: TextDataModule) -> str:
    """Hash of everything that determines a fine-tuned teacher: its spec, the data it learns from and is selected on, the stage settings, seed, precision.

    The data enters by content (the training and validation rows and labels), not by file name: a file
    edited in place gives a new key. The test split does not change the teacher; its metrics are
    re-scored when it changes (`obtain_teacher`).
    """
    prints = data_fingerprints(datamodule)
    data = {k: v for k, v in container(cfg.data).items() if k not in ("eval_batch_size", "num_workers", *SOURCES)}
    parts = {
        "teacher": container(cfg.model.teacher),
        "data": data,
        "content": {split: prints.get(split) for split in ("train", "validation")},
        "stage": container(cfg.method.teacher),
        "seed": cfg.seed,
        "threads": cfg.get("threads"),  # CPU results depend on the thread count (RELIABILITY.md)
        "trainer": {
            k: v for k, v in container(cfg.trainer).items() if k not in ("enable_progress_bar", "enable_model_summary")
        },
        "callbacks": container(cfg.get("callbacks")),
        "kdlab": __version__,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


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
    common = dict(
        model=model,
        tokenizer=tokenizer,
        task=datamodule.task,
        num_labels=datamodule.num_labels,
        optimizer=container(stage_cfg.optimizer),
        metrics=list(cfg.data.metrics),
    )
    if kind == "hinton":
        temperature = cfg.loss.get("temperature")
        return HintonKD(
            teacher=teacher,
            teacher_outputs=teacher_outputs,
            alpha=float(cfg.loss.alpha),
            temperature=None if temperature is None else float(temperature),
            soft=cfg.loss.get("soft", "soft_target"),
            terms=loss_terms(cfg, model, teacher),
            **common,
        )
    return Finetune(**common)


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


def check_head(model: Any, datamodule: TextDataModule, key: str) -> None:
    """ConfigError naming `key` when a trained teacher's output width differs from the task's label count."""
    width = int(getattr(model.config, "num_labels", 0))
    if width != datamodule.num_labels:
        raise ConfigError(key, f"the teacher has {width} output labels but data.labels gives {datamodule.num_labels}")


def obtain_teacher(
    cfg: DictConfig,
    datamodule: TextDataModule,
    run_dir: Path,
    stage: str = "teacher",
    key: str = "model.teacher.trained",
) -> tuple[Any, Any, dict[str, float], str]:
    """The teacher model, its tokenizer, its val/test metrics, and where it came from (`stage`: its run sub-folder).

    `key` names the config key of a given (already trained) teacher in errors.
    """
    spec = cfg.model.teacher
    if spec.get("trained"):
        model, tokenizer = load_trained(spec.trained, key=key)
        check_head(model, datamodule, key)
        datamodule.tokenizer = tokenizer
        metrics = evaluate(
            cfg, _module("finetune", cfg, cfg.method.teacher, model, tokenizer, datamodule), datamodule, run_dir / stage
        )
        return model, tokenizer, metrics, f"given: {spec.trained}"
    stored = Path(cfg.paths.teacher_store) / teacher_key(cfg, datamodule)
    evaluated_on = data_fingerprints(datamodule)
    if cfg.method.reuse_teacher and (stored / "model" / "config.json").exists() and (stored / "metrics.json").exists():
        model, tokenizer = load_trained(stored / "model")
        datamodule.tokenizer = tokenizer
        record = stored / "evaluated_on.json"
        if record.exists() and json.loads(record.read_text()) == evaluated_on:
            metrics = json.loads((stored / "metrics.json").read_text())
            log.info("teacher: reusing %s (same config and data as an earlier run)", stored)
        else:  # same training data, other test rows: the stored scores are not this data's
            module = _module("finetune", cfg, cfg.method.teacher, model, tokenizer, datamodule)
            kept = {
                k: v
                for k, v in json.loads((stored / "metrics.json").read_text()).items()
                if k.startswith("checkpoint/")
            }
            metrics = {**evaluate(cfg, module, datamodule, run_dir / stage), **kept}
            log.info(
                "teacher: reusing %s (same config and training data), re-scored on this run's evaluation data", stored
            )
        if is_global_zero():
            log_to_trackers(cfg, stage, metrics)
        return model, tokenizer, metrics, f"reused: {stored}"
    tokenizer = resolve_tokenizer(cfg, spec, datamodule)
    datamodule.tokenizer = tokenizer
    pl.seed_everything(cfg.seed, workers=True)
    model = build_model(spec, datamodule.task, datamodule.labels, tokenizer)
    module = _module("finetune", cfg, cfg.method.teacher, model, tokenizer, datamodule)
    metrics = fit_stage(cfg, stage, module, datamodule, cfg.method.teacher, run_dir)

    def store(tmp: str) -> None:
        shutil.copytree(run_dir / stage / "model", Path(tmp) / "model")
        write_json(Path(tmp) / "metrics.json", metrics)
        write_json(Path(tmp) / "evaluated_on.json", evaluated_on)

    if is_global_zero():  # one stored copy; the other ranks go on with the model in memory
        save_atomically(stored, store)
    return module.model, tokenizer, metrics, f"trained in this run, stored as {stored}"


def cached_teacher_logits(
    cfg: DictConfig, teacher: Any, tokenizer: Any, datamodule: TextDataModule
) -> tuple[Any, dict[str, Any]]:
    """Teacher logits for every training example."""
    inputs = [(r["text"], r.get("text_pair")) for r in datamodule.records("train")]
    return cached_teacher_outputs(cfg, teacher, tokenizer, inputs, "logits", lambda output: output.logits)


def run_finetune(cfg: DictConfig, run_dir: Path) -> dict[str, float]:
    """Fine-tune the model `method.train` names (teacher or student spec) on gold labels."""
    datamodule = TextDataModule(cfg.data)
    role = cfg.method.train
    spec = cfg.model[role]
    tokenizer = resolve_tokenizer(cfg, spec, datamodule)
    datamodule.tokenizer = tokenizer
    pl.seed_everything(cfg.seed, workers=True)
    model = build_model(spec, datamodule.task, datamodule.labels, tokenizer)
    module = _module("finetune", cfg, cfg.method[role], model, tokenizer, datamodule)
    metrics = fit_stage(cfg, role, module, datamodule, cfg.method[role], run_dir)
    return {f"{role}/{k}": v for k, v in metrics.items()}


def run_hinton(cfg: DictConfig, run_dir: Path) -> dict[str, float]:
    """Teacher (fine-tuned, reused or given) → Hinton-KD student, and optionally the student without KD."""
    datamodule = TextDataModule(cfg.data)
    teacher, tokenizer, teacher_metrics, origin = obtain_teacher(cfg, datamodule, run_dir)
    results = {f"teacher/{k}": v for k, v in teacher_metrics.items()}

    if cfg.method.teacher_outputs == "cache":
        teacher_outputs, outputs_info = cached_teacher_logits(cfg, teacher, tokenizer, datamodule)
        live_teacher = None
    else:
        teacher_outputs, outputs_info, live_teacher = None, {"mode": "live"}, teacher
    write_json(
        run_dir / "teacher" / "teacher.json", {"origin": origin, "metrics": teacher_metrics, "outputs": outputs_info}
    )

    pl.seed_everything(cfg.seed, workers=True)
    student = build_model(cfg.model.student, datamodule.task, datamodule.labels, tokenizer, teacher=teacher)
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
    results.update(
        {
            f"student/{k}": v
            for k, v in fit_stage(cfg, "student", module, datamodule, cfg.method.student, run_dir).items()
        }
    )

    if cfg.method.baseline:
        pl.seed_everything(cfg.seed, workers=True)
        baseline = build_model(cfg.model.student, datamodule.task, datamodule.labels, tokenizer, teacher=teacher)
        module = _module("finetune", cfg, cfg.method.student, baseline, tokenizer, datamodule)
        results.update(
            {
                f"baseline/{k}": v
                for k, v in fit_stage(cfg, "baseline", module, datamodule, cfg.method.student, run_dir).items()
            }
        )
    return results
