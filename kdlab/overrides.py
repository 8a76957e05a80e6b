"""Checks on the command line's overrides, made when the config is composed (kdlab.api.compose, which kdlab-train and
kdlab-eval call before Hydra starts): a key added with `+` must be one kdlab reads, and a key or config group the
chosen method does not read (kdlab.registry's `reads`) may not be set, so that no value is silently ignored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from kdlab.errors import ConfigError

# Keys a `+key=value` override may add anywhere below these nodes: their keys are names the user chooses (logger
# names, task names) or the arguments of Hydra, Lightning's Trainer or a logger/callback class, which refuse unknown ones.
OPEN_NODES = ("hydra", "trainer", "logger", "callbacks", "export_artifact", "method.trained_teachers")
# Config groups whose options are placed only inside another config, by a defaults list with a package (conf/optimizer:
# `- /optimizer@teacher.optimizer: adamw` in conf/method/*.yaml): their keys are known where the composed config has
# them, not at the top level their folder would give
NESTED_GROUPS = ("optimizer",)


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
            if group[:1] and group[0] in NESTED_GROUPS:
                continue
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


def _first_leaf(node: Any, prefix: str) -> str:
    """The first full key under `node` (a plain container), e.g. loss.alpha for {alpha: 0.5} under `loss`."""
    while isinstance(node, dict) and node:
        name, node = next(iter(node.items()))
        prefix = f"{prefix}.{name}"
    return prefix


def _chosen_global_files(cfg: DictConfig, folders: list[str]) -> list[tuple[str, Path]]:
    """(`group=option`, file) of each chosen config file of package _global_ (an experiment, a debug or hparams_search
    file, a hardware or logger file), the user's --config-dir first, as Hydra searches."""
    choices = OmegaConf.select(cfg, "hydra.runtime.choices", default=None) or {}
    found = []
    for group, option in choices.items():
        if option is None or str(group).startswith("hydra"):
            continue
        for folder in reversed(folders):
            path = Path(folder) / str(group) / f"{option}.yaml"
            if path.is_file():
                if _package(path, tuple(str(group).split("/"))) == ():
                    found.append((f"{group}={option}", path))
                break
    return found


def user_settings(cfg: DictConfig, overrides: list[Any], folders: list[str]) -> list[tuple[str, str]]:
    """(key, where it is set) of what the user sets rather than kdlab's defaults: each command-line override (a key or
    a config group), each key and group override of a chosen _global_ config file (an experiment, a debug or
    hparams_search file), and each parameter of a sweeper's search space."""
    settings = [(str(o.key_or_group), "this override") for o in overrides]
    for choice, path in _chosen_global_files(cfg, folders):
        content = OmegaConf.to_container(OmegaConf.load(path), resolve=False) or {}
        for entry in content.get("defaults") or []:
            for name in entry if isinstance(entry, dict) else [entry]:
                group = str(name).removeprefix("override").strip().lstrip("/").split("@", 1)[0]
                if group and group != "_self_":
                    settings.append((group, f"the {group} choice of {choice}"))
        for name, value in content.items():
            if name != "defaults":
                settings.append((_first_leaf(value, str(name)), f"the value {choice} sets"))
    params = OmegaConf.select(cfg, "hydra.sweeper.params", default=None)
    if OmegaConf.is_dict(params):
        settings += [(str(key), "this sweep parameter (hydra.sweeper.params)") for key in params]
    return settings


def check_method_reads(cfg: DictConfig, overrides: list[Any], folders: list[str]) -> None:
    """A key or config group the chosen method does not read (kdlab.registry's `reads`), set by the user, is a
    ConfigError naming it (e.g. loss.alpha with method=bam), not a value composed and silently ignored. Configs
    without a registered method (kdlab-eval's) are not checked."""
    from kdlab import registry

    name = OmegaConf.select(cfg, "method.name", default=None, throw_on_resolution_failure=False)
    if name not in registry.METHODS:
        return  # no method (kdlab-eval), or an unknown name: the config check says so
    entry = registry.METHODS[name]
    for key, source in user_settings(cfg, overrides, folders):
        registry.check_reads(entry, key, source)
