"""Does a change keep every run's outputs? The determinism test's tiny runs on two revisions, compared file by file.

    python benchmarks/same_exports.py BEFORE AFTER [--methods multilingual,trans_encoder,bam] [--keep DIR]

Each revision is unpacked with `git archive` into a folder of its own and runs tests/test_determinism.py's CASES
(the overrides of this checkout's test, the same for both) in one fresh process (`kdlab.api.train`, seed 42, its own
cache and output folders, PYTHONHASHSEED=1). Then every file of every exported model folder (`model/` of each stage,
Trans-Encoder's start/ and best/) and every metrics.json is compared byte for byte; the script prints the files that
differ (none: the change kept the weights, configs and metrics) and exits non-zero when some do. About a minute per
revision and method on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUN = """
import json, sys
from kdlab import api
for name, overrides, folder in json.loads(sys.argv[1]):
    api.train(*overrides, output_dir=folder)
"""


def cases() -> dict[str, list[str]]:
    """tests/test_determinism.py's CASES, from this checkout."""
    sys.path[:0] = [str(REPO / "tests")]
    from test_determinism import CASES

    return CASES


def run(revision: str, root: Path, jobs: list[tuple[str, list[str]]]) -> Path:
    """The jobs on `revision`, in a fresh process; the folder holding their run folders."""
    tree, runs = root / "tree", root / "runs"
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", revision], cwd=REPO, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "KDLAB_OUTPUT_DIR": str(root / "outputs"),
        "KDLAB_CACHE_DIR": str(root / "cache"),
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "disabled",
        "PYTHONHASHSEED": "1",
    }
    plan = [(name, overrides, str(runs / name)) for name, overrides in jobs]
    result = subprocess.run(
        [sys.executable, "-c", RUN, json.dumps(plan)], cwd=tree, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"{revision}: the runs failed\n{result.stderr[-3000:]}")
    return runs


def outputs(runs: Path) -> dict[str, Path]:
    """Every exported model file and every metrics.json, by its path in the run folders."""
    found = {}
    for path in sorted(runs.rglob("*")):
        relative = path.relative_to(runs)
        exported = any(part in ("model", "start", "best") for part in relative.parts[1:-1])
        if path.is_file() and (exported or path.name == "metrics.json"):
            found[str(relative)] = path
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--methods", default="multilingual,trans_encoder,bam")
    parser.add_argument("--keep", type=Path, default=None, help="a folder to keep both trees and runs in")
    args = parser.parse_args()
    known = cases()
    jobs = [(name, known[name]) for name in args.methods.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        before = outputs(run(args.before, root / "before", jobs))
        after = outputs(run(args.after, root / "after", jobs))
        differ = sorted(set(before) ^ set(after))
        differ += [
            name for name in sorted(set(before) & set(after)) if before[name].read_bytes() != after[name].read_bytes()
        ]
        print(f"{args.before} vs {args.after}, {args.methods}: {len(before)} files compared, {len(differ)} differ")
        for name in differ:
            print("  differs:", name)
        if differ:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
