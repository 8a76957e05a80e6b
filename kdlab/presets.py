"""Reference presets: config files that reproduce a reference implementation, one config key per point.

A preset is a YAML file under conf/method/ or conf/experiment/ whose body sets `method.preset` to the file's own
name (`preset: <name>` in a method-packaged file, `method: {preset: <name>}` in a `# @package _global_` one). Every
other key its body sets (its `defaults` list aside) is a *point* of the reference, with the reference's value;
docs/reference_presets.md tables them. A run may override a point (an ablation): it is allowed, and recorded in the
run folder as a deviation (`reference_deviations.json`, plus one log line). Torch-free.

    check_preset(cfg)             ConfigError naming method.preset for an unknown name, a preset of another method (the
                                  method config its defaults build on), or a point key the composed config lacks
    deviations(cfg)               {point: {"reference": value, "run": value}} for every point the run changed
    record_deviations(cfg, dir)   writes <dir>/reference_deviations.json and logs one line; {} without a preset
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from kdlab.errors import ConfigError
from kdlab.resolvers import conf_dir

log = logging.getLogger(__name__)

KEY = "method.preset"
GROUPS = ("method", "experiment")  # where preset files live
FILE = "reference_deviations.json"
_MISSING = "<absent>"


def _package(path: Path) -> str:
    """The file's package: '' for `# @package _global_`, else its group name (method, experiment)."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# @package"):
            return "" if line.split()[-1] == "_global_" else line.split()[-1]
        if line.strip() and not line.startswith("#"):
            break
    return path.parent.name


def _flatten(node: Any, prefix: str) -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: node}


def _body(path: Path) -> dict[str, Any]:
    """The file's own keys as dotted full config keys (its `defaults` list left out)."""
    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    body = {k: v for k, v in (raw or {}).items() if k != "defaults"}
    return _flatten(body, _package(path))


def known_presets() -> dict[str, Path]:
    """Every preset file by name: the files of conf/method and conf/experiment that set method.preset to their name."""
    found = {}
    for group in GROUPS:
        for path in sorted((Path(conf_dir()) / group).glob("*.yaml")):
            if _body(path).get(KEY) == path.stem:
                found[path.stem] = path
    return found


def preset_points(name: Any, key: str = KEY) -> dict[str, Any]:
    """The points of preset `name`: full config key -> the reference's value; ConfigError naming `key` when no preset
    has that name."""
    presets = known_presets()
    if name not in presets:
        raise ConfigError(key, f"names no reference preset, got {name!r}; the presets are {sorted(presets)}")
    return {k: v for k, v in _body(presets[name]).items() if k != KEY}


def preset_method(name: str) -> str | None:
    """The method a preset is for: the `name` of the method config its defaults list builds on (`- bam` in a
    conf/method file, `override /method: hinton` in an experiment file); None when it names none."""
    path = known_presets()[name]
    defaults = (OmegaConf.to_container(OmegaConf.load(path), resolve=False) or {}).get("defaults") or []
    base = None
    for entry in defaults:
        if isinstance(entry, str) and entry != "_self_" and path.parent.name == "method":
            base = entry
        elif isinstance(entry, dict):
            for group, choice in entry.items():
                if group.replace("override", "").strip().strip("/") == "method":
                    base = choice
    while base is not None:
        node = OmegaConf.load(Path(conf_dir()) / "method" / f"{base}.yaml")
        if node.get("name") is not None:
            return str(node.name)
        parents = [e for e in node.get("defaults") or [] if isinstance(e, str) and e != "_self_"]
        base = parents[0] if parents else None
    return None


def _value(cfg: DictConfig, key: str) -> Any:
    value = OmegaConf.select(cfg, key, default=_MISSING, throw_on_missing=False)
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def check_preset(cfg: DictConfig) -> None:
    """`method.preset` (when the config has one and it is set): a known preset of the method the config runs, whose
    every point is a key of the composed config."""
    name = OmegaConf.select(cfg, KEY, default=None)
    if name is None:
        return
    points = preset_points(name)
    method, running = preset_method(name), OmegaConf.select(cfg, "method.name", default=None)
    if method is not None and method != running:
        raise ConfigError(KEY, f"preset {name!r} reproduces method {method}, but this config runs method {running}")
    for point in points:
        if _value(cfg, point) is _MISSING:
            raise ConfigError(KEY, f"preset {name!r} sets {point}, which this config does not have (another method's?)")


def deviations(cfg: DictConfig) -> dict[str, dict[str, Any]]:
    """Each point whose value in the composed config differs from the preset's: {point: {reference, run}}."""
    name = OmegaConf.select(cfg, KEY, default=None)
    if name is None:
        return {}
    out = {}
    for point, reference in preset_points(name).items():
        run = _value(cfg, point)
        if run != reference:
            out[point] = {"reference": reference, "run": run}
    return out


def record_deviations(cfg: DictConfig, run_dir: str | Path) -> dict[str, dict[str, Any]]:
    """With a preset: write `<run_dir>/reference_deviations.json` ({preset, file, deviations}) and log one line naming
    the changed points (or saying there are none); without one, nothing. Returns the deviations."""
    from kdlab.utils.run_folder import write_json

    name = OmegaConf.select(cfg, KEY, default=None)
    if name is None:
        return {}
    found = deviations(cfg)
    path = known_presets()[name]
    write_json(Path(run_dir) / FILE, {"preset": name, "file": f"{path.parent.name}/{path.name}", "deviations": found})
    if found:
        changed = ", ".join(f"{k}={v['run']!r} (reference {v['reference']!r})" for k, v in found.items())
        log.warning("preset %s: %d point(s) deviate from the reference: %s (%s)", name, len(found), changed, FILE)
    else:
        log.info("preset %s: every point as in the reference (%s)", name, FILE)
    return found
