"""The forward proof of issue 17, item 4: a new model kind and a new loss term touch no shared file beyond one
registration line each.

    python benchmarks/extension_proof.py [--rev HEAD] [--keep DIR]

In a throw-away copy of the tree at `--rev` (git archive, committed there as "base"), this adds what
docs/architecture.md ("Adding a model kind", "Adding a loss term") says a new one needs: a bag-of-words student
(kdlab/models/bow.py, conf/model/bow.yaml, one `register_kind(...)` line in kdlab/models/kinds.py) and a logit-L1 soft
term (kdlab/losses/logit_l1.py, conf/loss/logit_l1.yaml, one `register_term(...)` line in kdlab/losses/registry.py).
It prints `git diff --stat` (the shared files changed) and `git status` (the new files), then runs, in that copy,
`kdlab-train model=bow loss=logit_l1` at the tests' tiny size (hinton: teacher -> bag-of-words student with the new
term), scores the student's .ckpt with `kdlab-eval`, and loads its export with the three-line snippet. About a minute
on 2 cores; nothing is written outside a temporary folder (or `--keep`).
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

STUDENT = '''"""Bag-of-words student: u = 1/n Σ_t x_t (non-padding word vectors), z = W · dropout(u) + b."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kdlab.models.word_students import WordStudent, WordStudentConfig, kind_functions


@dataclass
class BagOfWordsConfig(WordStudentConfig):
    """No sizes beyond the word vectors'."""


class BagOfWordsClassifier(WordStudent):
    kdlab_kind = "bow"
    config_class = BagOfWordsConfig

    def feature_size(self) -> int:
        return self.config.embedding_dim

    def encode(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return states.sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1)


build, from_payload, load = kind_functions(BagOfWordsClassifier)
'''
TERM = '''"""Logit L1 as the soft term:  L = α · 1/|B| Σ_i ‖z_S,i − z_T,i‖₁ + (1 − α) · CE(z_S, y)."""

from __future__ import annotations

import torch

from kdlab.losses.soft_target import LogitKDLoss


class LogitL1KDLoss(LogitKDLoss):
    def soft(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        return (student_logits.float() - teacher_logits.float()).abs().reshape(len(student_logits), -1).sum(-1).mean()
'''
KIND_LINE = (
    'register_kind(ModelKind("bow", "mean of word vectors", **word_student("kdlab.models.bow"), transformer=False, '
    'serves=CLASSIFIER_PLACES, settings=("embedding_dim", "dropout"), check="kdlab.models.kinds:check_word_student"))\n'
)
TERM_LINE = 'register_term(LossTerm("logit_l1", "soft", "kdlab.losses.logit_l1:LogitL1KDLoss", "logit L1", params=("alpha",)))\n'
TINY = [
    "debug=fast",
    "data.train.size=200",
    "data.validation.size=50",
    "data.test.size=50",
    "model.teacher.config.hidden_size=32",
    "model.teacher.config.num_hidden_layers=1",
    "model.teacher.config.num_attention_heads=2",
    "model.teacher.config.intermediate_size=64",
    "model.student.config.embedding_dim=16",
    "method.deploy_benchmark=false",
]
SNIPPET = """
from transformers import AutoTokenizer
from kdlab.models.bow import BagOfWordsClassifier
model, tokenizer = BagOfWordsClassifier.from_pretrained(FOLDER), AutoTokenizer.from_pretrained(FOLDER)
print("snippet logits", tuple(model(**tokenizer(["good food", "bad"], padding=True, return_tensors="pt")).logits.shape))
"""


def git(tree: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=proof", "-c", "user.email=proof@localhost", *args]
    return subprocess.run(command, cwd=tree, check=True, capture_output=True, text=True).stdout


def add(tree: Path) -> None:
    """The new kind and the new term, as docs/architecture.md's steps say."""
    (tree / "kdlab/models/bow.py").write_text(STUDENT, encoding="utf-8")
    bilstm = (tree / "conf/model/bilstm.yaml").read_text(encoding="utf-8").splitlines()
    bow = [
        "  kind: bow              # kdlab/models/bow.py"
        if line.startswith("  kind:")
        else "  config: {embedding_dim: 64, dropout: 0.1}"
        if line.startswith("  config: {embedding_dim")
        else line
        for line in bilstm
    ]
    (tree / "conf/model/bow.yaml").write_text("\n".join(bow) + "\n", encoding="utf-8")
    with open(tree / "kdlab/models/kinds.py", "a", encoding="utf-8") as handle:
        handle.write(KIND_LINE)
    (tree / "kdlab/losses/logit_l1.py").write_text(TERM, encoding="utf-8")
    loss = (tree / "conf/loss/logit_mse.yaml").read_text(encoding="utf-8").replace("logit_mse", "logit_l1")
    (tree / "conf/loss/logit_l1.yaml").write_text(loss, encoding="utf-8")
    registry = tree / "kdlab/losses/registry.py"
    text = registry.read_text(encoding="utf-8")
    anchor = next(
        line for line in text.splitlines(keepends=True) if line.startswith('register_term(LossTerm("logit_mse"')
    )
    registry.write_text(text.replace(anchor, anchor + TERM_LINE), encoding="utf-8")


def run(tree: Path, out: Path, *args: str) -> str:
    env = {
        **os.environ,
        "KDLAB_OUTPUT_DIR": str(out),
        "KDLAB_CACHE_DIR": str(out / "cache"),
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "disabled",
        "PYTHONPATH": str(tree),
    }
    result = subprocess.run([sys.executable, *args], cwd=tree, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args[:3])} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="HEAD")
    parser.add_argument("--keep", type=Path, default=None, help="a folder to keep the copy in (default: a temp folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        tree, out = root / "tree", root / "outputs"
        tree.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", args.rev], cwd=REPO, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        git(tree, "init", "-q")
        git(tree, "add", "-A")
        git(tree, "commit", "-qm", "base")
        add(tree)
        print(f"on {subprocess.check_output(['git', 'rev-parse', '--short', args.rev], cwd=REPO, text=True).strip()}")
        print("shared files changed (git diff --stat):")
        print(git(tree, "diff", "--stat"))
        print("new files (git status --short):")
        print(git(tree, "status", "--short", "--untracked-files=all"))
        run_dir = out / "run"
        run(tree, out, "-m", "kdlab.train", "model=bow", "loss=logit_l1", *TINY, f"hydra.run.dir={run_dir}")
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        shown = {key: round(value, 4) for key, value in metrics.items() if key.startswith("student/")}
        print("kdlab-train model=bow loss=logit_l1 (hinton), student:", shown)
        ckpt = run_dir / "student" / "checkpoints" / "best.ckpt"
        scored = run(
            tree, out, "-m", "kdlab.eval", f"model_path={ckpt}", "data.validation.size=50", "data.test.size=50"
        )
        accuracies = [
            " ".join(line.split()) for line in scored.splitlines() if line.split()[:1] in (["val/acc"], ["test/acc"])
        ]
        print("kdlab-eval on the student's .ckpt:", ", ".join(accuracies))
        folder = run_dir / "student" / "model"
        print(run(tree, out, "-c", f"FOLDER = {str(folder)!r}" + SNIPPET).strip())


if __name__ == "__main__":
    main()
