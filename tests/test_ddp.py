"""Several processes (hardware=ddp_cpu: DDP over 2 gloo CPU processes) train and evaluate like one.

The sampler tests check the rule every training loader follows (kdlab/data/sampling.py): one seeded order
per epoch, global batches of data.batch_size, process r takes batch[r::N]. The CLI tests run the same short
hinton and Trans-Encoder jobs on 1 and on 2 processes (dropout off, so no random masks differ) and compare every
final metric (multilingual's: tests/test_multilingual_shares.py); Hinton's teacher is then reused from the store
on 2 processes; a multirun with DDP must run each job once. The collectives kdlab adds
(pseudo-labels computed in shares, SimCSE's negatives gathered with gradients) are checked against the
one-process values in two real processes.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest
import torch
from conftest import run_dirs
from safetensors import safe_open
from safetensors.torch import load_file
from settings import TRANS_ENCODER, multilingual

from kdlab.data.multitask import TaskBatchSampler
from kdlab.data.sampling import LengthGroupedBatchSampler, ShuffledBatchSampler
from kdlab.errors import ConfigError
from kdlab.utils.distributed import job_command


def shards(cache: Path) -> dict[str, tuple[dict[str, torch.Tensor], dict[str, str]]]:
    """Each shard of the cache's entries: its tensors and metadata (the file's bytes also hold the metadata in an
    order safetensors does not fix)."""
    found = {}
    for path in sorted(cache.glob("teacher_outputs/*/*.safetensors")):
        with safe_open(str(path), framework="pt") as handle:
            found[f"{path.parent.name}/{path.name}"] = (load_file(str(path)), handle.metadata())
    return found


def merged(shares: list[list[list[int]]]) -> list[list[int]]:
    """Per step, the union of what every process trained on, rank 0's part first."""
    return [[i for share in step for i in share] for step in zip(*shares)]


def as_sets(batches: list[list[int]]) -> list[set[int]]:
    return [set(batch) for batch in batches]


@pytest.mark.parametrize(
    "make",
    [
        lambda rank, world: ShuffledBatchSampler(101, 16, seed=5, rank=rank, world_size=world),
        lambda rank, world: LengthGroupedBatchSampler(
            [(i * 7) % 50 + 1 for i in range(101)], 16, mega_batches=3, seed=5, rank=rank, world_size=world
        ),
        lambda rank, world: TaskBatchSampler([40, 25, 36], [8, 4, 16], 0.75, seed=5, rank=rank, world_size=world),
    ],
    ids=["shuffled", "length-grouped", "multi-task"],
)
def test_processes_share_each_global_batch_of_the_single_process_order(make):
    single = make(0, 1)
    for epoch in (0, 3):
        single.set_epoch(epoch)
        whole = list(single)
        for world in (2, 4):
            samplers = [make(rank, world) for rank in range(world)]
            for sampler in samplers:
                sampler.set_epoch(epoch)
            shares = [list(sampler) for sampler in samplers]
            assert all(len(share) == len(sampler) for share, sampler in zip(shares, samplers))
            # every step: the processes' parts are disjoint, equal-sized where the batch allows, and together
            # the single process's batch (a last batch smaller than the process count is left out)
            kept = [batch for batch in whole if len(batch) >= world]
            assert as_sets(merged(shares)) == as_sets(kept)
            for step in zip(*shares):
                assert max(map(len, step)) - min(map(len, step)) <= 1
                assert sum(map(len, step)) == len({i for part in step for i in part})


def test_the_order_depends_only_on_seed_and_epoch():
    a, b = ShuffledBatchSampler(50, 8, seed=1), ShuffledBatchSampler(50, 8, seed=1)
    torch.manual_seed(123)  # the global RNG plays no part
    first = list(a)
    assert first == list(b)
    assert list(a) != first  # the next pass is the next epoch
    a.set_epoch(0)
    assert list(a) == first
    assert list(ShuffledBatchSampler(50, 8, seed=2)) != first
    torch.manual_seed(7)
    assert ShuffledBatchSampler(50, 8).seed == 7  # default: the run's seed (pl.seed_everything → torch.initial_seed)


def test_a_global_batch_that_does_not_divide_names_the_key():
    with pytest.raises(
        ConfigError, match=r"data\.batch_size: the global batch of 15 does not divide across 2 processes"
    ):
        ShuffledBatchSampler(100, 15, rank=0, world_size=2)
    with pytest.raises(ConfigError, match=r"data\.tasks\.b\.batch_size"):
        TaskBatchSampler([40, 25], [8, 5], 0.75, rank=1, world_size=2, names=["a", "b"])


