"""`kdlab-cache`: see and prune the teacher-output cache (`<cache dir>/teacher_outputs`, kdlab/cache/teacher_outputs.py).

    kdlab-cache list                           every entry: teacher, kind, storage, rows, size, last used, runs
    kdlab-cache prune --older-than 30          entries not used for 30 days
    kdlab-cache prune --max-size 2G            least recently used entries until the cache holds at most 2 GiB
    kdlab-cache prune --teacher minilm         entries of teachers whose name, class or weights hash contains it
    kdlab-cache prune --entry 3f2a…            one entry (a prefix of its name)

The cache folder is $KDLAB_CACHE_DIR, else ./.kdlab_cache (as conf/paths/default.yaml), or --cache-dir. An entry a
process holds the lock of (a run reading or appending to it) is never removed: prune takes each entry's lock without
waiting and keeps, naming it, any entry it cannot lock. `--dry-run` says what would go. Files of the layout before
per-row entries (`<key>.safetensors` at the top) are listed as `old layout` entries: no run reads them any more.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from kdlab.errors import ConfigError, KdlabError

UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


@dataclass
class Entry:
    """What `kdlab-cache list` shows of one entry."""

    name: str
    path: Path
    teacher: str
    kind: str
    storage: str
    rows: int
    size: int
    last_used: float
    runs: list[str] = field(default_factory=list)
    weights: str = ""


def _uses(folder: Path) -> list[dict]:
    """The entry's uses.jsonl lines (a line a kill cut short is skipped)."""
    from kdlab.cache.teacher_outputs import USES

    out = []
    path = folder / USES
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def entries(root: Path) -> list[Entry]:
    """Every entry under `root` (the teacher_outputs folder), most recently used first."""
    from safetensors import safe_open

    from kdlab.cache.teacher_outputs import META, SHARD

    found: list[Entry] = []
    if not root.is_dir():
        return found
    for path in sorted(root.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_file() and path.suffix == ".safetensors":  # the layout before per-row entries
            stat = path.stat()
            found.append(Entry(path.stem, path, "?", "old layout", "?", 0, stat.st_size, stat.st_mtime))
            continue
        if not path.is_dir():
            continue
        meta = json.loads((path / META).read_text()) if (path / META).exists() else {}
        shards = [p for p in path.iterdir() if SHARD.match(p.name)]
        rows = 0
        for shard in shards:
            try:
                with safe_open(str(shard), framework="pt") as handle:
                    rows += int((handle.metadata() or {}).get("rows", 0))
            except Exception:  # noqa: BLE001 - a damaged shard still counts in the size; its rows are unknown
                continue
        uses = _uses(path)
        files = [p for p in path.iterdir() if p.is_file()]
        last = max([u.get("time", 0) for u in uses] + [p.stat().st_mtime for p in shards] or [path.stat().st_mtime])
        runs = list(dict.fromkeys(str(u["run"]) for u in uses if u.get("run")))
        top_k = meta.get("top_k")
        storage = f"{meta.get('dtype', '?')}" + (f", top {top_k}" if top_k else "")
        found.append(
            Entry(
                path.name,
                path,
                str(meta.get("teacher", "?")),
                str(meta.get("kind", "?")),
                storage,
                rows,
                sum(p.stat().st_size for p in files),
                last,
                runs,
                str(meta.get("weights", "")),
            )
        )
    return sorted(found, key=lambda e: e.last_used, reverse=True)


def human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def parse_size(text: str) -> int:
    """'500M', '2G', '1.5GiB', '4096' → bytes (powers of 1024); ConfigError naming --max-size otherwise."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, flags=re.IGNORECASE)
    if not found:
        raise ConfigError("--max-size", f"must be a size like 500M or 2G, got {text!r}")
    return int(float(found.group(1)) * UNITS[found.group(2).upper()])


def show(root: Path) -> str:
    """The `list` table: one line per entry (and the runs that used it), then the total."""
    listed = entries(root)
    if not listed:
        return f"{root}: no teacher-output cache entries"
    # the teacher and kind columns as wide as their longest value: a name cut short can match the wrong teacher
    teacher = max(len("teacher"), *(len(e.teacher) for e in listed))
    kind = max(len("kind"), *(len(e.kind) for e in listed))
    lines = [
        f"{'entry':<12}  {'teacher':<{teacher}}  {'kind':<{kind}}  {'storage':<14}  {'rows':>8}  {'size':>10}  last used"
    ]
    for entry in listed:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.last_used))
        lines.append(
            f"{entry.name[:12]:<12}  {entry.teacher:<{teacher}}  {entry.kind:<{kind}}  {entry.storage:<14}  "
            f"{entry.rows:>8}  {human(entry.size):>10}  {used}"
        )
        if entry.runs:
            more = f" (+{len(entry.runs) - 3} more)" if len(entry.runs) > 3 else ""
            lines.append(f"{'':<14}used by {len(entry.runs)} run(s): {', '.join(entry.runs[-3:])}{more}")
    total = sum(e.size for e in listed)
    lines.append(f"{len(listed)} entries, {human(total)} in {root}")
    return "\n".join(lines)


def chosen(listed: list[Entry], args: argparse.Namespace) -> list[Entry]:
    """The entries `prune` removes: those matching --older-than / --teacher / --entry, then the least recently used
    of the rest until --max-size holds."""
    now = time.time()
    picked = [
        e
        for e in listed
        if (args.older_than is not None and now - e.last_used > args.older_than * 86400)
        or (args.teacher and (args.teacher in e.teacher or e.weights.startswith(args.teacher)))
        or (args.entry and e.name.startswith(args.entry))
    ]
    if args.max_size is not None:
        budget = parse_size(args.max_size)
        kept = [e for e in listed if e not in picked]  # most recently used first
        total = sum(e.size for e in kept)
        for entry in reversed(kept):
            if total <= budget:
                break
            picked.append(entry)
            total -= entry.size
    return picked


def remove(root: Path, entry: Entry) -> bool:
    """Remove one entry unless another process holds its lock (then False); a folder is renamed aside first, so a
    kill mid-removal leaves no half entry under the entry's name."""
    from kdlab.cache.teacher_outputs import entry_lock

    with entry_lock(root, entry.name, shared=False, wait=False) as taken:
        if not taken:
            return False
        if entry.path.is_dir():
            aside = root / f".{entry.name}.pruned.{os.getpid()}"
            entry.path.rename(aside)
            shutil.rmtree(aside)
        else:
            entry.path.unlink()
    return True


def prune(root: Path, args: argparse.Namespace) -> list[str]:
    """Remove the chosen entries (`--dry-run`: only say which); one line per entry."""
    if args.older_than is None and args.max_size is None and not args.teacher and not args.entry:
        raise ConfigError(
            "prune", "say what to prune: --older-than DAYS, --max-size SIZE, --teacher TEXT or --entry NAME"
        )
    lines = []
    for entry in chosen(entries(root), args):
        label = f"{entry.name[:12]} ({entry.teacher}, {entry.kind}, {human(entry.size)})"
        if args.dry_run:
            lines.append(f"would remove {label}")
        elif remove(root, entry):
            lines.append(f"removed {label}")
        else:
            lines.append(f"kept {label}: another process holds its lock (in use)")
    return lines or ["nothing to prune"]


def main(argv: list[str] | None = None) -> None:
    """`kdlab-cache [--cache-dir DIR] list | prune ...`."""
    parser = argparse.ArgumentParser(prog="kdlab-cache", description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(os.environ.get("KDLAB_CACHE_DIR") or ".kdlab_cache"),
        help="the cache folder (paths.cache_dir; default $KDLAB_CACHE_DIR or ./.kdlab_cache)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="every entry, its size, when it was last used and by which runs")
    pruning = commands.add_parser("prune", help="remove entries by age, size budget, teacher or name")
    pruning.add_argument("--older-than", type=float, default=None, metavar="DAYS", help="not used for DAYS days")
    pruning.add_argument("--max-size", default=None, metavar="SIZE", help="keep at most SIZE (e.g. 2G), LRU first")
    pruning.add_argument("--teacher", default=None, help="a teacher name, class or weights-hash prefix")
    pruning.add_argument("--entry", default=None, help="an entry name (or a prefix of it)")
    pruning.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")
    args = parser.parse_args(argv)
    root = args.cache_dir / "teacher_outputs"
    try:
        print(show(root) if args.command == "list" else "\n".join(prune(root, args)))
    except KdlabError as err:
        print(f"kdlab: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
