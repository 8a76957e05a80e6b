"""One `kdlab-train` job for a benchmark script: run in its own folder (a finished one is read back, `resume=auto`),
its output kept beside it as `<folder>.log`, and its metrics.json returned with the wall time.

    from kdlab_run import train          # benchmarks/ is the script's folder, so it is on sys.path
    metrics, wall = train(folder, ["experiment=hinton_transfer", "seed=1"], "seed 1")
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path


def train(folder: Path, arguments: Sequence[str], what: str) -> tuple[dict[str, float], float]:
    """Run `kdlab-train *arguments hydra.run.dir=folder resume=auto` offline; stop the script with the job's last
    output, naming `what`, when it fails."""
    command = [
        str(Path(sys.executable).with_name("kdlab-train")),
        *arguments,
        f"hydra.run.dir={folder}",
        "resume=auto",
    ]
    print("$", " ".join(command), flush=True)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    wall = time.perf_counter() - start
    folder.parent.mkdir(parents=True, exist_ok=True)
    (folder.parent / f"{folder.name}.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"{what} failed:\n{done.stderr[-3000:]}\n{done.stdout[-3000:]}")
    print(f"  {what}: done in {wall:.0f} s", flush=True)
    return json.loads((folder / "metrics.json").read_text()), wall
