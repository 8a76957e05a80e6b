"""`bam` pipeline: one single-task teacher per task → their cached predictions → the multi-task student.

For each task of `data.tasks` the teacher is obtained as the supervised pipelines obtain theirs
(kdlab/pipelines/teachers.py: fine-tuned, reused from `paths.teacher_store` by config hash, or taken from
`method.trained_teachers`),
seeing the run config with `data` = that task; its logits on the task's training examples go through the
shared teacher-output cache. Then the student (`model.student`: one shared encoder, one head per task) is
trained with BAM on the mixture, evaluated per task on val and test, and exported.

Switches: `method.teachers: false` (plain multi-task: no teacher is trained or cached), `method.teacher_annealing:
false` (fixed λ = `method.fixed_lambda`), `method.single_task: true` (the same student architecture trained on
each task alone; stages `student_<task>`). The points where google-research bam/ differs from kdlab's defaults are
keys too (conf/method/bam_reference.yaml): `method.mixing`, `method.dataset_multiples`, `method.loss_reduction`,
`method.both_orders`, `method.max_length`, `method.<stage>.batch_size`; `mix.json` records the mix and loss weights.

Transfer sets: a task of `data.tasks` may carry a `transfer` block (kdlab/data/transfer.py, the schema of hinton's
`data.transfer`, checked by the same functions with the key `data.tasks[i].transfer`). Its sources are read and
checked before any teacher trains (a leaking source stops the run first), its augmented copies use the student's
mask token, the task's teacher labels its labelled rows and its transfer rows through the teacher-output cache, and
the student trains on both (a transfer row's target is the teacher's alone: kdlab/losses/annealed.py). `teachers.json`
gives each teacher's labelled rows, `<stage>/transfer.json` each task's transfer set, `mix.json` its sizes.
Results: `<role>/<split>/<task>/<metric>` and `<role>/<split>/glue_mean` for role teacher (the single-task teachers)
and student.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from kdlab.data.identity import content_id
from kdlab.data.multitask import MultiTaskDataModule, task_module
from kdlab.data.task_list import task_configs
from kdlab.data.transfer import TransferSet, build
from kdlab.evaluation.task_metrics import glue_mean
from kdlab.methods.bam import BAM, TeacherPredictions
from kdlab.methods.bam_checks import TRANSFER_KEYS, check_transfer_teachers, transfer_key
from kdlab.models.backbone import build_model
from kdlab.models.files import load_trained
from kdlab.pipelines.common import container, prefixed, resolve_tokenizer, seed
from kdlab.pipelines.teachers import check_head, obtain_teacher, teacher_logits, teacher_record
from kdlab.runner import fit_stage
from kdlab.utils.run_folder import write_json

log = logging.getLogger(__name__)
SPLITS = ("val", "test")


def main_metric(task: dict[str, Any]) -> str:
    """A task's headline metric: `main_metric`, else its first metric."""
    return str(task.get("main_metric") or task["metrics"][0])


def bam_tasks(cfg: DictConfig) -> list[dict[str, Any]]:
    """`data.tasks` as bam trains them: every task at `method.max_length` when set, `both_orders` on the tasks of
    `method.both_orders`."""
    tasks = task_configs(container(cfg.data))
    swapped = set(cfg.method.both_orders or [])
    for task in tasks:
        if cfg.method.max_length is not None:
            task["max_length"] = int(cfg.method.max_length)
        if task["name"] in swapped:  # only then: a teacher stored before the key existed keeps its store key
            task["both_orders"] = True
    return tasks


def with_batch_size(task: dict[str, Any], batch_size: Any) -> dict[str, Any]:
    """The task with a stage's batch size (`method.<stage>.batch_size`; null keeps the data's)."""
    return task if batch_size is None else {**task, "batch_size": int(batch_size)}


def task_run_config(cfg: DictConfig, task: dict[str, Any]) -> DictConfig:
    """The run config as one task's teacher sees it: `data` = the task, monitor = its main metric, its given teacher."""
    sub = cfg.copy()
    given = (cfg.method.get("trained_teachers") or {}).get(task["name"])
    with open_dict(sub):
        sub.data = OmegaConf.create(with_batch_size(task, cfg.method.teacher.batch_size))
        sub.method.monitor = f"val/{main_metric(task)}"
        sub.model.teacher.trained = str(given) if given else None
    return sub


