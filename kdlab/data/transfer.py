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


def check_spec(cfg: Mapping[str, Any]) -> None:
    """The config-time check of `data.transfer` (shape, rates, gold_repeat), reading no file."""
    spec = cfg.get("transfer")
    if spec is None:
        return
    if not isinstance(spec, Mapping):
        raise ConfigError(KEY, f"must be null or a mapping with keys {list(KNOWN)}, got {spec!r}")
    unknown = sorted(set(spec) - set(KNOWN))
    if unknown:
        raise ConfigError(f"{KEY}.{unknown[0]}", f"unknown key; expected {list(KNOWN)}")
    sources = spec.get("sources") or []
    if not isinstance(sources, Sequence) or isinstance(sources, str):
        raise ConfigError(f"{KEY}.sources", f"must be a list of sources, got {sources!r}")
    for i, source in enumerate(sources):
        key = f"{KEY}.sources[{i}]"
        if not isinstance(source, Mapping):
            raise ConfigError(key, f"must be a mapping (path, hf, embedded or rest_of_train), got {source!r}")
        kinds = [k for k in ("path", "hf", "embedded", "rest_of_train") if source.get(k) not in (None, False)]
        if len(kinds) != 1:
            raise ConfigError(key, f"needs exactly one of path, hf, embedded, rest_of_train; got {kinds or 'none'}")
        if kinds == ["rest_of_train"] and (cfg.get("train") or {}).get("limit") is None:
            raise ConfigError(
                f"{key}.rest_of_train", "needs data.train.limit: the labelled rows kept; the rest become transfer text"
            )
        for split in ("test", "validation"):
            if _same_source(source, cfg.get(split)):
                raise ConfigError(key, f"is the {split} split's source ({_describe(source)}): it would leak it")
    augment = settings(spec.get("augment"), f"{KEY}.augment")
    if augment is not None and augment.of not in ("gold", "all"):
        raise ConfigError(f"{KEY}.augment.of", f"must be gold or all, got {augment.of!r}")
    if not sources and (augment is None or augment.n_iter == 0):
        raise ConfigError(KEY, "has no sources and no augmentation: set data.transfer.sources, augment, or null")
    repeat = spec.get("gold_repeat", 1)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ConfigError(f"{KEY}.gold_repeat", f"must be an integer >= 1, got {repeat!r}")


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


def check_sources(cfg: Mapping[str, Any]) -> None:
    """Everything about `data.transfer` that is cheap to check before a model is loaded: the spec, and each local
    file source read (a missing file, column or an empty file: one line naming it)."""
    check_spec(cfg)
    for i, source in enumerate((cfg.get("transfer") or {}).get("sources") or []):
        if source.get("path") is not None and not _source_rows(cfg, source, [], f"{KEY}.sources[{i}]"):
            raise ConfigError(f"{KEY}.sources[{i}]", "has no rows")


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


def collect(cfg: Mapping[str, Any], gold: Sequence[Record], evaluation: Sequence[Record]) -> TransferSet | None:
    """The source rows of the transfer set `cfg.transfer` describes (None without one): distinct, none a labelled row
    of `gold`, evaluation rows (`evaluation`: validation + test) dropped and counted. Augmented copies: `add_copies`."""
    spec = cfg.get("transfer")
    if spec is None:
        return None
    check_spec(cfg)
    held = {content_id(*item) for item in _inputs(cfg, evaluation)}
    taken = {content_id(*item) for item in _inputs(cfg, gold)}
    inputs: list[Input] = []
    counts: list[dict[str, Any]] = []
    for i, source in enumerate(spec.get("sources") or []):
        key = f"{KEY}.sources[{i}]"
        rows = _source_rows(cfg, source, gold, key)
        if not rows:
            raise ConfigError(key, "has no rows")
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
                key, f"{leaked} of its {len(rows)} rows are validation or test inputs: it would leak them"
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
) -> None:
    """Append Tang et al.'s augmented copies (`cfg.transfer.augment`; none when null or n_iter = 0) of the labelled
    texts (`of: gold`) or of those and the source rows (`of: all`); copies equal to any input or evaluation row are
    dropped. `mask_token`: the student's tokenizer's."""
    options = settings(cfg["transfer"].get("augment"), f"{KEY}.augment")
    if options is None or options.n_iter == 0:
        return
    base = _inputs(cfg, gold) + (list(transfer.inputs) if options.of == "all" else [])
    augmenter = Augmenter(base, options, mask_token or "", tagger)
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
) -> TransferSet | None:
    """`collect`, then `add_copies`: the whole transfer set for the labelled rows `gold`."""
    transfer = collect(cfg, gold, evaluation)
    if transfer is not None:
        add_copies(transfer, cfg, gold, mask_token, cache_dir, tagger)
    return transfer


def _describe(source: Mapping[str, Any]) -> str:
    if source.get("rest_of_train"):
        return "rest_of_train"
    for kind in ("path", "hf", "embedded"):
        if source.get(kind) is not None:
            split = source.get("split") or source.get("hf_split")
            return f"{kind}:{source[kind]}" + (f"/{split}" if split else "")
    return str(dict(source))
