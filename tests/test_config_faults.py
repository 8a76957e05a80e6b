"""The catalogue of config faults (issue 9): every wrong value or combination that a method's issue names.

Each fault is given to kdlab the way a user gives it and must stop the run with exit code 2 and ONE line
`kdlab: error: <key>: ...` naming the key, no traceback, and no run folder that looks finished (no metrics.json).
A fault checked when the config is checked (`stage="config"`) leaves nothing at all under the output folder and
stderr holds that line alone; one that can only be seen once the pipeline has started (`stage="start"`: a model's
width, a teacher-output cache entry) stops before any training step.

Every fault marked `cli` runs the real command line (`python -m kdlab.train` / `kdlab.eval`), at least one per
method; the others are composed in-process with the same conf/ and overrides (`kdlab.api.compose`) and go through
the same entry point the CLI calls first (`kdlab.config.validate`, wrapped in `kdlab.app.guarded`, which prints the
line and exits 2), which saves the ~1 s process start of each.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import run_dirs
from omegaconf import OmegaConf

MULTILINGUAL = (
    "experiment=multilingual_toy data.sources.0.size=64 data.sources.1.size=64 data.dev.0.size=32 data.dev.1.size=32 "
)
TRANS = "experiment=trans_encoder_toy "
BAM = "experiment=bam_toy "
SMALL = "debug=fast data.train.size=64 data.validation.size=32 data.test.size=32 "


@dataclass(frozen=True)
class Fault:
    """One config fault: the overrides (with {placeholders} for files the `files` fixture makes) and the error line."""

    args: str
    error: str  # the whole line after "kdlab: error: ", {placeholders} filled in
    cli: bool = False  # through the real command line (else composed and checked in-process)
    stage: str = (
        "config"  # config: refused when the config is checked; start: when the pipeline starts, before training
    )
    entry: str = "train"  # kdlab.train or kdlab.eval
    env: dict[str, str] = field(default_factory=dict)


FAULTS = {
    # --- Hinton KD (the default experiment) and what every supervised run shares ---------------------------------------
    "temperature-zero": Fault("loss.temperature=0", "loss.temperature: must be > 0, got 0"),
    "temperature-negative": Fault("loss.temperature=-2", "loss.temperature: must be > 0, got -2"),
    "alpha-above-one": Fault("loss.alpha=1.5", "loss.alpha: must be in [0, 1], got 1.5"),
    "alpha-negative": Fault("loss.alpha=-0.1", "loss.alpha: must be in [0, 1], got -0.1"),
    "alpha-not-a-number": Fault("loss.alpha=abc", "loss.alpha: must be a number, got 'abc'"),
    "teacher-label-count": Fault(
        "model.teacher.trained={teacher3}",
        "model.teacher.trained: the teacher has 3 labels ({teacher3}/config.json) but data.labels gives 2",
    ),
    "teacher-missing": Fault(
        "model.teacher.trained={nowhere}",
        "model.teacher.trained: {nowhere} does not exist (expected a model folder or a kdlab .ckpt)",
    ),
    "tokenizer-mismatch": Fault(
        "model.student.tokenizer={tokenizer}",
        "model.student.tokenizer: method hinton feeds one tokenised batch to both models, so the student needs the teacher's "
        "tokenizer (teacher: train:2000, student: {tokenizer_identity}); set model.student.tokenizer=teacher",
    ),
    "hidden-states-need-live-teacher": Fault(
        "loss.hidden.weight=1",
        "loss.hidden.weight: hidden-state matching needs method.teacher_outputs=live (the cache holds logits only)",
    ),
    "extra-term-weight-negative": Fault(
        "method.teacher_outputs=live loss.hidden.weight=-1", "loss.hidden.weight: must be >= 0, got -1"
    ),
    "hidden-layer-map-outside": Fault(
        "method.teacher_outputs=live loss.hidden.weight=1 loss.hidden.layer_map=[[1,9]]",
        "loss.hidden.layer_map: pair [1, 9] is outside student 0..1 / teacher 0..4",
    ),
    "teacher-layers-outside": Fault(
        "model.student.from_teacher_layers=[0,9]",
        "model.student.from_teacher_layers: needs layer indices in [0, 3] for this teacher, got [0, 9]",
    ),
    "teacher-layers-repeated": Fault(
        "model.student.from_teacher_layers=[1,1]",
        "model.student.from_teacher_layers: must list distinct teacher layer indices, got [1, 1]",
    ),
    "teacher-outputs-mode": Fault(
        "method.teacher_outputs=disk", "method.teacher_outputs: must be cache or live, got 'disk'"
    ),
    "optimized-metric": Fault(
        "optimized_metric=student/val/bleu",
        "optimized_metric: must end in one of data.metrics ['acc', 'f1'], got 'student/val/bleu'",
    ),
    "unknown-column-in-a-file": Fault(
        "data=sst2 data.columns.text=sentense",
        "data.columns.text: column 'sentense' is not in {data}/glue/SST-2/train.tsv (columns: ['sentence', 'label'])",
        env={"KDLAB_DATA_DIR": "{data}"},
    ),
    "missing-data-file": Fault(
        "data=sst2",
        "{data}/nowhere/glue/SST-2/train.tsv: file not found (set KDLAB_DATA_DIR or paths.data_dir to the data root)",
        env={"KDLAB_DATA_DIR": "{data}/nowhere"},
    ),
    "unknown-column-of-embedded-data": Fault(
        "data.columns.text=sentence",
        "data.columns.text: column 'sentence' is not in embedded dataset 'reviews' (columns: ['text', 'label'])",
    ),
    "missing-required-key": Fault(
        "data.task=???",
        "data.task: is required (??? in the config): give it, e.g. on the command line as data.task=...",
    ),
    "required-key-null": Fault(
        "data.columns.label=null",
        "data.columns.label: is required (a column name, or a field index for header-less files)",
    ),
    "unresolvable-interpolation": Fault(
        "loss.temperature=${{oc.env:KDLAB_NO_SUCH_VARIABLE}}",  # {{ }}: the args are a format string
        'loss.temperature: cannot be resolved (KeyError raised while resolving interpolation: "Environment variable '
        "'KDLAB_NO_SUCH_VARIABLE' not found\")",
    ),
    "split-without-source": Fault("data.validation=null", "data.validation: needs a source (path, hf or embedded)"),
    "task-kind": Fault("data.task=ranking", "data.task: must be classification or regression, got 'ranking'"),
    "one-label": Fault(
        "data.labels=[positive]", "data.labels: a classification task needs at least 2 labels, got ['positive']"
    ),
    "duplicate-labels": Fault(
        "data.labels=[negative,negative]",
        "data.labels: must be distinct (a label's position is its class index), got ['negative', 'negative']",
    ),
    "main-metric": Fault(
        "data.main_metric=spearman", "data.main_metric: must be one of data.metrics ['acc', 'f1'], got 'spearman'"
    ),
    "max-length": Fault("data.max_length=2", "data.max_length: must be >= 4, got 2"),
    "batch-size": Fault("data.batch_size=0", "data.batch_size: must be >= 1, got 0"),
    "eval-batch-size": Fault("data.eval_batch_size=0", "data.eval_batch_size: must be >= 1, got 0"),
    "epochs": Fault("method.teacher.epochs=0", "method.teacher.epochs: must be >= 1, got 0"),
    "learning-rate": Fault("method.student.optimizer.lr=0", "method.student.optimizer.lr: must be > 0, got 0"),
    "warm-up-ratio": Fault(
        "method.student.optimizer.warmup_ratio=2",
        "method.student.optimizer.warmup_ratio: must be in [0, 1] (the share of steps that warm up), got 2",
    ),
    "weight-decay": Fault(
        "method.teacher.optimizer.weight_decay=-1", "method.teacher.optimizer.weight_decay: must be >= 0, got -1"
    ),
    "betas": Fault(
        "method.teacher.optimizer.betas=[0.9,1.5]",
        "method.teacher.optimizer.betas: must be two numbers in [0, 1), got [0.9, 1.5]",
    ),
    "layerwise-decay": Fault(
        "method.student.optimizer.layerwise_decay=0",
        "method.student.optimizer.layerwise_decay: must be in (0, 1] (1.0 = off), got 0",
    ),
    "optimizer-kernel": Fault(  # every stage of every method (was checked for multilingual only)
        "method.teacher.optimizer.implementation=bogus",
        "method.teacher.optimizer.implementation: must be one of [None, 'for_loop', 'foreach', 'fused'], got 'bogus'",
    ),
    "optimizer-key-missing": Fault(
        "~method.student.optimizer.warmup_ratio",
        "method.student.optimizer.warmup_ratio: is required (conf/optimizer/adamw.yaml gives every stage one)",
    ),
    "seed": Fault("seed=abc", "seed: must be an integer, got 'abc'"),
    "trust-remote-code-not-a-boolean": Fault(
        "model.teacher.trust_remote_code=yes", "model.teacher.trust_remote_code: must be true or false, got 'yes'"
    ),
    "method-name": Fault(
        "method.name=distil",
        "method.name: must be one of ['finetune', 'hinton', 'multilingual', 'trans_encoder', 'bam'], got 'distil'",
    ),
    "batch-across-processes": Fault(
        "hardware=ddp_cpu data.batch_size=33",
        "data.batch_size: the global batch of 33 does not divide across 2 processes (per-process batch = global ÷ processes); "
        "use a multiple of 2",
    ),
    "teacher-outputs-flipped-byte": Fault(
        SMALL + "model.teacher.trained={teacher} model.teacher.tokenizer=null",
        "{cache_shard}: teacher-output cache shard fails its checksum (its bytes changed on disk); delete this file "
        "to rebuild its rows (the next run computes them again), or `kdlab-cache prune --entry {cache_entry}` for "
        "the whole entry",
        cli=True,
        stage="start",
    ),
    # --- fine-tuning ---------------------------------------------------------------------------------------------------
    "finetune-role": Fault(
        "method=finetune method.train=coach",
        "method.train: must be teacher or student (a spec under model.*), got 'coach'",
    ),
    # --- multilingual --------------------------------------------------------------------------------------------------
    "multilingual-embedding-width": Fault(
        MULTILINGUAL
        + "model.student.copy_teacher=false model.student.tokenizer=null model.student.name_or_path={narrow}",
        "model.student: the student's embedding width 16 differs from the teacher's 64; set model.student.projection=true to learn "
        "a linear map 16 → 64 after pooling",
        cli=True,
        stage="start",
    ),
    "multilingual-projection-value": Fault(
        MULTILINGUAL + "model.student.projection=yes",
        "model.student.projection: must be true (learn a Linear to the teacher's width) or false, got 'yes'",
    ),
    "multilingual-epochs": Fault(
        MULTILINGUAL + "method.student.epochs=-1", "method.student.epochs: must be >= 1, got -1"
    ),
    "multilingual-no-sources": Fault(
        MULTILINGUAL + "data.sources=[]", "data.sources: needs at least one parallel source"
    ),
    "multilingual-language-tag": Fault(
        MULTILINGUAL + "data.sources.0.lang=null", "data.sources[0].lang: needs a language-pair tag such as en-de"
    ),
    "multilingual-unknown-column": Fault(
        MULTILINGUAL + "data.sources.0.columns.target=de",
        "data.sources[0].columns.target: column 'de' is not in embedded dataset 'parallel_toy' (columns: ['source', 'rev', 'vow'])",
    ),
    "multilingual-no-dev-pairs": Fault(
        MULTILINGUAL + "data.dev=null data.holdout=0",
        "data.holdout: with no data.dev sources, hold out some train pairs per source (holdout > 0)",
    ),
    "multilingual-student-source": Fault(
        MULTILINGUAL + "model.student.copy_teacher=false", "model.student: needs copy_teacher: true or a name_or_path"
    ),
    "multilingual-pooling": Fault(
        MULTILINGUAL + "model.teacher.pooling=sum",
        "model.teacher.pooling: must be one of ['mean', 'cls', 'max'] or null, got 'sum'",
    ),
    "multilingual-optimizer-kernel": Fault(
        MULTILINGUAL + "method.student.optimizer.implementation=bogus",
        "method.student.optimizer.implementation: must be one of [None, 'for_loop', 'foreach', 'fused'], got 'bogus'",
    ),
    # --- Trans-Encoder -------------------------------------------------------------------------------------------------
    "trans-encoder-pair-loss": Fault(
        TRANS + "method.cross.loss=kl", "method.cross.loss: must be one of ['bce', 'mse'], got 'kl'"
    ),
    "trans-encoder-cycles": Fault(TRANS + "method.cycles=0", "method.cycles: must be >= 1, got 0"),
    "trans-encoder-pair-source": Fault(
        TRANS + "data.pair_source=both",
        "data.pair_source: must be train, eval_pairs (the evaluation pairs themselves, unlabeled) or all_splits (train "
        "+ evaluation pairs, unlabeled), got 'both'",
    ),
    "trans-encoder-gold-column": Fault(
        TRANS + "data.columns.label=null",
        "data.columns.label: the validation pairs need a gold score column (Spearman against it)",
    ),
    "trans-encoder-unknown-column": Fault(
        TRANS + "data.columns.text=sentence",
        "data.columns.text: column 'sentence' is not in embedded dataset 'sts_toy' (columns: ['sentence1', 'sentence2', 'score'])",
    ),
    "trans-encoder-from-bi-start": Fault(
        TRANS + "model.cross_encoders.0.from_bi_start=3",
        "model.cross_encoders[0].from_bi_start: must index model.bi_encoders (0..0), got 3",
    ),
    "trans-encoder-no-bi-encoder": Fault(
        TRANS + "model.bi_encoders=[]",
        "model.bi_encoders: needs at least one model spec (a list; several = the mutual variant)",
    ),
    "trans-encoder-simcse-temperature": Fault(
        TRANS + "method.simcse.temperature=0", "method.simcse.temperature: must be > 0, got 0"
    ),
    "trans-encoder-pooling": Fault(
        TRANS + "model.bi_encoders.0.pooling=sum",
        "model.bi_encoders[0].pooling: must be one of ['mean', 'cls', 'max'] or null, got 'sum'",
    ),
    # --- BAM -----------------------------------------------------------------------------------------------------------
    "bam-duplicate-task": Fault(
        BAM + "data.tasks.1.name=reviews", "data.tasks: task 'reviews' is listed twice (entries 0 and 1)"
    ),
    "bam-negative-sampling-exponent": Fault(
        BAM + "data.sampling_exponent=-0.5",
        "data.sampling_exponent: must be >= 0 (0 uniform, 1 proportional), got -0.5",
    ),
    "bam-teacher-label-count": Fault(
        BAM + "+method.trained_teachers.reviews={teacher3}",
        "method.trained_teachers.reviews: the teacher has 3 labels ({teacher3}/config.json) but task 'reviews' has 2",
    ),
    "bam-teacher-missing": Fault(
        BAM + "+method.trained_teachers.sts={nowhere}",
        "method.trained_teachers.sts: {nowhere} does not exist (expected a model folder or a kdlab .ckpt)",
    ),
    "bam-teacher-of-no-task": Fault(
        BAM + "+method.trained_teachers.qnli={teacher3}",
        "method.trained_teachers.qnli: names no task of data.tasks ['reviews', 'sts']",
    ),
    "bam-fixed-lambda": Fault(BAM + "method.fixed_lambda=1.5", "method.fixed_lambda: must be in [0, 1], got 1.5"),
    "bam-fixed-lambda-null": Fault(BAM + "method.fixed_lambda=null", "method.fixed_lambda: is required"),
    "bam-switch": Fault(BAM + "method.teachers=yes", "method.teachers: must be true or false, got 'yes'"),
    "bam-switch-missing": Fault(BAM + "~method.teacher_annealing", "method.teacher_annealing: is required"),
    "bam-no-tasks": Fault(
        BAM + "data.tasks=[]", "data.tasks: needs at least one task (a list of single-task data configs)"
    ),
    "bam-task-kind": Fault(
        BAM + "data.tasks.0.task=ranking", "data.tasks[0].task: must be classification or regression, got 'ranking'"
    ),
    "bam-task-main-metric-null": Fault(BAM + "data.tasks.1.main_metric=null", "data.tasks[1].main_metric: is required"),
    "bam-task-metric": Fault(
        BAM + "data.tasks.0.metrics=[acc,pearson]",
        "data.tasks[0].metrics: 'pearson' is not a classification metric; choose from ['acc', 'f1', 'mcc']",
    ),
    "bam-unknown-column": Fault(
        BAM + "data.tasks.1.columns.label=similarity",
        "data.tasks[1].columns.label: column 'similarity' is not in embedded dataset 'sts_toy' (columns: ['sentence1', 'sentence2', 'score'])",
    ),
    "bam-task-batch-size": Fault(BAM + "+data.tasks.0.batch_size=0", "data.tasks[0].batch_size: must be >= 1, got 0"),
    "bam-teacher-layers": Fault(
        BAM + "model.student.from_teacher_layers=[0]",
        "model.student.from_teacher_layers: is not available for bam (one teacher per task): set it to null",
    ),
    "bam-optimized-metric": Fault(
        BAM + "optimized_metric=student/val/rte/acc",
        "optimized_metric: must be <student|teacher>/<val|test>/glue_mean or .../<task>/<metric> of data.tasks, got 'student/val/rte/acc'",
    ),
    # --- a key or config group the chosen method does not read (kdlab.registry's `reads`): refused, not ignored ---------
    "unread-key": Fault(
        "experiment=bam_toy -m loss.alpha=0.1,0.9",
        "loss.alpha: method bam does not read loss.* (only hinton does), so this override would change nothing; remove it",
        cli=True,
    ),
    "unread-group": Fault(
        "method=finetune loss=logit_mse",
        "loss: method finetune does not read loss.* (only hinton does), so this override would change nothing; remove it",
    ),
    "unread-key-of-an-experiment-file": Fault(
        "--config-dir {conf} experiment=bam_alpha",
        "loss.alpha: method bam does not read loss.* (only hinton does), so the value experiment=bam_alpha sets would "
        "change nothing; remove it",
    ),
    "unread-key-of-a-search-space": Fault(
        BAM + "hparams_search=hinton_optuna",
        "loss.temperature: method bam does not read loss.* (only hinton does), so this sweep parameter "
        "(hydra.sweeper.params) would change nothing; remove it",
    ),
    # --- the teacher-output cache's storage (kdlab/cache/storage.py) ----------------------------------------------------
    "cache-dtype": Fault("cache.dtype=float8", "cache.dtype: must be one of float32, float16, bfloat16, got 'float8'"),
    "cache-top-k": Fault("cache.top_k=0", "cache.top_k: must be a whole number >= 1 or null (every logit), got 0"),
    "cache-top-k-of-embeddings": Fault(
        "experiment=multilingual_toy cache.top_k=2",
        "cache.top_k: only logits can be stored as their top k; this method caches embeddings (set cache.top_k=null)",
    ),
    "cache-storage-of-a-live-teacher": Fault(
        "method.teacher_outputs=live cache.dtype=float16",
        "cache: the teacher's outputs are not cached in this run (method.teacher_outputs=live or method.teachers=false): "
        "leave cache.dtype=float32 and cache.top_k=null",
    ),
    "cache-key-of-a-method-without-cache": Fault(
        "experiment=trans_encoder_toy cache.dtype=float16",
        "cache.dtype: method trans_encoder does not read cache.* (only hinton, multilingual, bam do), so this override "
        "would change nothing; remove it",
    ),
    # --- kdlab-eval ----------------------------------------------------------------------------------------------------
    "eval-model-path-missing": Fault(
        "",
        "model_path: is required (??? in the config): give it, e.g. on the command line as model_path=...",
        cli=True,
        entry="eval",
    ),
    "eval-splits": Fault(
        "model_path={teacher} splits=[train]",
        "splits: must be a list of validation and/or test, got ['train']",
        entry="eval",
    ),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_tokenizer) -> dict[str, str]:
    """The files faults point at: a 3-label teacher config, another tokenizer, SST-2-shaped data, a 16-wide encoder, a tiny
    trained 2-label classifier (reviews' labels)."""
    from transformers import BertConfig, BertModel

    from kdlab.models.backbone import build_model
    from kdlab.models.files import export_model
    from kdlab.models.spec import tokenizer_identity

    root = tmp_path_factory.mktemp("fault_files")
    (root / "conf" / "experiment").mkdir(parents=True)  # a user's experiment that sets a key bam does not read
    (root / "conf" / "experiment" / "bam_alpha.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /method: bam\n  - override /data: multitask_toy\nloss:\n  alpha: 0.9\n"
    )
    (root / "teacher3").mkdir()
    (root / "teacher3" / "config.json").write_text(
        json.dumps({"model_type": "bert", "id2label": {"0": "a", "1": "b", "2": "c"}})
    )
    tiny_tokenizer.save_pretrained(root / "tokenizer")
    sst = root / "data" / "glue" / "SST-2"
    sst.mkdir(parents=True)
    for split in ("train", "dev", "test"):
        (sst / f"{split}.tsv").write_text("sentence\tlabel\nit 's good\t1\nit 's bad\t0\n")
    narrow = BertModel(
        BertConfig(
            vocab_size=len(tiny_tokenizer),
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=128,
        )
    )
    export_model(narrow, tiny_tokenizer, root / "narrow")
    tiny = {"config": {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}}
    export_model(
        build_model(tiny, "classification", ["negative", "positive"], tiny_tokenizer), tiny_tokenizer, root / "teacher"
    )
    return {
        "teacher3": str(root / "teacher3"),
        "tokenizer": str(root / "tokenizer"),
        "data": str(root / "data"),
        "narrow": str(root / "narrow"),
        "teacher": str(root / "teacher"),
        "conf": str(root / "conf"),
        "nowhere": str(root / "nowhere" / "teacher"),
        "tokenizer_identity": tokenizer_identity({"tokenizer": str(root / "tokenizer")}),
    }


def output_env(tmp_path: Path) -> dict[str, str]:
    """What the `cli` fixture sets: outputs and caches under tmp_path."""
    return {
        "KDLAB_OUTPUT_DIR": str(tmp_path / "outputs"),
        "KDLAB_CACHE_DIR": str(tmp_path / "cache"),
        "HF_HUB_OFFLINE": "1",
    }


def tamper_teacher_outputs(args: list[str], tmp_path: Path, monkeypatch) -> tuple[str, str]:
    """Fill the teacher-output cache entry the run will read (as the pipeline does), then flip one bit inside its
    stored values; (the shard's path, the entry's name)."""
    import struct

    from kdlab import api
    from kdlab.data.text import TextDataModule
    from kdlab.models.files import load_trained
    from kdlab.pipelines.supervised import cached_teacher_logits

    for name, value in output_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    cfg = api.compose(*args)
    teacher, tokenizer = load_trained(cfg.model.teacher.trained)
    _, info = cached_teacher_logits(cfg, teacher, tokenizer, TextDataModule(cfg.data, tokenizer=tokenizer))
    (shard,) = Path(info["path"]).glob("*.safetensors")
    data = bytearray(shard.read_bytes())
    header = struct.unpack("<Q", data[:8])[0]
    start, end = json.loads(data[8 : 8 + header])["outputs"]["data_offsets"]
    data[8 + header + (start + end) // 2] ^= 0x10
    shard.write_bytes(bytes(data))
    return str(shard), info["entry"]


def in_process(
    args: list[str], tmp_path: Path, env: dict[str, str], monkeypatch, capsys, entry: str = "train"
) -> tuple[int, str]:
    """Compose the config as kdlab-train (kdlab-eval) would and check it through the CLI's own entry point;
    (exit code, stderr)."""
    from kdlab import api
    from kdlab.app import guarded
    from kdlab.config import validate, validate_eval

    for name, value in {**output_env(tmp_path), **env}.items():
        monkeypatch.setenv(name, value)
    config_dir = args[args.index("--config-dir") + 1] if "--config-dir" in args else None
    overrides = [a for i, a in enumerate(args) if "--config-dir" not in (a, args[i - 1] if i else None)]

    def compose_and_check(_) -> None:  # as kdlab-train: the overrides composed (and checked) first, then the config
        cfg = api.compose(*overrides, config_name=entry, config_dir=config_dir)
        job = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
        (validate_eval if entry == "eval" else validate)(job)

    with pytest.raises(SystemExit) as stopped:
        guarded(compose_and_check, None)
    return stopped.value.code, capsys.readouterr().err


@pytest.mark.parametrize("name", list(FAULTS))
def test_a_config_fault_stops_with_one_line_naming_the_key_and_leaves_no_finished_run(
    name, cli, files, tmp_path, monkeypatch, capsys
):
    fault = FAULTS[name]
    args = fault.args.format(**files).split()
    env = {key: value.format(**files) for key, value in fault.env.items()}
    placeholders = dict(files)
    if name == "teacher-outputs-flipped-byte":
        placeholders["cache_shard"], placeholders["cache_entry"] = tamper_teacher_outputs(args, tmp_path, monkeypatch)
    expected = "kdlab: error: " + fault.error.format(**placeholders)

    if fault.cli:
        result = cli(*args, entry=fault.entry, env=env, timeout=300)
        code, stderr = result.returncode, result.stderr
    else:
        code, stderr = in_process(args, tmp_path, env, monkeypatch, capsys, fault.entry)
    assert code == 2, stderr[-3000:]
    assert "Traceback" not in stderr
    assert [line for line in stderr.splitlines() if line.startswith("kdlab: error:")] == [expected], stderr[-3000:]
    assert not list((tmp_path / "outputs").rglob("metrics.json"))
    if fault.stage == "config":
        assert stderr.strip() == expected  # nothing else: no warning, no log line, no progress bar
        assert not [path for path in (tmp_path / "outputs").rglob("*") if path.is_file()] and run_dirs(tmp_path) == []
    else:
        assert stderr.strip().splitlines()[-1] == expected


# Hydra's own composition errors (a misspelt key, an unknown option of a config group): kdlab-train composes the
# overrides before Hydra runs (kdlab.app.refuse_bad_overrides) and prints one `kdlab: error: overrides: ...` line.
HYDRA_FAULTS = {
    "misspelt-key": ("loss.temprature=2", "overrides: Could not override 'loss.temprature'."),
    "unknown-group-option": ("data=sst3", "overrides: In 'train': Could not find 'data/sst3'"),
    "misspelt-key-in-a-sweep": (
        "-m loss.temprature=1 loss.temperature=1,2",
        "overrides: Could not override 'loss.temprature'.",
    ),
}


@pytest.mark.parametrize("name", list(HYDRA_FAULTS))
def test_a_composition_fault_is_one_line_too(name, cli):
    args, start = HYDRA_FAULTS[name]
    result = cli(*args.split(), timeout=120)
    assert (
        result.returncode == 2
        and result.stderr.strip().startswith(f"kdlab: error: {start}")
        and len(result.stderr.strip().splitlines()) == 1
    )


def test_the_embedded_datasets_declare_the_columns_their_rows_have():
    """The config check reads an embedded dataset's columns from `COLUMNS`, without generating it: they must agree."""
    from kdlab.data.embedded import COLUMNS, EMBEDDED, embedded_split

    assert sorted(COLUMNS) == sorted(EMBEDDED)
    assert {name: list(embedded_split(name, "train", size=2)[0]) for name in COLUMNS} == COLUMNS
