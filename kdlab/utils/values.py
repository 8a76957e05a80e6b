"""Reading one config value for a check: a missing, unresolvable or mistyped value is a `ConfigError` naming its key.

Torch-free and Hydra-free (OmegaConf only): the config checks of every layer (kdlab.data.checks,
kdlab.methods.<method>_checks, kdlab.config) read values through these.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from kdlab.errors import ConfigError


def require(cfg: DictConfig, key: str) -> Any:
    """The value at `key`; ConfigError when it is ??? (missing), cannot be resolved, or is null."""
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


def number(cfg: DictConfig, key: str) -> float:
    """The value at `key` as a float; ConfigError when it is not a number."""
    value = require(cfg, key)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(key, f"must be a number, got {value!r}") from None


def at_least(cfg: DictConfig, key: str, least: int) -> int:
    """The value at `key` as an integer >= `least`."""
    value = int(number(cfg, key))
    if value < least:
        raise ConfigError(key, f"must be >= {least}, got {require(cfg, key)}")
    return value


def true_or_false(cfg: DictConfig, key: str) -> bool:
    """The value at `key`, which must be a boolean."""
    value = require(cfg, key)
    if not isinstance(value, bool):
        raise ConfigError(key, f"must be true or false, got {value!r}")
    return value


def plain(node: Any) -> Any:
    """An OmegaConf node as plain containers (resolved); anything else as it is."""
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def resolved(cfg: DictConfig, key: str) -> Any:
    """The node at `key` as plain containers with every interpolation resolved; ConfigError naming `key` otherwise."""
    node = require(cfg, key)
    try:
        return OmegaConf.to_container(node, resolve=True, throw_on_missing=True) if OmegaConf.is_config(node) else node
    except MissingMandatoryValue as err:
        inner = str(err.full_key or key)
        raise ConfigError(
            inner, f"is required (??? in the config): give it, e.g. on the command line as {inner}=..."
        ) from None
    except OmegaConfBaseException as err:
        raise ConfigError(key, f"cannot be resolved ({str(err).splitlines()[0]})") from None
