"""Transfer sets: unlabelled text the teacher labels for the student (Hinton et al. 2015 §2; Tang et al. 2019 §3.3).

`data.transfer` (null: none):

    sources       list; each one of
                    {embedded: NAME, split: S, size: N, seed: K}   generated text of an embedded dataset
                    {path: FILE, columns: {text: COL}, ...}          a local file (csv/tsv/jsonl/txt, as a split's source)
                    {hf: NAME, hf_split: S, columns: {text: COL}}    a Hugging Face dataset column
                    {rest_of_train: true}                            the rows of data.train's source that data.train.limit
                                                                     leaves out (their labels are not used)
                  a source's labels are never read; `limit` subsamples it as for a split
    augment       null, or Tang et al.'s rates {n_iter, p_mask, p_pos, p_ng, seed, of} (kdlab/data/augment.py); `of`:
                  gold (copies of the labelled training texts) or all (of the sources' texts too)
    gold_repeat   the labelled rows appear this many times per epoch, shuffled with the transfer rows (default 1)

BAM's student takes the same block per task (`data.tasks[i].transfer`, kdlab/pipelines/bam.py), checked by the same
functions called with that key (`key`), plus one key of its own (`known`): `mix_size` (kdlab/data/task_list.py).

Every transfer input is distinct, differs from each labelled training input, and is none of the validation or test
inputs (those are dropped and counted: a few coincide in real corpora). A source with no rows, or one that is mostly
test or validation text, is refused: it would leak the data the student is scored on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kdlab.data.augment import Augmenter, Tagger, augmented, settings
from kdlab.data.identity import Input, content_id
from kdlab.data.loading import Record, check_columns, load_records
from kdlab.data.records import split_columns
from kdlab.errors import ConfigError

KEY = "data.transfer"
KNOWN = ("sources", "augment", "gold_repeat")
LEAK_SHARE = 0.5  # a source whose rows are mostly evaluation inputs is refused


@dataclass
class TransferSet:
    """The transfer inputs (in order: sources, then augmented copies) and what was done to build them."""

    inputs: list[Input]
    gold_repeat: int = 1
    info: dict[str, Any] = field(default_factory=dict)
    seen: set[bytes] = field(default_factory=set)  # content ids no input may repeat: labelled, evaluation, taken


def _text_columns(cfg: Mapping[str, Any], source: Mapping[str, Any]) -> dict[str, Any]:
    columns = {role: col for role, col in split_columns(cfg, "train").items() if role in ("text", "text_pair")}
    columns.update({k: v for k, v in dict(source.get("columns") or {}).items() if k in ("text", "text_pair")})
    return columns


def check_spec(
    cfg: Mapping[str, Any],
    key: str = KEY,
    known: Sequence[str] = KNOWN,
    held: Mapping[str, Mapping[str, Any] | None] | None = None,
) -> None:
    """The config-time check of the transfer block `cfg.transfer` (shape, rates, gold_repeat), reading no file.

    `key`: its config key in errors (`data.transfer`, BAM's `data.tasks[i].transfer`); `known`: its keys; `held`:
    the evaluation splits no source may be, by name (default: `cfg`'s own test and validation splits)."""
    spec = cfg.get("transfer")
    if spec is None:
        return
    if not isinstance(spec, Mapping):
        raise ConfigError(key, f"must be null or a mapping with keys {list(known)}, got {spec!r}")
    unknown = sorted(set(spec) - set(known))
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}", f"unknown key; expected {list(known)}")
    sources = spec.get("sources") or []
    if not isinstance(sources, Sequence) or isinstance(sources, str):
        raise ConfigError(f"{key}.sources", f"must be a list of sources, got {sources!r}")
    held = {"test": cfg.get("test"), "validation": cfg.get("validation")} if held is None else held
    for i, source in enumerate(sources):
        where = f"{key}.sources[{i}]"
        if not isinstance(source, Mapping):
            raise ConfigError(where, f"must be a mapping (path, hf, embedded or rest_of_train), got {source!r}")
        kinds = [k for k in ("path", "hf", "embedded", "rest_of_train") if source.get(k) not in (None, False)]
        if len(kinds) != 1:
            raise ConfigError(where, f"needs exactly one of path, hf, embedded, rest_of_train; got {kinds or 'none'}")
        if kinds == ["rest_of_train"] and (cfg.get("train") or {}).get("limit") is None:
            raise ConfigError(
                f"{where}.rest_of_train",
                f"needs {_data_key(key)}.train.limit: the labelled rows kept; the rest become transfer text",
            )
        for split, node in held.items():
            if _same_source(source, node):
                raise ConfigError(where, f"is the {split} split's source ({_describe(source)}): it would leak it")
    augment = settings(spec.get("augment"), f"{key}.augment")
    if augment is not None and augment.of not in ("gold", "all"):
        raise ConfigError(f"{key}.augment.of", f"must be gold or all, got {augment.of!r}")
    if not sources and (augment is None or augment.n_iter == 0):
        raise ConfigError(key, f"has no sources and no augmentation: set {key}.sources, augment, or null")
    repeat = spec.get("gold_repeat", 1)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ConfigError(f"{key}.gold_repeat", f"must be an integer >= 1, got {repeat!r}")


def _data_key(key: str) -> str:
    """The data config holding a transfer block: `data` for `data.transfer`, `data.tasks[i]` for a task's."""
    return key.rsplit(".", 1)[0]


def _same_source(source: Mapping[str, Any], split: Mapping[str, Any] | None) -> bool:
    """Whether a transfer source reads the same rows as a split's source (same file, or same dataset and split)."""
    if not split:
        return False
    if source.get("path") is not None:
        return str(source["path"]) == str(split.get("path"))
    for kind, part in (("embedded", "split"), ("hf", "hf_split")):
        if source.get(kind) is not None and source[kind] == split.get(kind):
            same_files = all(str(source.get(k)) == str(split.get(k)) for k in ("hf_config", "data_files"))
            same_part = (source.get(part) or "train") == (split.get(part) or "train")
            return same_part and same_files and not split.get("holdout")
    return False


def check_sources(
    cfg: Mapping[str, Any],
    key: str = KEY,
    known: Sequence[str] = KNOWN,
    held: Mapping[str, Mapping[str, Any] | None] | None = None,
) -> None:
    """Everything about the transfer block that is cheap to check before a model is loaded: the spec (`check_spec`'s
    arguments), and each local file source read (a missing file, column or an empty file: one line naming it)."""
    check_spec(cfg, key, known, held)
    for i, source in enumerate((cfg.get("transfer") or {}).get("sources") or []):
        if source.get("path") is not None and not _source_rows(cfg, source, [], f"{key}.sources[{i}]"):
            raise ConfigError(f"{key}.sources[{i}]", "has no rows")


def _inputs(cfg: Mapping[str, Any], rows: Sequence[Record]) -> list[Input]:
    pair = (cfg.get("columns") or {}).get("text_pair") is not None
    return [(str(r["text"]), str(r["text_pair"]) if pair else None) for r in rows]


def _source_rows(cfg: Mapping[str, Any], source: Mapping[str, Any], gold: Sequence[Record], key: str) -> list[Record]:
    """The rows of one source (text roles only)."""
    if source.get("rest_of_train"):
        train = {k: v for k, v in dict(cfg["train"]).items() if k != "limit"}
        kept = {row["_where"] for row in gold}
        return [r for r in load_records(train, _text_columns(cfg, train)) if r["_where"] not in kept]
    columns = _text_columns(cfg, source)
    check_columns(dict(source), columns, f"{key}.columns")  # a column the source lacks: one line naming it
    try:
        return load_records(dict(source), columns)
    except ConfigError as err:  # name the transfer source, not a split
        raise ConfigError(f"{key}.{err.key}", err.message) from None


def collect(
    cfg: Mapping[str, Any],
    gold: Sequence[Record],
    evaluation: Sequence[Record],
    key: str = KEY,
    known: Sequence[str] = KNOWN,
) -> TransferSet | None:
    """The source rows of the transfer set `cfg.transfer` describes (None without one): distinct, none a labelled row
    of `gold`, evaluation rows (`evaluation`: validation + test) dropped and counted. Augmented copies: `add_copies`.
    `key`, `known`: as for `check_spec`."""
    spec = cfg.get("transfer")
    if spec is None:
        return None
    check_spec(cfg, key, known)
    held = {content_id(*item) for item in _inputs(cfg, evaluation)}
    taken = {content_id(*item) for item in _inputs(cfg, gold)}
    inputs: list[Input] = []
    counts: list[dict[str, Any]] = []
    for i, source in enumerate(spec.get("sources") or []):
        where = f"{key}.sources[{i}]"
        rows = _source_rows(cfg, source, gold, where)
        if not rows:
            raise ConfigError(where, "has no rows")
        leaked = kept = 0
        for item in _inputs(cfg, rows):
            ident = content_id(*item)
            if ident in held:
                leaked += 1
            elif ident not in taken:
                taken.add(ident)
                inputs.append(item)
                kept += 1
        if leaked > LEAK_SHARE * len(rows):
            raise ConfigError(
                where, f"{leaked} of its {len(rows)} rows are validation or test inputs: it would leak them"
            )
        counts.append({"source": _describe(source), "rows": len(rows), "kept": kept, "evaluation_rows_dropped": leaked})
    repeat = int(spec.get("gold_repeat", 1))
    info = {"sources": counts, "gold_repeat": repeat, "inputs": len(inputs), "labelled_rows": len(gold)}
    return TransferSet(inputs, repeat, info, held | taken)


def add_copies(
    transfer: TransferSet,
    cfg: Mapping[str, Any],
    gold: Sequence[Record],
    mask_token: str | None,
    cache_dir: str | None,
    tagger: Tagger | None = None,
    key: str = KEY,
) -> None:
    """Append Tang et al.'s augmented copies (`cfg.transfer.augment`; none when null or n_iter = 0) of the labelled
    texts (`of: gold`) or of those and the source rows (`of: all`); copies equal to any input or evaluation row are
    dropped. `mask_token`: the student's tokenizer's; `key`: the transfer block's config key in errors."""
    options = settings(cfg["transfer"].get("augment"), f"{key}.augment")
    if options is None or options.n_iter == 0:
        return
    base = _inputs(cfg, gold) + (list(transfer.inputs) if options.of == "all" else [])
    try:
        augmenter = Augmenter(base, options, mask_token or "", tagger)
    except ConfigError as err:  # Augmenter names hinton's key; name this block's
        raise ConfigError(err.key.replace(KEY, key, 1), err.message) from None
    copies, cached = augmented(base, transfer.inputs, augmenter, cache_dir)
    copies = [c for c in copies if content_id(*c) not in transfer.seen]
    transfer.seen.update(content_id(*c) for c in copies)
    transfer.inputs.extend(copies)
    transfer.info["augment"] = {**augmenter.describe(), "copies": len(copies), "of_inputs": len(base), "cached": cached}
    transfer.info["inputs"] = len(transfer.inputs)


def build(
    cfg: Mapping[str, Any],
    gold: Sequence[Record],
    evaluation: Sequence[Record],
    mask_token: str | None,
    cache_dir: str | None,
    tagger: Tagger | None = None,
    key: str = KEY,
    known: Sequence[str] = KNOWN,
) -> TransferSet | None:
    """`collect`, then `add_copies`: the whole transfer set for the labelled rows `gold` (`key`, `known`: as for
    `check_spec`)."""
    transfer = collect(cfg, gold, evaluation, key, known)
    if transfer is not None:
        add_copies(transfer, cfg, gold, mask_token, cache_dir, tagger, key)
    return transfer


def _describe(source: Mapping[str, Any]) -> str:
    if source.get("rest_of_train"):
        return "rest_of_train"
    for kind in ("path", "hf", "embedded"):
        if source.get(kind) is not None:
            split = source.get("split") or source.get("hf_split")
            return f"{kind}:{source[kind]}" + (f"/{split}" if split else "")
    return str(dict(source))
