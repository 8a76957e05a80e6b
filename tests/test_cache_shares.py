"""Teacher inference in shares (issue 20, item 1): in a 2-process gloo group, each process runs the teacher on its
share of the missing rows only, rank 0 writes them, and every process reads the same rows; the entry is the
one-process entry bit for bit."""

from __future__ import annotations

import torch
import torch.multiprocessing as mp
from test_cache import TINY

BATCH = 8


def config(cache_dir: str):
    from omegaconf import OmegaConf

    return OmegaConf.create(
        {
            "paths": {"cache_dir": cache_dir},
            "data": {"max_length": 48, "eval_batch_size": BATCH},
            "cache": {"dtype": "float32", "top_k": None},
        }
    )


def teacher_and_inputs(tokenizer_dir: str):
    from kdlab.data.embedded import reviews
    from kdlab.models.backbone import build_model, freeze
    from kdlab.models.tokenization import train_wordpiece

    texts = [row["text"] for row in reviews("train", size=200)]
    tokenizer = train_wordpiece(texts, 500, tokenizer_dir)
    torch.manual_seed(0)
    teacher = freeze(build_model({"config": TINY}, "classification", ["negative", "positive"], tokenizer))
    return teacher, tokenizer, [(text, None) for text in texts[:70]]  # 70 rows: 9 batches of 8 (the last of 6)


def shard_tensors(root):
    from safetensors.torch import load_file

    return {p.name: load_file(str(p)) for p in sorted(root.glob("teacher_outputs/*/*.safetensors"))}


def _worker(rank: int, world: int, tmp: str) -> None:
    from pathlib import Path

    import torch.distributed as dist

    from kdlab.errors import DataError
    from kdlab.models.inference import predict_logits
    from kdlab.pipelines.teachers import teacher_logits

    teacher, tokenizer, inputs = teacher_and_inputs(f"{tmp}/tok")
    dist.init_process_group("gloo", init_method=f"file://{tmp}/init", rank=rank, world_size=world)
    ran: list[int] = []
    teacher.register_forward_hook(
        lambda module, args, kwargs, out: ran.append(len(kwargs["input_ids"])), with_kwargs=True
    )
    outputs, info = teacher_logits(config(f"{tmp}/shared"), teacher, tokenizer, inputs)
    # batches 0, 2, 4, 6, 8 (8+8+8+8+6 rows) on rank 0, batches 1, 3, 5, 7 (32 rows) on rank 1
    assert sum(ran) == (38 if rank == 0 else 32) and (info["computed"], info["read"]) == (70, 0), (ran, info)
    everyone = [torch.empty_like(outputs) for _ in range(world)]
    dist.all_gather(everyone, outputs)
    assert all(torch.equal(other, outputs) for other in everyone)  # every process read the same rows
    # a grown input set: only the 10 new rows are computed (in shares), the 70 are read
    grown = inputs + [(f"a new review number {i}", None) for i in range(10)]
    ran.clear()
    more, info = teacher_logits(config(f"{tmp}/shared"), teacher, tokenizer, grown)
    assert (info["computed"], info["read"]) == (10, 70) and sum(ran) == (8 if rank == 0 else 2), (ran, info)
    assert torch.equal(more[:70], outputs)
    dist.barrier()
    shards = sorted(Path(tmp, "shared").glob("teacher_outputs/*/*.safetensors"))
    if rank == 0:
        pristine = shards[0].read_bytes()
        shards[0].write_bytes(b"not a safetensors file")
    dist.barrier()
    try:  # rank 0 finds the damaged shard while looking for missing rows: every rank stops with its error, none hangs
        teacher_logits(config(f"{tmp}/shared"), teacher, tokenizer, [*grown, ("one more review", None)])
        raise AssertionError("a damaged shard was read")
    except DataError as err:
        assert str(err).startswith(f"{shards[0]}: unreadable teacher-output cache shard"), err
    dist.barrier()
    if rank == 0:
        shards[0].write_bytes(pristine)
    dist.destroy_process_group()
    if rank == 0:  # the same rows as one process computes them, bit for bit, in memory and on disk
        assert torch.equal(outputs, predict_logits(teacher, tokenizer, inputs, 48, BATCH))
        single, info = teacher_logits(config(f"{tmp}/single"), teacher, tokenizer, inputs)
        assert torch.equal(single, outputs) and info["computed"] == 70
        first, second = shard_tensors(Path(tmp, "shared")), shard_tensors(Path(tmp, "single"))
        name = sorted(second)[0]
        assert name == sorted(first)[0]  # the shard's name holds its checksum: the same bytes
        assert all(torch.equal(first[name][k], second[name][k]) for k in second[name])


def test_two_processes_compute_their_shares_and_store_the_one_process_entry(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
