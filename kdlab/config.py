"""Checks on the composed config, run before any heavy import or work.

Each failure is a `ConfigError` whose one-line message names the key and the expected value.
Only light reads happen here: headers of local data files and `config.json`/tokenizer files of
model folders; no model, tokenizer or dataset is loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from kdlab import deploy, registry
from kdlab.data import local
from kdlab.data.loading import check_columns
from kdlab.data.processes import process_share
from kdlab.data.records import check_files
from kdlab.data.task_list import check_exponent, task_configs
from kdlab.errors import ConfigError
from kdlab.evaluation.names import CLASSIFICATION_METRICS, REGRESSION_METRICS
from kdlab.losses import registry as losses
from kdlab.models.spec import POOLING_MODES
from kdlab.utils.atomic import check_writable

OWN_DATA_HINT = " (for your own files: data=local data.train=FILE data.text=COLUMN data.label=COLUMN, see the README)"
SPLITS = ("train", "validation", "test")
PAIR_LOSSES = ("bce", "mse")  # kdlab.losses.pseudo_labels implements them; listed here to stay torch-free


def _require(cfg: DictConfig, key: str) -> Any:
    try:
        value = OmegaConf.select(cfg, key, throw_on_missing=True)
    except MissingMandatoryValue:
        raise ConfigError(
            key, f"is required (??? in the config): give it, e.g. on the command line as {key}=..."
        ) from None
    except OmegaConfBaseException as err:
        raise ConfigError(key, f"cannot be resolved ({str(err).splitlines()[0]})") from None
    if value is None:
        raise ConfigError(key, "is required")
    return value


def _number(cfg: DictConfig, key: str) -> float:
    value = _require(cfg, key)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(key, f"must be a number, got {value!r}") from None


def validate_loss(cfg: DictConfig) -> None:
    """`loss` (hinton): the soft term `loss.soft` and its parameters, then each extra term's weight and layer map; the
    term table and the rules are kdlab.losses.registry's (the pipeline calls the same rules with the real models)."""
    losses.check_loss_keys([str(key) for key in cfg.loss])
    entry = losses.term(cfg.loss.get("soft", "soft_target"), "soft", "loss.soft")
    if "temperature" in entry.params:
        temperature = _number(cfg, "loss.temperature")
        if temperature <= 0:
            raise ConfigError("loss.temperature", f"must be > 0, got {temperature:g}")
    alpha = _number(cfg, "loss.alpha")
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError("loss.alpha", f"must be in [0, 1], got {alpha:g}")
    given = {
        param: OmegaConf.select(cfg, f"loss.{param}", throw_on_missing=False, throw_on_resolution_failure=False)
        for param in losses.soft_params()
    }
    losses.check_soft_params(entry, given)
    for name in losses.names("extra"):
        spec, extra = cfg.loss.get(name) or {}, losses.TERMS[name]
        weight = losses.check_weight(
            f"loss.{name}.weight", _number(cfg, f"loss.{name}.weight") if spec.get("weight") is not None else 0.0
        )
        if weight > 0:
            losses.check_live_teacher(f"loss.{name}.weight", extra, cfg.method.get("teacher_outputs"))
        layer_map = spec.get("layer_map")
        if layer_map is not None:
            pairs = OmegaConf.to_container(layer_map, resolve=True) if OmegaConf.is_config(layer_map) else layer_map
            losses.check_layer_map(
                f"loss.{name}.layer_map",
                pairs,
                extra,
                _depth(cfg.model.student, cfg.model.teacher),
                _depth(cfg.model.teacher),
            )


def expand_local_data(cfg: DictConfig) -> None:
    """data=local's short form (kdlab/data/local.py) replaced, in place, by the usual data config it stands for."""
    if not local.is_short_form(cfg.data):
        return
    for key in ("train", "text", "label"):
        _require(cfg, f"data.{key}")
    expanded = local.expand(OmegaConf.to_container(cfg.data, resolve=True))
    with open_dict(cfg):
        cfg.data = expanded


def _split_node(cfg: DictConfig, split: str) -> Any:
    """`data.<split>`: a source mapping or None; a plain file name is refused (only data=local takes one)."""
    node = cfg.data.get(split)
    if node is not None and not OmegaConf.is_config(node):
        raise ConfigError(f"data.{split}", f"a file name ({node}) stands for a split only in data=local{OWN_DATA_HINT}")
    return node


