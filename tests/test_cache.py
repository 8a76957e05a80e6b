"""The teacher-output cache: keyed by content and teacher, read instead of running the teacher, same loss as live."""

import pytest
import torch
from settings import adamw

from kdlab.cache.storage import Storage
from kdlab.cache.teacher_outputs import TeacherOutputCache, describe, entry_name, weights_fingerprint
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


FULL = Storage("float32", None)


def described(teacher, tokenizer, **changes):
    fields = dict(identity="t", teacher=teacher, tokenizer=tokenizer, max_length=48, kind="logits", storage=FULL)
    return describe(**{**fields, **changes})


def test_second_lookup_reads_the_cache_and_never_runs_the_teacher(teacher, tiny_tokenizer, datamodule, tmp_path):
    cache = TeacherOutputCache(tmp_path)
    unique, where = distinct(inputs_of(datamodule))
    calls = []
    teacher.register_forward_hook(lambda *_: calls.append(1))
    description = described(teacher, tiny_tokenizer)

    def compute(items):
        return predict_logits(teacher, tiny_tokenizer, items, 48, 40)

    first, info = cache.get_or_compute(description, unique, compute)
    assert (info["computed"], info["read"]) == (96, 0) and len(calls) == 3  # 96 distinct inputs, batches of 40
    second, info = cache.get_or_compute(description, unique, compute)
    assert (info["computed"], info["read"]) == (0, 96) and len(calls) == 3
    assert torch.equal(first, second) and torch.equal(first, compute(unique))
    # one entry folder holding one shard, its description and the uses; no temporary file left
    name = entry_name(description)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".locks", name]
    files = sorted(p.name for p in (tmp_path / name).iterdir())
    assert files[1:] == ["meta.json", "uses.jsonl"] and files[0].startswith("000001-")
    assert len((tmp_path / name / "uses.jsonl").read_text().splitlines()) == 2


def test_a_later_run_computes_only_the_rows_it_lacks(teacher, tiny_tokenizer, datamodule, tmp_path):
    """A sweep over growing subsets runs the teacher once per distinct input; a grown set computes only what is new."""
    cache = TeacherOutputCache(tmp_path)
    unique, _ = distinct(inputs_of(datamodule))
    description = described(teacher, tiny_tokenizer)
    seen = []

    def compute(items):
        seen.extend(items)
        return predict_logits(teacher, tiny_tokenizer, items, 48, 40)

    computed = []
    for limit in (24, 48, 96):
        rows, info = cache.get_or_compute(description, unique[:limit], compute)
        computed.append(info["computed"])
        torch.testing.assert_close(rows, predict_logits(teacher, tiny_tokenizer, unique[:limit], 48, 40))
    assert computed == [24, 24, 48] and len(seen) == len(set(seen)) == 96
    # an input set in another order, with one new input: one row computed, the rest read in the asked order
    grown = [("a sentence no run has seen", None), *reversed(unique)]
    rows, info = cache.get_or_compute(description, grown, compute)
    assert (info["computed"], info["read"]) == (1, 96)
    torch.testing.assert_close(rows, predict_logits(teacher, tiny_tokenizer, grown, 48, 40))
    assert len(cache.shards(entry_name(description))) == 4


def test_any_change_of_teacher_tokenizer_length_kind_or_storage_gives_another_entry(teacher, tiny_tokenizer):
    base = entry_name(described(teacher, tiny_tokenizer))
    assert entry_name(described(teacher, tiny_tokenizer)) == base
    assert entry_name(described(teacher, tiny_tokenizer, name="another/path")) == base  # a display name only
    for change in (
        {"max_length": 32},
        {"kind": "embedding/mean/normalized"},
        {"identity": "u"},
        {"storage": Storage("float16", None)},
        {"storage": Storage("float32", 1)},
    ):
        assert entry_name(described(teacher, tiny_tokenizer, **change)) != base, change
    with torch.no_grad():
        teacher.classifier.bias[0] += 1e-3
    assert entry_name(described(teacher, tiny_tokenizer)) != base


def test_weights_fingerprint_sees_every_parameter(teacher):
    before = weights_fingerprint(teacher)
    with torch.no_grad():
        teacher.classifier.bias[0] += 1e-3
    assert weights_fingerprint(teacher) != before


def test_duplicates_are_computed_once_and_mapped_back():
    unique, where = distinct([("a", None), ("b", None), ("a", None), ("a", "b"), ("b", None)])
    assert unique == [("a", None), ("b", None), ("a", "b")] and where == [0, 1, 0, 2, 1]