def test_other_ranks_of_a_multirun_job_rerun_that_job_only():
    argv = ["-m", "--config-dir", "/my/conf", "loss.temperature=1,2", "hardware=ddp_cpu", "-cn=train"]
    assert job_command(argv, ["loss.temperature=2", "hardware=ddp_cpu"]) == [
        "--config-dir",
        "/my/conf",
        "-cn=train",
        "loss.temperature=2",
        "hardware=ddp_cpu",
    ]


NO_DROPOUT = [
    f"model.{role}.config.{key}=0"
    for role in ("teacher", "student")
    for key in ("hidden_dropout_prob", "attention_probs_dropout_prob")
]
HINTON = [
    "method.deploy_benchmark=false",  # no export timing in tests (tests/test_deploy.py times them)
    "data.train.size=640",
    "data.validation.size=100",
    "data.test.size=100",
    "data.batch_size=16",
    "method.teacher.epochs=3",
    "method.teacher.optimizer.lr=1e-3",
    "method.student.epochs=2",
    "model.teacher.config.num_hidden_layers=2",
    "model.teacher.config.hidden_size=64",
    "model.teacher.config.intermediate_size=128",
    "trainer.enable_progress_bar=false",
    *NO_DROPOUT,
]
MULTILINGUAL = [
    "method.deploy_benchmark=false",  # no export timing in tests (tests/test_deploy.py times them)
    *multilingual(pairs=480, dev=100),
    "method.student.epochs=2",
    "trainer.enable_progress_bar=false",
    "model.teacher.config.hidden_dropout_prob=0",
    "model.teacher.config.attention_probs_dropout_prob=0",
]