def validate_data(cfg: DictConfig) -> None:
    """A single-task data config (data=local's short form expanded first, in place); the rows of local files are
    loaded and parsed, so a bad label, score or text stops the run before any model is loaded."""
    task = _require(cfg, "data.task")
    if task not in ("classification", "regression"):
        raise ConfigError("data.task", f"must be classification or regression, got {task!r}")
    expand_local_data(cfg)
    labels = cfg.data.get("labels") or []
    if task == "classification" and len(labels) < 2:
        raise ConfigError("data.labels", f"a classification task needs at least 2 labels, got {list(labels)}")
    if task == "classification" and len({str(label) for label in labels}) != len(labels):
        raise ConfigError(
            "data.labels", f"must be distinct (a label's position is its class index), got {list(labels)}"
        )
    allowed = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    metrics = list(_require(cfg, "data.metrics"))
    for name in metrics:
        if name not in allowed:
            raise ConfigError("data.metrics", f"{name!r} is not a {task} metric; choose from {list(allowed)}")
    main = _require(cfg, "data.main_metric")
    if main not in metrics:
        raise ConfigError("data.main_metric", f"must be one of data.metrics {metrics}, got {main!r}")
    if int(_number(cfg, "data.max_length")) < 4:
        raise ConfigError("data.max_length", f"must be >= 4, got {cfg.data.max_length}")
    for name in ("batch_size", "eval_batch_size"):
        if int(_number(cfg, f"data.{name}")) < 1:
            raise ConfigError(f"data.{name}", f"must be >= 1, got {cfg.data[name]}")
    columns = OmegaConf.to_container(_require(cfg, "data.columns"), resolve=True)
    for role in ("text", "label"):
        if columns.get(role) is None:
            raise ConfigError(
                f"data.columns.{role}", "is required (a column name, or a field index for header-less files)"
            )
    for split in SPLITS:
        source = _split_node(cfg, split)
        if source is None and split == "test":
            continue  # no labelled test set (GLUE's RTE, CoLA): validation metrics only
        if source is None:
            raise ConfigError(f"data.{split}", "needs a source (path, hf or embedded)")
        source = OmegaConf.to_container(source, resolve=True)
        if sum(source.get(k) is not None for k in ("path", "hf", "embedded")) != 1:
            raise ConfigError(f"data.{split}", f"needs exactly one of path, hf, embedded; got {source}{OWN_DATA_HINT}")
        merged = {**columns, **(source.get("columns") or {})}
        check_columns(source, merged, f"data.{split}.columns" if source.get("columns") else "data.columns")
    check_files(OmegaConf.to_container(cfg.data, resolve=True))


def validate_parallel_data(cfg: DictConfig) -> None:
    """Parallel sources: columns, language tags, dev pairs (named or held out), and the evaluation folders."""
    sources = cfg.data.get("sources") or []
    if not sources:
        raise ConfigError("data.sources", "needs at least one parallel source")
    groups = [("data.sources", sources), ("data.dev", cfg.data.get("dev") or [])]
    if not groups[1][1] and int(cfg.data.get("holdout") or 0) <= 0:
        raise ConfigError(
            "data.holdout", "with no data.dev sources, hold out some train pairs per source (holdout > 0)"
        )
    for key, items in groups:
        for number, source in enumerate(items):
            source = OmegaConf.to_container(source, resolve=True)
            if not source.get("lang"):
                raise ConfigError(f"{key}[{number}].lang", "needs a language-pair tag such as en-de")
            if source.get("zip") is not None:
                for side, part in zip(("source", "target"), source["zip"]):
                    check_columns(part, {side: part.get("column")}, f"{key}[{number}].zip")
                continue
            columns = source.get("columns") or {}
            if columns.get("source") is None or columns.get("target") is None:
                raise ConfigError(f"{key}[{number}].columns", f"needs source and target columns, got {columns}")
            check_columns(
                source, {"source": columns["source"], "target": columns["target"]}, f"{key}[{number}].columns"
            )
    for name in ("max_length", "batch_size", "eval_batch_size"):
        if int(_number(cfg, f"data.{name}")) < 1:
            raise ConfigError(f"data.{name}", f"must be >= 1, got {cfg.data[name]}")
    evaluation = cfg.method.get("evaluation") or {}
    for name in ("tatoeba", "sts"):
        spec = evaluation.get(name)
        if spec and not Path(str(spec.folder)).is_dir():
            raise ConfigError(f"method.evaluation.{name}.folder", f"{spec.folder} is not a folder (set KDLAB_DATA_DIR)")


