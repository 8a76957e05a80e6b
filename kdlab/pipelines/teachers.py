"""Teachers, in one place: obtaining one (fine-tuned in the run, reused from the teacher store, or given), its cached
outputs, and the record a run keeps of it.

A fine-tuned teacher is stored under `paths.teacher_store/<teacher_key>` (its model folder, metrics.json and
evaluated_on.json) and reused by any later run with the same teacher config on the same training and validation
rows. Teacher outputs go through the teacher-output cache (kdlab/cache/teacher_outputs.py), keyed by content.
Every pipeline describes its teachers with `teacher_record`: {origin, model, metrics, outputs}.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from kdlab import __version__
from kdlab.cache.storage import Storage, check_storage
from kdlab.cache.teacher_outputs import TeacherOutputCache, describe
from kdlab.data.collate import tokenize
from kdlab.data.identity import distinct, records_fingerprint
from kdlab.data.records import SPLITS, check_label_width
from kdlab.data.text import TextDataModule
from kdlab.methods.finetune import Finetune
from kdlab.models.backbone import build_model
from kdlab.models.files import load_trained
from kdlab.models.inference import predict
from kdlab.pipelines.common import container, module_arguments, resolve_tokenizer, seed
from kdlab.runner import evaluate, fit_stage, make_trainer
from kdlab.tracking import log_to_trackers
from kdlab.utils.atomic import save_atomically
from kdlab.utils.distributed import computed_in_shares, is_global_zero, process_group, start_processes
from kdlab.utils.run_folder import write_json

log = logging.getLogger(__name__)


def teacher_record(
    origin: str, metrics: dict[str, float], outputs: dict[str, Any], model: str | Path | None = None
) -> dict[str, Any]:
    """What a run keeps of a teacher (`teacher.json`, BAM's `teachers.json` per task): where it came from
    (`trained in this run, stored as …`, `reused: …`, `given: …`, `pretrained: …`), its metrics, how its outputs
    were obtained (the cache entries, or `live`), and the model name or folder it was loaded from (null when the
    origin names it or the run trained it)."""
    return {"origin": origin, "model": None if model is None else str(model), "metrics": metrics, "outputs": outputs}


def finetune_module(
    cfg: DictConfig, stage_cfg: DictConfig, model: Any, tokenizer: Any, datamodule: TextDataModule
) -> Finetune:
    """A gold-label training module for `model` on the datamodule's task, with the stage's optimizer."""
    return Finetune(**module_arguments(cfg, stage_cfg, model, tokenizer, datamodule))


def check_head(model: Any, datamodule: TextDataModule, key: str) -> None:
    """ConfigError naming `key` when a trained teacher's output width differs from the task's label count."""
    check_label_width(int(getattr(model.config, "num_labels", 0)), datamodule.num_labels, key)


def data_fingerprints(datamodule: TextDataModule) -> dict[str, str]:
    """Content fingerprint of every configured split (texts and parsed labels, in order)."""
    return {split: records_fingerprint(datamodule.records(split)) for split in SPLITS if datamodule.has_split(split)}


def teacher_key(cfg: DictConfig, datamodule: TextDataModule) -> str:
    """Hash of everything that determines a fine-tuned teacher: its spec, the data it learns from and is selected on, the stage settings, seed, precision.

    The data enters by content (the training and validation rows and labels), not by file name: a file
    edited in place gives a new key. The test split does not change the teacher; its metrics are
    re-scored when it changes (`obtain_teacher`).
    """
    prints = data_fingerprints(datamodule)
    # the transfer set is the student's: the teacher never trains on it (it labels it afterwards)
    ignored = ("eval_batch_size", "num_workers", "transfer", *SPLITS)
    data = {k: v for k, v in container(cfg.data).items() if k not in ignored}
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


def obtain_teacher(
    cfg: DictConfig,
    datamodule: TextDataModule,
    run_dir: Path,
    stage: str = "teacher",
    key: str = "model.teacher.trained",
) -> tuple[Any, Any, dict[str, float], str]:
    """The teacher model, its tokenizer, its val/test metrics, and where it came from.

    `stage` is its run sub-folder; `key` names the config key of a given (already trained) teacher in errors.
    """
    spec = cfg.model.teacher
    if spec.get("trained"):
        model, tokenizer = load_trained(spec.trained, key=key)
        check_head(model, datamodule, key)
        datamodule.tokenizer = tokenizer
        module = finetune_module(cfg, cfg.method.teacher, model, tokenizer, datamodule)
        metrics = evaluate(cfg, module, datamodule, run_dir / stage)
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
            module = finetune_module(cfg, cfg.method.teacher, model, tokenizer, datamodule)
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
    tokenizer = resolve_tokenizer(cfg, spec, "model.teacher", lambda: datamodule.texts("train"))
    datamodule.tokenizer = tokenizer
    seed(cfg)
    model = build_model(spec, datamodule.task, datamodule.labels, tokenizer, key="model.teacher")
    module = finetune_module(cfg, cfg.method.teacher, model, tokenizer, datamodule)
    metrics = fit_stage(cfg, stage, module, datamodule, cfg.method.teacher, run_dir)

    def store(tmp: str) -> None:
        shutil.copytree(run_dir / stage / "model", Path(tmp) / "model")
        write_json(Path(tmp) / "metrics.json", metrics)
        write_json(Path(tmp) / "evaluated_on.json", evaluated_on)

    if is_global_zero():  # one stored copy; the other ranks go on with the model in memory
        save_atomically(stored, store)
    return module.model, tokenizer, metrics, f"trained in this run, stored as {stored}"


def cache_storage(cfg: DictConfig, kind: str) -> Storage:
    """`cache.dtype` / `cache.top_k` for outputs of `kind` (checked; kdlab/cache/storage.py)."""
    return check_storage(cfg.get("cache") or {}, "logits" if kind == "logits" else "embeddings")


def teacher_rows(
    teacher: Any, tokenizer: Any, items: list[tuple[str, str | None]], max_length: int, batch_size: int, select: Any
) -> Any:
    """`predict` over `items`, shared out across the processes of a multi-process run: the items sorted by token
    length as `predict` sorts them, whole batches dealt out in turn, so every process forms exactly the batches one
    process would and the rows are the same bit for bit (kdlab.utils.distributed.computed_in_shares)."""
    import torch

    features = tokenize(
        tokenizer, [t for t, _ in items], [p for _, p in items] if items[0][1] is not None else None, max_length
    )
    order = sorted(range(len(items)), key=lambda i: len(features[i]["input_ids"]))
    rows = computed_in_shares(
        lambda share: predict(teacher, tokenizer, share, max_length, batch_size, select=select),
        [items[i] for i in order],
        block=batch_size,
    )
    out = torch.empty_like(rows)
    out[torch.tensor(order)] = rows
    return out


def processes_started(cfg: DictConfig) -> None:
    """In a multi-process run (`trainer.strategy` a DDP one) whose processes no Trainer has started yet — the teacher
    is pretrained (multilingual), given, or reused from the store with its stored scores — start them now
    (`kdlab.utils.distributed.start_processes`), so that every process computes its share of the teacher's rows.
    Nothing in a single process, nor once the group is up."""
    strategy = OmegaConf.select(cfg, "trainer.strategy", default=None)
    if strategy is None or "ddp" not in str(strategy) or process_group() is not None:
        return
    folder = OmegaConf.select(cfg, "paths.output_dir", default=".", throw_on_resolution_failure=False)
    start_processes(make_trainer(cfg, "teacher_outputs", Path(folder), epochs=None, monitor=None))


def cached_teacher_outputs(
    cfg: DictConfig, teacher: Any, tokenizer: Any, inputs: list[tuple[str, str | None]], kind: str, select: Any
) -> tuple[Any, dict[str, Any]]:
    """`select(teacher(x))` for every input, in input order, from the teacher-output cache: the rows an earlier run
    stored for this teacher are read, only the missing ones are computed (kdlab/cache/teacher_outputs.py)."""
    import torch

    processes_started(cfg)
    unique, where = distinct(inputs)
    cache = TeacherOutputCache(Path(cfg.paths.cache_dir) / "teacher_outputs")
    max_length = int(cfg.data.max_length)
    storage = cache_storage(cfg, kind)
    identity = f"{type(teacher).__name__}/{teacher.config.model_type}"
    description = describe(
        identity=identity,
        teacher=teacher,
        tokenizer=tokenizer,
        max_length=max_length,
        kind=kind,
        storage=storage,
        name=getattr(teacher.config, "_name_or_path", None) or None,
    )
    run = OmegaConf.select(cfg, "paths.output_dir", default=None, throw_on_resolution_failure=False)
    outputs, info = cache.get_or_compute(
        description,
        unique,
        lambda items: teacher_rows(teacher, tokenizer, items, max_length, int(cfg.data.eval_batch_size), select),
        run=None if run is None else str(run),
    )
    record = {
        "mode": "cache",
        "hit": info["computed"] == 0,
        "key": info["entry"],
        **info,
        "dtype": storage.dtype,
        "top_k": storage.top_k,
    }
    return outputs[torch.tensor(where)], record


def teacher_logits(
    cfg: DictConfig, teacher: Any, tokenizer: Any, inputs: list[tuple[str, str | None]]
) -> tuple[Any, dict[str, Any]]:
    """The teacher's logits for every (text, pair) input, through the teacher-output cache."""
    return cached_teacher_outputs(cfg, teacher, tokenizer, inputs, "logits", lambda output: output.logits)
