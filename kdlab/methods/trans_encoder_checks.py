"""trans_encoder's config check (kdlab.registry's `check`): the pair data, the bi- and cross-encoder lists, the
cycles and each stage's batch, loss, labels, token limit and validation steps, and SimCSE's temperature. Torch-free; the stages' epochs and optimizers are checked
for every method (kdlab.config.check_stages)."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from kdlab.data.checks import check_pair_data
from kdlab.errors import ConfigError
from kdlab.losses.registry import LABEL_ORDERS, LABEL_RULES, check_label_choice, check_pair_loss
from kdlab.utils.values import at_least, number


def check_from_bi_start(origin: Any, bi_encoders: int, key: str) -> None:
    """`<key>` (a cross-encoder's from_bi_start): null, or the index of a starting bi-encoder."""
    if origin is not None and (not isinstance(origin, int) or not 0 <= origin < bi_encoders):
        raise ConfigError(key, f"must index model.bi_encoders (0..{bi_encoders - 1}), got {origin!r}")


def check_encoder_lists(cfg: DictConfig) -> None:
    """`model.bi_encoders` / `model.cross_encoders`: at least one spec each, each with a way to build it."""
    for group in ("bi_encoders", "cross_encoders"):
        specs = cfg.model.get(group)
        if not specs:
            raise ConfigError(f"model.{group}", "needs at least one model spec (a list; several = the mutual variant)")
        for index, spec in enumerate(specs):
            origin = spec.get("from_bi_start") if group == "cross_encoders" else None
            check_from_bi_start(origin, len(cfg.model.bi_encoders), f"model.{group}[{index}].from_bi_start")
            if origin is None and not spec.get("name_or_path") and not spec.get("config"):
                raise ConfigError(
                    f"model.{group}[{index}]",
                    "needs name_or_path (a pretrained encoder), config (random init) or, for a cross-encoder, from_bi_start",
                )


def check_cycle(cfg: DictConfig) -> None:
    """`method.cycles` >= 1; each stage's batch size (SimCSE's >= 2: in-batch negatives), the pair losses, how the
    labels are made, the token limits, the validation steps; SimCSE's temperature."""
    at_least(cfg, "method.cycles", 1)
    simcse = bool(cfg.method.simcse.get("enabled"))
    for stage in ("cross", "bi", *(("simcse",) if simcse else ())):
        if int(number(cfg, f"method.{stage}.batch_size")) < (2 if stage == "simcse" else 1):
            raise ConfigError(f"method.{stage}.batch_size", f"is too small: {cfg.method[stage].batch_size}")
    for stage in ("cross", "bi"):
        check_pair_loss(cfg.method[stage].get("loss"), f"method.{stage}.loss")
        at_least(cfg, f"method.{stage}.max_length", 4)
        if cfg.method[stage].get("val_check_steps") is not None:
            at_least(cfg, f"method.{stage}.val_check_steps", 1)
    check_label_choice(cfg.method.cross.get("label_rule"), LABEL_RULES, "method.cross.label_rule")
    check_label_choice(cfg.method.bi.get("label_orders"), LABEL_ORDERS, "method.bi.label_orders")
    if simcse and number(cfg, "method.simcse.temperature") <= 0:
        raise ConfigError("method.simcse.temperature", f"must be > 0, got {cfg.method.simcse.temperature}")


def check(cfg: DictConfig) -> None:
    """trans_encoder: the pair data, the encoder lists, the cycle's settings."""
    check_pair_data(cfg)
    check_encoder_lists(cfg)
    check_cycle(cfg)
