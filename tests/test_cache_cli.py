"""`kdlab-cache` (kdlab/cache/cli.py): lists entries with their use, prunes by age, size, teacher or name, and never
removes an entry another process holds the lock of."""

import os
import shutil
import subprocess
import sys
import time

import pytest
import torch
from test_cache import DESCRIPTION

from kdlab.cache.cli import main, parse_size
from kdlab.cache.teacher_outputs import TeacherOutputCache, entry_name


def description(teacher: str, weights: str) -> dict:
    return {**DESCRIPTION, "teacher": teacher, "weights": weights, "identity": "BertForSequenceClassification/bert"}


@pytest.fixture
def cache_dir(tmp_path):
    """Three entries: 'old-teacher' used 40 days ago, 'big-teacher' (the largest), 'minilm' used last by two runs."""
    root = tmp_path / "cache" / "teacher_outputs"
    cache = TeacherOutputCache(root)
    for teacher, rows, run in (
        ("old-teacher", 10, "outputs/runs/a"),
        ("big-teacher", 400, "outputs/runs/b"),
        ("models/minilm", 20, "outputs/runs/c"),
    ):
        inputs = [(f"{teacher} {i}", None) for i in range(rows)]
        cache.get_or_compute(
            description(teacher, teacher * 4), inputs, lambda items: torch.zeros(len(items), 50), run=run
        )
    cache.get_or_compute(description("models/minilm", "models/minilm" * 4), inputs[:5], None, run="outputs/runs/d")
    old = root / entry_name(description("old-teacher", "old-teacher" * 4))
    stamp = time.time() - 40 * 86400
    (old / "uses.jsonl").write_text(f'{{"time": {stamp}, "run": "outputs/runs/a", "computed": 10, "read": 0}}\n')
    for path in old.iterdir():
        os.utime(path, (stamp, stamp))
    return tmp_path / "cache"


def run(cache_dir, *args, capsys):
    main(["--cache-dir", str(cache_dir), *args])
    return capsys.readouterr().out


def test_list_shows_each_entry_its_rows_size_last_use_and_runs(cache_dir, capsys):
    long = "sentence-transformers/all-MiniLM-L6-v2/BertForSequenceClassification"
    TeacherOutputCache(cache_dir / "teacher_outputs").get_or_compute(
        description(long, "w"), [("a", None)], lambda items: torch.zeros(len(items), 50), run="outputs/runs/e"
    )
    listed = run(cache_dir, "list", capsys=capsys).splitlines()
    assert long in listed[1]  # whole, not cut to the column's width
    header, first = listed[0], listed[1]
    assert header.index("kind") == first.index(DESCRIPTION["kind"]) and first.index(long) == header.index("teacher")
    assert "models/minilm" in listed[3] and listed[3].index("models/minilm") == header.index("teacher")
    shutil.rmtree(cache_dir / "teacher_outputs" / entry_name(description(long, "w")))
    out = run(cache_dir, "list", capsys=capsys).splitlines()
    assert out[0].split()[:4] == ["entry", "teacher", "kind", "storage"]
    assert "models/minilm" in out[1] and " 20 " in out[1]  # the most recently used first
    assert out[2].strip() == "used by 2 run(s): outputs/runs/c, outputs/runs/d"
    assert "old-teacher" in out[-3] and out[-2].strip() == "used by 1 run(s): outputs/runs/a"
    assert out[-1].startswith("3 entries, ")


def test_prune_by_age_teacher_entry_and_size_budget(cache_dir, capsys):
    names = {t: entry_name(description(t, t * 4)) for t in ("old-teacher", "big-teacher", "models/minilm")}
    root = cache_dir / "teacher_outputs"
    assert run(cache_dir, "prune", "--older-than", "30", "--dry-run", capsys=capsys).startswith("would remove")
    assert (root / names["old-teacher"]).exists()
    assert run(cache_dir, "prune", "--older-than", "30", capsys=capsys).startswith(
        f"removed {names['old-teacher'][:12]}"
    )
    assert not (root / names["old-teacher"]).exists()
    sizes = {t: sum(p.stat().st_size for p in (root / n).iterdir()) for t, n in names.items() if t != "old-teacher"}
    # a budget the small entry fits in: the least recently used (big-teacher) goes
    out = run(cache_dir, "prune", "--max-size", str(sizes["models/minilm"] + 100), capsys=capsys)
    assert out.startswith(f"removed {names['big-teacher'][:12]}") and (root / names["models/minilm"]).exists()
    assert run(cache_dir, "prune", "--teacher", "nothing-like-it", capsys=capsys).strip() == "nothing to prune"
    assert run(cache_dir, "prune", "--entry", names["models/minilm"][:8], capsys=capsys).startswith("removed")
    assert run(cache_dir, "list", capsys=capsys).strip().endswith("no teacher-output cache entries")


HOLDER = """
import sys, time
from pathlib import Path
from kdlab.cache.teacher_outputs import entry_lock
with entry_lock(Path(sys.argv[1]), sys.argv[2], shared=True, wait=True):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_prune_keeps_an_entry_whose_lock_another_process_holds(cache_dir, capsys):
    name = entry_name(description("big-teacher", "big-teacher" * 4))
    root = cache_dir / "teacher_outputs"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(root), name], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        out = run(cache_dir, "prune", "--teacher", "big-teacher", capsys=capsys)
        assert (
            out.strip()
            == f"kept {name[:12]} (big-teacher, logits, {out.split(', ')[-1].split(')')[0]}): another process holds its lock (in use)"
        )
        assert (root / name).exists()
    finally:
        holder.kill()
        holder.wait()
    assert run(cache_dir, "prune", "--teacher", "big-teacher", capsys=capsys).startswith("removed")


def test_prune_needs_a_criterion_and_a_readable_size(cache_dir, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--cache-dir", str(cache_dir), "prune"])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "kdlab: error: prune: say what to prune: --older-than DAYS, --max-size SIZE, --teacher TEXT or --entry NAME"
    )
    assert parse_size("2G") == 2 * 1024**3 and parse_size("500MiB") == 500 * 1024**2 and parse_size("4096") == 4096
    with pytest.raises(SystemExit):
        main(["--cache-dir", str(cache_dir), "prune", "--max-size", "lots"])
    assert capsys.readouterr().err.strip() == "kdlab: error: --max-size: must be a size like 500M or 2G, got 'lots'"
