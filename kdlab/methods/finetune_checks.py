"""finetune's config check (kdlab.registry's `check`): the text data, which model it trains, the optimised metric.
Torch-free; the stages' epochs and optimizers are checked for every method (kdlab.config.check_stages)."""

from __future__ import annotations

from omegaconf import DictConfig

from kdlab.errors import ConfigError
from kdlab.methods.text_data_checks import check_text_data


def check_optimized_metric(cfg: DictConfig) -> None:
    """`optimized_metric` (…/<split>/<metric>) ends in one of data.metrics."""
    metric = cfg.get("optimized_metric")
    if metric is not None and metric.rsplit("/", 1)[-1] not in cfg.data.metrics:
        raise ConfigError(
            "optimized_metric", f"must end in one of data.metrics {list(cfg.data.metrics)}, got {metric!r}"
        )


def check_trained_role(cfg: DictConfig) -> None:
    """`method.train` names a model spec: teacher or student."""
    role = cfg.method.get("train")
    if role not in ("teacher", "student") or cfg.model.get(role) is None:
        raise ConfigError("method.train", f"must be teacher or student (a spec under model.*), got {role!r}")


def check(cfg: DictConfig) -> None:
    """finetune: the text data, the model it trains, the optimised metric."""
    check_text_data(cfg)
    if cfg.data.get("transfer") is not None:
        raise ConfigError("data.transfer", "finetune trains on gold labels only; a transfer set needs method=hinton")
    check_trained_role(cfg)
    check_optimized_metric(cfg)