def per_task(metrics: dict[str, float], name: str) -> dict[str, float]:
    """A single-task model's `val/acc` as `val/<task>/acc` (its loss left out)."""
    out = {}
    for key, value in metrics.items():
        split, metric = key.split("/", 1)
        if metric != "loss":
            out[f"{split}/{name}/{metric}"] = value
    return out


def with_glue_mean(metrics: dict[str, float], tasks: list[dict[str, Any]]) -> dict[str, float]:
    """Add `<split>/glue_mean` from each task's main metric, where every task has it."""
    out = dict(metrics)
    for split in SPLITS:
        keys = [f"{split}/{t['name']}/{main_metric(t)}" for t in tasks]
        if all(key in metrics for key in keys):
            out[f"{split}/glue_mean"] = glue_mean([metrics[key] for key in keys])
    return out


def check_given_teachers(cfg: DictConfig, tasks: list[dict[str, Any]]) -> None:
    """Load every given teacher once and check its head against its task before any teacher is trained.

    The config check reads the label count of a Hugging Face folder's config.json; a kdlab .ckpt holds its
    config inside the checkpoint, so its check needs the (weights-only) load done here.
    """
    given = cfg.method.get("trained_teachers") or {}
    for task in tasks:
        if task["name"] in given:
            key = f"method.trained_teachers.{task['name']}"
            model, _ = load_trained(str(given[task["name"]]), key=key)
            check_head(model, task_module(task), key)


def build_transfer(cfg: DictConfig, tasks: list[dict[str, Any]], mask_token: str | None) -> dict[str, TransferSet]:
    """Each task's transfer set (tasks without one left out): its sources' rows, checked against the task's validation
    and test rows, and its augmented copies with the student's mask token. Built before any teacher trains, so a
    leaking or empty source stops the run first."""
    out = {}
    for position, task in enumerate(tasks):
        if task.get("transfer") is None:
            continue
        module = task_module(task)
        evaluation = [r for split in ("validation", "test") if module.has_split(split) for r in module.records(split)]
        found = build(
            task,
            module.records("train"),
            evaluation,
            mask_token,
            cfg.paths.cache_dir,
            key=transfer_key(position),
            known=TRANSFER_KEYS,
        )
        if found is not None:
            out[task["name"]] = found
    return out


def obtain_teachers(
    cfg: DictConfig, tasks: list[dict[str, Any]], run_dir: Path, transfer: dict[str, TransferSet] | None = None
) -> tuple[dict[str, TeacherPredictions], dict[str, float]]:
    """Every task's teacher (trained, reused or given) and its cached logits on the task's training rows and its
    transfer rows (`transfer`, by task); plus its metrics."""
    transfer = transfer or {}
    predictions: dict[str, TeacherPredictions] = {}
    metrics: dict[str, float] = {}
    record: dict[str, Any] = {}
    check_given_teachers(cfg, tasks)
    for task in tasks:
        name = task["name"]
        sub = task_run_config(cfg, task)
        datamodule = task_module(sub.data)
        teacher, tokenizer, teacher_metrics, origin = obtain_teacher(
            sub, datamodule, run_dir, stage=f"teacher_{name}", key=f"method.trained_teachers.{name}"
        )
        inputs = [(r["text"], r.get("text_pair")) for r in datamodule.records("train")]
        extra = list(transfer[name].inputs) if name in transfer else []
        outputs, info = teacher_logits(sub, teacher, tokenizer, inputs + extra)
        predictions[name] = TeacherPredictions([content_id(*item) for item in inputs + extra], outputs, info["path"])
        metrics.update(per_task(teacher_metrics, name))
        record[name] = teacher_record(origin, teacher_metrics, info)
        log.info("teacher %s: %s", name, origin)
        if name in transfer:
            record[name]["labelled"] = {"gold": len(inputs), "transfer": len(extra)}
            log.info(
                "teacher %s labelled %d training rows + %d transfer rows (%d computed, %d read from the cache)",
                name,
                len(inputs),
                len(extra),
                info["computed"],
                info["read"],
            )
    write_json(run_dir / "teachers.json", record)
    return predictions, with_glue_mean(metrics, tasks)


