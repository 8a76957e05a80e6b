"""Several processes (DDP, `hardware=ddp_cpu|multi_gpu|multi_node`): who writes, and how the other ranks start.

Lightning's `ddp` strategy starts ranks 1..N-1 by running the same command line again (under SLURM, srun
starts every rank): every rank runs the whole pipeline, and the trainers meet in each `fit`/`validate`.
Work whose result must exist once — run-folder files, exports, stored teachers — is done by global rank 0
(`is_global_zero`). The rows a teacher-output cache entry lacks are computed in shares by every rank once the process
group is up (`computed_in_shares`), and written by rank 0 (kdlab/cache/teacher_outputs.py); where no Trainer has run
yet (a pretrained or stored teacher), `start_processes` starts the other ranks and the group first, as that Trainer
would.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

Item = TypeVar("Item")

# what Lightning's launcher sets in the process that starts the other ranks (LOCAL_RANK also tells the next
# Trainer that the ranks exist already)
_LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")

# Hydra flags that take their value as the next argument (the rest are flags alone or flag=value)
_VALUE_FLAGS = {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--experimental-rerun"}


def is_global_zero() -> bool:
    """True in the process of global rank 0 (and in a single process): the one that writes run files."""
    from pytorch_lightning.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def process_group() -> Any:
    """torch.distributed when a process group with several processes is up, else None."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist
    return None


def wait_for_all() -> None:
    """A barrier of every process (nothing in a single process): what rank 0 wrote before it, all can read after."""
    dist = process_group()
    if dist is not None:
        dist.barrier()


def start_processes(trainer: Any) -> bool:
    """Start the other processes of `trainer`'s strategy and the process group now, as its first `fit`/`validate`
    would (Lightning's launcher, then the strategy's `setup_environment`); whether the group is up afterwards.

    Every rank runs the pipeline up to here, so work before the first Trainer call (a teacher's rows) can be shared.
    The Trainers that follow find the ranks started (LOCAL_RANK set) and the group up, and start neither again.
    Only for launchers that re-run the command (`ddp`) or find their processes started (SLURM, torchrun): a
    `ddp_spawn` launcher would run just the function in its processes, so it is left to the Trainer (False)."""
    from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

    if process_group() is not None:
        return True
    strategy = trainer.strategy
    launcher = getattr(strategy, "launcher", None)
    if trainer.world_size <= 1 or not hasattr(strategy, "setup_distributed"):
        return False
    if launcher is None:  # ranks 1..N-1 (LOCAL_RANK set), or processes started by SLURM / torchrun: join the group
        strategy.setup_environment()
    elif isinstance(launcher, _SubprocessScriptLauncher):
        # rank 0: start the others, set torch's threads as the Trainer would (when OMP_NUM_THREADS is unset), join
        launcher.launch(strategy.setup_environment)
    else:
        return False
    return process_group() is not None


def computed_in_shares(compute: Callable[[Sequence[Item]], Any], items: Sequence[Item], block: int = 1) -> Any:
    """`compute(items)` (a tensor with one row per item) with the work split across processes: the items are cut
    into blocks of `block` consecutive items, process r computes blocks r, r+N, r+2N, ... (block 1: items[r::N]), the
    shares are gathered, and every process gets the rows of all items in item order. With items sorted by length and
    `block` the batch size, each process forms exactly the batches one process would (the same rows, bit for bit)."""
    import torch

    dist = process_group()
    world = dist.get_world_size() if dist is not None else 1
    if world == 1 or len(items) < world:
        return compute(items)
    blocks = [list(range(start, min(start + block, len(items)))) for start in range(0, len(items), block)]
    owned = [[i for part in blocks[r::world] for i in part] for r in range(world)]
    rank = dist.get_rank()
    share = compute([items[i] for i in owned[rank]]) if owned[rank] else None
    if share is None:  # more processes than blocks: this one computes nothing, but learns the row shape
        share = compute(items[:1])[:0]
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    longest = max(len(part) for part in owned)
    padded = share.new_zeros((longest, *share.shape[1:]), device=device)
    padded[: len(share)] = share.to(device)
    shares = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(shares, padded)
    rows = share.new_empty((len(items), *share.shape[1:]))
    for part, gathered in zip(owned, shares):
        if part:
            rows[torch.tensor(part)] = gathered[: len(part)].to(rows.device)
    return rows


