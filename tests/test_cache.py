"""The teacher-output cache: keyed by content and teacher, read instead of running the teacher, same loss as live."""

import pytest
import torch
from settings import adamw

from kdlab.cache.teacher_outputs import TeacherOutputCache, weights_fingerprint
from kdlab.data.identity import distinct
from kdlab.data.text import TextDataModule
from kdlab.errors import DataError
from kdlab.methods.hinton import HintonKD
from kdlab.models.backbone import build_model, freeze
from kdlab.models.inference import predict_logits

TINY = {
    "model_type": "bert",
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}
LABELS = ["negative", "positive"]


@pytest.fixture
def teacher(tiny_tokenizer):
    torch.manual_seed(0)
    return freeze(build_model({"config": TINY}, "classification", LABELS, tiny_tokenizer))


@pytest.fixture
def datamodule(tiny_tokenizer):
    cfg = {
        "task": "classification",
        "labels": LABELS,
        "columns": {"text": "text", "text_pair": None, "label": "label"},
        "train": {"embedded": "reviews", "split": "train", "size": 96},
        "validation": {"embedded": "reviews", "split": "validation", "size": 32},
        "test": {"embedded": "reviews", "split": "test", "size": 32},
        "max_length": 48,
        "batch_size": 16,
        "eval_batch_size": 40,
    }
    module = TextDataModule(cfg, tokenizer=tiny_tokenizer)
    module.setup("fit")
    return module


def inputs_of(datamodule):
    return [(r["text"], r.get("text_pair")) for r in datamodule.records("train")]


def test_cached_and_live_teacher_give_the_same_loss(teacher, tiny_tokenizer, datamodule):
    cached = predict_logits(teacher, tiny_tokenizer, inputs_of(datamodule), 48, 40)
    student = build_model({"config": TINY}, "classification", LABELS, tiny_tokenizer).eval()
    common = dict(
        model=student,
        tokenizer=tiny_tokenizer,
        task="classification",
        num_labels=2,
        optimizer=adamw(lr=1e-3),
        metrics=["acc"],
        alpha=0.7,
        temperature=3.0,
    )
    live = HintonKD(teacher=teacher, **common)
    offline = HintonKD(teacher=None, teacher_outputs=cached, **common)
    for batch in datamodule.train_dataloader():
        a, b = live.compute_loss(batch), offline.compute_loss(batch)
        for name in ("loss", "loss_soft", "loss_hard"):
            torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)


def test_second_lookup_reads_the_cache_and_never_runs_the_teacher(teacher, tiny_tokenizer, datamodule, tmp_path):
    cache = TeacherOutputCache(tmp_path)
    unique, where = distinct(inputs_of(datamodule))
    calls = []
    teacher.register_forward_hook(lambda *_: calls.append(1))
    key = cache.key(
        identity="t", teacher=teacher, tokenizer=tiny_tokenizer, max_length=48, kind="logits", inputs=unique
    )

    def compute(items):
        return predict_logits(teacher, tiny_tokenizer, items, 48, 40)

    first, hit = cache.get_or_compute(key, unique, compute)
    assert not hit and len(calls) == 3  # 96 distinct inputs, batches of 40
    second, hit = cache.get_or_compute(key, unique, compute)
    assert hit and len(calls) == 3
    torch.testing.assert_close(first, second)
    # one entry, no temporary file left (the per-entry lock file lives in .locks/)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".locks", f"{key}.safetensors"]


def test_any_change_gives_a_new_key(teacher, tiny_tokenizer, datamodule):
    cache = TeacherOutputCache("unused")
    unique, _ = distinct(inputs_of(datamodule))
    base = dict(identity="t", teacher=teacher, tokenizer=tiny_tokenizer, max_length=48, kind="logits", inputs=unique)
    key = cache.key(**base)
    assert cache.key(**base) == key
    assert cache.key(**{**base, "max_length": 32}) != key
    assert cache.key(**{**base, "inputs": unique[:-1]}) != key
    assert cache.key(**{**base, "inputs": list(reversed(unique))}) != key
    before = weights_fingerprint(teacher)
    with torch.no_grad():
        teacher.classifier.bias[0] += 1e-3
    assert weights_fingerprint(teacher) != before and cache.key(**base) != key


def test_duplicates_are_computed_once_and_mapped_back():
    unique, where = distinct([("a", None), ("b", None), ("a", None), ("a", "b"), ("b", None)])
    assert unique == [("a", None), ("b", None), ("a", "b")] and where == [0, 1, 0, 2, 1]


def test_an_entry_that_does_not_match_its_inputs_is_refused(tmp_path):
    cache = TeacherOutputCache(tmp_path)
    cache.store("k", [("a", None), ("b", None)], torch.zeros(2, 2))
    with pytest.raises(DataError, match="does not match its inputs"):
        cache.load("k", [("a", None), ("c", None)])
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(DataError, match="unreadable teacher-output cache entry"):
        cache.load("bad", [("a", None)])


CONCURRENT_USER = """
import sys, time, torch
from pathlib import Path
from kdlab.cache.teacher_outputs import TeacherOutputCache
root, log, start = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
inputs = [(f"sentence {i}", None) for i in range(50)]
def compute(items):
    with open(log, "a") as handle:
        handle.write("computed\\n")
    time.sleep(1.0)  # long enough that the other process asks while this one computes
    return torch.arange(len(items) * 3, dtype=torch.float32).view(len(items), 3)
while time.time() < start:
    time.sleep(0.005)
outputs, hit = TeacherOutputCache(root).get_or_compute("k" * 32, inputs, compute)
print(hit, float(outputs.sum()))
"""


def test_two_processes_needing_one_entry_compute_it_once_and_read_the_same(tmp_path):
    import subprocess
    import sys
    import time

    from conftest import REPO

    log = tmp_path / "calls.log"
    start = time.time() + 3  # both processes ask for the entry at the same moment
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_USER, str(tmp_path / "cache"), str(log), str(start)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [proc.communicate(timeout=120) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), [err[-2000:] for _, err in outs]
    assert log.read_text() == "computed\n"  # one computation ...
    hits = sorted(out.split()[0] for out, _ in outs)
    assert hits == ["False", "True"]  # ... the other process read its entry
    expected = float(torch.arange(150, dtype=torch.float32).sum())
    assert [float(out.split()[1]) for out, _ in outs] == [expected, expected]
    assert (
        TeacherOutputCache(tmp_path / "cache").load("k" * 32, [(f"sentence {i}", None) for i in range(50)]) is not None
    )
