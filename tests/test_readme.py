"""README snippet test: every command in README.md's shell blocks is run, so the README cannot drift from the code.

Commands come from the ```bash / ```sh / ```shell / ```console blocks: continuation lines joined, comments
dropped; in a console block the `$ ` lines are commands and the lines under one are its expected output. Each
command falls in one category (`category`):

- train (`kdlab-train ...`): composed through the CLI with `--cfg job` in the fast suite (every job of a
  multirun), which fails on an unknown key, config group or experiment; then run with tiny limits (LIMITS for
  its experiment, replacing the README's values of the same keys). Embedded-data runs are in the fast suite:
  in this process through `kdlab.api.train` (the same compose, config checks and run folder as kdlab-train, and
  one torch import for all of them), or through the CLI for a multirun or hydra.* keys. Real data
  (KDLAB_DATA_DIR), Optuna searches and submitit launches run in the slow suite, skipped when ../shared/data or
  the minilm extra is absent. SLURM launches are composed only (no cluster here).
- verbatim: kdlab-report, kdlab-eval, kdlab-sweep-summary, kdlab-bench, `--cfg` printing, `&&` one-liners, jupyter and
  console blocks run exactly as written through bash (console: the README's output lines must be printed), with
  placeholders (<run>, <sweep>, PATH) filled with the folders of the README commands named in FILL.
- script (`python benchmarks/...`): run with small arguments (SCRIPT_ARGS) in the slow suite.
- make: targets read with `make -n`. make train's kdlab-train command is composed and run small like a train
  command. make test and make test-slow are checked, never run: their recipes are pytest over the suite that
  holds this file, so running them here would recurse; `--collect-only` shows which of this file's tests each
  selects. make benchmark's script runs small in the slow suite.
- manual: commands that install packages or start an interactive server (MANUAL); the install line is compared
  with the Makefile's recipe.
- own data: the commands of the section "Your own data" name the user's files; tests/test_own_data.py writes
  such files and runs them.

Everything runs in one temporary working folder per module, so `outputs/` and `.kdlab_cache/` in the README's
commands are there, never in the repository; `benchmarks/` and `notebooks/` there are links into the repository,
and KDLAB_DATA_DIR=../shared/data (relative to the repository root) becomes the data folder's absolute path.
test_every_readme_command_is_covered fails for a command that no category takes.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pytest
from conftest import REPO, SHARED_DATA, needs_minilm, needs_shared_data

README = REPO / "README.md"
DATA = SHARED_DATA.resolve()
SHELL_BLOCKS = {"bash", "sh", "shell", "console"}
VERBATIM_PROGRAMS = {"kdlab-report", "kdlab-eval", "kdlab-sweep-summary", "kdlab-bench", "jupyter"}
LINKED = ("benchmarks", "notebooks")  # repository folders the README's commands name by relative path
PLACEHOLDER = re.compile(r"<[a-z_ ]+>|\bPATH\b")

TRAINER_LIMITS = [
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.enable_progress_bar=false",
]
# tiny limits per experiment (None: the embedded default); a README value of the same key is replaced
LIMITS = {
    None: ["debug=fast", "data.train.size=200", "data.validation.size=50", "data.test.size=50"],
    # not debug=fast: it sets method.teacher.epochs, and multilingual has no teacher stage (the run stops on it)
    "multilingual_toy": [*TRAINER_LIMITS, "method.student.epochs=1", "method.deploy_benchmark=false"],
    "trans_encoder_toy": [
        *TRAINER_LIMITS,
        "method.cycles=1",
        "method.simcse.epochs=1",
        "method.cross.epochs=1",
        "method.bi.epochs=1",
        "data.train.size=160",
        "data.validation.size=80",
        "data.test.size=80",
    ],
    "bam_toy": ["debug=fast"],
    "hinton_transfer": [
        "debug=fast",
        "data.train.size=200",
        "data.validation.size=50",
        "data.test.size=50",
        "data.train.limit=100",  # the rest of the 200 rows: rest_of_train's transfer text
        "++data.transfer.sources.0.size=200",  # the generated source (rest_of_train ignores it)
    ],
    "hinton_sst2": ["debug=fast", "data.train.limit=320", "data.validation.limit=64", "data.test.limit=64"],
    "hinton_sst2_small_students": [
        "debug=fast",
        "data.train.limit=320",
        "data.validation.limit=64",
        "data.test.limit=64",
        # 640 SST-2 train rows at random instead of the ~65,000 rest_of_train gives (it has no limit)
        "data.transfer.sources=[{path: ${data.train.path}, limit: 640, seed: 1}]",
    ],
    "multilingual_minilm": [
        *TRAINER_LIMITS,
        "method.deploy_benchmark=false",
        "method.student.epochs=1",
        *[f"data.sources.{i}.limit=40" for i in range(5)],
        "data.holdout=8",
        "method.evaluation.tatoeba.languages=[deu]",
        "method.evaluation.sts.pairs=[[en,de]]",
    ],
    "trans_encoder_stsb": [
        *TRAINER_LIMITS,
        "method.cycles=1",
        "data.train.limit=96",
        "method.cross.epochs=1",
        "method.bi.epochs=1",
        "method.bi.batch_size=32",
    ],
    "bam_glue": ["debug=fast", *[f"++data.tasks.{i}.train.limit=64" for i in range(5)]],
}
SWEEP_LIMITS = ["hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.n_startup_trials=2"]  # Optuna searches
SCRIPT_ARGS = {
    "benchmarks/vs_sentence_transformers.py": [
        "--repeats",
        "1",
        "--pairs",
        "64",
        "--threads",
        "1",
        "--quiet",
        "-1",
        "--retries",
        "0",
    ],
    "benchmarks/overhead.py": ["--rounds", "2", "--steps", "8"],
    "benchmarks/payoff.py": [
        "--seeds",
        "1",
        "debug=fast",
        "data.train.size=200",
        "data.validation.size=50",
        "data.test.size=50",
        "data.transfer.sources.0.size=200",
    ],
    # both students, all four runs, a few steps each; the deploy timings stay on (the table reads them)
    "benchmarks/sst2_small_students.py": [
        "--seeds",  # one seed: the README's three would be twelve runs
        "42",
        "data.train.limit=160",
        "data.validation.limit=32",
        "data.test.limit=32",
        "data.transfer.sources=[{path: ${data.train.path}, limit: 320, seed: 1}]",
        "method.teacher.epochs=1",
        "method.student.epochs=1",
        "trainer.limit_train_batches=4",
    ],
}
GRID = "kdlab-train -m loss.temperature=1,2,4 loss.alpha=0.5,0.9"
# README command → {placeholder: (the README command whose run or sweep folder fills it, path inside that folder)}
FILL = {
    "kdlab-train model.teacher.trained=PATH": {"PATH": ("kdlab-train", "teacher/model")},
    "kdlab-train experiment=trans_encoder_toy hydra.run.dir=outputs/runs/<run> resume=auto": {
        "outputs/runs/<run>": ("kdlab-train experiment=trans_encoder_toy", "")
    },
    "kdlab-eval model_path=outputs/runs/<run>/student/model data=multitask_toy": {
        "outputs/runs/<run>": ("kdlab-train experiment=bam_toy", "")
    },
    "kdlab-report outputs/runs/<run>": {"outputs/runs/<run>": ("kdlab-train experiment=bam_toy", "")},
    "kdlab-bench outputs/runs/<run>/teacher/model outputs/runs/<run>/student/model": {
        "outputs/runs/<run>": ("kdlab-train", "")
    },
    "kdlab-report outputs/sweeps/<sweep>": {"outputs/sweeps/<sweep>": (GRID, "")},
    "kdlab-report outputs/sweeps/<sweep> --param loss.temperature --metric student/val/f1 --out reports/temperature": {
        "outputs/sweeps/<sweep>": (GRID, "")
    },
    "kdlab-sweep-summary outputs/sweeps/<date>_<time>": {"outputs/sweeps/<date>_<time>": (GRID, "")},
}
MANUAL = {
    'python -m venv .venv && .venv/bin/pip install torch==2.13.0 && .venv/bin/pip install -e ".[dev,minilm,hf,st,tracking,sweep,cluster]"': "installs packages; compared with the Makefile's install recipe",
    "pip install jupyterlab && jupyter lab notebooks/": "installs a package and starts an interactive server",
}


@dataclass(frozen=True)
class Command:
    """One README command: its text (continuations joined, comment dropped), line, and console output lines."""

    text: str
    line: int
    expected: tuple[str, ...] = field(default=())

    @cached_property
    def words(self) -> list[str]:
        return shlex.split(self.text)

    @cached_property
    def env(self) -> dict[str, str]:
        """The leading NAME=value words."""
        env = {}
        for word in self.words:
            if not re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", word):
                break
            name, value = word.split("=", 1)
            env[name] = value
        return env

    @cached_property
    def argv(self) -> list[str]:
        return self.words[len(self.env) :]

    @property
    def overrides(self) -> list[str]:
        """The kdlab-train arguments without -m/--multirun."""
        return [a for a in self.argv[1:] if a not in ("-m", "--multirun")]

    @property
    def multirun(self) -> bool:
        return "-m" in self.argv or "--multirun" in self.argv

    @property
    def experiment(self) -> str | None:
        values = [a.split("=", 1)[1] for a in self.argv if a.startswith("experiment=")]
        return values[-1] if values else None

    def uses(self, prefix: str) -> bool:
        return any(a.lstrip("+").startswith(prefix) for a in self.argv)


def _strip_comment(line: str) -> str:
    """`line` without a trailing `# comment` (a # outside quotes, at the start or after a blank)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def readme_commands(text: str) -> list[Command]:
    """The commands of the shell blocks in `text`, in order."""
    commands: list[Command] = []
    block: str | None = None
    console_output = False  # in a console block, after its first `$ ` line
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        fence = re.match(r"\s*```\s*(\S*)", raw)
        if fence:
            block = (fence.group(1).lower() or "text") if block is None else None
            console_output = False
            continue
        if block not in SHELL_BLOCKS:
            continue
        line = raw.strip()
        if block == "console":
            if line.startswith("$ "):
                commands.append(Command(line[2:].strip(), number))
                console_output = True
            elif line and console_output:
                last = commands.pop()
                commands.append(Command(last.text, last.line, (*last.expected, line)))
            continue
        line = _strip_comment(line)
        if line.endswith("\\"):
            pending, start = pending + line[:-1].rstrip() + " ", start or number
            continue
        line, first = (pending + line).strip(), start or number
        pending, start = "", 0
        if line:
            commands.append(Command(line, first))
    return commands


COMMANDS = readme_commands(README.read_text(encoding="utf-8"))


def section_lines(text: str, heading: str) -> range:
    """The README lines (1-based) of the section under `heading`, up to the next heading of its level."""
    lines = text.splitlines()
    start = lines.index(heading) + 1
    level = heading.split(" ", 1)[0] + " "
    end = next((i for i in range(start, len(lines)) if lines[i].startswith(level)), len(lines))
    return range(start + 1, end + 1)


OWN_DATA = section_lines(README.read_text(encoding="utf-8"), "## Your own data")


def category(cmd: Command) -> str | None:
    """The category that runs `cmd` (see the module docstring), or None."""
    program = cmd.argv[0] if cmd.argv else ""
    if cmd.text in MANUAL:
        return "manual"
    if cmd.line in OWN_DATA:
        return "own data"
    if program == "make":
        return "make"
    if cmd.expected or "&&" in cmd.argv or program in VERBATIM_PROGRAMS or "--cfg" in cmd.argv:
        return "verbatim"
    if program == "kdlab-train":
        return "train"
    if program == "python" and len(cmd.argv) > 1 and cmd.argv[1] in SCRIPT_ARGS:
        return "script"
    return None


def uncovered(cmd: Command) -> str | None:
    """Why no category runs `cmd`, or None when one does."""
    kind = category(cmd)
    if kind is None:
        return "no category takes it (see tests/test_readme.py)"
    if PLACEHOLDER.search(cmd.text) and kind not in ("manual", "own data") and cmd.text not in FILL:
        return "a placeholder that FILL does not fill"
    if kind == "train" and cmd.experiment not in LIMITS:
        return f"no tiny limits for experiment={cmd.experiment} in LIMITS"
    if kind == "make" and cmd.argv[1:] not in (["train"], ["test"], ["test-slow"], ["benchmark"]):
        return "a make target test_make_targets does not check"
    return None


def _is_slow(cmd: Command) -> bool:
    """Real data (but not a console block's config error), an Optuna search, a submitit launch, a notebook or a
    benchmark script: the slow suite."""
    return (
        "KDLAB_DATA_DIR" in cmd.env
        and not cmd.expected
        or cmd.uses("hparams_search=")
        or cmd.uses("hydra/launcher=")
        or cmd.argv[:1] == ["jupyter"]
        or category(cmd) == "script"
    )


def _marks(cmd: Command) -> list:
    """slow for the slow suite; real-data commands skip without the data folder, and (but for a console block's
    config error, which loads no model) without the minilm extra."""
    marks = [pytest.mark.slow] if _is_slow(cmd) else []
    if "KDLAB_DATA_DIR" in cmd.env:
        marks.append(needs_shared_data())
        if not cmd.expected:
            marks.append(needs_minilm())
    return marks


def _params(kind: str, runnable: bool = False) -> list:
    """pytest params of the README commands of `kind` with their marks; `runnable` leaves out SLURM launches."""
    chosen = [c for c in COMMANDS if category(c) == kind and not (runnable and c.uses("hydra/launcher=slurm"))]
    return [pytest.param(c, id=f"L{c.line}", marks=_marks(c)) for c in chosen]


def _key(override: str) -> str:
    return override.lstrip("+").split("=", 1)[0]


def with_limits(cmd: Command) -> list[str]:
    """`cmd`'s overrides with its experiment's tiny limits (an Optuna search: fewer trials) in place of its own values."""
    limits = [*LIMITS[cmd.experiment], *(SWEEP_LIMITS if cmd.uses("hparams_search=") else [])]
    replaced = {_key(o) for o in limits}
    return [o for o in cmd.overrides if _key(o) not in replaced] + limits


def job_overrides(cmd: Command) -> list[list[str]]:
    """The override list of every job of `cmd` (one for a single run; a multirun's sweep expanded as Hydra does)."""
    if not cmd.multirun:
        return [cmd.overrides]
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(cmd.overrides)
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


class Workspace:
    """The module's working folder: runs README commands there and remembers the folder each one made."""

    def __init__(self, root: Path):
        self.root = root
        self.made: dict[str, Path] = {}
        for name in LINKED:
            (root / name).symlink_to(REPO / name)

    def env(self, cmd: Command | None = None) -> dict[str, str]:
        """The environment of a README command: offline, outputs and caches here, the command's own variables
        (a relative KDLAB_DATA_DIR is the repository's ../shared/data, i.e. DATA)."""
        env = {k: v for k, v in os.environ.items() if k not in ("KDLAB_DATA_DIR", "KDLAB_ROOT")}
        env.update(
            HF_HUB_OFFLINE="1",
            WANDB_MODE="offline",
            TOKENIZERS_PARALLELISM="false",
            KDLAB_OUTPUT_DIR=str(self.root / "outputs"),
            KDLAB_CACHE_DIR=str(self.root / ".kdlab_cache"),
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        )
        for name, value in (cmd.env if cmd else {}).items():
            env[name] = str(DATA) if name == "KDLAB_DATA_DIR" else value
        return env

    def folders(self) -> set[Path]:
        return {p for kind in ("runs", "sweeps") for p in (self.root / "outputs" / kind).glob("*")}

    def run(self, args: list[str], cmd: Command | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
        return subprocess.run(args, cwd=self.root, env=self.env(cmd), capture_output=True, text=True, timeout=timeout)

    def compose(self, cmd: Command) -> None:
        """`kdlab-train <overrides> --cfg job` for every job of `cmd`."""
        for overrides in job_overrides(cmd):
            overrides = [PLACEHOLDER.sub("x", o) for o in overrides]  # composing checks keys, not folders
            result = self.run([sys.executable, "-m", "kdlab.train", *overrides, "--cfg", "job"], cmd, timeout=120)
            assert result.returncode == 0, f"README line {cmd.line}: {cmd.text}\n{result.stderr[-2000:]}"
            assert "method:" in result.stdout

    def run_small(self, cmd: Command) -> Path:
        """Run `cmd` with tiny limits (once per module); the run or sweep folder it made, relative to the root."""
        if cmd.text in self.made:
            return self.made[cmd.text]
        overrides = with_limits(cmd)
        if cmd.text in FILL:  # before `before`: filling may run the command that makes the folder
            overrides = [self.fill(cmd, o) for o in overrides]
        before = self.folders()
        # DDP starts its other ranks by running the command line again: only from a real kdlab-train command
        if cmd.multirun or cmd.uses("hydra") or cmd.uses("hparams_search=") or cmd.uses("hardware=ddp"):
            args = [sys.executable, "-m", "kdlab.train", *(["-m"] if cmd.multirun else []), *overrides]
            result = self.run(args, cmd, timeout=1800)
            assert result.returncode == 0, f"README line {cmd.line}: {cmd.text}\n{result.stderr[-3000:]}"
        else:
            from kdlab import api

            with pytest.MonkeyPatch.context() as patch:
                patch.chdir(self.root)
                patch.delenv("KDLAB_DATA_DIR", raising=False)  # set again below only if the command sets it
                patch.delenv("KDLAB_ROOT", raising=False)
                for name, value in self.env(cmd).items():
                    patch.setenv(name, value)
                api.train(*overrides)
        made = sorted(self.folders() - before)
        if not made and cmd.uses("hydra.run.dir="):  # a restart writes into the folder it names
            made = [self.root / _value(overrides, "hydra.run.dir")]
        assert len(made) == 1, f"README line {cmd.line}: expected one new run or sweep folder, got {made}"
        self.made[cmd.text] = made[0].relative_to(self.root)
        return self.made[cmd.text]

    def fill(self, cmd: Command, text: str) -> str:
        """`text` (part of `cmd`) with its placeholders replaced by the folders FILL names, made when needed."""
        for placeholder, (source, inside) in FILL[cmd.text].items():
            if placeholder in text:
                (origin,) = [c for c in COMMANDS if c.text == source] or [
                    pytest.fail(f"FILL: {source!r} is not a README command")
                ]
                folder = self.run_small(origin)
                text = text.replace(placeholder, str(folder / inside) if inside else str(folder))
        return text


def _value(overrides: list[str], key: str) -> str:
    return [o.split("=", 1)[1] for o in overrides if _key(o) == key][-1]


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    return Workspace(tmp_path_factory.mktemp("readme"))


# --- the README's commands --------------------------------------------------------------------------------------


def test_every_readme_command_is_covered():
    problems = [f"README line {c.line}: {c.text!r}: {why}" for c in COMMANDS if (why := uncovered(c))]
    assert not problems, "\n".join(problems)
    texts = {c.text for c in COMMANDS}
    stale = [t for t in [*FILL, *MANUAL, GRID] if t not in texts]
    assert not stale, f"tests/test_readme.py names commands the README no longer has: {stale}"


def test_readme_commands_are_parsed_with_continuations_comments_and_env_prefixes():
    text = (
        "```bash\nkdlab-train a=1 \\\n    b='x # y'   # comment\nA=1 B=2 kdlab-eval c=3\n```\n"
        "```python\nkdlab-train not_shell=1\n```\n```console\n$ kdlab-train bad=1\nkdlab: error: bad\n```\n"
    )
    first, second, third = readme_commands(text)
    assert (first.text, first.line, first.words) == ("kdlab-train a=1 b='x # y'", 2, ["kdlab-train", "a=1", "b=x # y"])
    assert (second.env, second.argv) == ({"A": "1", "B": "2"}, ["kdlab-eval", "c=3"])
    assert (third.text, third.expected) == ("kdlab-train bad=1", ("kdlab: error: bad",))


@pytest.mark.parametrize("cmd", [pytest.param(c, id=f"L{c.line}") for c in COMMANDS if category(c) == "train"])
def test_train_command_composes(cmd, ws):
    ws.compose(cmd)


@pytest.mark.parametrize("cmd", _params("train", runnable=True))
def test_train_command_runs_with_tiny_limits(cmd, ws):
    restart = cmd.uses("hydra.run.dir=")  # the README's restart of a run: its finished steps are not trained again
    if restart:
        trained = _checkpoints(ws.root / ws.fill(cmd, _value(cmd.overrides, "hydra.run.dir")))
        assert trained
    folder = ws.root / ws.run_small(cmd)
    assert (folder / "metrics.json").is_file() or (folder / "summary.csv").is_file()
    if restart:
        assert _checkpoints(folder) == trained


def _checkpoints(folder: Path) -> dict[Path, int]:
    """Every checkpoint under `folder` with its modification time."""
    return {path: path.stat().st_mtime_ns for path in folder.rglob("*.ckpt")}


@pytest.mark.parametrize("cmd", _params("verbatim"))
def test_verbatim_command_runs_as_written(cmd, ws):
    text = ws.fill(cmd, cmd.text) if cmd.text in FILL else cmd.text
    expected = list(cmd.expected)
    if "KDLAB_DATA_DIR" in cmd.env:  # relative to the repository root, not to the working folder
        text = text.replace(f"KDLAB_DATA_DIR={cmd.env['KDLAB_DATA_DIR']}", f"KDLAB_DATA_DIR={DATA}")
        expected = [e.replace(cmd.env["KDLAB_DATA_DIR"], str(DATA)) for e in expected]
    result = ws.run(["bash", "-c", text], cmd)
    printed = result.stdout + result.stderr
    failed = any(e.startswith("kdlab: error:") for e in expected)
    assert result.returncode == (2 if failed else 0), f"README line {cmd.line}: {text}\n{printed[-3000:]}"
    for line in expected:
        assert line in printed.splitlines(), f"README line {cmd.line}: {line!r} not printed:\n{printed[-2000:]}"


@pytest.mark.parametrize("cmd", _params("script"))
def test_script_runs_with_small_arguments(cmd, ws):
    result = ws.run([sys.executable, *cmd.argv[1:], *SCRIPT_ARGS[cmd.argv[1]]], cmd, timeout=1800)
    assert result.returncode == 0, f"README line {cmd.line}: {cmd.text}\n{result.stderr[-3000:]}"


# --- make targets -----------------------------------------------------------------------------------------------


def _recipe(target: str) -> list[str]:
    """The last command `make -n <target>` prints (the target's own recipe; install steps come before it)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    # under `make test` (CI) this runs inside make: without its MAKELEVEL/MAKEFLAGS and with --no-print-directory
    # the sub-make prints no "make[1]: Leaving directory" line after the recipe
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES")}
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", target], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    words = shlex.split(result.stdout.strip().splitlines()[-1])
    return [w.removeprefix(".venv/bin/") for w in words]


def test_make_targets_are_the_readme_ones():
    assert {c.argv[1] for c in COMMANDS if category(c) == "make"} == {"benchmark", "test", "test-slow", "train"}


def test_make_train_composes_and_runs_with_tiny_limits(ws):
    words = _recipe("train")
    assert words[0] == "kdlab-train"
    cmd = Command(shlex.join(words), 0)
    ws.compose(cmd)
    assert (ws.root / ws.run_small(cmd) / "baseline" / "metrics.json").is_file()


def test_make_test_and_test_slow_run_this_suite_by_marker_without_being_run_here():
    """make test / make test-slow are pytest over the whole suite, this file included: running them from here would
    recurse, so their recipes are checked and `--collect-only` shows what they select of this file."""
    fast, slow = _recipe("test"), _recipe("test-slow")
    assert fast == ["python", "-m", "pytest", "-m", "not slow", "-q"]
    assert slow == ["KDLAB_DATA_DIR=${KDLAB_DATA_DIR:-../shared/data}", "python", "-m", "pytest", "-m", "slow", "-q"]
    selected = {}
    for marker in ("not slow", "slow"):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-m",
                marker,
                "--collect-only",
                "-q",
                "-p",
                "no:cacheprovider",
                str(Path(__file__).relative_to(REPO)),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout[-2000:]
        selected[marker] = {line for line in result.stdout.splitlines() if "::" in line}
    assert selected["not slow"] and selected["slow"] and not selected["not slow"] & selected["slow"]
    assert not any("test_make_test" in line for line in selected["slow"])


@pytest.mark.slow
def test_make_benchmark_runs_its_script_with_small_arguments(ws):
    words = _recipe("benchmark")
    assert words[0].endswith("python") and words[1] in SCRIPT_ARGS
    result = ws.run([sys.executable, words[1], *SCRIPT_ARGS[words[1]]], timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]


# --- commands not run -------------------------------------------------------------------------------------------


def test_manual_install_line_matches_the_makefile():
    (install,) = [c for c in COMMANDS if c.text.startswith("python -m venv")]
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    torch_spec = re.search(r"^TORCH_SPEC \?= (\S+)", makefile, re.MULTILINE).group(1)
    extras = re.search(r'pip install --quiet -e "(\.\[[^\]]+\])"', makefile).group(1)
    assert f"pip install {torch_spec}" in install.text and f'pip install -e "{extras}"' in install.text


def test_readme_config_tree_lists_every_conf_group_and_option():
    """The `conf/` tree under "Configuration" names every folder and config file of conf/ (and nothing else)."""
    text = README.read_text(encoding="utf-8")
    tree = text[text.index("```\nconf/\n") :]
    tree = tree[len("```\n") : tree.index("```", 4)]
    entries: dict[str, str] = {}
    for line in tree.splitlines()[1:]:
        match = re.match(r"  (\S+)\s*(.*)", line)
        if match:
            name = match.group(1)
            entries[name] = match.group(2)
        else:
            entries[name] += " " + line.strip()
    conf = REPO / "conf"
    expected = sorted(f"{p.name}/" if p.is_dir() else p.name for p in conf.iterdir())
    assert sorted(entries) == expected
    for name, description in entries.items():
        if name.endswith("/"):
            for path in sorted((conf / name).rglob("*.yaml")):
                where = path.relative_to(conf / name)
                if len(where.parts) > 1:  # a nested group, e.g. hydra/launcher/: "launcher/ local, slurm"
                    assert f"{where.parts[0]}/" in description, (
                        f"conf/{name}{where.parts[0]}/ is not in the README's tree"
                    )
                assert re.search(rf"\b{re.escape(path.stem)}\b", description), (
                    f"conf/{name}{where} is not in the README's tree"
                )
