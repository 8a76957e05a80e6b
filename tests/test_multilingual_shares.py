"""Teacher inference in shares before any Trainer has run (issue 20, item 1): multilingual distillation's teacher is
pretrained, so its embeddings are needed before the first Trainer call would start the other processes. kdlab starts
them first (kdlab.pipelines.teachers.processes_started), every process computes its share of the rows, and the entry
and the student's metrics are the one-process run's."""

from __future__ import annotations

import re

import torch
from test_ddp import MULTILINGUAL, assert_same_metrics, one_and_two_processes, shards


def test_multilingual_teacher_rows_are_computed_in_shares_and_stored_as_one_process_stores_them(cli):
    one, two, ddp_dir = one_and_two_processes(cli, MULTILINGUAL)
    assert one["student/val/translation_acc"] > one["student_init/val/translation_acc"] + 5
    assert_same_metrics(one, two)
    logs = {path.name: path.read_text() for path in ddp_dir.glob("*.log")}
    assert set(logs) == {"train.log", "train_ddp_process_1.log"}
    for log in logs.values():  # every process ran the teacher on its share of the train and validation sources
        found = re.findall(r"teacher outputs: (\d+) rows computed( in shares by 2 processes)?, (\d+) read", log)
        assert [shared for _, shared, _ in found] == [" in shares by 2 processes"] * 2, found
    single, shared = (shards(cli.tmp_path / cache) for cache in ("cache1", "cache2"))
    assert len(single) == 2 and shared.keys() == single.keys()  # the same shards: their names hold their checksums
    for name, (tensors, metadata) in single.items():  # ... and the same tensors, bit for bit, and metadata
        assert shared[name][1] == metadata and shared[name][0].keys() == tensors.keys()
        assert all(torch.equal(shared[name][0][key], tensor) for key, tensor in tensors.items())
