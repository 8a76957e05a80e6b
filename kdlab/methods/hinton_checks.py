"""hinton's config check (kdlab.registry's `check`): the loss terms, where the teacher's outputs come from, the
teacher and student specs, then the text data and optimised metric as for finetune. Torch-free; the rules on loss
terms are kdlab.losses.registry's (the pipeline calls the same rules with the real models)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from kdlab.cache.storage import check_storage
from kdlab.data import transfer
from kdlab.errors import ConfigError
from kdlab.losses import registry as losses
from kdlab.methods.finetune_checks import check_optimized_metric
from kdlab.methods.text_data_checks import check_text_data
from kdlab.models.spec import check_layer_indices, depth, folder_num_labels, tokenizer_identity
from kdlab.utils.values import number, plain

TEACHER_OUTPUTS = ("cache", "live")


def check_loss(cfg: DictConfig) -> None:
    """`loss`: the soft term `loss.soft` and its parameters, then each extra term's weight and layer map."""
    losses.check_loss_keys([str(key) for key in cfg.loss])
    entry = losses.term(cfg.loss.get("soft", "soft_target"), "soft", "loss.soft")
    if "temperature" in entry.params:
        temperature = number(cfg, "loss.temperature")
        if temperature <= 0:
            raise ConfigError("loss.temperature", f"must be > 0, got {temperature:g}")
    alpha = number(cfg, "loss.alpha")
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
            f"loss.{name}.weight", number(cfg, f"loss.{name}.weight") if spec.get("weight") is not None else 0.0
        )
        if weight > 0:
            losses.check_live_teacher(f"loss.{name}.weight", extra, cfg.method.get("teacher_outputs"))
        layer_map = spec.get("layer_map")
        if layer_map is not None:
            losses.check_layer_map(
                f"loss.{name}.layer_map",
                plain(layer_map),
                extra,
                depth(cfg.model.student, cfg.model.teacher),
                depth(cfg.model.teacher),
            )


def check_teacher_outputs(cfg: DictConfig) -> None:
    """`method.teacher_outputs`: cache or live."""
    mode = cfg.method.get("teacher_outputs")
    if mode not in TEACHER_OUTPUTS:
        raise ConfigError("method.teacher_outputs", f"must be cache or live, got {mode!r}")


def check_teacher_layers(cfg: DictConfig) -> None:
    """`model.student.from_teacher_layers`: distinct indices within the teacher's depth (when it is known)."""
    layers = cfg.model.student.get("from_teacher_layers") if cfg.model.get("student") is not None else None
    if layers is not None:
        check_layer_indices(layers, depth(cfg.model.get("teacher")), "model.student.from_teacher_layers")


def check_trained_teacher(cfg: DictConfig) -> None:
    """`model.teacher.trained`: an existing folder or .ckpt whose output width (when its config.json says) is the task's."""
    trained = cfg.model.teacher.get("trained")
    if not trained:
        return
    path = Path(str(trained))
    if not path.exists():
        raise ConfigError("model.teacher.trained", f"{path} does not exist (expected a model folder or a kdlab .ckpt)")
    width = folder_num_labels(path) if path.is_dir() else None
    expected = len(cfg.data.labels) if cfg.data.task == "classification" else 1
    if width is not None and width != expected:
        raise ConfigError(
            "model.teacher.trained",
            f"the teacher has {width} labels ({path / 'config.json'}) but data.labels gives {expected}",
        )


def check_shared_tokenizer(cfg: DictConfig) -> None:
    """One tokenised batch feeds both models: the student's tokenizer is the teacher's."""
    if not cfg.method.get("requires_shared_tokenizer", True):
        return
    t_id = tokenizer_identity(plain(cfg.model.teacher))
    s_id = tokenizer_identity(plain(cfg.model.student), teacher_identity=t_id)
    if t_id != s_id:
        raise ConfigError(
            "model.student.tokenizer",
            f"method hinton feeds one tokenised batch to both models, so the student needs the teacher's tokenizer "
            f"(teacher: {t_id}, student: {s_id}); set model.student.tokenizer=teacher",
        )


def check(cfg: DictConfig) -> None:
    """hinton: the loss, the teacher's outputs, the text data, the teacher and student, the optimised metric."""
    check_loss(cfg)
    check_teacher_outputs(cfg)
    check_storage(cfg.get("cache") or {}, "logits", used=cfg.method.get("teacher_outputs") == "cache")
    check_text_data(cfg)
    if cfg.model.get("teacher") is None or cfg.model.get("student") is None:
        raise ConfigError("model", "method hinton needs model.teacher and model.student")
    check_trained_teacher(cfg)
    check_teacher_layers(cfg)
    check_shared_tokenizer(cfg)
    check_optimized_metric(cfg)
    transfer.check_sources(plain(cfg.data))  # data.transfer: spec, rates, files