def validate_trans_encoder(cfg: DictConfig) -> None:
    """Trans-Encoder: the pair data (columns, scores for dev/test, pair source), the model lists, each stage's settings."""
    columns = OmegaConf.to_container(_require(cfg, "data.columns"), resolve=True)
    for role in ("text", "text_pair"):
        if columns.get(role) is None:
            raise ConfigError(
                f"data.columns.{role}", "is required (a column name, or a field index for header-less files)"
            )
    source = cfg.data.get("pair_source", "train")
    if source not in ("train", "eval_pairs"):
        raise ConfigError(
            "data.pair_source",
            f"must be train or eval_pairs (the evaluation pairs themselves, unlabeled), got {source!r}",
        )
    for split in ("train", "validation", "test"):
        node = _split_node(cfg, split)
        if node is None:
            raise ConfigError(f"data.{split}", "needs a source (path, hf or embedded)")
        node = OmegaConf.to_container(node, resolve=True)
        merged = {**columns, **(node.get("columns") or {})}
        if split != "train" and merged.get("label") is None:
            raise ConfigError("data.columns.label", f"the {split} pairs need a gold score column (Spearman against it)")
        wanted = {
            k: merged.get(k) for k in (("text", "text_pair") if split == "train" else ("text", "text_pair", "label"))
        }
        if not node.get("separator"):
            check_columns(node, wanted, f"data.{split}.columns" if node.get("columns") else "data.columns")
    for name, least in (("max_length", 4), ("eval_batch_size", 1)):
        if int(_number(cfg, f"data.{name}")) < least:
            raise ConfigError(f"data.{name}", f"must be >= {least}, got {cfg.data[name]}")
    for key in ("bi_encoders", "cross_encoders"):
        specs = cfg.model.get(key)
        if not specs:
            raise ConfigError(f"model.{key}", "needs at least one model spec (a list; several = the mutual variant)")
        for index, spec in enumerate(specs):
            origin = spec.get("from_bi_start") if key == "cross_encoders" else None
            if origin is not None and (not isinstance(origin, int) or not 0 <= origin < len(cfg.model.bi_encoders)):
                raise ConfigError(
                    f"model.{key}[{index}].from_bi_start",
                    f"must index model.bi_encoders (0..{len(cfg.model.bi_encoders) - 1}), got {origin!r}",
                )
            if origin is None and not spec.get("name_or_path") and not spec.get("config"):
                raise ConfigError(
                    f"model.{key}[{index}]",
                    "needs name_or_path (a pretrained encoder), config (random init) or, for a cross-encoder, from_bi_start",
                )
    if int(_number(cfg, "method.cycles")) < 1:
        raise ConfigError("method.cycles", f"must be >= 1, got {cfg.method.cycles}")
    stages = ["cross", "bi"] + (["simcse"] if cfg.method.simcse.get("enabled") else [])
    for stage in stages:
        if int(_number(cfg, f"method.{stage}.epochs")) < 1:
            raise ConfigError(f"method.{stage}.epochs", f"must be >= 1, got {cfg.method[stage].epochs}")
        if int(_number(cfg, f"method.{stage}.batch_size")) < (2 if stage == "simcse" else 1):
            raise ConfigError(f"method.{stage}.batch_size", f"is too small: {cfg.method[stage].batch_size}")
        validate_optimizer(cfg, f"method.{stage}.optimizer")
    for stage in ("cross", "bi"):
        if cfg.method[stage].get("loss") not in PAIR_LOSSES:
            raise ConfigError(
                f"method.{stage}.loss", f"must be one of {list(PAIR_LOSSES)}, got {cfg.method[stage].get('loss')!r}"
            )
    if cfg.method.simcse.get("enabled") and _number(cfg, "method.simcse.temperature") <= 0:
        raise ConfigError("method.simcse.temperature", f"must be > 0, got {cfg.method.simcse.temperature}")


def _depth(spec: Any, teacher: Any = None) -> int | None:
    """Number of transformer layers a model spec will have, when config files tell without loading it."""
    if spec is None:
        return None
    layers = spec.get("from_teacher_layers")
    if layers is not None:
        return len(layers)
    if spec.get("layers") is not None and spec.get("name_or_path") and not spec.get("trained"):
        return len(spec.layers)
    if spec.get("config") and spec.config.get("num_hidden_layers") is not None and not spec.get("name_or_path"):
        return int(spec.config.num_hidden_layers)
    for key in ("trained", "name_or_path"):
        folder = spec.get(key)
        if folder and (Path(str(folder)) / "config.json").exists():
            return json.loads((Path(str(folder)) / "config.json").read_text(encoding="utf-8")).get("num_hidden_layers")
    return None


