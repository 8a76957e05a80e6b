"""The data rules, one function each, torch-free: called by the config checks (before any model is loaded) and by
the DataModules at run time, each time with the key of the value it checks.

`check_parallel_data` (multilingual) and `check_pair_data` (Trans-Encoder) are whole data configs; a single-task
data config and a mixture of them, whose metric names are the evaluation layer's, are checked one layer up
(kdlab.methods.text_data_checks).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from kdlab.data import local
from kdlab.data.loading import check_columns
from kdlab.errors import ConfigError
from kdlab.utils.values import at_least, plain, require

OWN_DATA_HINT = " (for your own files: data=local data.train=FILE data.text=COLUMN data.label=COLUMN, see the README)"
SPLITS = ("train", "validation", "test")
TASKS = ("classification", "regression")
# Trans-Encoder's unlabeled pairs (`data.pair_source`) and the splits each source reads: the train split, the evaluation
# pairs themselves (the paper's transductive setting), or every split (what the reference code trains on)
PAIR_SOURCE_SPLITS = {
    "train": ("train",),
    "eval_pairs": ("validation", "test"),
    "all_splits": ("train", "validation", "test"),
}
PAIR_SOURCES = tuple(PAIR_SOURCE_SPLITS)
SOURCE_KINDS = ("path", "hf", "embedded")


# --- single rules ---------------------------------------------------------------------------------------------------
def check_task(task: Any, key: str) -> str:
    """`<key>`: classification or regression."""
    if task not in TASKS:
        raise ConfigError(key, f"must be classification or regression, got {task!r}")
    return task


def check_labels(task: str, labels: Any, key: str) -> None:
    """`<key>` (a label list): a classification task needs at least 2 labels."""
    if task == "classification" and len(labels) < 2:
        raise ConfigError(key, f"a classification task needs at least 2 labels, got {list(labels)}")


def check_source(source: Any, key: str) -> dict[str, Any]:
    """`<key>` (a split): a source mapping with exactly one of path, hf, embedded."""
    if source is None:
        raise ConfigError(key, "needs a source (path, hf or embedded)")
    source = plain(source)
    if sum(source.get(kind) is not None for kind in SOURCE_KINDS) != 1:
        raise ConfigError(key, f"needs exactly one of path, hf, embedded; got {source}{OWN_DATA_HINT}")
    return source


def check_language_tag(source: Mapping[str, Any], key: str) -> str:
    """`<key>.lang` of a parallel source: a language-pair tag."""
    if not source.get("lang"):
        raise ConfigError(f"{key}.lang", "needs a language-pair tag such as en-de")
    return str(source["lang"])


def parallel_columns(source: Mapping[str, Any], key: str) -> dict[str, Any]:
    """`<key>.columns` of a parallel (non-zip) source: its source and target columns."""
    columns = dict(source.get("columns") or {})
    if columns.get("source") is None or columns.get("target") is None:
        raise ConfigError(f"{key}.columns", f"needs source and target columns, got {columns}")
    return {"source": columns["source"], "target": columns["target"]}


def check_parallel_sources(sources: Any, dev: Any, holdout: Any) -> None:
    """`data.sources`: at least one; without `data.dev` sources, `data.holdout` > 0 pairs per source."""
    if not sources:
        raise ConfigError("data.sources", "needs at least one parallel source")
    if not dev and int(holdout or 0) <= 0:
        raise ConfigError(
            "data.holdout", "with no data.dev sources, hold out some train pairs per source (holdout > 0)"
        )


def check_pair_source(source: Any, key: str = "data.pair_source") -> str:
    """`data.pair_source`: where Trans-Encoder's unlabeled pairs come from."""
    if source not in PAIR_SOURCES:
        raise ConfigError(
            key,
            "must be train, eval_pairs (the evaluation pairs themselves, unlabeled) or all_splits (train + "
            f"evaluation pairs, unlabeled), got {source!r}",
        )
    return source


def check_gold_column(columns: Mapping[str, Any], split: str, key: str = "data.columns.label") -> None:
    """The validation/test pairs of Trans-Encoder have a gold score column (Spearman against it)."""
    if columns.get("label") is None:
        raise ConfigError(key, f"the {split} pairs need a gold score column (Spearman against it)")


# --- whole data configs ---------------------------------------------------------------------------------------------
def expand_local_data(cfg: DictConfig) -> None:
    """data=local's short form (kdlab/data/local.py) replaced, in place, by the usual data config it stands for."""
    if not local.is_short_form(cfg.data):
        return
    for key in ("train", "text", "label"):
        require(cfg, f"data.{key}")
    expanded = local.expand(OmegaConf.to_container(cfg.data, resolve=True))
    with open_dict(cfg):
        cfg.data = expanded


def split_node(cfg: DictConfig, split: str) -> Any:
    """`data.<split>`: a source mapping or None; a plain file name is refused (only data=local takes one)."""
    node = cfg.data.get(split)
    if node is not None and not OmegaConf.is_config(node):
        raise ConfigError(f"data.{split}", f"a file name ({node}) stands for a split only in data=local{OWN_DATA_HINT}")
    return node


def check_role_columns(cfg: DictConfig, roles: tuple[str, ...]) -> dict[str, Any]:
    """`data.columns` names a column for each of `roles`; the columns."""
    columns = plain(require(cfg, "data.columns"))
    for role in roles:
        if columns.get(role) is None:
            raise ConfigError(
                f"data.columns.{role}", "is required (a column name, or a field index for header-less files)"
            )
    return columns


def check_parallel_data(cfg: DictConfig) -> None:
    """Parallel sources (multilingual): language tags, columns, dev pairs (named or held out), sizes."""
    sources = cfg.data.get("sources") or []
    dev = cfg.data.get("dev") or []
    check_parallel_sources(sources, dev, cfg.data.get("holdout"))
    for key, items in (("data.sources", sources), ("data.dev", dev)):
        for number_, source in enumerate(items):
            where = f"{key}[{number_}]"
            source = plain(source)
            check_language_tag(source, where)
            if source.get("zip") is not None:
                for side, part in zip(("source", "target"), source["zip"]):
                    check_columns(part, {side: part.get("column")}, f"{where}.zip")
                continue
            check_columns(source, parallel_columns(source, where), f"{where}.columns")
    for name in ("max_length", "batch_size", "eval_batch_size"):
        at_least(cfg, f"data.{name}", 1)


def check_pair_data(cfg: DictConfig) -> None:
    """Unlabeled pairs and their labelled evaluation pairs (Trans-Encoder): columns, scores, the pair source, sizes."""
    columns = check_role_columns(cfg, ("text", "text_pair"))
    check_pair_source(cfg.data.get("pair_source", "train"))
    for split in SPLITS:
        node = plain(check_source(split_node(cfg, split), f"data.{split}"))
        merged = {**columns, **(node.get("columns") or {})}
        if split != "train":
            check_gold_column(merged, split)
        roles = ("text", "text_pair") if split == "train" else ("text", "text_pair", "label")
        if not node.get("separator"):
            check_columns(
                node,
                {k: merged.get(k) for k in roles},
                f"data.{split}.columns" if node.get("columns") else "data.columns",
            )
    at_least(cfg, "data.max_length", 4)
    at_least(cfg, "data.eval_batch_size", 1)