def gathered_rows(tensor: Any) -> tuple[Any, int]:
    """Every process's rows of `tensor` concatenated in rank order, gradients flowing back to each process's own
    rows, and the row where this process's rows start: a loss over the global batch (in-batch negatives) sees the
    same rows as in one process. In a single process: the tensor itself and 0."""
    import torch

    dist = process_group()
    if dist is None:
        return tensor, 0
    from torch.distributed.nn.functional import all_gather

    counts = [torch.zeros(1, dtype=torch.long, device=tensor.device) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, torch.tensor([len(tensor)], device=tensor.device))
    sizes = [int(count) for count in counts]
    padded = torch.cat([tensor, tensor.new_zeros((max(sizes) - len(tensor), *tensor.shape[1:]))])
    parts = all_gather(padded)
    return torch.cat([part[:size] for part, size in zip(parts, sizes)]), sum(sizes[: dist.get_rank()])


def job_command(argv: Sequence[str], task_overrides: Sequence[str]) -> list[str]:
    """The arguments that re-run one multirun job as a single run: Hydra flags kept, -m and sweep lists replaced
    by the job's own overrides."""
    kept: list[str] = []
    take_next = False
    for token in argv:
        if take_next:
            kept.append(token)
            take_next = False
        elif token in ("-m", "--multirun"):
            continue
        elif token.startswith("-"):
            kept.append(token)
            take_next = token in _VALUE_FLAGS
    return kept + list(task_overrides)


def _hydra_rank_command(local_rank: int) -> tuple[list[str], str]:
    """Lightning's command for rank `local_rank` under Hydra, fixed for multirun jobs.

    Lightning re-runs `sys.argv` with `hydra.run.dir=<run dir>`; in a multirun that argv is the whole sweep,
    so rank 1 would start every job of the sweep again into a new folder. For a multirun job the other
    ranks get the job's own overrides and its output folder instead.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from hydra.utils import get_original_cwd, to_absolute_path

    import __main__

    hydra_cfg = HydraConfig.get()
    if __main__.__spec__ is None:
        command = [sys.executable, to_absolute_path(sys.argv[0])]
    else:
        command = [sys.executable, "-m", __main__.__spec__.name]
    if hydra_cfg.mode == RunMode.MULTIRUN:
        command += job_command(sys.argv[1:], hydra_cfg.overrides.task)
        run_dir = hydra_cfg.runtime.output_dir
    else:
        command += sys.argv[1:]
        run_dir = hydra_cfg.run.dir
    command += [
        f'hydra.run.dir="{run_dir}"',
        f"hydra.job.name=train_ddp_process_{local_rank}",
        "hydra.output_subdir=null",
    ]
    return command, get_original_cwd()


def install_rank_launch() -> None:
    """Make Lightning's DDP launcher start the other ranks with `_hydra_rank_command` (idempotent)."""
    from pytorch_lightning.strategies.launchers import subprocess_script

    if getattr(subprocess_script._hydra_subprocess_cmd, "__name__", "") != _hydra_rank_command.__name__:
        subprocess_script._hydra_subprocess_cmd = _hydra_rank_command


@contextmanager
def ranks_end_with_the_run() -> Iterator[None]:
    """Ranks this process starts for a run end with it: the next run (multirun job) starts its own.

    Hydra's basic launcher runs the jobs of a multirun one after another in one process. Lightning starts the
    other ranks once per process (it then finds LOCAL_RANK set and the process group up), so without this
    the second job would wait for ranks that finished with the first. A failing rank ends the job's other
    processes too (Lightning's process observer), and with them the sweep.
    """
    before = {name: os.environ.get(name) for name in _LAUNCH_ENV}
    try:
        yield
    finally:
        if before["LOCAL_RANK"] is None and os.environ.get("LOCAL_RANK") is not None:  # this run started ranks
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                dist.destroy_process_group()
            for name, value in before.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