def validate_teacher_layers(cfg: DictConfig) -> None:
    """`model.student.from_teacher_layers`: distinct indices within the teacher's depth (when it is known)."""
    layers = cfg.model.student.get("from_teacher_layers") if cfg.model.get("student") is not None else None
    if layers is None:
        return
    layers = list(layers)
    if not layers or len(set(layers)) != len(layers) or not all(isinstance(i, int) for i in layers):
        raise ConfigError(
            "model.student.from_teacher_layers", f"must list distinct teacher layer indices, got {layers}"
        )
    depth = _depth(cfg.model.get("teacher"))
    if depth is not None and not all(0 <= i < depth for i in layers):
        raise ConfigError(
            "model.student.from_teacher_layers",
            f"needs layer indices in [0, {depth - 1}] for this teacher, got {layers}",
        )


def _folder_config(path: Path) -> dict[str, Any] | None:
    """A local model folder's config.json, or None when `path` is not such a folder (a hub name, a .ckpt)."""
    config = path / "config.json"
    return json.loads(config.read_text(encoding="utf-8")) if config.is_file() else None


def _folder_num_labels(path: Path) -> int | None:
    data = _folder_config(path)
    if data is None:
        return None
    if "id2label" in data:
        return len(data["id2label"])
    return data.get("num_labels")


def validate_models(cfg: DictConfig) -> None:
    from kdlab.models.spec import tokenizer_identity

    teacher = cfg.model.get("teacher")
    student = cfg.model.get("student")
    if cfg.method.name == "hinton":
        if teacher is None or student is None:
            raise ConfigError("model", "method hinton needs model.teacher and model.student")
        trained = teacher.get("trained")
        if trained:
            path = Path(str(trained))
            if not path.exists():
                raise ConfigError(
                    "model.teacher.trained", f"{path} does not exist (expected a model folder or a kdlab .ckpt)"
                )
            width = _folder_num_labels(path) if path.is_dir() else None
            expected = len(cfg.data.labels) if cfg.data.task == "classification" else 1
            if width is not None and width != expected:
                raise ConfigError(
                    "model.teacher.trained",
                    f"the teacher has {width} labels ({path / 'config.json'}) but data.labels gives {expected}",
                )
        validate_teacher_layers(cfg)
        if cfg.method.get("requires_shared_tokenizer", True):
            t_id = tokenizer_identity(OmegaConf.to_container(teacher, resolve=True))
            s_id = tokenizer_identity(OmegaConf.to_container(student, resolve=True), teacher_identity=t_id)
            if t_id != s_id:
                raise ConfigError(
                    "model.student.tokenizer",
                    f"method hinton feeds one tokenised batch to both models, so the student needs the teacher's tokenizer "
                    f"(teacher: {t_id}, student: {s_id}); set model.student.tokenizer=teacher",
                )
    elif cfg.method.name == "finetune":
        role = cfg.method.get("train")
        if role not in ("teacher", "student") or cfg.model.get(role) is None:
            raise ConfigError("method.train", f"must be teacher or student (a spec under model.*), got {role!r}")


# optional AdamW settings (kdlab/optim.py): name -> (test, the range it states)
OPTIMIZER_RANGES = {
    "weight_decay": (lambda v: v >= 0, ">= 0"),
    "warmup_ratio": (lambda v: 0 <= v <= 1, "in [0, 1] (the share of steps that warm up)"),
    "eps": (lambda v: v > 0, "> 0"),
    "layerwise_decay": (lambda v: 0 < v <= 1, "in (0, 1] (1.0 = off)"),
}


def validate_optimizer(cfg: DictConfig, key: str) -> None:
    """An optimizer node `<key>`: lr > 0, and each optional AdamW setting it gives (weight decay, warm-up, betas, eps, β) in range."""
    lr = _number(cfg, f"{key}.lr")
    if lr <= 0:
        raise ConfigError(f"{key}.lr", f"must be > 0, got {lr:g}")
    for name, (good, expected) in OPTIMIZER_RANGES.items():
        if OmegaConf.select(cfg, f"{key}.{name}") is None:
            continue
        value = _number(cfg, f"{key}.{name}")
        if not good(value):
            raise ConfigError(f"{key}.{name}", f"must be {expected}, got {value:g}")
    betas = OmegaConf.select(cfg, f"{key}.betas")
    if betas is not None:
        values = list(betas) if OmegaConf.is_list(betas) else [betas]
        if len(values) != 2 or not all(
            isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in values
        ):
            raise ConfigError(f"{key}.betas", f"must be two numbers in [0, 1), got {values}")


