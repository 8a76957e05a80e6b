"""Slow tests: the real all-MiniLM-L6-v2 teacher and the real files in ../shared/data (KDLAB_DATA_DIR)."""

import json

import pytest
from conftest import SHARED_DATA, needs_minilm, needs_shared_data, run_dirs

from kdlab.data.text import TextDataModule


def glue_cfg(path, columns, labels, task="classification", **source):
    return {
        "task": task,
        "labels": labels,
        "columns": columns,
        "max_length": 64,
        "batch_size": 8,
        "train": {"path": str(path), **source},
        "validation": None,
        "test": None,
        "label_scale": 5.0 if task == "regression" else None,
    }


@pytest.mark.slow
@needs_shared_data("glue")
@pytest.mark.parametrize(
    "relative,columns,labels,task,source,rows",
    [
        ("glue/SST-2/train.tsv", {"text": "sentence", "label": "label"}, ["0", "1"], "classification", {}, 67349),
        ("glue/SST-2/dev.tsv", {"text": "sentence", "label": "label"}, ["0", "1"], "classification", {}, 872),
        (
            "glue/RTE/train.tsv",
            {"text": "sentence1", "text_pair": "sentence2", "label": "label"},
            ["entailment", "not_entailment"],
            "classification",
            {},
            2490,
        ),
        ("glue/CoLA/train.tsv", {"text": 3, "label": 1}, ["0", "1"], "classification", {"header": False}, 8551),
        (
            "glue/MRPC/msr_paraphrase_train.txt",
            {"text": "#1 String", "text_pair": "#2 String", "label": "Quality"},
            ["0", "1"],
            "classification",
            {"format": "tsv"},
            4076,
        ),
        (
            "stsb/sts-train.csv",
            {"text": 5, "text_pair": 6, "label": 4},
            None,
            "regression",
            {"format": "tsv", "header": False},
            5749,
        ),
    ],
)
def test_real_files_load_through_the_shared_layer(relative, columns, labels, task, source, rows):
    columns = {"text_pair": None, **columns}
    module = TextDataModule(glue_cfg(SHARED_DATA / relative, columns, labels, task, **source))
    records = module.records("train")
    assert len(records) == rows
    if task == "regression":
        assert all(0.0 <= r["label"] <= 1.0 for r in records)


@needs_minilm()
@needs_shared_data("glue", "SST-2")
def test_hinton_sst2_experiment_runs_end_to_end_small(cli):
    result = cli(
        "experiment=hinton_sst2",
        "data.train.limit=640",
        "data.validation.limit=200",
        "data.test.limit=128",
        "method.teacher.epochs=2",
        "method.teacher.optimizer.lr=1e-4",
        "method.student.epochs=1",
        "method.baseline=false",
        "trainer.enable_progress_bar=false",
        env={"KDLAB_DATA_DIR": str(SHARED_DATA)},
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = run_dirs(cli.tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    assert (
        metrics["teacher/val/acc"] > 0.65
    )  # MiniLM fine-tuned on 640 SST-2 phrases: 200 dev sentences, chance 0.5 ± 0.035
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(run / "student" / "model").num_hidden_layers == 2


@needs_minilm()
@needs_shared_data("parallel")
def test_multilingual_minilm_experiment_runs_small_and_exports_for_sentence_transformers(cli):
    st = pytest.importorskip("sentence_transformers")
    overrides = [f"data.sources.{i}.limit=40" for i in range(5)] + [
        "data.holdout=8",
        "method.evaluation.tatoeba.languages=[deu]",
        "method.evaluation.sts.pairs=[[en,de]]",
        "trainer.enable_progress_bar=false",
    ]
    result = cli("experiment=multilingual_minilm", *overrides, env={"KDLAB_DATA_DIR": str(SHARED_DATA)}, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = run_dirs(cli.tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    # before training the student is all-MiniLM-L6-v2 itself: the reference figures of ../shared/ENVIRONMENT.md
    assert metrics["student_init/test/tatoeba/deu/mean"] == pytest.approx(12.7, abs=0.1)
    assert metrics["student_init/test/sts/en-de"] == pytest.approx(29.0, abs=0.1)
    model = st.SentenceTransformer(str(run / "student" / "model"), device="cpu")
    assert model.encode(["Ein Test."]).shape == (1, 384)


@needs_minilm()
@needs_shared_data("stsb")
def test_trans_encoder_stsb_experiment_runs_small_from_the_reference_start(cli):
    overrides = [
        "method.cycles=1",
        "data.train.limit=96",
        "method.bi.epochs=1",
        "method.bi.batch_size=32",
        "trainer.limit_train_batches=3",
        "trainer.enable_progress_bar=false",
    ]
    result = cli("experiment=trans_encoder_stsb", *overrides, env={"KDLAB_DATA_DIR": str(SHARED_DATA)}, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = run_dirs(cli.tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    # the starting bi-encoder is all-MiniLM-L6-v2: STS-B test Spearman of ../shared/ENVIRONMENT.md
    assert metrics["bi_start/test/spearman"] == pytest.approx(82.0, abs=0.1)
    assert json.loads((run / "trans_encoder.json").read_text())["pairs"]["pairs"] == 96
    for kind in ("bi", "cross"):
        assert (run / "best" / kind / "config.json").exists()
