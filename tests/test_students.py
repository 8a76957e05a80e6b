"""Students that are not transformers (issue 17): the BiLSTM (Tang et al. 2019) and TextCNN (Kim 2014) kinds of
kdlab.models.kinds — padding-masked forward passes, embeddings from the teacher, a hinton run through checkpoints,
resume, export and kdlab-eval, the three-line loading snippet, and the config errors for transformer-only options."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import REPO, kdlab_folders
from settings import TINY_TEACHER

from kdlab.errors import ConfigError
from kdlab.models import kinds
from kdlab.models.backbone import build_model
from kdlab.models.files import checkpoint_payload, load_trained

KINDS = {  # tiny sizes of each student
    "bilstm": {"embedding_dim": 16, "hidden_size": 8, "fc_size": 8},
    "textcnn": {"embedding_dim": 16, "filter_widths": [2, 3, 5], "num_filters": 4},
}
TEXTS = ["a good film", "this was a truly awful and long movie, nobody should see it", "ok", "fine"]
TINY_RUN = [
    "debug=fast",
    "data.train.size=96",
    "data.validation.size=32",
    "data.test.size=32",
    "data.batch_size=16",
    *TINY_TEACHER,
    "model.teacher.vocab_size=300",
    "model.student.config.embedding_dim=16",
    "method.student.epochs=2",
]


@pytest.fixture(scope="module")
def teacher(tiny_tokenizer):
    torch.manual_seed(0)
    arch = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
    return build_model({"config": arch}, "classification", ["neg", "pos"], tiny_tokenizer).eval()


def student(kind: str, tokenizer, teacher=None, task: str = "classification", **spec):
    torch.manual_seed(0)
    labels = ["neg", "pos", "mixed"] if task == "classification" else []
    return build_model(
        {"kind": kind, "config": KINDS[kind], **spec}, task, labels, tokenizer, teacher=teacher, key="model.student"
    ).eval()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "embeddings",
    [{}, {"embeddings": "teacher", "projection": "pca"}, {"embeddings": "teacher", "projection": "learnt"}],
)
def test_a_padded_batch_gives_the_logits_of_each_row_alone(kind, embeddings, tiny_tokenizer, teacher):
    model = student(kind, tiny_tokenizer, teacher, **embeddings)
    batch = tiny_tokenizer(TEXTS, padding=True, return_tensors="pt")
    assert int((batch["attention_mask"] == 0).sum()) > 10  # real padding, and "ok" is shorter than the widest filter
    logits = model(**batch).logits
    assert logits.shape == (len(TEXTS), 3)
    alone = torch.cat([model(**tiny_tokenizer([text], return_tensors="pt")).logits for text in TEXTS])
    torch.testing.assert_close(logits, alone, rtol=0, atol=1e-6)
    regression = student(kind, tiny_tokenizer, task="regression")
    assert regression(**batch).logits.shape == (len(TEXTS), 1)


def test_embeddings_come_from_the_teacher_as_stated(tiny_tokenizer, teacher):
    source = teacher.get_input_embeddings().weight
    same = student(
        "bilstm", tiny_tokenizer, teacher, embeddings="teacher", config={**KINDS["bilstm"], "embedding_dim": None}
    )
    assert (
        torch.equal(same.embeddings.weight, source)
        and same.projection is None
        and same.config.embedding_init == "teacher"
    )

    pca = student("textcnn", tiny_tokenizer, teacher, embeddings="teacher", projection="pca")  # fixed, applied once
    assert pca.embeddings.weight.shape == (len(tiny_tokenizer), 16) and pca.projection is None
    centred = source - source.mean(dim=0)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)  # independent: the first component's direction
    first = pca.embeddings.weight[:, 0] - pca.embeddings.weight[:, 0].mean()
    assert torch.allclose(first.abs(), (centred @ vh[0]).abs(), atol=1e-4)

    learnt = student(
        "textcnn", tiny_tokenizer, teacher, embeddings="teacher", projection="learnt"
    )  # trained with the student
    assert torch.equal(learnt.embeddings.weight, source) and learnt.projection.weight.shape == (16, 32)

    with pytest.raises(
        ConfigError, match="model.student.projection: embedding_dim 16 differs from the teacher's width 32"
    ):
        student("bilstm", tiny_tokenizer, teacher, embeddings="teacher")


def test_asking_a_word_student_for_layer_outputs_is_an_error(tiny_tokenizer):
    batch = tiny_tokenizer(TEXTS, padding=True, return_tensors="pt")
    model = student("bilstm", tiny_tokenizer)
    assert model(**batch, output_hidden_states=False).logits.shape == (
        len(TEXTS),
        3,
    )  # what hinton passes when no term is on
    with pytest.raises(ValueError, match="a bilstm student has no layer outputs"):
        model(**batch, output_hidden_states=True)


def test_a_transformer_checkpoint_payload_is_unchanged_and_a_student_one_names_its_kind(tiny_tokenizer, teacher):
    assert set(checkpoint_payload(teacher, tiny_tokenizer)) == {"model_config", "tokenizer_files"}
    payload = checkpoint_payload(student("textcnn", tiny_tokenizer), tiny_tokenizer)
    assert payload[kinds.PAYLOAD_KEY] == "textcnn" and payload["model_config"]["filter_widths"] == [2, 3, 5]


SNIPPET = """
import json, sys
import torch
from transformers import AutoTokenizer
from kdlab.models.{module} import {cls}
model, tokenizer = {cls}.from_pretrained(sys.argv[1]), AutoTokenizer.from_pretrained(sys.argv[1])
logits = model(**tokenizer({texts!r}, padding=True, return_tensors="pt")).logits
print(json.dumps({{"logits": logits.tolist(), "training_code": sorted(m for m in sys.modules if m.startswith(("pytorch_lightning", "lightning", "kdlab.methods", "kdlab.pipelines")))}}))
"""
CLASSES = {"bilstm": ("bilstm", "BiLSTMClassifier"), "textcnn": ("textcnn", "TextCNNClassifier")}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny hinton run per student (teacher shared through the teacher store), with the no-KD baseline."""
    from kdlab.api import train

    root = tmp_path_factory.mktemp("students")
    with kdlab_folders(root):
        yield root, {kind: train(f"model={kind}", *TINY_RUN, "method.baseline=true") for kind in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_hinton_trains_checkpoints_and_exports_a_student_the_snippet_loads(kind, runs, tiny_tokenizer):
    _, done = runs
    run = done[kind]
    for role in ("teacher", "student", "baseline"):
        assert 0.0 <= run.metrics[f"{role}/test/acc"] <= 100.0
    assert json.loads((run.path / "metrics.json").read_text()) == run.metrics
    folder = run.path / "student" / "model"
    config = json.loads((folder / "config.json").read_text())
    assert (
        config["kdlab_kind"] == kind
        and config["embedding_dim"] == 16
        and config["embedding_init"] == "teacher, pca to 16"
    )
    assert {"model.safetensors", "tokenizer.json"} <= set(os.listdir(folder))

    exported, tokenizer = load_trained(folder, key="model_path")  # what kdlab-eval and a given teacher load
    best, _ = load_trained(run.path / "student" / "checkpoints" / "best.ckpt", key="model_path")
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = exported.eval()(**batch).logits
        torch.testing.assert_close(best.eval()(**batch).logits, expected, rtol=0, atol=0)

    module, cls = CLASSES[kind]
    loaded = subprocess.run(
        [sys.executable, "-c", SNIPPET.format(module=module, cls=cls, texts=TEXTS), str(folder)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    answer = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert answer["training_code"] == []  # no Lightning, no kdlab methods or pipelines
    torch.testing.assert_close(torch.tensor(answer["logits"]), expected, rtol=0, atol=1e-6)


def test_finetune_trains_a_word_student_alone(tmp_path):
    from kdlab.api import train

    with kdlab_folders(tmp_path):
        run = train(
            "model=textcnn", *TINY_RUN, "method=finetune", "method.train=student", "model.student.embeddings=random"
        )
    assert 0.0 <= run.metrics["student/test/acc"] <= 100.0
    config = json.loads((run.path / "student" / "model" / "config.json").read_text())
    assert config["kdlab_kind"] == "textcnn" and config["embedding_init"] == "random"


def test_kdlab_eval_scores_a_student_export_as_the_run_did(runs):
    from kdlab.api import compose
    from kdlab.eval import evaluate_model

    root, done = runs
    run = done["bilstm"]
    cfg = compose(
        f"model_path={run.path / 'student' / 'model'}",
        "trainer.enable_progress_bar=false",
        f"paths.output_dir={root / 'eval'}",
        config_name="eval",
    )
    metrics = evaluate_model(cfg)
    assert metrics["test/acc"] == pytest.approx(run.metrics["student/test/acc"])


def test_an_interrupted_student_stage_resumes_from_its_checkpoint(runs):
    from kdlab.api import train

    root, done = runs
    run = done["textcnn"]
    copy = root / "interrupted"
    shutil.copytree(run.path, copy)
    for stopped in ("metrics.json", "student/metrics.json", "baseline"):  # stopped in the student stage
        path = copy / stopped
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    shutil.rmtree(copy / "student" / "model")
    with kdlab_folders(root):
        resumed = train(*run.overrides, "resume=auto", output_dir=copy)
    assert {k: v for k, v in resumed.metrics.items() if k.startswith("student/")} == {
        k: v for k, v in run.metrics.items() if k.startswith("student/")
    }
    assert json.loads((copy / "student" / "model" / "config.json").read_text())["kdlab_kind"] == "textcnn"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["loss.hidden.weight=1.0", "method.teacher_outputs=live"],
            "loss.hidden.weight: needs a transformer student (its layer outputs); model.student.kind=bilstm has none: set it to 0",
        ),
        (
            ["+model.student.from_teacher_layers=[0]"],
            "model.student.from_teacher_layers: needs a transformer student; model.student.kind=bilstm has no layers to copy",
        ),
        (
            ["method.student.optimizer.layerwise_decay=0.9"],
            "method.student.optimizer.layerwise_decay: needs a transformer (its layer stack); model.student.kind=bilstm: set it to 1.0",
        ),
        (["model.student.kind=gru"], f"model.student.kind: must be one of {list(kinds.KINDS)}, got 'gru'"),
        (
            ["model.student.embeddings=glove"],
            "model.student.embeddings: must be one of ['random', 'teacher'], got 'glove'",
        ),
        (
            ["model.student.projection=svd"],
            "model.student.projection: must be one of ['pca', 'learnt'] or null, got 'svd'",
        ),
        (["model.student.config.hidden_size=0"], "model.student.config.hidden_size: must be a positive integer, got 0"),
        (
            ["+model.student.config.num_filters=2"],  # a TextCNN key
            "model.student.config.num_filters: is not a bilstm setting; they are ['embedding_dim', 'hidden_size', 'fc_size', 'dropout']",
        ),
        (
            ["+model.student.name_or_path=prajjwal1/bert-tiny"],
            "model.student.name_or_path: is for a Hugging Face model; model.student.kind=bilstm is built from its config: set it to null",
        ),
        (
            ["model.student.trust_remote_code=true"],
            "model.student.trust_remote_code: has no effect: model.student.kind=bilstm is built by kdlab and runs no shipped code",
        ),
        (
            ["method=finetune", "method.train=student"],
            "model.student.embeddings: teacher needs the teacher model (method=hinton); with method=finetune use random",
        ),
    ],
)
def test_options_a_word_student_cannot_take_are_one_line_config_errors(overrides, message):
    from kdlab.api import compose
    from kdlab.config import validate

    with pytest.raises(ConfigError) as err:
        validate(compose("model=bilstm", *overrides))
    assert str(err.value) == message


def test_every_kind_names_real_functions_and_the_student_configs_compose():
    from kdlab.api import compose
    from kdlab.config import validate
    from kdlab.registry import resolve

    for entry in kinds.KINDS.values():
        for step in ("build", "payload", "from_payload", "load", "export", "check"):
            ref = getattr(entry, step)
            assert ref is None or callable(resolve(ref)), ref
    for kind in ("bilstm", "textcnn"):
        validate(compose(f"model={kind}"))
        validate(compose(f"model={kind}", "method=finetune", "method.train=student", "model.student.embeddings=random"))