def validate_stages(cfg: DictConfig, stages: tuple[str, ...] = ("teacher", "student")) -> None:
    """Each training stage the method has (method.teacher / method.student) has epochs >= 1 and a valid optimizer."""
    for stage in stages:
        node = cfg.method.get(stage)
        if node is None:
            continue
        if int(_number(cfg, f"method.{stage}.epochs")) < 1:
            raise ConfigError(f"method.{stage}.epochs", f"must be >= 1, got {node.epochs}")
        validate_optimizer(cfg, f"method.{stage}.optimizer")


def validate_task_list(cfg: DictConfig) -> list[dict[str, Any]]:
    """A multi-task data config: each task as a single-task data config, the sampling exponent; the tasks."""
    entries = OmegaConf.to_container(_require(cfg, "data.tasks"), resolve=True)
    tasks = task_configs({**OmegaConf.to_container(cfg.data, resolve=True), "tasks": entries})
    check_exponent(_number(cfg, "data.sampling_exponent"))
    for position, task in enumerate(tasks):
        try:
            validate_data(OmegaConf.create({"data": task}))
        except ConfigError as err:
            key = err.key.replace("data.", f"data.tasks[{position}].", 1)
            raise ConfigError(key, str(err)[len(err.key) + 2 :]) from None
    return tasks


def validate_bam(cfg: DictConfig) -> None:
    """BAM: the task list (each task as a single-task data config), the sampling exponent, switches, given teachers."""
    tasks = validate_task_list(cfg)
    for key in ("teacher_annealing", "teachers", "single_task", "reuse_teacher"):
        if not isinstance(_require(cfg, f"method.{key}"), bool):
            raise ConfigError(f"method.{key}", f"must be true or false, got {cfg.method[key]!r}")
    fixed = _number(cfg, "method.fixed_lambda")
    if not 0.0 <= fixed <= 1.0:
        raise ConfigError("method.fixed_lambda", f"must be in [0, 1], got {fixed:g}")
    node = cfg.method.get("trained_teachers")
    given = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node or {}
    if not isinstance(given, dict):
        raise ConfigError("method.trained_teachers", f"must map task names to teacher folders, got {given!r}")
    names = [task["name"] for task in tasks]
    for name, folder in given.items():
        key = f"method.trained_teachers.{name}"
        if name not in names:
            raise ConfigError(key, f"names no task of data.tasks {names}")
        path = Path(str(folder))
        if not path.exists():
            raise ConfigError(key, f"{path} does not exist (expected a model folder or a kdlab .ckpt)")
        task = tasks[names.index(name)]
        expected = len(task["labels"]) if task["task"] == "classification" else 1
        width = _folder_num_labels(path) if path.is_dir() else None
        if width is not None and width != expected:
            raise ConfigError(
                key, f"the teacher has {width} labels ({path / 'config.json'}) but task {name!r} has {expected}"
            )
    student = _require(cfg, "model.student")
    if not student.get("name_or_path") and not student.get("config"):
        raise ConfigError("model.student", "needs name_or_path (a pretrained encoder) or config (random init)")
    if student.get("from_teacher_layers") is not None:
        raise ConfigError(
            "model.student.from_teacher_layers", "is not available for bam (one teacher per task): set it to null"
        )
    _require(cfg, "model.teacher")
    validate_stages(cfg)
    metric = cfg.get("optimized_metric")
    if metric is not None:
        known = [f"{role}/{split}/glue_mean" for role in ("student", "teacher") for split in ("val", "test")]
        known += [
            f"{role}/{split}/{t['name']}/{m}"
            for role in ("student", "teacher")
            for split in ("val", "test")
            for t in tasks
            for m in t["metrics"]
        ]
        if metric not in known:
            raise ConfigError(
                "optimized_metric",
                f"must be <student|teacher>/<val|test>/glue_mean or .../<task>/<metric> of data.tasks, got {metric!r}",
            )


def model_specs(cfg: DictConfig) -> dict[str, Any]:
    """Every model spec of the run by its key: model.teacher, model.student, model.bi_encoders[0], ..."""
    model = cfg.get("model") or {}
    specs = {f"model.{role}": model.get(role) for role in ("teacher", "student") if model.get(role) is not None}
    for group in ("bi_encoders", "cross_encoders"):
        specs.update({f"model.{group}[{index}]": spec for index, spec in enumerate(model.get(group) or [])})
    return specs