def one_and_two_processes(cli, args: list[str]) -> tuple[dict, dict, object]:
    single = cli(
        *args, f"hydra.run.dir={cli.tmp_path / 'single'}", env={"KDLAB_CACHE_DIR": str(cli.tmp_path / "cache1")}
    )
    assert single.returncode == 0, single.stderr[-3000:]
    ddp_dir = cli.tmp_path / "ddp"
    ddp = cli(
        *args, "hardware=ddp_cpu", f"hydra.run.dir={ddp_dir}", env={"KDLAB_CACHE_DIR": str(cli.tmp_path / "cache2")}
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "epochs on 2 processes" in (ddp_dir / "train.log").read_text()  # kdlab's own line (Lightning's is off)
    one = json.loads((cli.tmp_path / "single" / "metrics.json").read_text())
    two = json.loads((ddp_dir / "metrics.json").read_text())
    return one, two, ddp_dir


def assert_same_metrics(one: dict, two: dict) -> None:
    assert one.keys() == two.keys()
    for key in one:
        assert math.isclose(one[key], two[key], rel_tol=0, abs_tol=1e-3), (key, one[key], two[key])


def test_hinton_on_two_processes_ends_with_the_single_process_metrics_and_one_cache_entry(cli):
    one, two, ddp_dir = one_and_two_processes(cli, HINTON)
    assert one["teacher/val/acc"] > 60  # the models learn, so equal figures are not two copies of chance
    assert_same_metrics(one, two)
    logs = {path.name: path.read_text() for path in ddp_dir.glob("*.log")}
    assert set(logs) == {"train.log", "train_ddp_process_1.log"}
    # the teacher's logits were computed in shares by both processes (each its half), written once, read by both
    for log in logs.values():
        assert re.findall(r"teacher outputs: (\d+) rows computed in shares by (\d) processes, (\d+) read", log) == [
            ("640", "2", "0")
        ]
    assert (ddp_dir / "student" / "model" / "model.safetensors").exists()
    cache = cli.tmp_path / "cache2"
    trained = shards(cache)
    assert len(trained) == 1

    # the teacher reused from the store, its scores computed again: no Trainer runs before its logits are needed,
    # so kdlab starts the processes itself and they compute the rows in shares (issue 20, item 1)
    shutil.rmtree(cache / "teacher_outputs")
    reused_dir = cli.tmp_path / "reused"
    reused = cli(*HINTON, f"hydra.run.dir={reused_dir}", "hardware=ddp_cpu", env={"KDLAB_CACHE_DIR": str(cache)})
    assert reused.returncode == 0, reused.stderr[-3000:]
    log = (reused_dir / "train.log").read_text()
    assert "teacher: reusing" in log and "reusing" in (reused_dir / "train_ddp_process_1.log").read_text()
    for path in reused_dir.glob("*.log"):
        found = re.findall(r"teacher outputs: (\d+) rows computed in shares by 2 processes, 0 read", path.read_text())
        assert found == ["640"], path
    assert "stage " not in log.split("teacher outputs:")[0]  # no Trainer ran before the teacher's rows
    again = shards(cache)
    assert again.keys() == trained.keys()  # the same rows as with the processes started by training, bit for bit
    assert all(torch.equal(again[name][0][key], tensor) for name in trained for key, tensor in trained[name][0].items())
    assert_same_metrics(two, json.loads((reused_dir / "metrics.json").read_text()))


def test_a_ddp_multirun_runs_each_job_once(cli):
    result = cli(
        "-m",
        "loss.temperature=1,4",
        "hardware=ddp_cpu",
        "debug=fast",
        "data.train.size=200",
        "data.validation.size=50",
        "data.test.size=50",
        "data.batch_size=16",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sweeps = sorted((cli.tmp_path / "outputs").rglob("multirun.yaml"))
    assert len(sweeps) == 1  # rank 1 did not start a second sweep
    folder = sweeps[0].parent
    jobs = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert jobs == ["0", "1"]
    for job in jobs:
        assert json.loads((folder / job / "metrics.json").read_text())["student/val/acc"] >= 0
        assert (folder / job / "train_ddp_process_1.log").exists()
    assert not run_dirs(cli.tmp_path)  # no single-run folder either


TRANS_ENCODER_NO_DROPOUT = [
    *TRANS_ENCODER,
    *[
        f"model.{kind}.0.config.{key}=0"
        for kind in ("bi_encoders", "cross_encoders")
        for key in ("hidden_dropout_prob", "attention_probs_dropout_prob")
    ],
]


def test_trans_encoder_on_two_processes_labels_in_shares_and_ends_with_the_single_process_metrics(cli):
    one, two, ddp_dir = one_and_two_processes(cli, TRANS_ENCODER_NO_DROPOUT)
    assert_same_metrics(one, two)
    for kind in ("bi", "cross"):  # the gathered pseudo-labels are the single process's, and not all alike
        single = (cli.tmp_path / "single" / "cycle1" / f"pseudo_labels_{kind}.tsv").read_text().splitlines()
        shared = (ddp_dir / "cycle1" / f"pseudo_labels_{kind}.tsv").read_text().splitlines()
        assert len(shared) == len(single) == 161
        labels = [(float(a.split("\t")[2]), float(b.split("\t")[2])) for a, b in zip(single[1:], shared[1:])]
        assert max(abs(a - b) for a, b in labels) < 1e-6
        assert torch.tensor([a for a, _ in labels]).std() > 1e-5
    progress = json.loads((ddp_dir / "progress.json").read_text())
    assert progress["done"] == [
        "start",
        "cycle1/bi_labels",
        "cycle1/cross_train",
        "cycle1/cross_labels",
        "cycle1/bi_train",
    ]
    assert (ddp_dir / "best" / "bi" / "config.json").exists() and (ddp_dir / "train_ddp_process_1.log").exists()


def _collectives_worker(rank: int, world: int, init_file: str) -> None:
    """One process of test_collectives_…: checks computed_in_shares and gathered_rows against one process's values."""
    import torch.distributed as dist

    from kdlab.losses import simcse_loss
    from kdlab.utils.distributed import computed_in_shares, gathered_rows

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    items = [f"sentence {i}" for i in range(7)]  # 7 items: shares of 4 and 3
    seen: list[str] = []

    def lengths(share):
        seen.extend(share)
        return torch.tensor([[len(text), i] for i, text in enumerate(share)], dtype=torch.float)

    gathered = computed_in_shares(lengths, items)
    assert seen == items[rank::world]  # this process did its share only
    assert gathered[:, 0].tolist() == [float(len(text)) for text in items]

    torch.manual_seed(0)  # the global batch, the same in every process
    first, second = torch.randn(6, 8, dtype=torch.float64), torch.randn(6, 8, dtype=torch.float64)
    whole_first, whole_second = first.clone().requires_grad_(), second.clone().requires_grad_()
    whole = simcse_loss(whole_first, whole_second, 0.05)
    whole.backward()
    mine = list(range(6))[rank::world]
    own_first, own_second = first[mine].clone().requires_grad_(), second[mine].clone().requires_grad_()
    columns, offset = gathered_rows(own_second)
    assert offset == 3 * rank and torch.equal(columns.detach(), torch.cat([second[r::world] for r in range(world)]))
    loss = simcse_loss(own_first, columns, 0.05, offset)
    loss.backward()
    losses = [torch.zeros((), dtype=torch.float64) for _ in range(world)]
    dist.all_gather(losses, loss.detach())
    # DDP averages gradients over processes: the mean of the processes' losses and their averaged gradients are
    # the single process's loss and gradients
    assert torch.allclose(torch.stack(losses).mean(), whole.detach(), atol=1e-12)
    assert torch.allclose(own_first.grad / world, whole_first.grad[mine], atol=1e-12)
    assert torch.allclose(own_second.grad / world, whole_second.grad[mine], atol=1e-12)
    dist.destroy_process_group()


def test_collectives_give_every_process_the_single_process_values(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_collectives_worker, args=(2, str(tmp_path / "init")), nprocs=2, join=True)