def train_student(
    cfg: DictConfig,
    stage: str,
    tasks: list[dict[str, Any]],
    tokenizer: Any,
    predictions: dict[str, TeacherPredictions] | None,
    run_dir: Path,
    transfer: dict[str, TransferSet] | None = None,
) -> dict[str, float]:
    """Train a student over `tasks` with BAM (gold labels only when `predictions` is None), on the tasks' transfer
    sets too (`transfer`, by task); its val/test metrics."""
    names = [task["name"] for task in tasks]
    transfer = {name: found for name, found in (transfer or {}).items() if name in names}
    batch_size = cfg.method.student.batch_size
    data_cfg = {
        **container(cfg.data),
        "tasks": [with_batch_size(task, batch_size) for task in tasks],
        "mixing": str(cfg.method.mixing),
        "dataset_multiples": bool(cfg.method.dataset_multiples),
    }
    if batch_size is not None:
        data_cfg["batch_size"] = int(batch_size)
    datamodule = MultiTaskDataModule(data_cfg, tokenizer=tokenizer, transfer=transfer)
    seed(cfg)
    model = build_model(container(cfg.model.student), None, tasks, tokenizer, key="model.student", method="bam")
    module = BAM(
        model,
        tokenizer,
        container(cfg.method.student.optimizer),
        metrics={t["name"]: list(t["metrics"]) for t in tasks},
        main_metrics={t["name"]: main_metric(t) for t in tasks},
        teacher_outputs={t["name"]: predictions[t["name"]] for t in tasks} if predictions is not None else None,
        teacher_annealing=bool(cfg.method.teacher_annealing),
        fixed_lambda=float(cfg.method.fixed_lambda),
        loss_reduction=str(cfg.method.loss_reduction),
        task_weights=datamodule.loss_weights(),
    )
    sizes = datamodule.size_record()
    if transfer:
        write_json(run_dir / stage / "transfer.json", {n: {**transfer[n].info, "mix": sizes[n]} for n in transfer})
        for name in transfer:
            log.info(
                "%s, task %s: %d labelled rows%s + %d transfer rows (their target: the teacher's alone); |D_t| in the mix "
                "counts %s = %d",
                stage,
                name,
                sizes[name]["labelled"],
                f" (x{sizes[name]['gold_repeat']})" if sizes[name]["gold_repeat"] > 1 else "",
                sizes[name]["transfer"],
                "both" if sizes[name]["mix_size"] == "all" else "the labelled rows",
                sizes[name]["counted"],
            )
    write_json(
        run_dir / stage / "mix.json",
        {
            "mixing": datamodule.mixing,
            **({"sizes": sizes} if transfer else {}),
            "probabilities": datamodule.probabilities(),
            "multiples": dict(zip(datamodule.names, datamodule.multiples_of_tasks())),
            "loss_weights": datamodule.loss_weights(),
            "epochs": [datamodule.epoch_mix(e) for e in range(int(cfg.method.student.epochs))],
        },
    )
    return fit_stage(cfg, stage, module, datamodule, cfg.method.student, run_dir)


def run_bam(cfg: DictConfig, run_dir: Path) -> dict[str, float]:
    """Teachers (one per task) → cached predictions → BAM student (or single-task students); per-task results."""
    tasks = bam_tasks(cfg)
    check_transfer_teachers(bool(cfg.method.teachers), tasks)
    mixture = MultiTaskDataModule({**container(cfg.data), "tasks": tasks})
    tokenizer = resolve_tokenizer(cfg, cfg.model.student, "model.student", lambda: mixture.texts("train"))
    transfer = build_transfer(cfg, tasks, tokenizer.mask_token)  # before any teacher: a leaking source stops the run
    results: dict[str, float] = {}
    predictions = None
    if cfg.method.teachers:
        predictions, teacher_metrics = obtain_teachers(cfg, tasks, run_dir, transfer)
        results.update(prefixed("teacher", teacher_metrics))
    if cfg.method.single_task:
        student: dict[str, float] = {}
        for task in tasks:
            stage = f"student_{task['name']}"
            student.update(train_student(cfg, stage, [task], tokenizer, predictions, run_dir, transfer))
        student = {k: v for k, v in student.items() if not k.endswith("/glue_mean")}
        results.update(prefixed("student", with_glue_mean(student, tasks)))
    else:
        results.update(
            prefixed("student", train_student(cfg, "student", tasks, tokenizer, predictions, run_dir, transfer))
        )
    return results