def validate_model_specs(cfg: DictConfig) -> None:
    """Keys every model spec may have: `trust_remote_code` true or false (and true for a local folder that ships its
    own code), `pooling` null or a known mode."""
    for key, spec in model_specs(cfg).items():
        trusted = spec.get("trust_remote_code", False)
        if not isinstance(trusted, bool):
            raise ConfigError(f"{key}.trust_remote_code", f"must be true or false, got {trusted!r}")
        try:
            folder = spec.get("name_or_path")
        except OmegaConfBaseException:
            folder = None  # e.g. ${minilm_path:} without the extra: loading the model says so
        described = _folder_config(Path(str(folder))) if folder else None
        if not trusted and described is not None and described.get("auto_map"):
            raise ConfigError(
                f"{key}.name_or_path",
                f"{folder} ships its own Python code (auto_map in its config.json), "
                f"which kdlab runs only if {key}.trust_remote_code is true",
            )
        pooling = spec.get("pooling")
        if pooling is not None and pooling not in POOLING_MODES:
            raise ConfigError(f"{key}.pooling", f"must be one of {list(POOLING_MODES)} or null, got {pooling!r}")
    validate_model_kinds(cfg)


def validate_model_kinds(cfg: DictConfig) -> None:
    """Each spec's `kind` is in kdlab.models.kinds, and a student that is not a transformer gets no option that needs one."""
    from kdlab.models import kinds  # torch-free

    method = cfg.get("method") or {}
    loss = cfg.get("loss") if method.get("name") == "hinton" else None
    kinds.check_kinds(model_specs(cfg), str(method.get("name")), loss, method)


def validate_processes(cfg: DictConfig) -> None:
    """With a known number of DDP processes (devices given as a count), every global batch size must divide by it."""
    trainer = cfg.get("trainer") or {}
    devices, nodes = trainer.get("devices"), trainer.get("num_nodes") or 1
    if (
        "ddp" not in str(trainer.get("strategy"))
        or not isinstance(devices, int)
        or devices < 1
        or not isinstance(nodes, int)
    ):
        return  # one process, or a count known only at run time (devices: -1 / "auto"): the training samplers check it
    world = devices * nodes
    data = cfg.get("data") or {}
    if data.get("batch_size") is not None:
        process_share(int(data.batch_size), world)
    for index, task in enumerate(data.get("tasks") or []):
        if task.get("batch_size") is not None:
            process_share(int(task.batch_size), world, f"data.tasks.{task.get('name', index)}.batch_size")


def validate_paths(cfg: DictConfig) -> None:
    """The folders every run writes besides its run folder (the shared cache, the teacher store) can be written."""
    for key in ("paths.cache_dir", "paths.teacher_store"):
        if OmegaConf.select(cfg, key, throw_on_resolution_failure=False) is not None:
            check_writable(str(_require(cfg, key)), key, f" (set KDLAB_CACHE_DIR or {key} to a writable folder)")


def validate_eval(cfg: DictConfig) -> None:
    """A `kdlab-eval` config: `model_path` given (it is ??? in conf/eval.yaml), `splits` a list of validation and/or test."""
    _require(cfg, "model_path")
    splits = list(_require(cfg, "splits"))
    if not splits or any(split not in ("validation", "test") for split in splits):
        raise ConfigError("splits", f"must be a list of validation and/or test, got {splits}")


def validate_wandb(cfg: DictConfig) -> None:
    """A W&B logger needs a login (WANDB_API_KEY or ~/.netrc) unless it runs offline or disabled: otherwise wandb fails
    with a long traceback after the run has started."""
    import netrc
    import os
    from urllib.parse import urlparse

    for name, node in (cfg.get("logger") or {}).items():
        if node is None or not str(node.get("_target_", "")).endswith("WandbLogger"):
            continue
        if os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun") or node.get("offline") is True:
            return
        if os.environ.get("WANDB_API_KEY"):
            return
        host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
        try:
            if netrc.netrc().authenticators(host):
                return
        except (FileNotFoundError, netrc.NetrcParseError, OSError):
            pass
        raise ConfigError(
            f"logger.{name}",
            "W&B has no login here: run `wandb login` (or set WANDB_API_KEY), or set "
            "WANDB_MODE=offline to write the run locally (`wandb sync` later)",
        )


def validate_callbacks(cfg: DictConfig) -> None:
    """The checkpoint callback's tie rule (kdlab.callbacks.BestCheckpoint): tie_mode min or max."""
    checkpoint = (cfg.get("callbacks") or {}).get("model_checkpoint") or {}
    if checkpoint.get("tie_break") is not None and checkpoint.get("tie_mode", "min") not in ("min", "max"):
        raise ConfigError(
            "callbacks.model_checkpoint.tie_mode", f"must be min or max, got {checkpoint.get('tie_mode')!r}"
        )