def flip(shard, tensor: str) -> None:
    """Flip one bit in the middle of `tensor`'s bytes in a safetensors file."""
    import json
    import struct

    data = bytearray(shard.read_bytes())
    header = struct.unpack("<Q", data[:8])[0]
    start, end = json.loads(data[8 : 8 + header])[tensor]["data_offsets"]
    data[8 + header + (start + end) // 2] ^= 0x10
    shard.write_bytes(bytes(data))


DESCRIPTION = {
    "teacher": "t",
    "identity": "t",
    "weights": "w",
    "tokenizer": "k",
    "max_length": 8,
    "kind": "logits",
    "dtype": "float32",
    "top_k": None,
}


def test_a_flipped_byte_is_one_error_naming_the_shard_and_how_to_rebuild(tmp_path):
    cache = TeacherOutputCache(tmp_path)
    inputs = [("a", None), ("b", None)]
    values = torch.arange(6, dtype=torch.float32).view(2, 3)
    cache.get_or_compute(DESCRIPTION, inputs, lambda items: values)
    name = entry_name(DESCRIPTION)
    (shard,) = cache.shards(name)
    assert torch.equal(cache.load(name, inputs), values)
    pristine = shard.read_bytes()
    flip(shard, "outputs")
    with pytest.raises(DataError) as caught:
        cache.load(name, inputs)
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    assert message == (
        f"{shard}: teacher-output cache shard fails its checksum (its bytes changed on disk); delete this file to "
        f"rebuild its rows (the next run computes them again), or `kdlab-cache prune --entry {name}` for the whole "
        "entry"
    )
    shard.write_bytes(pristine)
    flip(shard, "content_ids")  # that row looks missing and is computed again; reading the other row fails the check
    with pytest.raises(DataError, match="fails its checksum"):
        cache.get_or_compute(DESCRIPTION, inputs, lambda items: torch.ones(len(items), 3))
    for path in cache.shards(name)[1:]:
        path.unlink()
    shard.write_bytes(b"not a safetensors file")
    with pytest.raises(DataError, match="unreadable teacher-output cache shard"):
        cache.load(name, inputs)
    shard.unlink()  # as the message says: its rows are gone, so the next lookup computes them again
    rows, info = cache.get_or_compute(DESCRIPTION, inputs, lambda items: values)
    assert torch.equal(rows, values) and info["computed"] == 2


def test_every_input_asked_for_has_its_row_or_one_error_says_how_many_lack_one(tmp_path):
    cache = TeacherOutputCache(tmp_path)
    cache.store("k", [("a", None), ("b", None)], torch.zeros(2, 2), FULL)
    assert cache.load("k", [("a", None), ("c", None)]) is None
    with pytest.raises(DataError) as caught:
        cache.rows("k", [("a", None), ("c", None), ("d", "e")])
    assert str(caught.value) == (
        f"{tmp_path / 'k'}: 2 of 3 inputs have no teacher-output row, e.g. 'c'; run again to compute them"
    )


CONCURRENT_USER = """
import sys, time, torch
from pathlib import Path
from kdlab.cache.storage import Storage
from kdlab.cache.teacher_outputs import TeacherOutputCache
root, log, start, first, last = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
inputs = [(f"sentence {i}", None) for i in range(first, last)]
description = {"teacher": "t", "identity": "t", "weights": "w", "tokenizer": "k", "max_length": 8, "kind": "logits",
               "dtype": "float32", "top_k": None}
def compute(items):
    with open(log, "a") as handle:
        handle.write("".join(text.split()[1] + "\\n" for text, _ in items))
    time.sleep(1.0)  # long enough that the other process asks while this one computes
    return torch.tensor([[float(text.split()[1])] * 3 for text, _ in items])
while time.time() < start:
    time.sleep(0.005)
outputs, info = TeacherOutputCache(root).get_or_compute(description, inputs, compute)
assert outputs[:, 0].tolist() == [float(i) for i in range(first, last)], outputs
print(info["computed"], info["read"])
"""


def test_two_processes_needing_overlapping_rows_compute_each_row_once_and_read_the_same(tmp_path):
    """Concurrent per-row appends: rows 0..59 and 30..89 asked for at the same moment; 90 rows computed in all."""
    import subprocess
    import sys
    import time

    from conftest import REPO

    log = tmp_path / "calls.log"
    start = time.time() + 3  # both processes ask at the same moment
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_USER, str(tmp_path / "cache"), str(log), str(start), first, last],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for first, last in (("0", "60"), ("30", "90"))
    ]
    outs = [proc.communicate(timeout=120) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), [err[-2000:] for _, err in outs]
    computed = sorted(int(i) for i in log.read_text().split())
    assert computed == list(range(90))  # every row once, by one of the two
    counts = sorted(tuple(map(int, out.split())) for out, _ in outs)
    assert counts == [(30, 30), (60, 0)]  # (computed, read): the first computed all it asked for, the second the rest
    entry = next(p for p in (tmp_path / "cache").iterdir() if not p.name.startswith("."))
    assert len(TeacherOutputCache(tmp_path / "cache").shards(entry.name)) == 2
