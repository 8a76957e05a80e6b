"""Checks on the composed config, run before any heavy import or work: the checks every method shares, one function
per rule, then the chosen method's own (its `check` in kdlab.registry: kdlab/methods/<method>_checks.py).

Each failure is a `ConfigError` whose one-line message names the key and the expected value. Only light reads happen
here: headers of local data files and `config.json`/tokenizer files of model folders; no model, tokenizer or dataset
is loaded. A rule that is also checked when the run builds something lives beside that code (kdlab.data.checks,
kdlab.models.spec, kdlab.optim_checks, kdlab.losses.registry) and is called from both places with the real key.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from kdlab import deploy, registry
from kdlab.data.processes import process_share
from kdlab.errors import ConfigError
from kdlab.optim_checks import check_optimizer
from kdlab.presets import check_preset
from kdlab.utils.atomic import check_writable
from kdlab.utils.quiet import NotesUntilValid
from kdlab.utils.values import at_least, require, resolved


def check_seed(cfg: DictConfig) -> None:
    """`seed`: an integer."""
    seed = require(cfg, "seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError("seed", f"must be an integer, got {seed!r}")


def check_threads(cfg: DictConfig) -> None:
    """`threads`: a positive integer, or null (torch's default)."""
    threads = cfg.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError("threads", f"must be a positive integer or null (torch's default), got {threads!r}")


def check_paths(cfg: DictConfig) -> None:
    """The folders every run writes besides its run folder (the shared cache, the teacher store) can be written."""
    for key in ("paths.cache_dir", "paths.teacher_store"):
        if OmegaConf.select(cfg, key, throw_on_resolution_failure=False) is not None:
            check_writable(str(require(cfg, key)), key, f" (set KDLAB_CACHE_DIR or {key} to a writable folder)")


def model_specs(cfg: DictConfig) -> dict[str, Any]:
    """Every model spec of the run by its key: model.teacher, model.student, model.bi_encoders[0], ..."""
    model = cfg.get("model") or {}
    specs = {f"model.{role}": model.get(role) for role in ("teacher", "student") if model.get(role) is not None}
    for group in ("bi_encoders", "cross_encoders"):
        specs.update({f"model.{group}[{index}]": spec for index, spec in enumerate(model.get(group) or [])})
    return specs


def check_model_specs(cfg: DictConfig) -> None:
    """Keys every model spec may have: `trust_remote_code` true or false (and true for a local folder that ships its
    own code), `pooling` null or a known mode; then the model kinds (kdlab.models.kinds)."""
    from kdlab.models import kinds  # torch-free
    from kdlab.models.spec import check_pooling, check_remote_code_folder

    for key, spec in model_specs(cfg).items():
        check_remote_code_folder(spec, key)
        check_pooling(spec.get("pooling"), f"{key}.pooling")
    method = cfg.get("method") or {}
    loss = cfg.get("loss") if method.get("name") == "hinton" else None
    kinds.check_kinds(model_specs(cfg), str(method.get("name")), loss, method)


def stages(cfg: DictConfig) -> list[str]:
    """The method's training stages: the nodes of `method` that have an optimizer (teacher, student, cross, bi, ...)."""
    method = cfg.get("method") or {}
    return [str(name) for name, node in method.items() if OmegaConf.is_dict(node) and "optimizer" in node]


def check_stages(cfg: DictConfig) -> None:
    """Every training stage of the method, whether this run trains it or not: epochs >= 1 and a valid optimizer
    (kdlab.optim_checks, the rules the optimiser factory applies too)."""
    for stage in stages(cfg):
        at_least(cfg, f"method.{stage}.epochs", 1)
        check_optimizer(resolved(cfg, f"method.{stage}.optimizer"), f"method.{stage}.optimizer")


def check_processes(cfg: DictConfig) -> None:
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


def check_wandb(cfg: DictConfig) -> None:
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


def check_callbacks(cfg: DictConfig) -> None:
    """The checkpoint callback's tie rule (kdlab.callbacks.BestCheckpoint): tie_mode min or max."""
    checkpoint = (cfg.get("callbacks") or {}).get("model_checkpoint") or {}
    if checkpoint.get("tie_break") is not None and checkpoint.get("tie_mode", "min") not in ("min", "max"):
        raise ConfigError(
            "callbacks.model_checkpoint.tie_mode", f"must be min or max, got {checkpoint.get('tie_mode')!r}"
        )


def validate_eval(cfg: DictConfig) -> None:
    """A `kdlab-eval` config: `model_path` given (it is ??? in conf/eval.yaml), `splits` a list of validation and/or test."""
    require(cfg, "model_path")
    splits = list(require(cfg, "splits"))
    if not splits or any(split not in ("validation", "test") for split in splits):
        raise ConfigError("splits", f"must be a list of validation and/or test, got {splits}")


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError for the first problem found in a composed training config: the checks every method
    shares, then the chosen method's own (its `check` in kdlab.registry)."""
    check_processes(cfg)
    check_callbacks(cfg)
    check_wandb(cfg)
    check_seed(cfg)
    check_threads(cfg)
    check_paths(cfg)
    check_model_specs(cfg)
    deploy.check_setting(cfg)  # method.deploy_benchmark: a boolean
    entry = registry.method(require(cfg, "method.name"))
    registry.check_data_fits(entry, cfg)
    check_stages(cfg)
    check_preset(cfg)  # method.preset: a known reference preset whose points this config has
    with NotesUntilValid("kdlab.data"):  # e.g. data=local's held-out rows: told only when the config is valid
        registry.resolve(entry.check)(cfg)