def validate_supervised(cfg: DictConfig) -> None:
    """finetune (and hinton's teacher and students): the text data, the model specs, each stage, the optimised metric."""
    validate_data(cfg)
    validate_models(cfg)
    validate_stages(cfg)
    metric = cfg.get("optimized_metric")
    if metric is not None and metric.rsplit("/", 1)[-1] not in cfg.data.metrics:
        raise ConfigError(
            "optimized_metric", f"must end in one of data.metrics {list(cfg.data.metrics)}, got {metric!r}"
        )


def validate_hinton(cfg: DictConfig) -> None:
    """hinton: the loss, where the teacher's outputs come from, then everything finetune checks."""
    validate_loss(cfg)
    if cfg.method.get("teacher_outputs") not in ("cache", "live"):
        raise ConfigError("method.teacher_outputs", f"must be cache or live, got {cfg.method.get('teacher_outputs')!r}")
    validate_supervised(cfg)


def validate_multilingual(cfg: DictConfig) -> None:
    """multilingual: the parallel data, the student (a copy of the teacher or a pretrained encoder), its stage."""
    validate_parallel_data(cfg)
    student = cfg.model.get("student") or {}
    if not student.get("copy_teacher") and not student.get("name_or_path"):
        raise ConfigError("model.student", "needs copy_teacher: true or a name_or_path")
    if not student.get("copy_teacher") and student.get("tokenizer") == "teacher":
        raise ConfigError(
            "model.student.tokenizer",
            "a student loaded from name_or_path uses its own tokenizer: set it to null (or a path)",
        )
    if student.get("copy_teacher"):
        validate_teacher_layers(cfg)
    if student.get("projection") not in (None, True, False):
        raise ConfigError(
            "model.student.projection",
            f"must be true (learn a Linear to the teacher's width) or false, got {student.get('projection')!r}",
        )
    from kdlab.optim import IMPLEMENTATIONS  # torch: only on this path, never for --help / --cfg

    implementation = OmegaConf.select(cfg, "method.student.optimizer.implementation")
    if implementation not in IMPLEMENTATIONS:
        raise ConfigError(
            "method.student.optimizer.implementation", f"must be one of {list(IMPLEMENTATIONS)}, got {implementation!r}"
        )
    validate_stages(cfg, ("student",))  # the teacher is used as it is (debug=fast's method.teacher.epochs is ignored)


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError for the first problem found in a composed training config: the checks every method
    shares, then the chosen method's own (its `check` in kdlab.registry)."""
    validate_processes(cfg)
    validate_callbacks(cfg)
    validate_wandb(cfg)
    seed = _require(cfg, "seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError("seed", f"must be an integer, got {seed!r}")
    threads = cfg.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError("threads", f"must be a positive integer or null (torch's default), got {threads!r}")
    validate_paths(cfg)
    validate_model_specs(cfg)
    deploy.check_setting(cfg)  # method.deploy_benchmark: a boolean
    entry = registry.method(_require(cfg, "method.name"))
    registry.check_data_fits(entry, cfg)
    registry.resolve(entry.check)(cfg)


# Keys a `+key=value` override may add anywhere below these nodes: their keys are names the user chooses (logger
# names, task names) or the arguments of Hydra, Lightning's Trainer or a logger/callback class, which refuse unknown ones.
OPEN_NODES = ("hydra", "trainer", "logger", "callbacks", "export_artifact", "method.trained_teachers")


def _key_paths(node: Any, prefix: tuple[str, ...], into: set[tuple[str, ...]]) -> None:
    """Every key path under `node` (plain containers), list positions as '*'."""
    items = (
        node.items() if isinstance(node, dict) else (("*", value) for value in node) if isinstance(node, list) else ()
    )
    for name, value in items:
        if name == "defaults" and not prefix:
            continue
        path = (*prefix, str(name))
        into.add(path)
        _key_paths(value, path, into)


def _package(path: Path, group: tuple[str, ...]) -> tuple[str, ...]:
    """Where a config file's keys go: its `# @package` line (_global_ = the root), else its group."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            break  # the header is the leading comment block
        if line.startswith("# @package"):
            package = line.split(None, 2)[2].strip().replace("_group_", ".".join(group))
            return tuple(part for part in package.removeprefix("_global_").split(".") if part)
    return group


def known_keys(base: DictConfig, conf_dirs: list[str]) -> set[tuple[str, ...]]:
    """The keys kdlab knows: the composed config's and those of every config file in `conf_dirs` (every option of every
    group, at its package), list positions as '*'; a task of data.tasks may have any key of a single-task data config."""
    known: set[tuple[str, ...]] = set()
    _key_paths(OmegaConf.to_container(base, resolve=False), (), known)
    for folder in conf_dirs:
        for path in sorted(Path(folder).rglob("*.yaml")):
            group = path.relative_to(folder).parent.parts
            content = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
            _key_paths(content, _package(path, group), known)
    known |= {
        ("data", "tasks", "*", *key[1:])
        for key in list(known)
        if key[0] == "data" and len(key) > 1 and key[1] != "tasks"
    }
    return known


def _in_a_source(base: DictConfig, parts: list[str]) -> bool:
    """Whether `parts` is a key of a data source of the composed config (`data.train.limit`, `data.tasks.0.train.encoding`)."""
    from kdlab.data.loading import SOURCE_KEYS

    for end in range(1, len(parts)):
        node = OmegaConf.select(base, ".".join(parts[:end]), throw_on_missing=False, throw_on_resolution_failure=False)
        if isinstance(node, DictConfig) and any(node.get(k) is not None for k in ("path", "hf", "embedded")):
            return parts[end] in SOURCE_KEYS
    return False


def _architecture_keys(base: DictConfig, parts: list[str]) -> tuple[str, set[str]] | None:
    """For a key inside a model spec's `config` (transformers architecture keys, a node with `model_type`): the
    path of that node and the keys its config class has (transformers is imported only here, for such a key)."""
    for end in range(1, len(parts)):
        node = OmegaConf.select(base, ".".join(parts[:end]), throw_on_missing=False, throw_on_resolution_failure=False)
        if isinstance(node, DictConfig) and isinstance(node.get("model_type"), str):
            try:
                from transformers import AutoConfig

                return ".".join(parts[:end]), set(AutoConfig.for_model(node.model_type).to_dict())
            except (ImportError, ValueError):  # no transformers, or a model type it does not know: loading says so
                return None
    return None


def check_added_key(key: str, base: DictConfig, known: set[tuple[str, ...]]) -> None:
    """A key a `+key=value` override adds must be one kdlab reads (else the value would be silently ignored):
    ConfigError naming it and the nearest real key."""
    import difflib

    parts = key.split(".")
    shape = tuple("*" if part.isdigit() else part for part in parts)
    if (
        any(key == node or key.startswith(f"{node}.") for node in OPEN_NODES)
        or shape in known
        or _in_a_source(base, parts)
    ):
        return
    architecture = _architecture_keys(base, parts)
    if architecture is not None:
        node, names = architecture
        name = parts[len(node.split("."))]
        if name in names:
            return
        near = difflib.get_close_matches(name, sorted(names), n=1)
        hint = f"did you mean {node}.{near[0]}?" if near else f"its config class has {sorted(names)}"
        raise ConfigError(
            key, f"is not an architecture key of this model type, so adding it with + would change nothing; {hint}"
        )
    near = nearest_key(key, known)
    hint = f"did you mean {near}?" if near else "--cfg job prints the keys there are"
    raise ConfigError(key, f"no part of kdlab reads this key, so adding it with + would change nothing; {hint}")


def nearest_key(key: str, known: set[tuple[str, ...]]) -> str | None:
    """The known key most like `key`: its first unknown part replaced by the nearest sibling (difflib), else the
    nearest of all keys; list positions as in `key`."""
    import difflib

    parts = key.split(".")
    shape = tuple("*" if part.isdigit() else part for part in parts)
    prefixes = {path[:end] for path in known for end in range(1, len(path) + 1)}
    cut = next((end for end in range(1, len(shape) + 1) if shape[:end] not in prefixes), len(shape))
    siblings = sorted(path[cut - 1] for path in prefixes if len(path) == cut and path[: cut - 1] == shape[: cut - 1])
    near = difflib.get_close_matches(shape[cut - 1], siblings, n=1)
    if near:
        fixed = (*parts[: cut - 1], near[0], *parts[cut:])
        whole = tuple("*" if part.isdigit() else part for part in fixed)
        return ".".join(fixed if whole in known else fixed[:cut])
    near = difflib.get_close_matches(".".join(shape), sorted(".".join(path) for path in known), n=1)
    if not near:
        return None
    indices = iter(part for part in parts if part.isdigit())
    return ".".join(next(indices, part) if part == "*" else part for part in near[0].split("."))
