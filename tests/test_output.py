"""What a run prints (issue 16): kdlab's own lines, one per epoch when the progress bar is off, the results table in
train.log too; the libraries' routine notices only with verbose=true; the thread count a config key."""

from __future__ import annotations

import logging

import pytest
from conftest import run_dirs
from settings import FAST

from kdlab.models.hf import load_pretrained
from kdlab.utils.quiet import LOAD_REPORT_LOGGER, quiet_libraries

NOISE = (
    "Seed set",
    "GPU available",
    "TPU available",
    "litlogger",
    "val_check_interval",
    "LeafSpec",
    "Loading weights",
    "Writing model shards",
)


def test_a_run_prints_kdlab_lines_only_and_one_line_per_epoch(cli):
    # logging less often than an epoch has steps: the epoch lines still carry the last step's loss
    result = cli(*FAST, "method.teacher.epochs=2", "trainer.log_every_n_steps=1000")
    assert result.returncode == 0, result.stderr[-3000:]
    printed = result.stdout + result.stderr
    assert [word for word in NOISE if word in printed] == []
    assert "stage teacher: epoch 1/2  train/loss " in printed and "stage teacher: epoch 2/2  train/loss " in printed
    assert "val/acc " in printed.split("stage teacher: epoch 2/2", 1)[1].splitlines()[0]
    (run,) = run_dirs(cli.tmp_path)
    log = (run / "train.log").read_text()
    assert "kdlab results" in log and "student (KD)" in log  # the table is in the run's log, not only on the screen


def test_verbose_brings_the_libraries_notices_back(cli):
    result = cli(*FAST, "verbose=true")
    assert result.returncode == 0, result.stderr[-3000:]
    printed = result.stdout + result.stderr
    assert "Seed set" in printed and "GPU available" in printed


@pytest.mark.parametrize("value", ["0", "two", "true"])
def test_threads_must_be_a_positive_integer_or_null(value):
    from kdlab.api import compose
    from kdlab.config import validate
    from kdlab.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^threads: must be a positive integer or null"):
        validate(compose(f"threads={value}"))
    validate(compose("threads=null"))


@pytest.mark.parametrize("entry", ["train", "eval"])
def test_help_starts_with_kdlabs_own_lines(cli, entry):
    from kdlab.help import experiments
    from kdlab.registry import METHODS

    result = cli("--help", entry=entry)
    assert result.returncode == 0, result.stderr[-2000:]
    head, hydra = result.stdout.split("Hydra's own help follows.", 1)
    assert head.startswith(f"kdlab-{entry}: ") and "== Configuration groups ==" in hydra
    if entry == "train":
        assert all(f"  {name} " in head and entry_.example in head for name, entry_ in METHODS.items())
        assert all(name in head for name in experiments()) and "--cfg job --package method" in head


def test_kdlab_eval_refuses_a_key_no_part_of_kdlab_reads(cli, tmp_path):
    result = cli(f"model_path={tmp_path}", "+splitz=[test]", entry="eval")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("kdlab: error")]
    assert "splitz" in line and "splits" in line


def test_wandb_without_a_login_is_one_line_at_config_time(monkeypatch, tmp_path):
    from kdlab.api import compose
    from kdlab.config import validate
    from kdlab.errors import ConfigError

    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    cfg = compose("logger=wandb")
    with pytest.raises(
        ConfigError, match=r"^logger\.wandb: W&B has no login here: run `wandb login`.*WANDB_MODE=offline"
    ):
        validate(cfg)
    monkeypatch.setenv("WANDB_MODE", "offline")
    validate(cfg)
    monkeypatch.delenv("WANDB_MODE")
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password key\n")
    (tmp_path / ".netrc").chmod(0o600)
    validate(cfg)


def test_verbose_and_quiet_runs_in_one_process_each_get_their_own_setting():
    """kdlab.api and notebooks run several configs in one process: verbose=true after a quiet run is verbose again."""
    import logging
    import warnings

    from kdlab.utils.quiet import NOISY_WARNINGS, quiet_libraries

    def silenced() -> set[str]:
        return {getattr(f[1], "pattern", None) for f in warnings.filters} & set(NOISY_WARNINGS)

    try:
        quiet_libraries(False)
        quiet_libraries(False)
        assert logging.getLogger("lightning_fabric").level == logging.WARNING and silenced() == set(NOISY_WARNINGS)
        assert sum(getattr(f[1], "pattern", None) in NOISY_WARNINGS for f in warnings.filters) == len(NOISY_WARNINGS)
        quiet_libraries(True)
        assert logging.getLogger("lightning_fabric").level == logging.NOTSET and silenced() == set()
    finally:
        quiet_libraries(False)


def test_torchmetrics_buffer_note_is_silenced_unless_verbose():
    """Every BAM and regression run built Pearson/Spearman and printed torchmetrics' note about keeping the split's
    predictions (kdlab scores whole splits on purpose); verbose=true shows it again."""
    import warnings

    from torchmetrics.regression import SpearmanCorrCoef

    from kdlab.utils.quiet import quiet_libraries

    shown = {}
    try:
        for verbose in (False, True):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("default")
                quiet_libraries(verbose)
                SpearmanCorrCoef()
            shown[verbose] = [str(w.message) for w in caught if "will save all targets" in str(w.message)]
    finally:
        quiet_libraries(False)
    assert shown[False] == [] and len(shown[True]) == 1


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def load_reports():
    """The messages transformers' from_pretrained logs to its own logger while the test runs."""
    handler = _Records()
    logger = logging.getLogger(LOAD_REPORT_LOGGER)
    logger.addHandler(handler)
    yield handler.messages
    logger.removeHandler(handler)
    quiet_libraries(False)


def test_a_new_task_head_is_no_news_but_missing_encoder_weights_are(tmp_path, load_reports):
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForSequenceClassification, BertConfig, BertModel

    encoder = tmp_path / "encoder"
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    BertModel(config).save_pretrained(encoder)
    spec = {"name_or_path": str(encoder)}
    classes = AutoModelForSequenceClassification
    quiet_libraries(False)
    load_pretrained(classes, spec, "model.teacher.name_or_path", num_labels=3)  # only classifier.* is new
    assert load_reports == []
    quiet_libraries(True)  # verbose=true: transformers' own report, as it prints it
    load_pretrained(classes, spec, "model.teacher.name_or_path", num_labels=3)
    assert len(load_reports) == 1 and "classifier.weight" in load_reports[0]
    quiet_libraries(False)
    weights = load_file(encoder / "model.safetensors")
    del weights["encoder.layer.0.attention.self.query.weight"]
    save_file(weights, encoder / "model.safetensors", metadata={"format": "pt"})
    # an encoder weight the checkpoint lacks, initialised at random: transformers' report shows
    load_pretrained(classes, spec, "model.teacher.name_or_path", num_labels=3)
    assert len(load_reports) == 2 and "encoder.layer.0.attention.self.query.weight" in load_reports[1]
