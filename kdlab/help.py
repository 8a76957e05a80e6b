"""kdlab's own lines before Hydra's `--help` text: what the program is, the methods (from kdlab.registry), the
experiments (conf/experiment/), and how to see a method's keys."""

from __future__ import annotations

import sys
from pathlib import Path

from kdlab.registry import METHODS
from kdlab.resolvers import conf_dir


def experiments() -> list[str]:
    """The recorded experiments, by name (conf/experiment/*.yaml)."""
    return sorted(p.stem for p in (Path(conf_dir()) / "experiment").glob("*.yaml"))


def train_help() -> str:
    width = max(len(name) for name in METHODS)
    lines = [
        "kdlab-train: knowledge distillation experiments (teacher -> student), configured with Hydra.",
        "",
        "Methods (method=<name>; each with the experiment that gives it data):",
    ]
    lines += [f"  {name:<{width}}  {entry.summary}  [{entry.example}]" for name, entry in METHODS.items()]
    lines += [
        "",
        f"Experiments (experiment=<name>): {', '.join(experiments())}",
        "",
        "  kdlab-train                                   # the embedded default: teacher, KD student",
        "  kdlab-train data=local data.train=my.csv data.text=sentence data.label=kind   # your own data",
        "  kdlab-train -m loss.temperature=1,2,4          # a sweep",
        "  kdlab-train method=bam --cfg job --package method   # one method's keys and defaults",
        "  kdlab-train --cfg job                          # the whole composed config",
        "",
        "Hydra's own help follows.",
        "",
    ]
    return "\n".join(lines)


def eval_help() -> str:
    return "\n".join(
        [
            "kdlab-eval: score a trained model (an export folder or a kdlab .ckpt) on validation and test data.",
            "",
            "  kdlab-eval model_path=outputs/runs/<run>/student/model            # the data of the run it comes from",
            "  kdlab-eval model_path=outputs/runs/<run>/student/model data=sst2  # another data config (same label names)",
            "  kdlab-eval model_path=<folder> splits=[test]",
            "",
            "Hydra's own help follows.",
            "",
        ]
    )


def print_help_first(argv: list[str], text: str) -> None:
    """Print `text` when argv asks for --help (Hydra's help comes after it)."""
    if "--help" in argv or "-h" in argv:
        sys.stdout.write(text + "\n")
